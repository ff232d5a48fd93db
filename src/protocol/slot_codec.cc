#include "protocol/slot_codec.hpp"

#include <cstring>

#include "protocol/codec_util.hpp"
#include "protocol/msgpack_io.hpp"

namespace lrts::protocol {

using detail::finish;
using detail::header;
using mp::Reader;
using mp::Writer;

namespace {

size_t begin_frame(std::string& out) {
  const size_t at = out.size();
  out.append(kFrameHeaderBytes, '\0');
  return at;
}

void end_frame(std::string& out, size_t at) {
  const uint32_t len = static_cast<uint32_t>(out.size() - at - kFrameHeaderBytes);
  for (size_t i = 0; i < 4; ++i) out[at + i] = static_cast<char>((len >> (8 * i)) & 0xff);
}

}  // namespace

void encode_frame(const SlotHello& m, std::string& out) {
  const size_t at = begin_frame(out);
  Writer w(out);
  header(w, MsgType::kSlotHello, 3);
  w.uint(m.pid);
  w.array(static_cast<uint32_t>(m.services.size()));
  for (auto s : m.services) w.str(s);
  w.str(m.error);
  end_frame(out, at);
}

void encode_frame(const SlotRun& m, std::string& out) {
  const size_t at = begin_frame(out);
  Writer w(out);
  header(w, MsgType::kSlotRun, 1);
  w.array(static_cast<uint32_t>(m.tasks.size()));
  for (const auto& t : m.tasks) {
    w.array(5);
    w.uint(t.ref);
    w.str(t.name);
    w.bin(t.fields);
    w.str(t.service_id);
    w.uint(t.attempt);
  }
  end_frame(out, at);
}

void encode_frame(const SlotResults& m, std::string& out) {
  const size_t at = begin_frame(out);
  Writer w(out);
  header(w, MsgType::kSlotResults, 1);
  w.array(static_cast<uint32_t>(m.items.size()));
  for (const auto& it : m.items) {
    w.array(5);
    w.uint(it.ref);
    w.uint(static_cast<uint8_t>(it.status));
    w.bin(it.payload);
    w.uint(it.run_ns);
    w.array(static_cast<uint32_t>(it.bars.size()));
    for (const auto& b : it.bars) {
      w.array(detail::kBarValueFields);
      detail::write_bar_values(w, b);
    }
  }
  end_frame(out, at);
}

Result<FromSlot> decode_from_slot(std::string_view body, size_t max_bytes) {
  Reader r(body);
  auto h = detail::read_header(r, body, max_bytes);
  if (!h) return Error{h.error()};
  if (h->type == static_cast<uint8_t>(MsgType::kSlotHello)) {
    SlotHello m;
    detail::expect_fields(r, *h, 3);
    m.pid = static_cast<uint32_t>(r.uint_max(UINT32_MAX));
    const uint32_t n = r.array();
    for (uint32_t i = 0; i < n && r.ok(); ++i) m.services.push_back(r.str());
    m.error = r.str();
    return finish<FromSlot>(r, std::move(m), "slot hello");
  }
  if (h->type == static_cast<uint8_t>(MsgType::kSlotResults)) {
    SlotResults m;
    detail::expect_fields(r, *h, 1);
    const uint32_t n = r.array();
    m.items.reserve(n);
    for (uint32_t i = 0; i < n && r.ok(); ++i) {
      r.expect_array(5);
      SlotResult it;
      it.ref = static_cast<uint32_t>(r.uint_max(UINT32_MAX));
      it.status = static_cast<TaskStatus>(r.uint_max(kMaxTaskStatus));
      it.payload = r.bin();
      it.run_ns = r.uint();
      const uint32_t nb = r.array();
      for (uint32_t j = 0; j < nb && r.ok(); ++j) {
        r.expect_array(detail::kBarValueFields);
        BarState b;
        detail::read_bar_values(r, b);
        it.bars.push_back(std::move(b));
      }
      m.items.push_back(std::move(it));
    }
    return finish<FromSlot>(r, std::move(m), "slot results");
  }
  return make_error("unexpected slot message type " + std::to_string(h->type));
}

Result<SlotRun> decode_to_slot(std::string_view body, size_t max_bytes) {
  Reader r(body);
  auto h = detail::read_header(r, body, max_bytes);
  if (!h) return Error{h.error()};
  if (h->type != static_cast<uint8_t>(MsgType::kSlotRun)) {
    return make_error("unexpected message type " + std::to_string(h->type) + " for a slot");
  }
  SlotRun m;
  detail::expect_fields(r, *h, 1);
  const uint32_t n = r.array();
  m.tasks.reserve(n);
  for (uint32_t i = 0; i < n && r.ok(); ++i) {
    r.expect_array(5);
    SlotTask t;
    t.ref = static_cast<uint32_t>(r.uint_max(UINT32_MAX));
    t.name = r.str();
    t.fields = r.bin();
    t.service_id = r.str();
    t.attempt = static_cast<uint32_t>(r.uint_max(UINT32_MAX));
    m.tasks.push_back(t);
  }
  return finish<SlotRun>(r, std::move(m), "slot run");
}

char* FrameBuffer::prepare(size_t n) {
  if (start_ > 0 && start_ == size_) {
    start_ = size_ = 0;
  } else if (start_ > 0 && start_ >= buf_.size() / 2) {
    std::memmove(buf_.data(), buf_.data() + start_, size_ - start_);
    size_ -= start_;
    start_ = 0;
  }
  if (buf_.size() < size_ + n) buf_.resize(std::max(size_ + n, buf_.size() * 2));
  return buf_.data() + size_;
}

Result<bool> FrameBuffer::next(std::string_view* body) {
  const size_t avail = size_ - start_;
  if (avail < kFrameHeaderBytes) return false;
  const auto* p = reinterpret_cast<const unsigned char*>(buf_.data() + start_);
  const size_t len = static_cast<size_t>(p[0]) | (static_cast<size_t>(p[1]) << 8) |
                     (static_cast<size_t>(p[2]) << 16) | (static_cast<size_t>(p[3]) << 24);
  if (len > max_frame_) {
    return make_error("frame of " + std::to_string(len) + " bytes exceeds the limit of " +
                      std::to_string(max_frame_));
  }
  if (avail < kFrameHeaderBytes + len) return false;
  *body = std::string_view(buf_.data() + start_ + kFrameHeaderBytes, len);
  start_ += kFrameHeaderBytes + len;
  return true;
}

}  // namespace lrts::protocol
