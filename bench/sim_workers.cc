// A load generator that behaves as many lrts workers at once: each simulated worker has its own
// TCP connection to the scheduler, speaks ZMTP 3.0 (NULL mechanism) directly as a DEALER, says
// hello, heartbeats at the interval the scheduler (or relay) names in its welcome and heartbeat
// acknowledgements (--heartbeat-ms until then), and finishes every task it is assigned at once.
// One file descriptor per worker and no libzmq socket each, so 100,000 fit in one process.
//
//   lrts_sim_workers --port P --workers N [--capacity C] [--heartbeat-ms 1000] [--seconds S]
//                    [--first-uid U]   (worker ids U, U+1, ...: several generators side by side)
//                    [--churn PCT]     (PCT % of the workers leave each minute, saying
//                                       goodbye, and as many new ones join)
//                    [--crash]         (with --churn: they leave without a goodbye, their
//                                       connection simply closed)
//
// Prints, every second, how many are registered and how many tasks they finished.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "protocol/codec.hpp"
#include "protocol/messages.hpp"

namespace {

using Clock = std::chrono::steady_clock;
volatile sig_atomic_t g_stop = 0;

std::string greeting() {
  std::string g(64, '\0');
  g[0] = static_cast<char>(0xff);
  g[9] = 0x7f;
  g[10] = 3;  // version 3.0
  g[11] = 0;
  std::memcpy(&g[12], "NULL", 4);  // mechanism, zero padded to 20 bytes; as-server 0
  return g;
}

void put_frame(std::string& out, std::string_view body, bool command) {
  const uint8_t flags = command ? 0x04 : 0x00;
  if (body.size() < 256) {
    out.push_back(static_cast<char>(flags));
    out.push_back(static_cast<char>(body.size()));
  } else {
    out.push_back(static_cast<char>(flags | 0x02));
    for (int i = 7; i >= 0; --i) out.push_back(static_cast<char>((body.size() >> (8 * i)) & 0xff));
  }
  out.append(body);
}

std::string ready_command() {
  std::string body;
  body.push_back(5);
  body += "READY";
  const std::string name = "Socket-Type", value = "DEALER";
  body.push_back(static_cast<char>(name.size()));
  body += name;
  for (int i = 3; i >= 0; --i) body.push_back(static_cast<char>((value.size() >> (8 * i)) & 0xff));
  body += value;
  std::string out;
  put_frame(out, body, true);
  return out;
}

struct Conn {
  int fd = -1;
  uint64_t uid = 0;
  std::string in, out;
  bool greeted = false;  // received the scheduler's greeting
  bool welcomed = false;
  bool want_out = false;
  Clock::time_point next_heartbeat;
  uint32_t capacity = 0;
};

struct Sim {
  std::vector<Conn> conns;
  int port = 0;
  uint32_t source_base = 0;
  std::string hello_bytes;
  std::vector<std::pair<Clock::time_point, size_t>> reconnects;  // (when, connection)

  // Opens (or reopens) connection i; the greeting and READY go out when it connects.
  bool open(size_t i) {
    Conn& c = conns[i];
    c.fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c.fd < 0) return false;
    // Spread over source addresses: one address has ~28,000 ephemeral ports.
    sockaddr_in src{};
    src.sin_family = AF_INET;
    src.sin_addr.s_addr = htonl(source_base + static_cast<uint32_t>(i / 20000));
    ::bind(c.fd, reinterpret_cast<sockaddr*>(&src), sizeof src);
    sockaddr_in dst{};
    dst.sin_family = AF_INET;
    dst.sin_port = htons(static_cast<uint16_t>(port));
    dst.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(c.fd, reinterpret_cast<sockaddr*>(&dst), sizeof dst) != 0 &&
        errno != EINPROGRESS) {
      ::close(c.fd);
      c.fd = -1;
      return false;
    }
    c.in.clear();
    c.out = hello_bytes;
    c.greeted = false;
    if (c.welcomed) --welcomed;
    c.welcomed = false;
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLOUT;
    ev.data.u32 = static_cast<uint32_t>(i);
    c.want_out = true;
    ::epoll_ctl(ep, EPOLL_CTL_ADD, c.fd, &ev);
    return true;
  }

  void drop(size_t i) {
    Conn& c = conns[i];
    ::epoll_ctl(ep, EPOLL_CTL_DEL, c.fd, nullptr);
    ::close(c.fd);
    c.fd = -1;
    reconnects.emplace_back(Clock::now() + std::chrono::milliseconds(200), i);
  }
  int ep = -1;
  std::chrono::milliseconds interval{1000};  // as the scheduler said last
  uint64_t tasks_done = 0;
  uint64_t heartbeats = 0;
  size_t welcomed = 0;
  std::string scratch;

  void send_msg(Conn& c, const std::string& msg) {
    put_frame(c.out, msg, false);
    flush(c);
  }

  void flush(Conn& c) {
    while (!c.out.empty()) {
      const ssize_t n = ::send(c.fd, c.out.data(), c.out.size(), MSG_NOSIGNAL);
      if (n > 0) {
        c.out.erase(0, static_cast<size_t>(n));
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      break;
    }
    const bool want = !c.out.empty();
    if (want != c.want_out) {
      epoll_event ev{};
      ev.events = EPOLLIN | (want ? EPOLLOUT : 0);
      ev.data.u32 = static_cast<uint32_t>(&c - conns.data());
      ::epoll_ctl(ep, EPOLL_CTL_MOD, c.fd, &ev);
      c.want_out = want;
    }
  }

  void hello(Conn& c) {
    protocol_hello_.worker_uid = c.uid;
    name_ = "sim-" + std::to_string(c.uid);
    protocol_hello_.name = name_;
    protocol_hello_.slots = c.capacity;
    protocol_hello_.capacity = c.capacity;
    scratch.clear();
    lrts::protocol::encode(protocol_hello_, scratch);
    send_msg(c, scratch);
  }

  void on_message(Conn& c, std::string_view body) {
    auto msg = lrts::protocol::decode<lrts::protocol::ToWorker>(body);
    if (!msg) return;
    if (auto* w = std::get_if<lrts::protocol::WorkerWelcome>(&*msg)) {
      if (!c.welcomed) ++welcomed;
      c.welcomed = true;
      if (w->heartbeat_ms) interval = std::chrono::milliseconds(w->heartbeat_ms);
    } else if (auto* ack = std::get_if<lrts::protocol::HeartbeatAck>(&*msg)) {
      if (ack->heartbeat_ms) interval = std::chrono::milliseconds(ack->heartbeat_ms);
    } else if (auto* a = std::get_if<lrts::protocol::Assign>(&*msg)) {
      lrts::protocol::WorkerResults r;
      r.capacity = c.capacity;
      for (const auto& t : a->tasks) {
        r.items.push_back({t.key, t.attempt, lrts::protocol::TaskStatus::kFinished, "\xc0", 0, 1});
      }
      tasks_done += a->tasks.size();
      scratch.clear();
      lrts::protocol::encode(r, scratch);
      send_msg(c, scratch);
    } else if (auto* e = std::get_if<lrts::protocol::ErrorMsg>(&*msg)) {
      if (e->code == lrts::protocol::ErrorCode::kHelloRequired) hello(c);
    }
  }

  // Parses what arrived: the greeting, then frames (commands ignored).
  bool on_readable(Conn& c) {
    char buf[65536];
    for (;;) {
      const ssize_t n = ::recv(c.fd, buf, sizeof buf, 0);
      if (n > 0) {
        c.in.append(buf, static_cast<size_t>(n));
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
      return false;  // closed
    }
    size_t off = 0;
    if (!c.greeted) {
      if (c.in.size() < 64) return true;
      c.greeted = true;
      off = 64;
      hello(c);
    }
    while (c.in.size() - off >= 2) {
      const auto flags = static_cast<uint8_t>(c.in[off]);
      size_t header = 2, size = static_cast<uint8_t>(c.in[off + 1]);
      if (flags & 0x02) {
        if (c.in.size() - off < 9) break;
        header = 9;
        size = 0;
        for (int i = 1; i <= 8; ++i) size = (size << 8) | static_cast<uint8_t>(c.in[off + i]);
      }
      if (c.in.size() - off < header + size) break;
      if (!(flags & 0x04)) on_message(c, std::string_view(c.in).substr(off + header, size));
      off += header + size;
    }
    c.in.erase(0, off);
    return true;
  }

  lrts::protocol::WorkerHello protocol_hello_;
  std::string name_;
};

}  // namespace

int main(int argc, char** argv) {
  int port = 5555, workers = 1000, heartbeat_ms = 1000;
  double churn_pct = 0;
  bool crash = false;
  uint64_t first_uid = 1;
  uint32_t capacity = 2;
  double seconds = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string f = argv[i];
    if (f == "--port")
      port = std::atoi(argv[i + 1]);
    else if (f == "--workers")
      workers = std::atoi(argv[i + 1]);
    else if (f == "--capacity")
      capacity = static_cast<uint32_t>(std::atoi(argv[i + 1]));
    else if (f == "--heartbeat-ms")
      heartbeat_ms = std::atoi(argv[i + 1]);
    else if (f == "--seconds")
      seconds = std::atof(argv[i + 1]);
    else if (f == "--first-uid")
      first_uid = std::strtoull(argv[i + 1], nullptr, 10);
    else if (f == "--churn")
      churn_pct = std::atof(argv[i + 1]);
    else if (f == "--crash")
      crash = std::atoi(argv[i + 1]) != 0;
  }
  rlimit rl{};
  ::getrlimit(RLIMIT_NOFILE, &rl);
  rl.rlim_cur = rl.rlim_max;
  ::setrlimit(RLIMIT_NOFILE, &rl);
  if (rl.rlim_cur < static_cast<rlim_t>(workers) + 64) {
    std::fprintf(stderr, "need %d descriptors, have %llu (raise ulimit -n)\n", workers + 64,
                 static_cast<unsigned long long>(rl.rlim_cur));
    return 2;
  }
  ::signal(SIGINT, [](int) { g_stop = 1; });
  ::signal(SIGTERM, [](int) { g_stop = 1; });

  // Source addresses in 127.0.0.0/8, a fresh range each run (ports of an earlier run may still
  // be in TIME_WAIT).
  const uint32_t source_base =
      0x7f000000u | ((static_cast<uint32_t>(::getpid()) * 2654435761u) & 0x00fff000u) | 1u;
  Sim sim;
  sim.ep = ::epoll_create1(EPOLL_CLOEXEC);
  sim.port = port;
  sim.source_base = source_base;
  sim.hello_bytes = greeting() + ready_command();
  sim.protocol_hello_.services = {"bench.noop"};
  sim.conns.resize(static_cast<size_t>(workers));
  const auto start = Clock::now();
  sim.interval = std::chrono::milliseconds(heartbeat_ms);
  const auto interval = sim.interval;
  for (int i = 0; i < workers; ++i) {
    Conn& c = sim.conns[static_cast<size_t>(i)];
    c.uid = first_uid + static_cast<uint64_t>(i);
    c.capacity = capacity;
    c.next_heartbeat = start + interval * (i + 1) / workers;  // spread evenly
    if (!sim.open(static_cast<size_t>(i))) {
      std::perror("connect");
      return 1;
    }
  }

  std::string hb;
  lrts::protocol::encode(lrts::protocol::WorkerHeartbeat{capacity}, hb);
  std::vector<epoll_event> events(4096);
  size_t next_hb = 0;  // connections are due in index order, round after round
  auto next_report = start + std::chrono::seconds(1);
  uint64_t last_done = 0, last_hb = 0;
  // Churn: a share of the workers leaves every second (connection closed) and as many new ones
  // (new ids, beyond every generator's range) join.
  const double churn_per_s = workers * churn_pct / 100.0 / 60.0;
  double churn_due = 0;
  bool churning = false;
  uint64_t next_new_uid = first_uid + 1'000'000'000ull, left = 0;
  uint64_t seed = first_uid * 0x9E3779B97F4A7C15ull + 1;
  while (!g_stop) {
    const auto now = Clock::now();
    if (seconds > 0 && now - start > std::chrono::duration<double>(seconds)) break;
    // Heartbeats that are due.
    for (size_t k = 0; k < sim.conns.size(); ++k) {
      Conn& c = sim.conns[next_hb];
      if (c.next_heartbeat > now) break;
      if (c.welcomed && c.fd >= 0) {
        sim.send_msg(c, hb);
        ++sim.heartbeats;
      }
      c.next_heartbeat += sim.interval;
      next_hb = (next_hb + 1) % sim.conns.size();
    }
    // Connections that failed (the scheduler was not up yet, or went away) are tried again.
    for (size_t k = 0; k < sim.reconnects.size();) {
      if (sim.reconnects[k].first <= now) {
        if (!sim.open(sim.reconnects[k].second)) {
          sim.reconnects.emplace_back(now + std::chrono::milliseconds(200),
                                      sim.reconnects[k].second);
        }
        sim.reconnects[k] = sim.reconnects.back();
        sim.reconnects.pop_back();
      } else {
        ++k;
      }
    }
    auto due = std::min(sim.conns[next_hb].next_heartbeat, next_report);
    for (const auto& r : sim.reconnects) due = std::min(due, r.first);
    const int timeout = static_cast<int>(std::max<int64_t>(
        0, std::chrono::duration_cast<std::chrono::milliseconds>(due - Clock::now()).count() + 1));
    const int n = ::epoll_wait(sim.ep, events.data(), static_cast<int>(events.size()), timeout);
    for (int i = 0; i < n; ++i) {
      const size_t idx = events[i].data.u32;
      Conn& c = sim.conns[idx];
      if (c.fd < 0) continue;
      if (events[i].events & EPOLLOUT) sim.flush(c);
      if (events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
        if (!sim.on_readable(c)) sim.drop(idx);
      }
    }
    if (Clock::now() >= next_report) {
      next_report += std::chrono::seconds(1);
      std::printf(
          "%zu registered, %llu tasks finished (+%llu), %llu heartbeats (+%llu), interval %lld "
          "ms, %llu left\n",
          sim.welcomed, static_cast<unsigned long long>(sim.tasks_done),
          static_cast<unsigned long long>(sim.tasks_done - last_done),
          static_cast<unsigned long long>(sim.heartbeats),
          static_cast<unsigned long long>(sim.heartbeats - last_hb),
          static_cast<long long>(sim.interval.count()), static_cast<unsigned long long>(left));
      std::fflush(stdout);
      last_done = sim.tasks_done;
      last_hb = sim.heartbeats;
      // Churn starts once every worker has joined.
      if (sim.welcomed == sim.conns.size()) churning = churn_per_s > 0;
      if (churning) {
        for (churn_due += churn_per_s; churn_due >= 1; churn_due -= 1) {
          seed ^= seed << 13, seed ^= seed >> 7, seed ^= seed << 17;
          const size_t i = seed % sim.conns.size();
          Conn& c = sim.conns[i];
          if (c.fd < 0) continue;
          if (!crash && c.welcomed) {
            // It holds nothing (tasks end at once): a goodbye with nothing handed back.
            sim.scratch.clear();
            lrts::protocol::encode(lrts::protocol::WorkerBye{}, sim.scratch);
            sim.send_msg(c, sim.scratch);
          }
          ::epoll_ctl(sim.ep, EPOLL_CTL_DEL, c.fd, nullptr);
          ::close(c.fd);
          c.fd = -1;
          c.uid = next_new_uid++;
          ++left;
          if (!sim.open(i)) sim.reconnects.emplace_back(Clock::now(), i);
        }
      }
    }
  }
  for (auto& c : sim.conns) {
    if (c.fd >= 0) ::close(c.fd);
  }
  return 0;
}
