#include "scheduler/server_metrics.hpp"

namespace lrts::scheduler {

void render_traffic(metrics::TextWriter& w, const Traffic& t) {
  const auto series = [&](const char* name, const char* help, const std::array<uint64_t, 256>& v) {
    bool first = true;
    for (size_t i = 0; i < v.size(); ++i) {
      if (v[i] == 0) continue;
      const char* kind = protocol::type_label(static_cast<protocol::MsgType>(i));
      if (first) {
        w.counter(name, help, static_cast<double>(v[i]), {{"kind", kind}});
        first = false;
      } else {
        w.sample(name, static_cast<double>(v[i]), {{"kind", kind}});
      }
    }
  };
  series("lrts_messages_received_total", "Messages received, by kind.", t.in_messages);
  series("lrts_message_bytes_received_total", "Bytes of messages received, by kind.", t.in_bytes);
  series("lrts_messages_sent_total", "Messages sent, by kind.", t.out_messages);
  series("lrts_message_bytes_sent_total", "Bytes of messages sent, by kind.", t.out_bytes);
}

std::string render_metrics(const SchedulerGauges& g) {
  const CoreStats& s = *g.core;
  metrics::TextWriter w;
  const auto d = [](uint64_t v) { return static_cast<double>(v); };
  w.gauge("lrts_tasks", "Tasks the scheduler holds, by state.", d(s.queued - s.waiting),
          {{"state", "queued"}});
  w.sample("lrts_tasks", d(s.waiting), {{"state", "waiting"}});
  w.sample("lrts_tasks", d(s.assigned), {{"state", "running"}});
  w.sample("lrts_tasks", d(s.done), {{"state", "awaiting_collection"}});
  w.counter("lrts_tasks_submitted_total", "Tasks submitted.", d(s.submitted));
  w.counter("lrts_tasks_completed_total", "Tasks ended, by status.", d(s.finished),
            {{"status", "finished"}});
  w.sample("lrts_tasks_completed_total", d(s.failed), {{"status", "failed"}});
  w.sample("lrts_tasks_completed_total", d(s.cancelled), {{"status", "cancelled"}});
  w.sample("lrts_tasks_completed_total", d(s.timed_out), {{"status", "timed_out"}});
  w.counter("lrts_tasks_requeued_total", "Attempts lost and queued again.", d(s.requeued));
  w.counter("lrts_results_delivered_total", "Results collected by applications.", d(s.delivered));
  w.histogram("lrts_task_queue_wait_seconds", "Time from queued to assigned.",
              g.activity->queue_wait);
  w.histogram("lrts_task_run_seconds", "Run time of ended tasks, as workers measured it.",
              g.activity->run_time);
  w.gauge("lrts_workers", "Workers connected.", d(s.workers));
  w.gauge("lrts_slots", "Slots of the connected workers.", d(s.slots));
  w.gauge("lrts_slots_busy", "Slots running a task.", d(s.busy_slots));
  w.gauge("lrts_applications", "Applications the scheduler holds.", d(s.apps));
  w.counter("lrts_heartbeats_total", "Heartbeats from workers and applications.", d(s.heartbeats));
  w.counter("lrts_queries_total", "Queries and operator commands answered.", d(s.queries));
  w.counter("lrts_bad_messages_total", "Messages dropped as malformed.", d(s.bad_messages));
  w.counter("lrts_refused_total", "Requests refused (over a limit, or not allowed to the key).",
            d(s.refused));
  w.counter("lrts_forged_results_total", "Results refused: not an attempt given to that worker.",
            d(s.forged));
  w.counter("lrts_duplicate_results_total", "Results dropped as stale or duplicate.",
            d(s.duplicates));
  w.counter("lrts_congested_peers_total", "Peers dropped for not reading what they were sent.",
            d(s.congested));
  w.counter("lrts_dropped_sends_total", "Messages dropped because a peer's queue was full.",
            d(g.dropped_full));
  w.gauge("lrts_payload_bytes", "Bytes of large payloads held.", d(s.blob_bytes));
  if (g.journal) {
    w.histogram("lrts_journal_commit_seconds", "Time of one journal transaction.",
                g.journal->commit_seconds);
    w.gauge("lrts_journal_backlog_records", "Journal records appended and not yet durable.",
            d(g.journal_backlog));
    w.counter("lrts_journal_transactions_total", "Journal transactions committed.",
              d(g.journal->transactions));
    w.counter("lrts_journal_records_total", "Journal records written.", d(g.journal->records));
  }
  render_traffic(w, *g.traffic);
  w.gauge("lrts_uptime_seconds", "Seconds since the scheduler started.", g.uptime_s);
  return w.take();
}

}  // namespace lrts::scheduler
