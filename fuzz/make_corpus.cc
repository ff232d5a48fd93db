// Writes the seed corpus of every fuzz target (fuzz/corpus/<target>/): real messages, frames,
// journal batches and values, so the fuzzers start from inputs that get deep.
//   build/fuzz/make_corpus fuzz/corpus
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "protocol/codec.hpp"
#include "protocol/framing.hpp"
#include "protocol/messages.hpp"
#include "protocol/msgpack_io.hpp"
#include "protocol/progress_messages.hpp"
#include "protocol/slot_messages.hpp"
#include "scheduler/journal_records.hpp"

namespace p = lrts::protocol;

namespace {

void write(const std::string& dir, const std::string& name, const std::string& bytes) {
  std::filesystem::create_directories(dir);
  std::ofstream(dir + "/" + name, std::ios::binary) << bytes;
}

template <class M>
std::string enc(const M& m) {
  std::string s;
  p::encode(m, s);
  return s;
}

std::string fields_ab() {
  std::string s;
  p::mp::Writer w(s);
  w.map(2);
  w.str("a");
  w.uint(6);
  w.str("b");
  w.uint(7);
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: make_corpus DIR\n");
    return 2;
  }
  const std::string root = argv[1];
  const std::string fields = fields_ab();
  const p::TaskKey key{0x1234, 7};

  // ---- wire ----
  p::AppHello hello{"app-1", 99, 1000, 1u << 20};
  p::Submit submit;
  submit.session = 99;
  submit.names = {"Multiplication Service Example"};
  submit.tasks = {{1, 0, fields, 0, 2, 0}, {2, 0, fields, 0, 0, 500}};
  p::WorkerHello wh;
  wh.worker_uid = 5;
  wh.name = "w";
  wh.slots = 2;
  wh.capacity = 4;
  wh.services = {"Multiplication Service Example", "test.noop"};
  wh.held = {{key, 1}};
  p::WorkerResults wr;
  wr.capacity = 2;
  wr.items = {{key, 1, p::TaskStatus::kFinished, "\x2a", 0, 1000}};
  p::Assign as;
  as.names = {"svc"};
  as.apps = {"app-1"};
  as.tasks = {{key, 1, 0, 0, fields, 0, 0}};
  p::AppResults ar;
  ar.items = {{key, 1, p::TaskStatus::kFailed, "boom", 0, "w", 5}};
  p::ProgressBatch pb;
  pb.batch_seq = 3;
  pb.worker = "w";
  pb.owners = {{99, "app-1"}};
  p::BarState bar;
  bar.key = key;
  bar.attempt = 1;
  bar.description = "Doing Work";
  bar.unit = "it";
  bar.count = 3;
  bar.total = 10;
  pb.bars = {bar};
  p::Subscribe sub;
  sub.application_id = "app-1";
  sub.sessions = {99};
  p::SlotRun run;
  run.tasks = {{1, "test.noop", "\x80", "id-1", 1}};
  p::Query status_q;
  status_q.id = 1;
  status_q.what = "status";
  p::Query tasks_q;
  tasks_q.id = 2;
  tasks_q.what = "tasks";
  tasks_q.state = "running";
  tasks_q.application_id = "app-1";
  tasks_q.limit = 5;
  p::Query task_q;
  task_q.id = 3;
  task_q.what = "task";
  task_q.service_id = "0000000000001234-7";
  p::Control cancel_c;
  cancel_c.id = 4;
  cancel_c.action = "cancel";
  cancel_c.keys = {key};
  p::Control drain_c;
  drain_c.id = 5;
  drain_c.action = "drain";
  drain_c.worker = "w";
  const std::vector<std::pair<std::string, std::string>> wire = {
      {"app_hello", enc(hello)},
      {"submit", enc(submit)},
      {"received", enc(p::Received{{key}})},
      {"collected", enc(p::Collected{{key}})},
      {"detach", enc(p::Detach{})},
      {"worker_hello", enc(wh)},
      {"worker_results", enc(wr)},
      {"worker_return", enc(p::WorkerReturn{{{key, 1}}})},
      {"chunk", enc(p::Chunk{1, 100, 0, "0123456789"})},
      {"assign", enc(as)},
      {"app_results", enc(ar)},
      {"app_counts", enc(p::AppCounts{1, 2})},
      {"error", enc(p::ErrorMsg{p::ErrorCode::kBadMessage, "bad"})},
      {"progress_batch", enc(pb)},
      {"subscribe", enc(sub)},
      {"slot_run", enc(run)},
      {"slot_recall", enc(p::SlotRecall{{1, 2}})},
      {"query_status", enc(status_q)},
      {"query_tasks", enc(tasks_q)},
      {"control_cancel", enc(cancel_c)},
      {"query_reply", enc(p::QueryReply{1, 0, "{}"})},
      {"drain", enc(p::Drain{})},
  };
  for (const auto& [name, bytes] : wire) write(root + "/wire", name, bytes);

  // ---- frames: a piece-size byte, then frames as a slot's socket carries them ----
  {
    int sv[2];
    ::socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
    p::FrameWriter out;
    out.push(run);
    out.push(p::SlotRecall{{1}});
    out.write_all(sv[1]);
    ::close(sv[1]);
    std::string bytes(1, '\x07');
    char buf[4096];
    for (ssize_t n; (n = ::read(sv[0], buf, sizeof buf)) > 0;)
      bytes.append(buf, static_cast<size_t>(n));
    ::close(sv[0]);
    write(root + "/frames", "run_recall", bytes);
  }

  // ---- journal: a batch of every record kind ----
  {
    lrts::scheduler::records::RecordWriter rw;
    rw.app_registered("app-1", 1000, false, "alice");
    rw.task_submitted(key, "app-1", "svc", fields, 0, 2, 0);
    rw.task_assigned(key, 1, 77);
    rw.task_finished(key, p::TaskStatus::kFinished, "\x2a", 0, 1, "w", 10);
    rw.task_submitted({0x1234, 8}, "app-1", "svc", fields, 0, 0, 0);
    rw.task_removed(key);
    rw.app_removed("gone");
    write(root + "/journal", "every_kind", rw.take());
  }

  // ---- json: MessagePack values ----
  {
    std::string v;
    p::mp::Writer w(v);
    w.array(4);
    w.uint(1);
    w.str("x\n\"");
    w.map(1);
    w.str("k");
    w.nil();
    w.boolean(true);
    write(root + "/json", "nested", v);
    write(root + "/json", "fields", fields);
  }

  // ---- scheduler: [peer][length][message] ... ----
  {
    std::string s;
    auto add = [&](char peer, const std::string& m) {
      if (m.size() > 255) return;
      s.push_back(peer);
      s.push_back(static_cast<char>(m.size()));
      s += m;
    };
    add(0, enc(hello));
    add(0, enc(submit));
    add(1, enc(wh));
    add(1, enc(wr));
    add(0, enc(p::Received{{key}}));
    add(0, enc(p::Collected{{key}}));
    add(1, enc(p::WorkerReturn{{{key, 1}}}));
    add(0, enc(p::Detach{}));
    write(root + "/scheduler", "session", s);
    // Queries and commands from each kind of key (the peer byte's bits pick it).
    std::string q;
    s.swap(q);
    add(0, enc(hello));
    add(0, enc(submit));
    add(1, enc(wh));
    add(2, enc(status_q));
    add(10, enc(tasks_q));
    add(18, enc(task_q));
    add(34, enc(cancel_c));
    add(42, enc(drain_c));
    add(2, enc(cancel_c));
    write(root + "/scheduler", "queries", s);
  }
  return 0;
}
