#include "dashboard/dashboard.hpp"

#include <signal.h>

#include <cstdio>
#include <deque>
#include <nlohmann/json.hpp>

#include "client/progress_watch.hpp"
#include "common/log.hpp"
#include "common/mutex.hpp"
#include "common/signals.hpp"
#include "lrts/admin.hpp"
#include "net/auth.hpp"
#include "net/http_server.hpp"

namespace lrts::dashboard {

namespace {

using nlohmann::json;

constexpr size_t kHistory = 600;  // samples, one a second: ten minutes
constexpr uint32_t kMaxPage = 1000;

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

net::HttpResponse error_response(int status, const std::string& text) {
  return {status, "application/json", dump(json{{"error", text}})};
}

bool parse_u32(const std::map<std::string, std::string>& params, const char* key, uint32_t* out,
               uint32_t max) {
  const auto it = params.find(key);
  if (it == params.end() || it->second.empty()) return true;
  char* end = nullptr;
  const unsigned long v = std::strtoul(it->second.c_str(), &end, 10);
  if (*end != '\0' || v > max) return false;
  *out = static_cast<uint32_t>(v);
  return true;
}

std::string param(const std::map<std::string, std::string>& params, const char* key) {
  const auto it = params.find(key);
  return it == params.end() ? std::string() : it->second;
}

class Dashboard {
 public:
  explicit Dashboard(const DashboardOptions& o) : o_(o) {
    AdminOptions a;
    a.scheduler_address = o.scheduler_address;
    a.scheduler_port = o.scheduler_port;
    a.auth_dir = o.auth_dir;
    a.timeout = seconds(2);
    admin_options_ = a;
  }

  int run() {
    if (!net::is_loopback(o_.address) && !o_.insecure) {
      std::fprintf(stderr,
                   "lrts dashboard: --address %s is not a loopback address: the page has no "
                   "login, so anyone who reaches the port sees every task. Put it behind an "
                   "authenticating proxy and pass --insecure, or keep 127.0.0.1 and use an SSH "
                   "tunnel\n",
                   o_.address.c_str());
      return 2;
    }
    try {
      loop_admin_ = std::make_unique<Admin>(admin_options_);
      http_admin_ = std::make_unique<Admin>(admin_options_);
    } catch (const AdminError& e) {
      std::fprintf(stderr, "lrts dashboard: %s\n", e.what());
      return 2;
    }
    auto watch =
        client::ProgressWatch::open(o_.progress_address, o_.progress_port, o_.auth_dir, "");
    if (!watch) {
      std::fprintf(stderr, "lrts dashboard: --progress-address: %s\n", watch.error().c_str());
      return 2;
    }
    {
      MutexLock lock(watch_mu_);
      watch_ = std::move(*watch);
    }
    net::HttpServer::Options ho;
    ho.address = o_.address;
    ho.port = o_.port;
    auto http = net::HttpServer::start(
        ho, [this](const net::HttpRequest& r) { return handle(r); }, "/events", &feed_);
    if (!http) {
      std::fprintf(stderr, "lrts dashboard: %s\n", http.error().c_str());
      return 2;
    }
    const std::string url = "http://" + o_.address + ":" + std::to_string((*http)->port()) + "/";
    std::printf("lrts dashboard: %s (scheduler %s:%d, progress server %s:%d)\n", url.c_str(),
                o_.scheduler_address.c_str(), o_.scheduler_port, o_.progress_address.c_str(),
                o_.progress_port);
    std::fflush(stdout);
    LRTS_INFO("dashboard on {}", url);

    SignalPipe signals{SIGINT, SIGTERM};
    TimePoint next_sample = Clock::now();
    for (;;) {
      TimePoint now = Clock::now();
      if (now >= next_sample) {
        next_sample = now + seconds(1);
        sample();
      }
      void* sock;
      void* mon;
      TimePoint deadline;
      {
        MutexLock lock(watch_mu_);
        sock = watch_->socket();
        mon = watch_->monitor_socket();
        deadline = std::min(next_sample, watch_->next_deadline());
      }
      zmq_pollitem_t items[3] = {{sock, 0, ZMQ_POLLIN, 0},
                                 {mon, 0, ZMQ_POLLIN, 0},
                                 {nullptr, signals.fd(), ZMQ_POLLIN, 0}};
      const long wait = std::max<long>(0, to_ms(deadline - Clock::now()) + 1);
      if (zmq_poll(items, 3, wait) < 0 && zmq_errno() != EINTR) break;
      if (items[2].revents & ZMQ_POLLIN) {
        bool stop = false;
        for (int sig : signals.drain()) stop |= sig == SIGINT || sig == SIGTERM;
        if (stop) break;
      }
      MutexLock lock(watch_mu_);
      watch_->pump(Clock::now());
    }
    feed_.close();
    LRTS_INFO("dashboard stopping");
    return 0;
  }

 private:
  // Once a second: the status, a history sample, an event for every open page.
  void sample() {
    json status;
    try {
      status = json::parse(loop_admin_->status().json);
      status["scheduler_reachable"] = true;
    } catch (const AdminError& e) {
      status = json{{"scheduler_reachable", false}, {"error", e.what()}};
    }
    {
      MutexLock lock(watch_mu_);
      status["progress_server"] = {
          {"connected", watch_->answered()},
          {"address", o_.progress_address + ":" + std::to_string(o_.progress_port)}};
    }
    const auto n = [&](const char* k) { return status.value(k, uint64_t{0}); };
    const json sample{
        {"t", static_cast<double>(wall_ms()) / 1000.0},
        {"queued", n("queued")},
        {"running", n("running")},
        {"busy_slots", n("busy_slots")},
        {"slots", n("slots")},
        {"workers", n("workers")},
        {"completed_total", n("finished") + n("failed") + n("cancelled") + n("timed_out")},
        {"failed_total", n("failed") + n("timed_out")}};
    {
      MutexLock lock(mu_);
      status_ = dump(status);
      history_.push_back(sample);
      if (history_.size() > kHistory) history_.pop_front();
    }
    feed_.post("status", dump(json{{"status", status}, {"sample", sample}}));
  }

  // The progress server's bars for each task of a listing.
  void add_bars(json& tasks) {
    MutexLock lock(watch_mu_);
    for (json& t : tasks) {
      protocol::TaskKey key;
      json bars = json::array();
      if (protocol::parse_service_id(t.value("service_id", std::string()), &key)) {
        if (const auto* v = watch_->bars_of(key)) {
          for (const auto& b : *v) bars.push_back(json::parse(client::bar_json(b)));
        }
      }
      t["bars"] = std::move(bars);
    }
  }

  // Forwards a query to the scheduler (one at a time: queries take microseconds there).
  json ask(std::string_view what, const TaskQuery& q, std::string_view id = {}) {
    MutexLock lock(admin_mu_);
    return json::parse(http_admin_->query_json(what, q, id));
  }

  // On loopback, only requests naming a loopback host: a web page elsewhere that points a name
  // of its own at 127.0.0.1 (DNS rebinding) gets nothing.
  bool host_allowed(const std::string& host) const {
    if (!net::is_loopback(o_.address)) return true;  // --insecure: the operator's proxy decides
    std::string h = host;
    if (!h.empty() && h.front() == '[') {
      h = h.substr(1, h.find(']') == std::string::npos ? std::string::npos : h.find(']') - 1);
    } else if (const size_t colon = h.rfind(':'); colon != std::string::npos) {
      h = h.substr(0, colon);
    }
    return h == "localhost" || h == "127.0.0.1" || h == "::1" || h == o_.address;
  }

  net::HttpResponse handle(const net::HttpRequest& r) {
    if (!host_allowed(r.host)) {
      return error_response(403, "this dashboard answers only requests to a loopback host name");
    }
    if (r.path == "/" || r.path == "/index.html") {
      return {200, "text/html; charset=utf-8", kIndexHtml};
    }
    if (r.path == "/api/status") {
      MutexLock lock(mu_);
      return {200, "application/json", status_.empty() ? "{}" : status_};
    }
    if (r.path == "/api/history") {
      MutexLock lock(mu_);
      json samples = json::array();
      for (const auto& s : history_) samples.push_back(s);
      return {200, "application/json", dump(json{{"interval_s", 1}, {"samples", samples}})};
    }
    TaskQuery q;
    q.limit = 100;
    if (!parse_u32(r.params, "offset", &q.offset, UINT32_MAX) ||
        !parse_u32(r.params, "limit", &q.limit, kMaxPage)) {
      return error_response(400, "offset and limit are whole numbers; limit at most 1000");
    }
    if (q.limit == 0) q.limit = 1;
    q.application_id = param(r.params, "application_id");
    q.state = param(r.params, "state");
    q.worker = param(r.params, "worker");
    try {
      if (r.path == "/api/workers") return ok(ask("workers", q));
      if (r.path == "/api/applications") return ok(ask("applications", q));
      if (r.path == "/api/failures") return ok(ask("failures", q));
      if (r.path == "/api/tasks") {
        json j = ask("tasks", q);
        add_bars(j["tasks"]);
        return ok(j);
      }
      if (r.path == "/api/task") {
        json j = ask("task", q, param(r.params, "id"));
        json one = json::array({j});
        add_bars(one);
        return ok(one[0]);
      }
      if (r.path == "/api/worker") {
        json j = ask("worker", q, param(r.params, "name"));
        add_bars(j["tasks"]);
        return ok(j);
      }
    } catch (const AdminError& e) {
      const std::string text = e.what();
      const bool unknown = text.find("holds no") != std::string::npos ||
                           text.find("no worker named") != std::string::npos;
      const bool bad = text.find("unknown task state") != std::string::npos;
      return error_response(unknown ? 404 : bad ? 400 : 502, text);
    }
    return error_response(404, "no such page: " + r.path);
  }

  static net::HttpResponse ok(const json& j) { return {200, "application/json", dump(j)}; }

  DashboardOptions o_;
  AdminOptions admin_options_;
  std::unique_ptr<Admin> loop_admin_;  // the loop's
  Mutex admin_mu_;
  std::unique_ptr<Admin> http_admin_ LRTS_PT_GUARDED_BY(admin_mu_);
  Mutex watch_mu_;
  std::unique_ptr<client::ProgressWatch> watch_ LRTS_PT_GUARDED_BY(watch_mu_);
  Mutex mu_;
  std::string status_ LRTS_GUARDED_BY(mu_);
  std::deque<json> history_ LRTS_GUARDED_BY(mu_);
  net::EventFeed feed_;
};

}  // namespace

int run_dashboard(const DashboardOptions& options) { return Dashboard(options).run(); }

}  // namespace lrts::dashboard
