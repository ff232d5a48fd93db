#include "worker/command_task.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <map>
#include <optional>
#include <stdexcept>
#include <string_view>
#include <utility>

#include "common/process.hpp"
#include "common/unique_fd.hpp"

extern char** environ;

namespace lrts::worker {

LRTS_REGISTER_SERVICE(CommandTask);

namespace {

constexpr size_t kTailBytes = 4096;
constexpr size_t kMaxLineBytes = 1024;
constexpr size_t kMaxIdBytes = 32;
constexpr size_t kMaxBars = 256;
constexpr uint64_t kDefaultOutputMb = 64;
constexpr size_t kReadBytes = 64 << 10;
constexpr int kProgressFd = 3;
// The descriptors handed to the child are kept above its targets (0..kProgressFd), so that no
// dup2 of the spawn overwrites a descriptor a later one still reads from.
constexpr int kFirstFreeFd = kProgressFd + 1;
// How often the child is checked for its end once stdout and stderr are closed but the progress
// pipe is not (a program that closed its output and goes on reporting progress).
constexpr int kReapPollMs = 10;
// A program's count stops at the largest value rather than wrapping around to a small one.
void saturating_advance(ProgressBar& bar, uint64_t n) {
  const uint64_t c = bar.count();
  bar.set_count(c > UINT64_MAX - n ? UINT64_MAX : c + n);
}

// After the program ends, how long what it started may still write to its stdout and stderr.
constexpr std::chrono::milliseconds kOutputGrace{1000};

[[noreturn]] void fail(const std::string& message) { throw std::runtime_error(message); }

std::string errno_text() { return std::strerror(errno); }

// The variable's value, or `fallback` if it is unset or empty.
std::string env_or(const char* name, std::string fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::string(v) : fallback;
}

std::optional<uint64_t> parse_uint(std::string_view s) {
  uint64_t v = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
  return v;
}

std::string current_dir() {
  char buf[PATH_MAX];
  return ::getcwd(buf, sizeof buf) ? std::string(buf) : std::string(".");
}

std::string absolute(const std::string& path, const std::string& base) {
  return !path.empty() && path[0] == '/' ? path : base + "/" + path;
}

std::optional<std::string> real_path(const std::string& path) {
  char* p = ::realpath(path.c_str(), nullptr);
  if (!p) return std::nullopt;
  std::string out(p);
  std::free(p);
  return out;
}

bool is_executable_file(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::access(path.c_str(), X_OK) == 0;
}

// The absolute path the program is started from. Symbolic links are left alone, so that a
// multi-call program (busybox) still sees the name it was called by. A name with a '/' counts
// from `dir`; one without is looked up in PATH (relative PATH entries count from `dir` too, as
// they would for the program's own exec after its chdir).
std::string find_program(const std::string& name, const std::string& dir) {
  if (name.empty()) fail("lrts.command: the program name (argv[0]) is empty");
  if (name.find('/') != std::string::npos) {
    const std::string path = absolute(name, dir);
    if (::access(path.c_str(), F_OK) != 0) fail("cannot run " + name + ": " + errno_text());
    if (!is_executable_file(path)) fail("cannot run " + name + ": not an executable file");
    return path;
  }
  const std::string search = env_or("PATH", "/usr/local/bin:/usr/bin:/bin");
  std::string_view rest = search;
  for (;;) {
    const size_t colon = rest.find(':');
    const std::string entry(rest.substr(0, colon));
    const std::string candidate = absolute((entry.empty() ? "." : entry) + "/" + name, dir);
    if (is_executable_file(candidate)) return candidate;
    if (colon == std::string_view::npos) break;
    rest.remove_prefix(colon + 1);
  }
  fail("cannot run " + name + ": not found in PATH (" + search + ")");
}

// Throws unless `path` (how `name` was found) is one of the ':'-separated absolute paths of
// `allowed`, both compared after realpath. Returns the resolved path: that is what runs, so a
// symlink switched between the check and the start cannot run another program.
std::string check_allowed(const std::string& name, const std::string& path,
                          std::string_view allowed) {
  const auto real = real_path(path);
  if (!real) fail("cannot run " + name + ": " + errno_text());
  for (;;) {
    const size_t colon = allowed.find(':');
    const std::string entry(allowed.substr(0, colon));
    if (!entry.empty() && entry[0] == '/' && real_path(entry) == real) return *real;
    if (colon == std::string_view::npos) break;
    allowed.remove_prefix(colon + 1);
  }
  fail("cannot run " + name + " (" + *real + "): it is not in this worker's --allow-commands");
}

// mkdir -p; what it creates gets mode 0700.
void make_dirs(const std::string& dir) {
  for (size_t i = 1; i <= dir.size(); ++i) {
    if (i < dir.size() && dir[i] != '/') continue;
    const std::string part = dir.substr(0, i);
    if (::mkdir(part.c_str(), 0700) == 0 || errno == EEXIST) continue;
    const int err = errno;
    struct stat st;
    if (::stat(part.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) continue;
    fail("cannot create the output directory " + part + ": " + std::strerror(err));
  }
  struct stat st;
  if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    fail("the output directory " + dir + " is not a directory");
  }
}

// The service id as a file name: anything but [A-Za-z0-9_.-] becomes '_'.
std::string file_name_of(std::string_view id) {
  std::string out(id.empty() ? std::string_view("task") : id);
  for (char& c : out) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '.' && c != '-') c = '_';
  }
  return out;
}

UniqueFd open_output(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!fd.valid()) fail("cannot write " + path + ": " + errno_text());
  ::fchmod(fd.get(), 0600);  // whatever the umask, and for a file an earlier run left
  return fd;
}

// `fd` moved above the descriptors the child receives (-1 stays -1).
UniqueFd lifted(int fd) {
  UniqueFd owned(fd);
  if (fd < 0 || fd >= kFirstFreeFd) return owned;
  UniqueFd high(::fcntl(fd, F_DUPFD_CLOEXEC, kFirstFreeFd));
  if (!high.valid()) fail("fcntl(F_DUPFD_CLOEXEC): " + errno_text());
  return high;
}

struct Pipe {
  UniqueFd read;  // non-blocking
  UniqueFd write;
};

Pipe make_pipe() {
  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0) fail("pipe: " + errno_text());
  Pipe out{lifted(p[0]), lifted(p[1])};
  if (::fcntl(out.read.get(), F_SETFL, O_NONBLOCK) != 0) fail("fcntl(O_NONBLOCK): " + errno_text());
  return out;
}

// The slot's environment for the program: without the worker's policy variables, with the
// task's.
std::vector<std::string> child_environment(const TaskContext& ctx, uint64_t index) {
  static constexpr std::string_view kDropped[] = {"LRTS_ALLOW_COMMANDS=", "LRTS_COMMAND_OUTPUT",
                                                  "LRTS_SERVICE_ID=",     "LRTS_TASK_INDEX=",
                                                  "LRTS_ATTEMPT=",        "LRTS_PROGRESS_FD="};
  std::vector<std::string> env;
  for (char** e = environ; e && *e; ++e) {
    const std::string_view entry(*e);
    if (std::none_of(std::begin(kDropped), std::end(kDropped),
                     [&](std::string_view d) { return entry.starts_with(d); })) {
      env.emplace_back(entry);
    }
  }
  env.push_back("LRTS_SERVICE_ID=" + ctx.service_id());
  env.push_back("LRTS_TASK_INDEX=" + std::to_string(index));
  env.push_back("LRTS_ATTEMPT=" + std::to_string(ctx.attempt()));
  env.push_back("LRTS_PROGRESS_FD=" + std::to_string(kProgressFd));
  return env;
}

// One of the program's output streams: its file (the full text, up to the cap) and its last
// kTailBytes in memory. A file that cannot be written to any more (disk full) is given up on
// quietly: the task does not fail for its log.
class OutputSink {
 public:
  OutputSink(UniqueFd file, uint64_t cap_mb)
      : file_(std::move(file)),
        cap_mb_(cap_mb),
        cap_bytes_(cap_mb > (UINT64_MAX >> 20) ? UINT64_MAX : cap_mb << 20) {}

  void write(std::string_view data) {
    total_ += data.size();
    keep_tail(data);
    if (truncated_) return;
    const size_t room = static_cast<size_t>(std::min<uint64_t>(cap_bytes_ - written_, data.size()));
    write_file(data.substr(0, room));
    written_ += room;
    if (room < data.size()) {
      truncated_ = true;
      note("[lrts: output truncated at " + std::to_string(cap_mb_) + " MB]");
    }
  }

  // A line of lrts's own in the file, outside the cap; not part of the tail.
  void note(const std::string& line) { write_file(ends_line_ ? line + "\n" : "\n" + line + "\n"); }

  uint64_t total() const { return total_; }
  // The last kTailBytes, starting on a UTF-8 character boundary when the stream was cut.
  std::string tail() const {
    std::string_view t = tail_;
    if (t.size() > kTailBytes) t.remove_prefix(t.size() - kTailBytes);
    if (total_ > t.size()) {
      for (int i = 0; i < 3 && !t.empty() && (static_cast<unsigned char>(t[0]) & 0xC0) == 0x80;
           ++i) {
        t.remove_prefix(1);
      }
    }
    return std::string(t);
  }

 private:
  // Holds at most 2 * kTailBytes: trimmed back to kTailBytes when it grows past that.
  void keep_tail(std::string_view data) {
    if (data.size() >= kTailBytes) {
      tail_.assign(data.substr(data.size() - kTailBytes));
      return;
    }
    tail_.append(data);
    if (tail_.size() > 2 * kTailBytes) tail_.erase(0, tail_.size() - kTailBytes);
  }

  void write_file(std::string_view data) {
    while (!data.empty() && file_.valid()) {
      const ssize_t n = ::write(file_.get(), data.data(), data.size());
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        file_.reset();
        return;
      }
      ends_line_ = data[static_cast<size_t>(n) - 1] == '\n';
      data.remove_prefix(static_cast<size_t>(n));
    }
  }

  UniqueFd file_;
  uint64_t cap_mb_;
  uint64_t cap_bytes_;
  uint64_t written_ = 0;
  uint64_t total_ = 0;
  bool truncated_ = false;
  bool ends_line_ = true;
  std::string tail_;
};

bool is_bar_id(std::string_view id) {
  return !id.empty() && id.size() <= kMaxIdBytes && std::all_of(id.begin(), id.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '-';
  });
}

// Cuts the next field (up to the next space, or the end) off `rest`; false if it is empty.
bool next_field(std::string_view& rest, std::string_view* field) {
  const size_t sp = rest.find(' ');
  *field = rest.substr(0, sp);
  rest = sp == std::string_view::npos ? std::string_view() : rest.substr(sp + 1);
  return !field->empty();
}

// The progress pipe's lines (the protocol in command_task.hpp), applied to the task's bars.
class ProgressLines {
 public:
  ProgressLines(TaskContext& ctx, OutputSink& err) : ctx_(ctx), err_(err) {}

  void feed(std::string_view data) {
    while (!data.empty()) {
      const size_t nl = data.find('\n');
      const std::string_view part = data.substr(0, nl);
      if (!overlong_) {
        if (line_.size() + part.size() <= kMaxLineBytes) {
          line_.append(part);
        } else {
          overlong_ = true;
          line_.clear();
        }
      }
      if (nl == std::string_view::npos) return;
      end_line();
      data.remove_prefix(nl + 1);
    }
  }

  // The program has ended: a last line without its newline counts too.
  void finish() {
    if (!line_.empty() || overlong_) end_line();
  }

 private:
  void end_line() {
    std::string_view line = line_;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (overlong_) {
      ignored("(a line longer than " + std::to_string(kMaxLineBytes) + " bytes)");
    } else if (!apply(line)) {
      ignored(std::string(line));
    }
    line_.clear();
    overlong_ = false;
  }

  void ignored(const std::string& what) {
    if (noted_malformed_) return;
    noted_malformed_ = true;
    err_.note("[lrts: ignored progress line: " + what + "]");
  }

  // False if the line is malformed.
  bool apply(std::string_view line) {
    if (line.empty()) return true;
    if (auto n = parse_uint(line)) {
      saturating_advance(ctx_.progress(), *n);
      return true;
    }
    std::string_view rest = line, command, id;
    if (!next_field(rest, &command) || !next_field(rest, &id) || !is_bar_id(id)) return false;
    if (command == "bar") {
      std::string_view total, unit;
      if (!next_field(rest, &total) || !next_field(rest, &unit)) return false;
      const auto t = parse_uint(total);
      if (!t) return false;
      close(id);
      start(id, rest.empty() ? id : rest, *t, unit);
      return true;
    }
    if (command == "done") {
      if (!rest.empty()) return false;
      close(id);
      return true;
    }
    std::string_view number;
    if (!next_field(rest, &number) || !rest.empty()) return false;
    const auto n = parse_uint(number);
    if (!n) return false;
    if (command != "add" && command != "set" && command != "total") return false;
    ProgressBar* bar = find_or_start(id);
    if (!bar) return true;  // past the bar limit
    if (command == "add") {
      saturating_advance(*bar, *n);
    } else if (command == "set") {
      bar->set_count(*n);
    } else {
      bar->set_total(*n);
    }
    return true;
  }

  ProgressBar* find_or_start(std::string_view id) {
    auto it = bars_.find(id);
    if (it != bars_.end()) return &it->second;
    return start(id, id, 0, "it");
  }

  // Null once the task has started kMaxBars bars.
  ProgressBar* start(std::string_view id, std::string_view description, uint64_t total,
                     std::string_view unit) {
    if (started_ >= kMaxBars) {
      if (!noted_limit_) {
        noted_limit_ = true;
        err_.note("[lrts: more than " + std::to_string(kMaxBars) +
                  " progress bars; lines that start more are ignored]");
      }
      return nullptr;
    }
    ++started_;
    auto it = bars_.emplace(std::string(id), ctx_.create_progress(description, total, unit)).first;
    return &it->second;
  }

  void close(std::string_view id) {
    auto it = bars_.find(id);
    if (it == bars_.end()) return;
    it->second.close();
    bars_.erase(it);
  }

  TaskContext& ctx_;
  OutputSink& err_;
  std::string line_;  // at most kMaxLineBytes
  bool overlong_ = false;
  bool noted_malformed_ = false;
  bool noted_limit_ = false;
  size_t started_ = 0;
  std::map<std::string, ProgressBar, std::less<>> bars_;  // the open ones, by ID
};

// Reads the program's stdout, stderr and progress pipes until stdout and stderr are closed and
// the program has ended; returns its wait status.
int pump(ChildProcess& child, int out_fd, int err_fd, int progress_fd, OutputSink& out,
         OutputSink& err, ProgressLines& progress) {
  std::string buf(kReadBytes, '\0');
  // The child's exit wakes the poll (a pidfd): a process it left behind holding stdout or
  // stderr (a daemon it started) cannot keep the task running after the program has ended.
  UniqueFd exit_fd(static_cast<int>(::syscall(SYS_pidfd_open, child.pid(), 0)));
  pollfd p[4] = {{out_fd, POLLIN, 0},
                 {err_fd, POLLIN, 0},
                 {progress_fd, POLLIN, 0},
                 {exit_fd.valid() ? exit_fd.get() : -1, POLLIN, 0}};
  int status = 0;
  bool exited = false;
  std::chrono::steady_clock::time_point grace_until{};
  for (;;) {
    const bool outputs_open = p[0].fd >= 0 || p[1].fd >= 0;
    if (!exited && child.try_wait(&status)) {
      exited = true;
      grace_until = std::chrono::steady_clock::now() + kOutputGrace;
      p[3].fd = -1;
    }
    const auto now = std::chrono::steady_clock::now();
    if (exited && (!outputs_open || now >= grace_until)) {
      if (outputs_open) {
        err.note(
            "[lrts: the program ended; a process it started still holds its output, "
            "which is not read further]");
      }
      break;
    }
    int timeout = -1;
    if (exited) {
      timeout = static_cast<int>(
          std::chrono::duration_cast<std::chrono::milliseconds>(grace_until - now).count() + 1);
    } else if (!exit_fd.valid()) {
      timeout = kReapPollMs;  // no pidfd (an old kernel): look for the exit now and then
    }
    const int r = ::poll(p, 4, timeout);
    if (r < 0) {
      if (errno == EINTR) continue;
      fail("poll: " + errno_text());
    }
    for (int i = 0; i < 3; ++i) {
      if (p[i].fd < 0 || p[i].revents == 0) continue;
      const ssize_t n = ::read(p[i].fd, buf.data(), buf.size());
      if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
      if (n <= 0) {
        p[i].fd = -1;  // end of file (or an error, which ends it too)
        continue;
      }
      const std::string_view data(buf.data(), static_cast<size_t>(n));
      if (i == 0) {
        out.write(data);
      } else if (i == 1) {
        err.write(data);
      } else {
        progress.feed(data);
      }
    }
  }
  // A process the program left behind may still hold the progress pipe: take what is there.
  for (int round = 0; p[2].fd >= 0 && round < 16; ++round) {
    const ssize_t n = ::read(p[2].fd, buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    progress.feed(std::string_view(buf.data(), static_cast<size_t>(n)));
  }
  progress.finish();
  return status;
}

std::string failure_message(const std::string& program, int status, const OutputSink& out,
                            const OutputSink& err, const std::string& output) {
  std::string msg = program + " " + describe_wait_status(status);
  const bool use_err = err.total() > 0 || out.total() == 0;
  const OutputSink& shown = use_err ? err : out;
  if (shown.total() == 0) {
    msg += " (no output)";
  } else {
    msg += use_err ? "; stderr" : "; stdout";
    if (shown.total() > kTailBytes) msg += " (last " + std::to_string(kTailBytes) + " bytes)";
    msg += ":\n";
    msg += shown.tail();
  }
  if (msg.back() != '\n') msg += '\n';
  msg += "[full output: " + output + ".out, " + output + ".err]";
  return msg;
}

}  // namespace

CommandResult CommandTask::run(TaskContext& ctx) {
  if (argv.empty()) fail("lrts.command: no program to run (argv is empty)");
  const char* allowed = std::getenv("LRTS_ALLOW_COMMANDS");
  if (!allowed || !*allowed) {
    fail("this worker does not run programs (start it with --allow-commands)");
  }
  const std::string dir = cwd.empty() ? current_dir() : absolute(cwd, current_dir());
  if (!cwd.empty()) {
    struct stat st;
    if (::stat(dir.c_str(), &st) != 0) fail("cannot run in " + cwd + ": " + errno_text());
    if (!S_ISDIR(st.st_mode)) fail("cannot run in " + cwd + ": not a directory");
  }
  std::string program = find_program(argv[0], dir);
  if (std::string_view(allowed) != "*") program = check_allowed(argv[0], program, allowed);

  const std::string output_dir =
      env_or("LRTS_COMMAND_OUTPUT", env_or("TMPDIR", "/tmp") + "/lrts-commands");
  make_dirs(output_dir);
  const std::string output =
      output_dir + "/" + file_name_of(ctx.service_id()) + "." + std::to_string(ctx.attempt());
  const uint64_t cap_mb =
      parse_uint(env_or("LRTS_COMMAND_OUTPUT_MB", "")).value_or(kDefaultOutputMb);
  OutputSink out(open_output(output + ".out"), cap_mb);
  OutputSink err(open_output(output + ".err"), cap_mb);

  Pipe out_pipe = make_pipe();
  Pipe err_pipe = make_pipe();
  Pipe progress_pipe = make_pipe();
  UniqueFd null_fd = lifted(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  if (!null_fd.valid()) fail("cannot open /dev/null: " + errno_text());

  SpawnOptions options;
  options.argv = argv;
  options.argv[0] = program;
  options.fds = {{null_fd.get(), 0},
                 {out_pipe.write.get(), 1},
                 {err_pipe.write.get(), 2},
                 {progress_pipe.write.get(), kProgressFd}};
  options.close_other_fds = true;  // the slot's socket and progress region stay in the slot
  options.env = child_environment(ctx, index);
  options.cwd = cwd;
  // Not a new process group: the worker stops a task by killing its slot's group.
  auto child = ChildProcess::spawn(options);
  if (!child) fail(child.error());
  // Only the child holds the write ends now: its end (and its descendants') is our end of file.
  null_fd.reset();
  out_pipe.write.reset();
  err_pipe.write.reset();
  progress_pipe.write.reset();

  ProgressLines progress(ctx, err);
  const int status = pump(*child, out_pipe.read.get(), err_pipe.read.get(),
                          progress_pipe.read.get(), out, err, progress);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    fail(failure_message(argv[0], status, out, err, output));
  }
  CommandResult result;
  result.exit_code = 0;
  result.stdout_tail = out.tail();
  result.stderr_tail = err.tail();
  result.output = output;
  return result;
}

}  // namespace lrts::worker
