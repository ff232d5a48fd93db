// Encoding of the progress messages (worker -> progress server -> applications).
#include "protocol/codec_util.hpp"
#include "protocol/messages.hpp"
#include "protocol/msgpack_io.hpp"

namespace lrts::protocol {

using detail::expect_fields;
using detail::finish;
using detail::header;
using mp::Reader;
using mp::Writer;

namespace {

// Workers send 10 fields per bar; the server adds rate and ETA for applications.
void write_bar(Writer& w, const BarState& b, bool with_rates) {
  w.array(3 + detail::kBarValueFields + (with_rates ? 2 : 0));
  w.uint(b.key.session);
  w.uint(b.key.seq);
  w.uint(b.attempt);
  detail::write_bar_values(w, b);
  if (with_rates) {
    w.f64(b.rate);
    w.f64(b.eta_seconds);
  }
}

std::vector<BarState> read_bars(Reader& r, bool with_rates) {
  const uint32_t n = r.array();
  std::vector<BarState> bars;
  bars.reserve(n);
  for (uint32_t i = 0; i < n && r.ok(); ++i) {
    r.expect_array(3 + detail::kBarValueFields + (with_rates ? 2 : 0));
    BarState b;
    b.key.session = r.uint();
    b.key.seq = r.uint();
    b.attempt = static_cast<uint32_t>(r.uint_max(UINT32_MAX));
    detail::read_bar_values(r, b);
    if (with_rates) {
      b.rate = r.f64();
      b.eta_seconds = r.f64();
    }
    bars.push_back(std::move(b));
  }
  return bars;
}

}  // namespace

void encode(const ProgressBatch& m, std::string& out) {
  Writer w(out);
  header(w, MsgType::kProgress, 3);
  w.uint(m.batch_seq);
  w.str(m.worker);
  w.array(static_cast<uint32_t>(m.bars.size()));
  for (const auto& b : m.bars) write_bar(w, b, false);
}

void encode(const ProgressAck& m, std::string& out) {
  Writer w(out);
  header(w, MsgType::kProgressAck, 2);
  w.uint(m.batch_seq);
  w.uint(m.server_epoch);
}

void encode(const Subscribe& m, std::string& out) {
  Writer w(out);
  header(w, MsgType::kSubscribe, 3);
  w.str(m.application_id);
  w.array(static_cast<uint32_t>(m.sessions.size()));
  for (uint64_t s : m.sessions) w.uint(s);
  w.boolean(m.all);
}

void encode(const ProgressUpdate& m, std::string& out) {
  Writer w(out);
  header(w, MsgType::kProgressUpdate, 3);
  w.uint(m.server_epoch);
  w.boolean(m.snapshot);
  w.array(static_cast<uint32_t>(m.bars.size()));
  for (const auto& b : m.bars) write_bar(w, b, true);
}

Result<ToProgressServer> decode_to_progress_server(std::string_view bytes, size_t max_bytes) {
  Reader r(bytes);
  auto h = detail::read_header(r, bytes, max_bytes);
  if (!h) return Error{h.error()};
  switch (static_cast<MsgType>(h->type)) {
    case MsgType::kProgress: {
      ProgressBatch m;
      if (expect_fields(r, *h, 3)) {
        m.batch_seq = r.uint();
        m.worker = r.str();
        m.bars = read_bars(r, false);
      }
      return finish<ToProgressServer>(r, std::move(m), "progress batch");
    }
    case MsgType::kSubscribe: {
      Subscribe m;
      if (expect_fields(r, *h, 3)) {
        m.application_id = r.str();
        const uint32_t n = r.array();
        for (uint32_t i = 0; i < n && r.ok(); ++i) m.sessions.push_back(r.uint());
        m.all = r.boolean();
      }
      return finish<ToProgressServer>(r, std::move(m), "subscribe");
    }
    case MsgType::kUnsubscribe: {
      expect_fields(r, *h, 0);
      return finish<ToProgressServer>(r, Empty{MsgType::kUnsubscribe}, "unsubscribe");
    }
    default:
      return make_error("unexpected message type " + std::to_string(h->type) +
                        " for the progress server");
  }
}

Result<ProgressAck> decode_progress_ack(std::string_view bytes) {
  Reader r(bytes);
  auto h = detail::read_header(r, bytes, 1024);
  if (!h) return Error{h.error()};
  if (h->type != static_cast<uint8_t>(MsgType::kProgressAck)) {
    return make_error("expected a progress acknowledgement");
  }
  ProgressAck m;
  if (expect_fields(r, *h, 2)) {
    m.batch_seq = r.uint();
    m.server_epoch = r.uint();
  }
  return finish<ProgressAck>(r, m, "progress ack");
}

Result<ProgressUpdate> decode_progress_update(std::string_view bytes, size_t max_bytes) {
  Reader r(bytes);
  auto h = detail::read_header(r, bytes, max_bytes);
  if (!h) return Error{h.error()};
  if (h->type != static_cast<uint8_t>(MsgType::kProgressUpdate)) {
    return make_error("expected a progress update");
  }
  ProgressUpdate m;
  if (expect_fields(r, *h, 3)) {
    m.server_epoch = r.uint();
    m.snapshot = r.boolean();
    m.bars = read_bars(r, true);
  }
  return finish<ProgressUpdate>(r, std::move(m), "progress update");
}

}  // namespace lrts::protocol
