// Command-line helpers shared by every lrts command (and by lrts::worker_main): the original
// lrts's single-dash flags, one-line parse errors, and validators that refuse what cannot
// work — non-finite or out-of-range numbers, empty paths — with the flag's name and the reason.
#pragma once

#include <CLI/CLI.hpp>
#include <string>
#include <vector>

#include "common/clock.hpp"

namespace lrts::flags {

extern const char* const kTimeoutHelp;

// The original lrts used single-dash long flags (-scheduler-port 5555). Rewrites them to the GNU
// form (--scheduler-port 5555) so both spellings work; negative numbers and short flags are left
// alone.
std::vector<std::string> normalize(int argc, char** argv);

// Parses; on error prints one line ("<prog> <command>: <reason> (see --help)") and sets *code.
bool parse(CLI::App& app, std::vector<std::string> args, const std::string& prog, int* code);

void add_log_level(CLI::App& app, std::string& level);
// --log-format text|json (daemons).
void add_log_format(CLI::App& app, std::string& format);
// --metrics-port PORT (daemons): /metrics in the Prometheus text format, off (0) by default.
void add_metrics_port(CLI::App& app, int& port, std::string& address);

// A finite number within [min, max] ("nan", "inf" and 1e300 are refused with the range).
CLI::Validator number(double min, double max);
// A non-empty text (paths, addresses).
CLI::Validator non_empty();

// Seconds given on the command line, as a Duration.
Duration seconds(double s);

// A length of time: a number of seconds, or a number with a unit (90s, 30m, 12h, 7d), within
// [min_s, max_s] seconds. parse_duration gives the seconds; false if it is not one.
bool parse_duration(const std::string& text, double* seconds_out);
CLI::Validator duration(double min_s, double max_s);

}  // namespace lrts::flags
