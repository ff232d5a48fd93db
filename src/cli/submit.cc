// `lrts submit`: schedule N instances of a service from the command line.
#include <nlohmann/json.hpp>

#include <cstdio>
#include <iostream>

#include "cli/cli.hpp"
#include "lrts/client.hpp"

namespace lrts::cli {

int run_submit(const SubmitOptions& o) {
  nlohmann::json fields;
  try {
    fields = nlohmann::json::parse(o.fields_json);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "lrts submit: --fields is not valid JSON: %s\n", e.what());
    return 2;
  }
  if (!fields.is_object()) {
    std::fprintf(stderr, "lrts submit: --fields must be a JSON object of field name to value\n");
    return 2;
  }
  const std::vector<uint8_t> packed = nlohmann::json::to_msgpack(fields);
  const std::string payload(packed.begin(), packed.end());

  ApplicationInformation info;
  info.scheduler_address = o.scheduler_address;
  info.scheduler_port = o.scheduler_port;
  info.application_id = o.application_id;
  ClientApplication app(info);
  app.start_application();

  TaskOptions task;
  task.max_retries = o.max_retries;
  task.timeout = std::chrono::milliseconds(static_cast<int64_t>(o.task_timeout_s * 1000));
  std::vector<std::string> ids;
  ids.reserve(static_cast<size_t>(o.count));
  for (int i = 0; i < o.count; ++i) ids.push_back(app.schedule_service(o.service_name, payload, task));
  for (const auto& id : ids) std::printf("%s\n", id.c_str());
  std::fflush(stdout);

  if (!o.wait) {
    // Leave the tasks running: make sure they reached the scheduler, then go without cancelling.
    if (!app.flush(std::chrono::seconds(30))) {
      std::fprintf(stderr, "lrts submit: the scheduler at %s:%d did not acknowledge the tasks "
                   "within 30 s\n", o.scheduler_address.c_str(), o.scheduler_port);
      return 1;
    }
    std::fprintf(stderr, "lrts submit: %zu task(s) queued under application id %s\n", ids.size(),
                 app.application_id().c_str());
    app.detach_application();
    return 0;
  }

  int failed = 0;
  try {
    auto range = o.wait_timeout_s > 0
                     ? app.as_completed(ids, std::chrono::milliseconds(
                                                 static_cast<int64_t>(o.wait_timeout_s * 1000)))
                     : app.as_completed(ids);
    for (const ServiceResult& r : range) {
      if (!r.ok()) ++failed;
      std::printf("%s\n", r.to_json().c_str());
      std::fflush(stdout);
    }
  } catch (const TimeoutError&) {
    std::fprintf(stderr, "lrts submit: gave up waiting after %g s\n", o.wait_timeout_s);
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "lrts submit: %s\n", e.what());
    return 1;
  }
  app.stop_application();
  if (failed) std::fprintf(stderr, "lrts submit: %d of %zu task(s) did not finish\n", failed, ids.size());
  return failed ? 1 : 0;
}

}  // namespace lrts::cli
