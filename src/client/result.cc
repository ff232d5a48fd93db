#include "lrts/result.hpp"

#include "protocol/json.hpp"

namespace lrts {

const char* to_string(ServiceStatus status) {
  switch (status) {
    case ServiceStatus::finished:
      return "finished";
    case ServiceStatus::failed:
      return "failed";
    case ServiceStatus::cancelled:
      return "cancelled";
    case ServiceStatus::timed_out:
      return "timed_out";
  }
  return "unknown";
}

ServiceResult::ServiceResult(std::string service_id, ServiceStatus status, std::string payload,
                             uint32_t attempt, std::string worker,
                             std::chrono::nanoseconds run_time)
    : service_id_(std::move(service_id)),
      status_(status),
      payload_(std::move(payload)),
      attempt_(attempt),
      worker_(std::move(worker)),
      run_time_(run_time) {}

std::string ServiceResult::service_result_json() const {
  if (!ok() || payload_.empty()) return "null";
  auto json = protocol::mp::to_json(payload_);
  return json ? *json : "null";
}

std::string ServiceResult::to_json() const {
  std::string out = "{\"service_id\":";
  protocol::mp::append_json_string(out, service_id_);
  out += ",\"status\":";
  protocol::mp::append_json_string(out, lrts::to_string(status_));
  out += ",\"service_result\":";
  out += service_result_json();
  if (!ok()) {
    out += ",\"error\":";
    protocol::mp::append_json_string(out, payload_);
  }
  out += ",\"attempt\":" + std::to_string(attempt_);
  out += ",\"worker\":";
  protocol::mp::append_json_string(out, worker_);
  out += ",\"run_time_ms\":";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3f", static_cast<double>(run_time_.count()) / 1e6);
  out += buf;
  out += '}';
  return out;
}

}  // namespace lrts
