#include "autoscale/slurm.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <sstream>

#include "common/clock.hpp"
#include "common/process.hpp"
#include "common/unique_fd.hpp"

namespace lrts::autoscale {

namespace {

// argv[0] as posix_spawn needs it: a path.
std::string find_program(const std::string& name) {
  if (name.find('/') != std::string::npos) return name;
  const char* path = std::getenv("PATH");
  std::stringstream dirs(path ? path : "/usr/local/bin:/usr/bin:/bin");
  std::string dir;
  while (std::getline(dirs, dir, ':')) {
    if (dir.empty()) continue;
    std::string candidate = dir + "/" + name;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return name;
}

Result<std::pair<UniqueFd, UniqueFd>> make_pipe() {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return make_error(std::string("pipe: ") + ::strerror(errno));
  return std::pair{UniqueFd(fds[0]), UniqueFd(fds[1])};
}

std::string first_line(const std::string& text) {
  std::stringstream lines(text);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.find_first_not_of(" \t\r") != std::string::npos) return line;
  }
  return {};
}

}  // namespace

std::string CommandOutput::error_line() const {
  std::string line = first_line(err);
  if (line.empty()) line = first_line(out);
  if (line.empty()) line = exit_code < 0 ? "no output; it was killed" : "no output";
  return line;
}

Result<CommandOutput> run_command(const std::vector<std::string>& argv,
                                  std::chrono::milliseconds timeout, int interrupt_fd) {
  if (argv.empty()) return make_error("no command");
  auto out = make_pipe();
  if (!out) return make_error(out.error());
  auto err = make_pipe();
  if (!err) return make_error(err.error());
  UniqueFd null(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  SpawnOptions so;
  so.argv = argv;
  so.argv[0] = find_program(argv[0]);
  so.fds = {{null.get(), 0}, {out->second.get(), 1}, {err->second.get(), 2}};
  so.close_other_fds = true;
  auto child = ChildProcess::spawn(so);
  if (!child) return make_error(child.error());
  out->second.reset();
  err->second.reset();

  CommandOutput result;
  const TimePoint deadline = Clock::now() + timeout;
  bool out_open = true, err_open = true, killed = false, interrupted = false;
  while (out_open || err_open) {
    pollfd fds[3] = {{out_open ? out->first.get() : -1, POLLIN, 0},
                     {err_open ? err->first.get() : -1, POLLIN, 0},
                     {interrupt_fd, POLLIN, 0}};
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) {
      child->signal(SIGKILL);
      killed = true;
      break;
    }
    if (::poll(fds, 3, static_cast<int>(left.count())) < 0 && errno != EINTR) break;
    if (fds[2].revents & POLLIN) {
      child->signal(SIGKILL);
      killed = interrupted = true;
      break;
    }
    char buf[4096];
    for (int i = 0; i < 2; ++i) {
      if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      const ssize_t n = ::read(fds[i].fd, buf, sizeof buf);
      if (n > 0) {
        std::string& to = i == 0 ? result.out : result.err;
        if (to.size() < (1u << 20)) to.append(buf, static_cast<size_t>(n));
      } else if (n == 0 || errno != EINTR) {
        (i == 0 ? out_open : err_open) = false;
      }
    }
  }
  const int status = child->wait();
  if (!killed && WIFEXITED(status)) result.exit_code = WEXITSTATUS(status);
  if (killed) {
    result.err = interrupted ? "interrupted by a signal"
                             : "timed out after " + std::to_string(timeout.count() / 1000) + " s";
  }
  return result;
}

std::string shell_quote(const std::string& word) {
  if (!word.empty() && word.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                              "0123456789_-./:=,@%+") == std::string::npos) {
    return word;
  }
  std::string quoted = "'";
  for (char c : word) {
    if (c == '\'') {
      quoted += "'\\''";
    } else {
      quoted += c;
    }
  }
  return quoted + "'";
}

Result<std::string> Slurm::submit(const std::vector<std::string>& args) const {
  std::vector<std::string> argv = {options_.sbatch, "--parsable"};
  argv.insert(argv.end(), args.begin(), args.end());
  auto r = run_command(argv, options_.timeout, options_.interrupt_fd);
  if (!r) return make_error(r.error());
  if (r->exit_code != 0) return make_error("sbatch failed: " + r->error_line());
  // --parsable prints "JOBID" or "JOBID;CLUSTER".
  std::string id = first_line(r->out);
  id = id.substr(0, id.find(';'));
  while (!id.empty() && (id.back() == '\r' || id.back() == ' ')) id.pop_back();
  if (id.empty() || id.find_first_not_of("0123456789_") != std::string::npos) {
    return make_error("sbatch printed no job id: " + r->error_line());
  }
  return id;
}

Result<std::vector<SlurmJob>> Slurm::jobs(const std::string& name) const {
  // The name is printed too: only exact matches are ours.
  auto r =
      run_command({options_.squeue, "--noheader", "--me", "--name=" + name, "--format=%i %T %j"},
                  options_.timeout, options_.interrupt_fd);
  if (!r) return make_error(r.error());
  if (r->exit_code != 0) return make_error("squeue failed: " + r->error_line());
  std::vector<SlurmJob> jobs;
  std::stringstream lines(r->out);
  std::string line;
  while (std::getline(lines, line)) {
    std::stringstream words(line);
    SlurmJob j;
    if (!(words >> j.id >> j.state)) continue;
    std::string job_name;
    std::getline(words >> std::ws, job_name);
    if (job_name == name) jobs.push_back(std::move(j));
  }
  return jobs;
}

Result<void> Slurm::cancel(const std::string& id) const {
  auto r = run_command({options_.scancel, id}, options_.timeout, options_.interrupt_fd);
  if (!r) return make_error(r.error());
  if (r->exit_code != 0) return make_error("scancel " + id + " failed: " + r->error_line());
  return {};
}

}  // namespace lrts::autoscale
