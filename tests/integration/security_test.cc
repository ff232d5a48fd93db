// Security on real processes: --auth (ZeroMQ CURVE with the keys of `lrts keygen`), roles,
// applications bound to their key, results only for attempts given to the worker, hoarding, the
// progress server's viewers, key rotation and revocation, and no open listening off loopback.
// The attackers are raw ZeroMQ peers that speak the protocol.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <zmq.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "net/auth.hpp"
#include "net/zmq_socket.hpp"
#include "protocol/codec.hpp"
#include "protocol/ids.hpp"
#include "protocol/messages.hpp"
#include "protocol/progress_messages.hpp"
#include "services/test_services.hpp"
#include "support/harness.hpp"

namespace lrts::testing {
namespace {

const std::vector<std::string> kFastScheduler = {
    "--heartbeat-interval", "0.2", "--worker-timeout", "2", "--app-timeout", "2"};

// A hand-made peer on one port: plain, or CURVE with the keys given.
class RawPeer {
 public:
  RawPeer(int port, const net::ClientAuth* auth) : sock_(ctx_, ZMQ_DEALER) {
    if (auth) net::secure_client(sock_, *auth);
    sock_.set_int(ZMQ_SNDHWM, 0);
    EXPECT_TRUE(sock_.connect("tcp://127.0.0.1:" + std::to_string(port)));
  }
  template <class M>
  void send(const M& m) {
    std::string buf;
    protocol::encode(m, buf);
    sock_.send(buf);
  }
  // What arrives within `window` (each message one string).
  std::vector<std::string> receive(std::chrono::milliseconds window) {
    std::vector<std::string> out;
    const auto until = std::chrono::steady_clock::now() + window;
    for (;;) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          until - std::chrono::steady_clock::now());
      if (left.count() <= 0) return out;
      zmq_pollitem_t item{sock_.get(), 0, ZMQ_POLLIN, 0};
      if (zmq_poll(&item, 1, left.count()) <= 0) continue;
      net::ZmqFrame f;
      while (sock_.recv(f)) out.emplace_back(f.view());
    }
  }
  // Receives until a message of kind M arrives or `timeout` passes.
  template <class Variant, class M>
  std::optional<M> expect(std::chrono::milliseconds timeout) {
    const auto until = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < until) {
      for (std::string& bytes : receive(100ms)) {
        held_.push_back(std::move(bytes));  // what the decoded views point into
        auto msg = protocol::decode<Variant>(held_.back(), 64u << 20);
        if (!msg) continue;
        if (auto* m = std::get_if<M>(&*msg)) return *m;
      }
    }
    return std::nullopt;
  }

 private:
  net::ZmqContext ctx_;
  net::ZmqSocket sock_;
  std::deque<std::string> held_;
};

// Keys of a member that is not in the cluster (fresh, never added).
net::ClientAuth stranger(const std::string& keys) {
  auto a = net::load_client_auth(keys, net::Role::kWorker);
  EXPECT_TRUE(a) << a.error();
  char pub[41], sec[41];
  zmq_curve_keypair(pub, sec);
  a->keys = {"stranger", pub, sec};
  return *a;
}

test_services::SleepService sleep_for(int ms, int64_t value) {
  test_services::SleepService s;
  s.ms = ms;
  s.value = value;
  return s;
}

test_services::ProgressService progress_task() {
  test_services::ProgressService p;
  p.bars = 2;
  p.step_ms = 300;
  return p;
}

net::ClientAuth member(const std::string& dir, net::Role role) {
  auto a = net::load_client_auth(dir, role);
  EXPECT_TRUE(a) << a.error();
  return *a;
}

protocol::WorkerHello hello_of(uint64_t uid, uint32_t slots, uint32_t capacity) {
  protocol::WorkerHello h;
  h.worker_uid = uid;
  h.name = "raw";
  h.slots = slots;
  h.capacity = capacity;
  h.max_message = 64u << 20;
  h.services = {"test.sleep", "test.noop", "test.progress"};
  return h;
}

class SecurityTest : public ClusterFixture {
 protected:
  std::string add_member(const std::string& name, const std::string& role) {
    auto r = run_command({lrts_bin(), "keygen", cluster_.auth_dir(), "--add", name, "--role", role},
                         30s);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return cluster_.auth_dir() + "/" + name;
  }
};

TEST_F(SecurityTest, KeygenMakesPrivateFilesAndNeverOverwritesThem) {
  const std::string keys = dir_.file("k");
  auto r = run_command({lrts_bin(), "keygen", keys});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  for (const char* f : {"scheduler.key", "scheduler.pub", "worker.key", "application.key",
                        "viewer.key", "members"}) {
    struct stat st {};
    ASSERT_EQ(::stat((keys + "/" + f).c_str(), &st), 0) << f;
    EXPECT_EQ(st.st_mode & 0777, 0600u) << f;
  }
  struct stat st {};
  ASSERT_EQ(::stat(keys.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  const std::string before = read_file(keys + "/scheduler.key");
  r = run_command({lrts_bin(), "keygen", keys});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("holds cluster keys already"), std::string::npos) << r.err;
  EXPECT_EQ(read_file(keys + "/scheduler.key"), before);
  r = run_command({lrts_bin(), "keygen", keys, "--add", "../x", "--role", "worker"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("invalid member name"), std::string::npos) << r.err;
  r = run_command({lrts_bin(), "keygen", keys, "--add", "w1"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--role"), std::string::npos) << r.err;
  r = run_command({lrts_bin(), "keygen", keys, "--revoke", "nobody"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("no member named 'nobody'"), std::string::npos) << r.err;
  // A worker's directory has no application key: it cannot submit.
  r = run_command({lrts_bin(), "keygen", keys, "--add", "w1", "--role", "worker"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = run_command(
      {lrts_bin(), "submit", "test.noop", "--auth", keys + "/w1", "--scheduler-port", "1"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("has no application.key"), std::string::npos) << r.err;
}

TEST_F(SecurityTest, ListeningOffLoopbackNeedsAuthOrInsecure) {
  for (const char* daemon : {"scheduler", "progress-server"}) {
    const std::string port = std::to_string(free_port());
    // The original lrts's single-dash form, as in its README.
    auto r = run_command({lrts_bin(), daemon, "-address", "*", "-port", port, "--no-journal"}, 30s);
    if (std::string(daemon) == "progress-server") {
      r = run_command({lrts_bin(), daemon, "-address", "*", "-port", port}, 30s);
    }
    EXPECT_EQ(r.exit_code, 2) << daemon;
    EXPECT_NE(r.err.find("--auth"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("--insecure"), std::string::npos) << r.err;
    EXPECT_EQ(r.err.find('\n'), r.err.size() - 1) << "one line: " << r.err;

    std::vector<std::string> argv = {lrts_bin(), daemon, "--address", "0.0.0.0",
                                     "--port",   port,   "--insecure"};
    if (std::string(daemon) == "scheduler") argv.push_back("--no-journal");
    Daemon open(argv, dir_.file(std::string(daemon) + ".log"));
    ASSERT_TRUE(wait_until([&] { return open.log_contains("listening on"); })) << open.log();
    EXPECT_TRUE(open.log_contains("INSECURE")) << open.log();
    open.signal(SIGTERM);
    EXPECT_NE(open.wait_exit(), -1);
  }
  // With keys it listens anywhere, quietly.
  const std::string& keys = cluster_.enable_auth();
  Daemon secured({lrts_bin(), "scheduler", "--address", "*", "--port", std::to_string(free_port()),
                  "--no-journal", "--auth", keys},
                 dir_.file("secured.log"));
  ASSERT_TRUE(wait_until([&] { return secured.log_contains("listening on"); })) << secured.log();
  EXPECT_FALSE(secured.log_contains("INSECURE"));
}

TEST_F(SecurityTest, PeersWithoutAClusterKeyGetNoConnectionOnEitherPort) {
  const std::string& keys = cluster_.enable_auth();
  cluster_.start_scheduler(kFastScheduler);
  cluster_.start_progress_server();
  ClientApplication app(info("victim"));
  app.start_application();
  ASSERT_TRUE(app.wait_connected(20s));
  std::vector<std::string> ids;
  for (int i = 0; i < 20; ++i) {
    ids.push_back(app.schedule_service(sleep_for(50, i)));
  }
  ASSERT_TRUE(app.flush(20s));

  const net::ClientAuth unknown = stranger(keys);
  std::vector<std::unique_ptr<RawPeer>> peers;
  for (int port : {cluster_.port(), cluster_.progress_port()}) {
    for (const net::ClientAuth* auth : {static_cast<const net::ClientAuth*>(nullptr), &unknown}) {
      auto p = std::make_unique<RawPeer>(port, auth);
      p->send(hello_of(42, 4, 1000));
      protocol::AppHello ah;
      ah.application_id = "victim";
      ah.session = 7;
      p->send(ah);
      protocol::Subscribe sub;
      sub.all = true;
      p->send(sub);
      p->send(
          protocol::WorkerResults{1, {{{1, 1}, 1, protocol::TaskStatus::kFinished, "x", 0, 0}}});
      peers.push_back(std::move(p));
    }
  }
  // The same messages with the cluster's worker key do get an answer: the peers would hear one.
  const net::ClientAuth worker = member(keys, net::Role::kWorker);
  RawPeer control(cluster_.port(), &worker);
  control.send(hello_of(43, 1, 0));
  EXPECT_TRUE((control.expect<protocol::ToWorker, protocol::WorkerWelcome>(10s)));
  for (auto& p : peers) EXPECT_TRUE(p->receive(1500ms).empty()) << "an outsider heard back";
  EXPECT_TRUE(wait_until([&] { return cluster_.scheduler().log_contains("refused a connection"); }))
      << cluster_.scheduler().log();

  // The cluster's tasks were not touched: a real worker runs each once.
  cluster_.start_worker(2);
  const auto results = app.wait_for_multi(ids, 60s);
  ASSERT_EQ(results.size(), ids.size());
  for (size_t i = 0; i < results.size(); ++i) {
    ASSERT_TRUE(results[i].ok()) << results[i].error();
    EXPECT_EQ(results[i].service_result<int64_t>(), static_cast<int64_t>(i));
    EXPECT_EQ(results[i].attempt(), 1u);
    EXPECT_EQ(results[i].worker(), "worker0");
  }
}

TEST_F(SecurityTest, EachKeyIsHeldToItsRole) {
  const std::string& keys = cluster_.enable_auth();
  cluster_.start_scheduler(kFastScheduler);
  ClientApplication app(info("victim"));
  app.start_application();
  ASSERT_TRUE(app.wait_connected(20s));
  const std::string id = app.schedule_service(sleep_for(10, 7));
  ASSERT_TRUE(app.flush(20s));

  // An application key cannot register as a worker: no ASSIGN of the waiting task.
  const net::ClientAuth application = member(keys, net::Role::kApplication);
  RawPeer rogue(cluster_.port(), &application);
  rogue.send(hello_of(99, 4, 100));
  auto err = rogue.expect<protocol::ToWorker, protocol::ErrorMsg>(10s);
  ASSERT_TRUE(err);
  EXPECT_EQ(err->code, protocol::ErrorCode::kForbidden);
  EXPECT_FALSE((rogue.expect<protocol::ToWorker, protocol::Assign>(1500ms)));

  // A worker key cannot act as an application.
  const net::ClientAuth worker = member(keys, net::Role::kWorker);
  RawPeer submitter(cluster_.port(), &worker);
  protocol::AppHello ah;
  ah.application_id = "from-a-worker-key";
  ah.session = 5;
  submitter.send(ah);
  err = submitter.expect<protocol::ToApp, protocol::ErrorMsg>(10s);
  ASSERT_TRUE(err);
  EXPECT_EQ(err->code, protocol::ErrorCode::kForbidden);
  EXPECT_FALSE((submitter.expect<protocol::ToApp, protocol::AppWelcome>(500ms)));
  EXPECT_TRUE(cluster_.scheduler().log_contains("is not a worker key"));
  EXPECT_TRUE(cluster_.scheduler().log_contains("is not an application key"));

  cluster_.start_worker(1);
  auto r = app.wait_for(id, 30s);
  ASSERT_TRUE(r.ok()) << r.error();
  EXPECT_EQ(r.service_result<int64_t>(), 7);
}

TEST_F(SecurityTest, AnApplicationIdBelongsToTheKeyThatCreatedIt) {
  cluster_.enable_auth();
  const std::string mallory = add_member("mallory", "application");
  cluster_.start_scheduler(kFastScheduler);
  ClientApplication victim(info("victim"));
  victim.start_application();
  ASSERT_TRUE(victim.wait_connected(20s));
  std::vector<std::string> ids;
  for (int i = 0; i < 6; ++i) {
    ids.push_back(victim.schedule_service(sleep_for(300, i)));
  }
  ASSERT_TRUE(victim.flush(20s));

  // Mallory's hello with the victim's id is refused: no results, no cancel, no goodbye.
  const net::ClientAuth m = member(mallory, net::Role::kApplication);
  RawPeer thief(cluster_.port(), &m);
  protocol::AppHello ah;
  ah.application_id = "victim";
  ah.session = 1234;
  thief.send(ah);
  auto err = thief.expect<protocol::ToApp, protocol::ErrorMsg>(10s);
  ASSERT_TRUE(err);
  EXPECT_EQ(err->code, protocol::ErrorCode::kForbidden);
  EXPECT_NE(std::string(err->text).find("belongs to another key"), std::string::npos);
  thief.send(protocol::AppBye{});
  // Mallory's own application cannot cancel the victim's tasks either.
  ah.application_id = "mallory-app";
  thief.send(ah);
  ASSERT_TRUE((thief.expect<protocol::ToApp, protocol::AppWelcome>(10s)));
  protocol::Cancel cancel;
  for (const auto& id : ids) {
    protocol::TaskKey key;
    ASSERT_TRUE(protocol::parse_service_id(id, &key));
    cancel.keys.push_back(key);
  }
  thief.send(cancel);
  thief.send(protocol::AppBye{});
  // The ClientApplication of the other key fails with the reason instead of taking them.
  ApplicationInformation as_mallory = info("victim");
  as_mallory.auth_dir = mallory;
  ClientApplication impostor(as_mallory);
  impostor.start_application();
  EXPECT_FALSE(impostor.wait_connected(3s));
  EXPECT_NE(impostor.failure().find("belongs to another key"), std::string::npos)
      << impostor.failure();
  // Nor can `lrts results` with that key collect them.
  auto collect = run_command({lrts_bin(), "results", "--application-id", "victim", "--auth",
                              mallory, "--scheduler-port", std::to_string(cluster_.port())},
                             30s);
  EXPECT_EQ(collect.exit_code, 2);
  EXPECT_NE(collect.err.find("belongs to another key"), std::string::npos) << collect.err;
  EXPECT_EQ(collect.out, "");

  cluster_.start_worker(2);
  const auto results = victim.wait_for_multi(ids, 60s);
  for (size_t i = 0; i < results.size(); ++i) {
    ASSERT_TRUE(results[i].ok()) << results[i].error();
    EXPECT_EQ(results[i].service_result<int64_t>(), static_cast<int64_t>(i));
  }
  EXPECT_TRUE(cluster_.scheduler().log_contains("belongs to another key"));
}

TEST_F(SecurityTest, AWorkerReportsResultsOnlyForAttemptsGivenToIt) {
  const std::string& keys = cluster_.enable_auth();
  cluster_.start_scheduler(kFastScheduler);
  ClientApplication app(info("victim"));
  app.start_application();
  ASSERT_TRUE(app.wait_connected(20s));
  std::vector<std::string> ids;
  for (int i = 0; i < 5; ++i) {
    ids.push_back(app.schedule_service(sleep_for(10, 100 + i)));
  }
  ASSERT_TRUE(app.flush(20s));
  // A registered worker with room for nothing reports results for tasks it never had.
  const net::ClientAuth worker = member(keys, net::Role::kWorker);
  RawPeer forger(cluster_.port(), &worker);
  forger.send(hello_of(77, 1, 0));
  ASSERT_TRUE((forger.expect<protocol::ToWorker, protocol::WorkerWelcome>(10s)));
  const std::string forged =
      "\xa6"
      "forged";  // MessagePack "forged"
  protocol::WorkerResults results;
  for (const auto& id : ids) {
    protocol::TaskKey key;
    ASSERT_TRUE(protocol::parse_service_id(id, &key));
    for (uint32_t attempt : {0u, 1u, 2u}) {
      results.items.push_back({key, attempt, protocol::TaskStatus::kFinished, forged, 0, 1});
    }
  }
  forger.send(results);
  ASSERT_TRUE(wait_until([&] {
    return cluster_.scheduler().log_contains("which was never assigned to it");
  })) << cluster_.scheduler().log();
  EXPECT_EQ(occurrences(cluster_.scheduler().log(), "which was never assigned to it"), 1u)
      << "logged once per worker";

  cluster_.start_worker(1);
  const auto got = app.wait_for_multi(ids, 60s);
  for (size_t i = 0; i < got.size(); ++i) {
    ASSERT_TRUE(got[i].ok()) << got[i].error();
    EXPECT_EQ(got[i].service_result<int64_t>(), static_cast<int64_t>(100 + i));
    EXPECT_EQ(got[i].worker(), "worker0");
  }
}

TEST_F(SecurityTest, AHoarderLosesItsTasksAndALongTaskIsNeverTakenForOne) {
  const std::string& keys = cluster_.enable_auth();
  std::vector<std::string> flags = kFastScheduler;
  flags.insert(flags.end(), {"--hoard-timeout", "2", "--worker-timeout", "30"});
  cluster_.start_scheduler(flags);
  ClientApplication app(info("victim"));
  app.start_application();
  ASSERT_TRUE(app.wait_connected(20s));
  // A worker that asks for far more than it runs, heartbeats and never starts anything.
  const net::ClientAuth worker = member(keys, net::Role::kWorker);
  RawPeer hoarder(cluster_.port(), &worker);
  hoarder.send(hello_of(55, 1, 1'000'000));
  ASSERT_TRUE((hoarder.expect<protocol::ToWorker, protocol::WorkerWelcome>(10s)));
  std::vector<std::string> ids;
  for (int i = 0; i < 1000; ++i) ids.push_back(app.schedule_service(test_services::NoopService{}));
  ASSERT_TRUE(app.flush(20s));
  size_t held = 0;
  bool flagged = false;
  for (int beat = 0; beat < 40 && !flagged; ++beat) {
    hoarder.send(protocol::WorkerHeartbeat{1'000'000, 0});
    // Results for tasks it never had are no sign of work.
    hoarder.send(protocol::WorkerResults{
        1'000'000, {{{1, 1}, 1, protocol::TaskStatus::kFinished, "\xc0", 0, 1}}});
    for (const std::string& bytes : hoarder.receive(200ms)) {
      auto msg = protocol::decode<protocol::ToWorker>(bytes, 64u << 20);
      if (!msg) continue;
      if (auto* a = std::get_if<protocol::Assign>(&*msg)) held += a->tasks.size();
      if (std::holds_alternative<protocol::CancelTasks>(*msg)) flagged = true;
    }
  }
  EXPECT_TRUE(flagged) << "told to drop what it hoarded";
  EXPECT_GT(held, 0u);
  EXPECT_LE(held, 256u) << "capacity is held to 256 per slot";
  EXPECT_TRUE(cluster_.scheduler().log_contains("flagged as hoarding"));

  // A real worker with one slot runs a task three times the hoard timeout, then everything.
  cluster_.start_worker(1);
  const std::string long_id = app.schedule_service(sleep_for(6000, 9));
  const auto results = app.wait_for_multi(ids, 60s);
  for (const auto& r : results) ASSERT_TRUE(r.ok()) << r.error();
  auto slow = app.wait_for(long_id, 60s);
  ASSERT_TRUE(slow.ok()) << slow.error();
  EXPECT_EQ(slow.attempt(), 1u);
  EXPECT_EQ(slow.worker(), "worker0");
  EXPECT_EQ(occurrences(cluster_.scheduler().log(), "flagged as hoarding"), 1u)
      << cluster_.scheduler().log();
}

TEST_F(SecurityTest, AViewerSeesOnlyWhatItsKeyMaySee) {
  const std::string& keys = cluster_.enable_auth();
  const std::string mallory = add_member("mallory", "application");
  const std::string evil_dir = add_member("evil", "worker");
  cluster_.start_scheduler(kFastScheduler);
  cluster_.start_progress_server();
  cluster_.start_worker(1);
  ApplicationInformation following = info("victim");
  following.track_progress = true;
  following.progress_server_port = cluster_.progress_port();
  ClientApplication app(following);
  app.start_application();
  ASSERT_TRUE(app.wait_connected(20s));
  const std::string id = app.schedule_service(progress_task());

  const net::ClientAuth viewer = member(keys, net::Role::kViewer);
  const net::ClientAuth other = member(mallory, net::Role::kApplication);
  const net::ClientAuth worker = member(keys, net::Role::kWorker);
  RawPeer sees_all(cluster_.progress_port(), &viewer);
  RawPeer sees_own(cluster_.progress_port(), &other);
  RawPeer a_worker(cluster_.progress_port(), &worker);
  protocol::Subscribe all;
  all.all = true;
  protocol::Subscribe by_id;
  by_id.application_id = "victim";
  size_t viewer_bars = 0, other_bars = 0, worker_updates = 0;
  const auto until = std::chrono::steady_clock::now() + 20s;
  while (std::chrono::steady_clock::now() < until && viewer_bars == 0) {
    sees_all.send(all);
    sees_own.send(viewer_bars % 2 ? all : by_id);
    a_worker.send(all);
    for (auto* p : {&sees_all, &sees_own, &a_worker}) {
      for (const std::string& bytes : p->receive(200ms)) {
        auto msg = protocol::decode<protocol::ToProgressSubscriber>(bytes, 64u << 20);
        if (!msg) continue;
        const size_t bars = std::get<protocol::ProgressUpdate>(*msg).bars.size();
        if (p == &a_worker) ++worker_updates;
        if (p == &sees_all) viewer_bars += bars;
        if (p == &sees_own) other_bars += bars;
      }
    }
  }
  EXPECT_GT(viewer_bars, 0u) << "the viewer key sees every bar";
  // Another worker key sends a bar for the victim's session without naming it (as the workers
  // given its tasks do): dropped. Then it names the session as mallory's application, and
  // mallory lists the victim's session as if it were hers: she still sees nothing (a session is
  // the key's that listed it first: the victim's).
  const net::ClientAuth evil = member(evil_dir, net::Role::kWorker);
  RawPeer liar(cluster_.progress_port(), &evil);
  protocol::TaskKey key;
  ASSERT_TRUE(protocol::parse_service_id(id, &key));
  protocol::ProgressBatch forged;
  forged.batch_seq = 1;
  forged.worker = "worker0";
  forged.owners = {};
  protocol::BarState fake;
  fake.key = key;
  fake.attempt = 1;
  fake.bar_no = 99;
  fake.description = "FAKE";
  fake.total = 10;
  fake.count = 5;
  forged.bars = {fake};
  liar.send(forged);
  ASSERT_TRUE((liar.expect<protocol::ToProgressWorker, protocol::ProgressAck>(10s)));
  size_t fakes = 0;
  for (int i = 0; i < 5; ++i) {
    sees_all.send(all);
    for (const std::string& bytes : sees_all.receive(200ms)) {
      auto msg = protocol::decode<protocol::ToProgressSubscriber>(bytes, 64u << 20);
      if (!msg) continue;
      for (const auto& b : std::get<protocol::ProgressUpdate>(*msg).bars) {
        fakes += b.description == "FAKE";
      }
    }
  }
  EXPECT_EQ(fakes, 0u) << "a bar from a key that runs none of the session's tasks";
  forged.batch_seq = 2;
  forged.owners = {{key.session, "mallory-app"}};
  forged.bars.clear();
  liar.send(forged);
  ASSERT_TRUE((liar.expect<protocol::ToProgressWorker, protocol::ProgressAck>(10s)));
  // Another application's key keeps asking while the task runs and sees nothing of it.
  protocol::Subscribe by_session;
  by_session.application_id = "mallory-app";
  by_session.sessions = {key.session};
  for (int i = 0; i < 5; ++i) {
    sees_own.send(all);
    sees_own.send(by_id);
    sees_own.send(by_session);
    for (const std::string& bytes : sees_own.receive(200ms)) {
      auto msg = protocol::decode<protocol::ToProgressSubscriber>(bytes, 64u << 20);
      if (msg) other_bars += std::get<protocol::ProgressUpdate>(*msg).bars.size();
    }
  }
  EXPECT_EQ(other_bars, 0u);
  EXPECT_EQ(worker_updates, 0u) << "a worker key may not subscribe";
  auto r = app.wait_for(id, 30s);
  ASSERT_TRUE(r.ok()) << r.error();
  // The application's own key follows its bars (it subscribed with application.key).
  EXPECT_FALSE(app.progress().empty());
}

TEST_F(SecurityTest, RotatingAndRevokingWorkerKeysUnderLoadLosesNoTask) {
  cluster_.enable_auth();
  cluster_.start_scheduler(kFastScheduler);
  const std::string old_key = add_member("old-worker", "worker");
  cluster_.start_worker(2, {"--auth", old_key});
  ClientApplication app(info("load"));
  app.start_application();
  ASSERT_TRUE(app.wait_connected(20s));
  std::vector<std::string> ids;
  for (int i = 0; i < 600; ++i) {
    ids.push_back(app.schedule_service(sleep_for(10, i)));
  }
  ASSERT_TRUE(app.flush(20s));
  std::map<std::string, ServiceResult> got;
  auto collected = [&](size_t n) {
    for (auto& r : app.collect_ready()) got.emplace(r.service_id(), r);
    return got.size() >= n;
  };
  ASSERT_TRUE(wait_until([&] { return collected(50); }, 60s));
  // Rotation: a new key is accepted next to the old one, a worker starts with it, then the old
  // key is revoked while its worker still runs tasks.
  const std::string new_key = add_member("new-worker", "worker");
  cluster_.start_worker(2, {"--auth", new_key});
  ASSERT_TRUE(cluster_.wait_for_workers(2));
  auto r = run_command({lrts_bin(), "keygen", cluster_.auth_dir(), "--revoke", "old-worker"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ASSERT_TRUE(wait_until([&] {
    return cluster_.scheduler().log_contains("dropping messages from 'old-worker'");
  })) << cluster_.scheduler().log();
  ASSERT_TRUE(wait_until([&] { return collected(ids.size()); }, 90s)) << got.size();
  ASSERT_EQ(got.size(), ids.size());
  std::set<std::string> workers;
  for (size_t i = 0; i < ids.size(); ++i) {
    const ServiceResult& res = got.at(ids[i]);
    ASSERT_TRUE(res.ok()) << res.error();
    EXPECT_EQ(res.service_result<int64_t>(), static_cast<int64_t>(i));
    workers.insert(res.worker());
  }
  EXPECT_EQ(workers.count("worker1"), 1u) << "the new key's worker took over";
  // The revoked key gets no new connection.
  Daemon& again = cluster_.start_worker(1, {"--auth", old_key});
  ASSERT_TRUE(wait_until([&] {
    return occurrences(cluster_.scheduler().log(), "refused a connection") >= 1;
  })) << cluster_.scheduler().log();
  EXPECT_FALSE(again.log_contains("registered with the scheduler"));
}

TEST_F(SecurityTest, AMemberWhoseHandshakeFailsSaysWhyAndGetsInOnceItsKeyIsAccepted) {
  cluster_.enable_auth();
  const std::string late = add_member("late", "worker");
  const std::string members = cluster_.auth_dir() + "/members";
  const std::string with_late = read_file(members);
  auto r = run_command({lrts_bin(), "keygen", cluster_.auth_dir(), "--revoke", "late"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  cluster_.start_scheduler(kFastScheduler);
  Daemon& w = cluster_.start_worker(1, {"--auth", late});
  ASSERT_TRUE(wait_until([&] { return w.log_contains("refused this key"); })) << w.log();
  {  // accepted again: the same key back in `members`, as an operator would put it
    std::ofstream(members + ".tmp") << with_late;
    ASSERT_EQ(std::rename((members + ".tmp").c_str(), members.c_str()), 0);
  }
  EXPECT_TRUE(wait_until([&] { return cluster_.wait_for_workers(1, 100ms); }, 30s))
      << cluster_.logs();

  // A client without keys against a scheduler with --auth says what is wrong.
  r = run_command(
      {"/usr/bin/env", "-u", "LRTS_AUTH_DIR", lrts_bin(), "submit", "test.noop", "--scheduler-port",
       std::to_string(cluster_.port()), "--wait", "--wait-timeout", "3"},
      30s);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("did not complete a handshake (if it runs with --auth, give --auth here"),
            std::string::npos)
      << r.err;
  EXPECT_TRUE(wait_until([&] { return cluster_.scheduler().log_contains("failed the handshake"); }))
      << cluster_.scheduler().log();
}

TEST_F(SecurityTest, ARevokedKeyStaysRevokedWhenItsNameIsGivenToAnotherKey) {
  cluster_.enable_auth();
  const std::string old_dir = add_member("evil", "worker");
  cluster_.start_scheduler(kFastScheduler);
  const net::ClientAuth old_key = member(old_dir, net::Role::kWorker);
  RawPeer peer(cluster_.port(), &old_key);
  peer.send(hello_of(31, 1, 0));
  ASSERT_TRUE((peer.expect<protocol::ToWorker, protocol::WorkerWelcome>(10s)));
  auto r = run_command({lrts_bin(), "keygen", cluster_.auth_dir(), "--revoke", "evil"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::filesystem::remove_all(old_dir);
  r = run_command(
      {lrts_bin(), "keygen", cluster_.auth_dir(), "--add", "evil", "--role", "application"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // Both changes read (in one reload or two): the name is accepted again, with a new key.
  ASSERT_TRUE(wait_until([&] {
    const std::string log = cluster_.scheduler().log();
    // keygen's own five keys and evil's (removed, then added again).
    return log.find("6 accepted key(s), were 5") != std::string::npos ||
           log.find("6 accepted key(s), were 6") != std::string::npos;
  })) << cluster_.scheduler().log();
  // The old connection, with the old key, says application hello: no welcome, only the news.
  protocol::AppHello ah;
  ah.application_id = "stolen-role";
  ah.session = 9;
  peer.send(ah);
  auto err = peer.expect<protocol::ToApp, protocol::ErrorMsg>(10s);
  ASSERT_TRUE(err);
  EXPECT_EQ(err->code, protocol::ErrorCode::kForbidden);
  EXPECT_NE(std::string(err->text).find("revoked"), std::string::npos);
  EXPECT_FALSE((peer.expect<protocol::ToApp, protocol::AppWelcome>(1s)));
  EXPECT_FALSE(cluster_.scheduler().log_contains("stolen-role"));
}

TEST_F(SecurityTest, AMemberFloodingHellosLeavesBoundedLogsAndState) {
  const std::string& keys = cluster_.enable_auth();
  const std::string next = add_member("next", "application");
  cluster_.start_scheduler(kFastScheduler);
  const net::ClientAuth application = member(keys, net::Role::kApplication);
  RawPeer flood(cluster_.port(), &application);
  std::deque<std::string> ids;  // the hellos' views point into them
  for (int i = 0; i < 3000; ++i) {
    protocol::AppHello ah;
    ah.application_id = ids.emplace_back("flood-" + std::to_string(i));
    ah.session = 1000 + static_cast<uint64_t>(i);
    flood.send(ah);
  }
  size_t welcomes = 0;
  const auto until = std::chrono::steady_clock::now() + 60s;
  while (welcomes < ids.size() && std::chrono::steady_clock::now() < until) {
    for (const std::string& bytes : flood.receive(200ms)) {
      auto msg = protocol::decode<protocol::ToApp>(bytes, 64u << 20);
      welcomes += msg && std::holds_alternative<protocol::AppWelcome>(*msg);
    }
  }
  ASSERT_EQ(welcomes, ids.size());
  // Past the application timeout the empty applications are forgotten, without a line each.
  ASSERT_TRUE(wait_until([&] {
    return occurrences(cluster_.scheduler().log(), "silent with no tasks; forgotten") >= ids.size();
  })) << "the debug log says each was forgotten";
  size_t lines = 0;
  std::istringstream log(cluster_.scheduler().log());
  for (std::string line; std::getline(log, line);) {
    lines += line.find(" info ") != std::string::npos && line.find("flood-") != std::string::npos;
    EXPECT_EQ(line.find("silent for"), std::string::npos) << line;
  }
  EXPECT_LE(lines, 200u) << "connection lines are limited per key";
  // Another key's application is not silenced by it.
  ApplicationInformation other = info("after-the-flood");
  other.auth_dir = next;
  ClientApplication app(other);
  app.start_application();
  ASSERT_TRUE(app.wait_connected(20s));
  EXPECT_TRUE(wait_until([&] {
    return cluster_.scheduler().log_contains("application 'after-the-flood' connected");
  }));
}

}  // namespace
}  // namespace lrts::testing
