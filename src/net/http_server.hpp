// HttpServer: a small HTTP/1.1 server on threads of its own (cpp-httplib), for /metrics and the
// dashboard. It never touches a daemon's state: handlers answer from what the owning loop
// published (PublishedText, EventFeed), so a slow or hostile HTTP client cannot stall the loop.
//
// Bounds: a fixed pool of threads (so at most that many requests at once), request bodies and
// headers limited, read and write timeouts, at most `max_streams` event streams at once.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "common/mutex.hpp"
#include "common/result.hpp"

namespace lrts::net {

struct HttpRequest {
  std::string path;
  std::string host;                           // the Host header
  std::map<std::string, std::string> params;  // query string, decoded
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
};

// Text that one thread replaces and HTTP threads read (a /metrics exposition).
class PublishedText {
 public:
  void publish(std::string text) {
    MutexLock lock(mu_);
    text_ = std::move(text);
  }
  std::string get() const {
    MutexLock lock(mu_);
    return text_;
  }

 private:
  mutable Mutex mu_;
  std::string text_ LRTS_GUARDED_BY(mu_);
};

// Server-sent events: the owner posts events; each open stream gets every event posted while it
// is open (a slow reader skips to the latest: events are snapshots, not deltas).
class EventFeed {
 public:
  void post(std::string event, std::string data);
  // Waits up to `wait_ms` for an event after `*seq`; returns it as SSE text, or "" on timeout.
  std::string next(uint64_t* seq, int wait_ms);
  void close();
  bool closed() const;

 private:
  mutable Mutex mu_;
  CondVar cv_;
  uint64_t seq_ LRTS_GUARDED_BY(mu_) = 0;
  std::string text_ LRTS_GUARDED_BY(mu_);
  bool closed_ LRTS_GUARDED_BY(mu_) = false;
};

class HttpServer {
 public:
  using Handler = std::function<HttpResponse(const HttpRequest&)>;
  struct Options {
    std::string address = "127.0.0.1";
    int port = 0;  // 0: any free port (see port())
    int threads = 8;
    int max_streams = 16;  // event streams open at once; more get 503
  };
  // Binds now (so that a port in use is an error at start) and serves on a thread of its own.
  static Result<std::unique_ptr<HttpServer>> start(const Options& options, Handler handler,
                                                   const std::string& events_path = "",
                                                   EventFeed* feed = nullptr);
  ~HttpServer();
  int port() const;

  // Serves only /metrics with the text published there.
  static Result<std::unique_ptr<HttpServer>> metrics(const std::string& address, int port,
                                                     PublishedText& text);

 private:
  struct Impl;
  explicit HttpServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace lrts::net
