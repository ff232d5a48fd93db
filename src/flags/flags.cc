#include "flags/flags.hpp"

#include <cctype>
#include <cmath>
#include <cstdio>

namespace lrts::flags {

const char* const kTimeoutHelp =
    "Seconds. Accepted for compatibility with the original lrts, where it bounded the time spent "
    "decoding one network packet. lrts decodes without blocking and bounds messages by size "
    "instead (--max-message-mb), so the value is not used.";

std::vector<std::string> normalize(int argc, char** argv) {
  std::vector<std::string> out;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a.size() > 2 && a[0] == '-' && a[1] != '-' &&
        std::isalpha(static_cast<unsigned char>(a[1])) &&
        std::isalpha(static_cast<unsigned char>(a[2]))) {
      a.insert(0, "-");
    }
    out.push_back(std::move(a));
  }
  return out;
}

bool parse(CLI::App& app, std::vector<std::string> args, const std::string& prog, int* code) {
  std::reverse(args.begin(), args.end());  // CLI11 takes them reversed
  try {
    app.parse(args);
    return true;
  } catch (const CLI::CallForHelp& e) {
    *code = app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    *code = app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    *code = app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::string what = e.what();
    for (char& c : what) {
      if (c == '\n') c = ' ';
    }
    const auto* sub = app.get_subcommands().empty() ? nullptr : app.get_subcommands().front();
    std::fprintf(stderr, "%s%s%s: %s (see --help)\n", prog.c_str(), sub ? " " : "",
                 sub ? sub->get_name().c_str() : "", what.c_str());
    *code = 2;
  }
  return false;
}

void add_log_level(CLI::App& app, std::string& level) {
  app.add_option("--log-level", level, "Log detail: trace, debug, info, warn, error or off")
      ->capture_default_str()
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "off"}));
}

void add_log_format(CLI::App& app, std::string& format) {
  app.add_option("--log-format", format,
                 "Log lines as text, or as json: one object per line with time, level, "
                 "component, pid and message (for log shippers)")
      ->capture_default_str()
      ->check(CLI::IsMember({"text", "json"}));
}

void add_metrics_port(CLI::App& app, int& port, std::string& address) {
  app.add_option("--metrics-port", port,
                 "Serve /metrics in the Prometheus text format on this TCP port (0: off)")
      ->capture_default_str()
      ->check(CLI::Range(0, 65535));
  app.add_option("--metrics-address", address,
                 "Address the /metrics port listens on (it shows counts, not task data)")
      ->capture_default_str()
      ->check(non_empty());
}

CLI::Validator number(double min, double max) {
  char desc[64];
  std::snprintf(desc, sizeof desc, "NUMBER in [%g, %g]", min, max);
  return CLI::Validator(
      [min, max](std::string& v) -> std::string {
        char* end = nullptr;
        const double d = std::strtod(v.c_str(), &end);
        if (v.empty() || end != v.c_str() + v.size()) return "'" + v + "' is not a number";
        if (!std::isfinite(d)) return "'" + v + "' is not a finite number";
        if (d < min || d > max) {
          char buf[128];
          std::snprintf(buf, sizeof buf, "%s is outside the allowed range %g to %g", v.c_str(), min,
                        max);
          return buf;
        }
        return {};
      },
      desc);
}

CLI::Validator non_empty() {
  return CLI::Validator(
      [](std::string& v) -> std::string { return v.empty() ? "must not be empty" : ""; }, "TEXT");
}

bool parse_duration(const std::string& text, double* seconds_out) {
  if (text.empty()) return false;
  double unit = 1;
  std::string number = text;
  switch (text.back()) {
    case 's':
      unit = 1;
      number.pop_back();
      break;
    case 'm':
      unit = 60;
      number.pop_back();
      break;
    case 'h':
      unit = 3600;
      number.pop_back();
      break;
    case 'd':
      unit = 86400;
      number.pop_back();
      break;
    default:
      break;
  }
  char* end = nullptr;
  const double v = std::strtod(number.c_str(), &end);
  if (number.empty() || end != number.c_str() + number.size() || !std::isfinite(v) || v < 0) {
    return false;
  }
  *seconds_out = v * unit;
  return true;
}

CLI::Validator duration(double min_s, double max_s) {
  return CLI::Validator(
      [min_s, max_s](std::string& v) -> std::string {
        double s = 0;
        if (!parse_duration(v, &s)) {
          return "'" + v + "' is not a length of time (seconds, or a number with s, m, h or d)";
        }
        if (s < min_s || s > max_s) {
          char buf[128];
          std::snprintf(buf, sizeof buf, "%s is outside the allowed range %g s to %g s", v.c_str(),
                        min_s, max_s);
          return buf;
        }
        return {};
      },
      "DURATION");
}

Duration seconds(double s) {
  return std::chrono::duration_cast<Duration>(std::chrono::duration<double>(s));
}

}  // namespace lrts::flags
