#include "worker/progress_link.hpp"

#include <algorithm>

#include "common/log.hpp"
#include "protocol/codec.hpp"

namespace lrts::worker {

ProgressLink::ProgressLink(net::ZmqContext& ctx, ProgressLinkOptions options)
    : options_(std::move(options)), dealer_(ctx, ZMQ_DEALER) {
  dealer_.set_int(ZMQ_IPV6, options_.ipv6 ? 1 : 0);
  // Batches wait for the connection, but only two: the ceiling sends the newest state again.
  dealer_.set_int(ZMQ_SNDHWM, 2);
  dealer_.set_int(ZMQ_RECONNECT_IVL, 100);
  dealer_.set_int(ZMQ_RECONNECT_IVL_MAX, 1000);
  if (options_.auth) net::secure_client(dealer_, *options_.auth);
  handshakes_ =
      std::make_unique<net::HandshakeGuard>(ctx, dealer_, options_.endpoint, "the progress server");
  if (auto s = dealer_.connect(options_.endpoint); !s) LRTS_WARN("progress: {}", s.error());
}

void ProgressLink::add(std::vector<protocol::BarState>& updates) {
  for (auto& u : updates) {
    const Key k = key_of(u);
    if (u.closed()) {
      live_.erase(k);
    } else {
      live_[k] = u;
    }
    dirty_[k] = std::move(u);
  }
  updates.clear();
}

void ProgressLink::owner(uint64_t session, std::string_view application_id) {
  if (owners_.count(session)) return;
  if (owners_.size() >= kMaxOwners) {  // forget the oldest; the server keeps what it learned
    owners_.erase(owner_order_.front());
    owner_order_.pop_front();
  }
  owners_.emplace(session, std::string(application_id));
  owner_order_.push_back(session);
  unsent_owners_.push_back(session);
}

void ProgressLink::pump(TimePoint now) {
  if (handshakes_) handshakes_->on_tick(now);
  if (in_flight_ && now >= sent_at_ + options_.ceiling) {
    // No answer: the batch (or its acknowledgement) is lost. The open bars go out again (unless
    // a newer state is already waiting); closed ones are not kept for a server that is not there.
    ++stats_.unanswered;
    for (auto& [k, b] : in_flight_bars_) {
      if (!b.closed()) dirty_.try_emplace(k, std::move(b));
    }
    in_flight_bars_.clear();
    unsent_owners_.insert(unsent_owners_.end(), in_flight_owners_.begin(), in_flight_owners_.end());
    in_flight_owners_.clear();
    in_flight_ = false;
  }
  const bool keepalive = !live_.empty() && now >= last_send_ + kKeepalive;
  if (!can_send(now) || (dirty_.empty() && unsent_owners_.empty() && !keepalive)) return;
  protocol::ProgressBatch batch;
  batch.batch_seq = ++batch_seq_;
  batch.worker = options_.worker_name;
  // At most kMaxOwners sessions per batch: the rest go with the next one.
  const size_t named = std::min(unsent_owners_.size(), kMaxOwners);
  for (size_t i = 0; i < named; ++i) {
    auto it = owners_.find(unsent_owners_[i]);
    if (it != owners_.end()) batch.owners.push_back({unsent_owners_[i], it->second});
  }
  in_flight_owners_.assign(unsent_owners_.begin(),
                           unsent_owners_.begin() + static_cast<long>(named));
  unsent_owners_.erase(unsent_owners_.begin(), unsent_owners_.begin() + static_cast<long>(named));
  // At most kMaxBarsPerBatch bars (about 1 MB): the rest goes with the next batch.
  batch.bars.reserve(std::min(dirty_.size(), kMaxBarsPerBatch));
  for (auto it = dirty_.begin(); it != dirty_.end() && batch.bars.size() < kMaxBarsPerBatch;) {
    batch.bars.push_back(it->second);
    in_flight_bars_.insert(dirty_.extract(it++));
  }
  buf_.clear();
  protocol::encode(batch, buf_);
  dealer_.send(buf_);  // if it cannot leave (no server), the ceiling brings it back
  in_flight_ = true;
  sent_at_ = last_send_ = now;
  ++stats_.batches;
  stats_.bars_sent += batch.bars.size();
}

void ProgressLink::on_readable(TimePoint now) {
  net::ZmqFrame frame;
  while (dealer_.recv(frame)) {
    auto decoded = protocol::decode<protocol::ToProgressWorker>(frame.view(), 4096);
    if (!decoded) {
      LRTS_WARN("progress: dropped a bad message from the progress server: {}",
                decoded.error().text);
      continue;
    }
    const auto* ack = &std::get<protocol::ProgressAck>(*decoded);
    if (in_flight_ && ack->batch_seq == batch_seq_) {
      const double rtt_ms = std::chrono::duration<double, std::milli>(now - sent_at_).count();
      stats_.rtt_ewma_ms =
          stats_.rtt_ewma_ms == 0 ? rtt_ms : 0.8 * stats_.rtt_ewma_ms + 0.2 * rtt_ms;
      in_flight_ = false;
      in_flight_bars_.clear();
      in_flight_owners_.clear();
    }
    if (ack->server_epoch != server_epoch_) {
      if (server_epoch_ != 0) {
        LRTS_INFO("progress server restarted; sending its {} open bar(s) again", live_.size());
      }
      server_epoch_ = ack->server_epoch;
      for (const auto& [k, b] : live_) dirty_.try_emplace(k, b);
      unsent_owners_.assign(owner_order_.begin(), owner_order_.end());
    }
  }
}

TimePoint ProgressLink::next_deadline() const {
  const TimePoint reconnect = handshakes_ ? handshakes_->next_deadline() : TimePoint::max();
  if (in_flight_) return std::min(reconnect, sent_at_ + options_.ceiling);
  if (!dirty_.empty() || !unsent_owners_.empty()) {
    return std::min(reconnect, last_send_ + options_.floor);
  }
  if (!live_.empty()) return std::min(reconnect, last_send_ + kKeepalive);
  return reconnect;
}

}  // namespace lrts::worker
