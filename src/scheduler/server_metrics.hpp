// The scheduler's /metrics exposition (Prometheus text format), rendered on its loop from the
// core's counters, the journal's and the socket's. docs/operations.md lists every series.
#pragma once

#include <array>
#include <cstdint>
#include <string>

#include "protocol/messages.hpp"
#include "scheduler/core.hpp"
#include "scheduler/journal_store.hpp"

namespace lrts::scheduler {

// Messages and bytes by type, in and out of the scheduler's socket.
struct Traffic {
  std::array<uint64_t, 256> in_messages{}, in_bytes{}, out_messages{}, out_bytes{};
  void received(protocol::MsgType t, size_t bytes) {
    ++in_messages[static_cast<uint8_t>(t)];
    in_bytes[static_cast<uint8_t>(t)] += bytes;
  }
  void sent(protocol::MsgType t, size_t bytes) {
    ++out_messages[static_cast<uint8_t>(t)];
    out_bytes[static_cast<uint8_t>(t)] += bytes;
  }
};

struct SchedulerGauges {
  const CoreStats* core = nullptr;
  const CoreActivity* activity = nullptr;
  const JournalStats* journal = nullptr;  // null: no journal
  uint64_t journal_backlog = 0;
  const Traffic* traffic = nullptr;
  uint64_t dropped_full = 0;
  double uptime_s = 0;
};

std::string render_metrics(const SchedulerGauges& g);

// Each type's messages and bytes as lrts_messages_{received,sent}_total and
// lrts_message_bytes_{received,sent}_total, labelled by kind (shared by the daemons).
void render_traffic(metrics::TextWriter& w, const Traffic& t);

}  // namespace lrts::scheduler
