// Text of the progress view: bar lines, the status line, durations and rates. Pure functions,
// tested on fixed inputs. Every line fits the width it is given: at narrow widths the least
// useful parts go first (rate, then times, then the bar itself), never cut mid-way until
// nothing else is left to drop.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "lrts/progress.hpp"
#include "protocol/progress_messages.hpp"

namespace lrts::tui {

// A bar as the progress server reports it, as applications see it (text made printable).
ProgressSnapshot to_snapshot(const protocol::BarState& b);
BarStatus status_of(protocol::BarPhase phase);

// `text` with control characters (C0, DEL, C1) and malformed UTF-8 removed: what a bar may
// show on a terminal without driving it (no escape sequences, no OSC 52 clipboard writes).
std::string printable(std::string_view text);

// "00:00:33"; "1d 02:03:04" past a day; "?" when negative (unknown).
std::string format_hms(double seconds);
// "0.61 iterations/s", "12.3k it/s"; "? it/s" when unknown.
std::string format_rate(double rate, std::string_view unit);
// Display width of UTF-8 text (one column per code point).
size_t display_width(std::string_view utf8);
// UTF-8 text cut to at most `width` columns.
std::string fit(std::string_view s, size_t width);
// One bar, fitted to `width` columns. `label_width` pads the label so bars line up.
std::string format_bar_line(const ProgressSnapshot& bar, size_t width, size_t label_width);
// The label of a bar: "#<task seq> <description>[ (attempt k)]".
std::string bar_label(const ProgressSnapshot& bar);

// A part of the status line, with a shorter form for narrow terminals.
struct StatusField {
  std::string text;
  std::string short_text;  // empty: the same as text
};
// "lrts | Stage: <stage> | <elapsed> | <field> | <field> ...", fields most important first.
// Too wide: the last fields go first, then the "lrts | Stage:" prefix, then the short forms.
std::string format_status_line(std::string_view stage, double elapsed_seconds,
                               const std::vector<StatusField>& fields, size_t width);

// Where an application's tasks stand, for the status line.
struct TaskCounts {
  uint64_t ok = 0, failed = 0, running = 0, queued = 0;
  double rate = 0;          // tasks finished per second
  double eta_seconds = -1;  // until every task is done; -1: unknown
};
// "12 ok · 1 failed · 4 running · 83 queued", then ETA and rate.
std::vector<StatusField> task_fields(const TaskCounts& counts);

// Rows a frame of these lines takes on a terminal `width` columns wide (a line wider than the
// terminal wraps onto more rows, as after the terminal was made narrower).
size_t rows_used(const std::vector<std::string>& lines, size_t width);

}  // namespace lrts::tui
