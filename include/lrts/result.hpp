// ServiceResult: what came back for one scheduled service.
#pragma once

#include <chrono>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "lrts/detail/msgpack.hpp"

namespace lrts {

enum class ServiceStatus : uint8_t {
  finished = 0,   // run returned; service_result<T>() has the value
  failed = 1,     // run threw, the fields did not fit, or every attempt was lost; see error()
  cancelled = 2,  // cancelled by the application (or its session ended)
  timed_out = 3,  // exceeded the task's timeout
};

const char* to_string(ServiceStatus status);

// Thrown by ServiceResult::service_result<T>() when there is no value to give.
class ResultError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class ServiceResult {
 public:
  ServiceResult() = default;
  ServiceResult(std::string service_id, ServiceStatus status, std::string payload, uint32_t attempt,
                std::string worker, std::chrono::nanoseconds run_time);

  const std::string& service_id() const { return service_id_; }
  ServiceStatus status() const { return status_; }
  bool ok() const { return status_ == ServiceStatus::finished; }
  // Why the task did not finish; empty when it did.
  const std::string& error() const { return ok() ? empty_ : payload_; }
  // Which attempt produced this result (1 unless the task was retried).
  uint32_t attempt() const { return attempt_; }
  // Name of the worker that ran the attempt (empty if none did).
  const std::string& worker() const { return worker_; }
  // Time spent in run on the worker.
  std::chrono::nanoseconds run_time() const { return run_time_; }

  // The value run returned, converted to T. Throws ResultError if the task did not finish or
  // the value does not convert to T.
  template <class T>
  T service_result() const {
    if (!ok()) {
      throw ResultError("service " + service_id_ + " has no result: " + to_string(status_) +
                        (payload_.empty() ? "" : ": " + payload_));
    }
    try {
      msgpack::object_handle oh = msgpack::unpack(payload_.data(), payload_.size());
      return oh.get().as<T>();
    } catch (const std::exception& e) {
      throw ResultError("result of service " + service_id_ + " does not convert to the " +
                        "requested type (" + e.what() + "); it is " + service_result_json());
    }
  }
  // The value as JSON text ("null" if none).
  std::string service_result_json() const;
  // The raw MessagePack value (finished) or the reason (otherwise).
  const std::string& payload() const { return payload_; }
  // One JSON object: {"service_id":…, "status":…, "service_result":… [, "error":…], …}.
  std::string to_json() const;

 private:
  std::string service_id_;
  ServiceStatus status_ = ServiceStatus::failed;
  std::string payload_;
  uint32_t attempt_ = 0;
  std::string worker_;
  std::chrono::nanoseconds run_time_{0};
  static inline const std::string empty_;
};

}  // namespace lrts
