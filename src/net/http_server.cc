#include "net/http_server.hpp"

#include <httplib.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <thread>

#include "common/log.hpp"

namespace lrts::net {

void EventFeed::post(std::string event, std::string data) {
  {
    MutexLock lock(mu_);
    text_ = "event: " + event + "\ndata: " + data + "\n\n";
    ++seq_;
  }
  cv_.notify_all();
}

std::string EventFeed::next(uint64_t* seq, int wait_ms) {
  MutexLock lock(mu_);
  const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(wait_ms);
  while (seq_ == *seq && !closed_) {
    if (!cv_.wait_until(mu_, until)) break;
  }
  if (seq_ == *seq || closed_) return {};
  *seq = seq_;
  return text_;
}

void EventFeed::close() {
  {
    MutexLock lock(mu_);
    closed_ = true;
  }
  cv_.notify_all();
}

bool EventFeed::closed() const {
  MutexLock lock(mu_);
  return closed_;
}

struct HttpServer::Impl {
  httplib::Server server;
  std::thread thread;
  int port = 0;
  std::atomic<int> streams{0};
  EventFeed* feed = nullptr;
};

HttpServer::HttpServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

HttpServer::~HttpServer() {
  if (impl_->feed) impl_->feed->close();
  impl_->server.stop();
  if (impl_->thread.joinable()) impl_->thread.join();
}

int HttpServer::port() const { return impl_->port; }

Result<std::unique_ptr<HttpServer>> HttpServer::start(const Options& options, Handler handler,
                                                      const std::string& events_path,
                                                      EventFeed* feed) {
  auto impl = std::make_unique<Impl>();
  Impl* raw = impl.get();
  raw->feed = feed;
  httplib::Server& s = raw->server;
  const int threads = std::max(2, options.threads + (feed ? options.max_streams : 0));
  s.new_task_queue = [threads] { return new httplib::ThreadPool(static_cast<size_t>(threads)); };
  s.set_read_timeout(5, 0);
  s.set_write_timeout(5, 0);
  s.set_keep_alive_max_count(100);
  s.set_payload_max_length(64 * 1024);
  s.set_default_headers({{"X-Content-Type-Options", "nosniff"}, {"Cache-Control", "no-store"}});
  // SO_REUSEADDR only: cpp-httplib's default adds SO_REUSEPORT, which lets a second process
  // bind the same port silently (two workers with one --metrics-port would share scrapes).
  s.set_socket_options([](socket_t sock) {
    int yes = 1;
    ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
  });
  if (feed && !events_path.empty()) {
    const int max_streams = options.max_streams;
    s.Get(events_path, [raw, max_streams](const httplib::Request&, httplib::Response& res) {
      if (raw->streams.fetch_add(1) >= max_streams) {
        raw->streams.fetch_sub(1);
        res.status = 503;
        res.set_content("{\"error\": \"too many event streams open\"}", "application/json");
        return;
      }
      auto seq = std::make_shared<uint64_t>(0);
      res.set_chunked_content_provider(
          "text/event-stream",
          [raw, seq](size_t, httplib::DataSink& sink) {
            if (raw->feed->closed()) return false;
            std::string text = raw->feed->next(seq.get(), 15'000);
            if (text.empty()) text = ": keepalive\n\n";
            return sink.write(text.data(), text.size());
          },
          [raw](bool) { raw->streams.fetch_sub(1); });
    });
  }
  s.Get(".*", [handler](const httplib::Request& req, httplib::Response& res) {
    HttpRequest r;
    r.path = req.path;
    r.host = req.get_header_value("Host");
    for (const auto& [k, v] : req.params) r.params[k] = v;
    HttpResponse out;
    try {
      out = handler(r);
    } catch (const std::exception& e) {
      out = {500, "application/json", std::string("{\"error\": \"internal error\"}")};
      LRTS_WARN("http: {} failed: {}", req.path, e.what());
    }
    res.status = out.status;
    res.set_content(out.body, out.content_type.c_str());
  });
  const int port =
      options.port == 0
          ? s.bind_to_any_port(options.address.c_str())
          : (s.bind_to_port(options.address.c_str(), options.port) ? options.port : -1);
  if (port < 0) {
    return make_error("cannot listen for HTTP on " + options.address + ":" +
                      std::to_string(options.port) + ": " + std::strerror(errno));
  }
  raw->port = port;
  raw->thread = std::thread([raw] { raw->server.listen_after_bind(); });
  return std::unique_ptr<HttpServer>(new HttpServer(std::move(impl)));
}

Result<std::unique_ptr<HttpServer>> HttpServer::metrics(const std::string& address, int port,
                                                        PublishedText& text) {
  Options o;
  o.address = address;
  o.port = port;
  o.threads = 4;
  return start(o, [&text](const HttpRequest& r) {
    if (r.path != "/metrics") {
      return HttpResponse{404, "text/plain", "lrts serves /metrics here\n"};
    }
    return HttpResponse{200, "text/plain; version=0.0.4; charset=utf-8", text.get()};
  });
}

}  // namespace lrts::net
