// The built-in "lrts.command" service: real programs (/bin/sh scripts) run through run() with a
// fake TaskContext whose bars are plain heap cells the test reads.
#include "worker/command_task.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <sstream>

#include "services/registry.hpp"

namespace lrts::worker {
namespace {

class FakeContext final : public TaskContext {
 public:
  const std::string& service_id() const override { return id_; }
  uint32_t attempt() const override { return 2; }
  ProgressBar create_progress(std::string_view description, uint64_t total,
                              std::string_view unit) override {
    auto cell = std::make_unique<detail::BarCell>();
    cell->total = total;
    cell->state = detail::BarCell::kOpen;
    cell->bar_no = static_cast<uint32_t>(cells_.size());
    description.copy(cell->description, std::min(description.size(), sizeof cell->description - 1));
    unit.copy(cell->unit, std::min(unit.size(), sizeof cell->unit - 1));
    cells_.push_back(std::move(cell));
    return ProgressBar(cells_.back().get());
  }
  ProgressBar& progress() override {
    if (!default_bar_) default_bar_ = create_progress("default", 0, "it");
    return *default_bar_;
  }

  const std::vector<std::unique_ptr<detail::BarCell>>& cells() const { return cells_; }
  // The bars with that description, in the order they were created.
  std::vector<const detail::BarCell*> bars(std::string_view description) const {
    std::vector<const detail::BarCell*> out;
    for (const auto& c : cells_) {
      if (description == c->description) out.push_back(c.get());
    }
    return out;
  }

 private:
  std::string id_ = "00000000000000ab-7";
  std::vector<std::unique_ptr<detail::BarCell>> cells_;
  std::optional<ProgressBar> default_bar_;
};

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

mode_t mode_of(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return 0;
  return st.st_mode & 07777;
}

// 1\n2\n...n\n, what the scripts below print with a loop.
std::string numbers(int n) {
  std::string out;
  for (int i = 1; i <= n; ++i) out += std::to_string(i) + "\n";
  return out;
}

class CommandTaskTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const char* name : kVariables) {
      const char* v = std::getenv(name);
      saved_.emplace_back(name, v ? std::optional<std::string>(v) : std::nullopt);
    }
    char tmpl[] = "/tmp/lrts-command-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    out_dir_ = dir_ + "/out/nested";
    ::setenv("LRTS_ALLOW_COMMANDS", "*", 1);
    ::setenv("LRTS_COMMAND_OUTPUT", out_dir_.c_str(), 1);
    ::unsetenv("LRTS_COMMAND_OUTPUT_MB");
  }
  void TearDown() override {
    for (const auto& [name, value] : saved_) {
      if (value) {
        ::setenv(name.c_str(), value->c_str(), 1);
      } else {
        ::unsetenv(name.c_str());
      }
    }
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  static CommandTask shell(const std::string& script) {
    CommandTask task;
    task.argv = {"/bin/sh", "-c", script};
    return task;
  }
  CommandResult run(CommandTask task) { return task.run(ctx_); }
  // The message the task fails with.
  std::string error_of(CommandTask task) {
    try {
      task.run(ctx_);
    } catch (const std::runtime_error& e) {
      return e.what();
    }
    ADD_FAILURE() << "the task did not fail";
    return {};
  }
  std::string prefix() const { return out_dir_ + "/00000000000000ab-7.2"; }

  static constexpr const char* kVariables[] = {"LRTS_ALLOW_COMMANDS", "LRTS_COMMAND_OUTPUT",
                                               "LRTS_COMMAND_OUTPUT_MB"};
  std::vector<std::pair<std::string, std::optional<std::string>>> saved_;
  std::string dir_;
  std::string out_dir_;
  FakeContext ctx_;
};

TEST_F(CommandTaskTest, IsRegisteredAndTakesItsFieldsByName) {
  const auto* type = services::find_service(kCommandServiceName);
  ASSERT_NE(type, nullptr);
  CommandTask task = shell("echo \"$LRTS_TASK_INDEX\" \"$0\"");
  task.index = 9;
  task.cwd = dir_;
  msgpack::sbuffer fields;
  task.lrts_pack_fields(fields);
  const std::string packed = type->invoke(ctx_, {fields.data(), fields.size()});
  auto oh = msgpack::unpack(packed.data(), packed.size());
  const auto result = oh.get().as<CommandResult>();
  EXPECT_EQ(result.exit_code, 0);
  EXPECT_EQ(result.stdout_tail, "9 /bin/sh\n");
}

TEST_F(CommandTaskTest, ExitZeroReturnsTheTailsAndTheProgramSeesItsTask) {
  CommandTask task = shell(
      "echo \"$LRTS_SERVICE_ID $LRTS_TASK_INDEX $LRTS_ATTEMPT $LRTS_PROGRESS_FD\";"
      "echo \"${LRTS_ALLOW_COMMANDS-unset} ${LRTS_COMMAND_OUTPUT-unset}"
      " ${LRTS_COMMAND_OUTPUT_MB-unset}\";"
      "read line; echo \"stdin:$line.\";"
      "echo oops >&2");
  task.index = 5;
  ::setenv("LRTS_COMMAND_OUTPUT_MB", "8", 1);
  const CommandResult r = run(task);
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.stdout_tail, "00000000000000ab-7 5 2 3\nunset unset unset\nstdin:.\n");
  EXPECT_EQ(r.stderr_tail, "oops\n");
  EXPECT_EQ(r.output, prefix());
  EXPECT_EQ(read_file(prefix() + ".out"), r.stdout_tail);
  EXPECT_EQ(read_file(prefix() + ".err"), "oops\n");
  EXPECT_EQ(mode_of(prefix() + ".out"), 0600u);
  EXPECT_EQ(mode_of(prefix() + ".err"), 0600u);
  EXPECT_EQ(mode_of(dir_ + "/out"), 0700u);
  EXPECT_EQ(mode_of(out_dir_), 0700u);
}

TEST_F(CommandTaskTest, ProgramSeesNoDescriptorOfTheSlotButItsOwn) {
  // A descriptor without O_CLOEXEC, as the slot's socket and progress region are.
  const int leaked = ::fcntl(2, F_DUPFD, 50);
  ASSERT_GE(leaked, 50);
  const CommandResult r = run(shell("ls /proc/self/fd | sort -n | tr '\\n' ' '"));
  ::close(leaked);
  // 4 is ls's own, for reading /proc/self/fd.
  EXPECT_EQ(r.stdout_tail, "0 1 2 3 4 ");
}

TEST_F(CommandTaskTest, RunsInItsWorkingDirectoryAndFindsRelativeProgramsThere) {
  {
    std::ofstream script(dir_ + "/hello.sh");
    script << "#!/bin/sh\npwd -P\n";
  }
  ::chmod((dir_ + "/hello.sh").c_str(), 0755);
  CommandTask task;
  task.argv = {"./hello.sh"};
  task.cwd = dir_;
  char* real = ::realpath(dir_.c_str(), nullptr);
  ASSERT_NE(real, nullptr);
  const std::string expected = std::string(real) + "\n";
  std::free(real);
  EXPECT_EQ(run(task).stdout_tail, expected);

  task.cwd = dir_ + "/missing";
  EXPECT_NE(error_of(task).find(dir_ + "/missing"), std::string::npos);
}

TEST_F(CommandTaskTest, NonZeroExitFailsWithTheStatusAndTheEndOfStderr) {
  const std::string e = error_of(shell("echo out; echo bad thing >&2; exit 3"));
  EXPECT_EQ(e.rfind("/bin/sh exited with status 3; stderr:\nbad thing\n", 0), 0u) << e;
  EXPECT_NE(e.find(prefix() + ".err"), std::string::npos) << e;
}

TEST_F(CommandTaskTest, FailureWithoutStderrShowsStdout) {
  const std::string e = error_of(shell("echo only out; exit 1"));
  EXPECT_EQ(e.rfind("/bin/sh exited with status 1; stdout:\nonly out\n", 0), 0u) << e;
  EXPECT_EQ(error_of(shell("exit 4")).rfind("/bin/sh exited with status 4 (no output)", 0), 0u);
}

TEST_F(CommandTaskTest, DeathBySignalFailsTheTask) {
  const std::string e = error_of(shell("echo dying >&2; kill -9 $$"));
  EXPECT_EQ(e.rfind("/bin/sh killed by signal 9 (Killed); stderr:\ndying\n", 0), 0u) << e;
}

TEST_F(CommandTaskTest, TailsKeepTheLast4096BytesAndTheFilesEverything) {
  const std::string script =
      "i=0; while [ $i -lt 3000 ]; do i=$((i+1)); echo $i; echo $i >&2; done";
  const CommandResult r = run(shell(script));
  const std::string all = numbers(3000);
  ASSERT_GT(all.size(), 4096u);
  EXPECT_EQ(r.stdout_tail, all.substr(all.size() - 4096));
  EXPECT_EQ(r.stderr_tail, all.substr(all.size() - 4096));
  EXPECT_EQ(read_file(prefix() + ".out"), all);
  EXPECT_EQ(read_file(prefix() + ".err"), all);

  const std::string e = error_of(shell(script + "; exit 2"));
  EXPECT_EQ(e.rfind("/bin/sh exited with status 2; stderr (last 4096 bytes):\n" +
                        all.substr(all.size() - 4096),
                    0),
            0u);
}

TEST_F(CommandTaskTest, OutputFilesStopAtTheCap) {
  ::setenv("LRTS_COMMAND_OUTPUT_MB", "1", 1);
  const CommandResult r = run(shell("head -c 3000000 /dev/zero | tr '\\0' x; echo short >&2"));
  EXPECT_EQ(r.stdout_tail, std::string(4096, 'x'));
  EXPECT_EQ(read_file(prefix() + ".out"),
            std::string(1 << 20, 'x') + "\n[lrts: output truncated at 1 MB]\n");
  EXPECT_EQ(read_file(prefix() + ".err"), "short\n");
}

TEST_F(CommandTaskTest, ProgressLinesDriveTheBars) {
  const CommandResult r = run(
      shell("p=$LRTS_PROGRESS_FD\n"
            "echo 'bar files 10 files Copying the files' >&$p\n"
            "i=0; while [ $i -lt 4 ]; do echo 'add files 1' >&$p; echo 1 >&$p; i=$((i+1)); done\n"
            "echo 'set files 7' >&$p\n"
            "echo 'total files 20' >&$p\n"
            "echo 'done files' >&$p\n"
            "echo 'add files 3' >&$p\n"     // a new bar: the old one is done
            "echo 'add implicit 5' >&$p\n"  // used before `bar`
            "printf 'bar bytes 0 B\\r\\n' >&$p\n"
            "echo 'total bytes 100' >&$p\n"
            "echo 7 >&$p\n"
            "printf 'set bytes 42' >&$p\n"));  // no newline: counts at the end
  EXPECT_EQ(r.stderr_tail, "");

  const auto copying = ctx_.bars("Copying the files");
  ASSERT_EQ(copying.size(), 1u);
  EXPECT_EQ(copying[0]->count.load(), 7u);
  EXPECT_EQ(copying[0]->total.load(), 20u);
  EXPECT_STREQ(copying[0]->unit, "files");
  EXPECT_EQ(copying[0]->state.load(), detail::BarCell::kClosed);

  const auto again = ctx_.bars("files");
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(again[0]->count.load(), 3u);
  EXPECT_EQ(again[0]->total.load(), 0u);
  EXPECT_STREQ(again[0]->unit, "it");
  EXPECT_EQ(again[0]->state.load(), detail::BarCell::kOpen);

  const auto implicit = ctx_.bars("implicit");
  ASSERT_EQ(implicit.size(), 1u);
  EXPECT_EQ(implicit[0]->count.load(), 5u);

  const auto bytes = ctx_.bars("bytes");
  ASSERT_EQ(bytes.size(), 1u);
  EXPECT_EQ(bytes[0]->count.load(), 42u);
  EXPECT_EQ(bytes[0]->total.load(), 100u);
  EXPECT_STREQ(bytes[0]->unit, "B");
  EXPECT_EQ(bytes[0]->state.load(), detail::BarCell::kOpen);

  const auto fallback = ctx_.bars("default");
  ASSERT_EQ(fallback.size(), 1u);
  EXPECT_EQ(fallback[0]->count.load(), 11u);
  EXPECT_EQ(ctx_.cells().size(), 5u);
}

TEST_F(CommandTaskTest, ProgramThatClosedItsOutputIsStillHeardAndReaped) {
  const CommandResult r = run(shell(
      "exec >&- 2>&-; i=0; while [ $i -lt 50 ]; do i=$((i+1)); echo 'add z 2' >&3; done; exit 0"));
  EXPECT_EQ(r.stdout_tail, "");
  ASSERT_EQ(ctx_.bars("z").size(), 1u);
  EXPECT_EQ(ctx_.bars("z")[0]->count.load(), 100u);
  EXPECT_NE(error_of(shell("exec >&- 2>&- 3>&-; exit 6")).find("exited with status 6"),
            std::string::npos);
}

TEST_F(CommandTaskTest, ADescendantHoldingOnlyTheProgressPipeDoesNotHoldTheTask) {
  // The slot kills what a task leaves behind once run() returns; here the test does.
  const auto start = std::chrono::steady_clock::now();
  const CommandResult r = run(shell("sleep 30 >/dev/null 2>&1 & echo $!; echo 'add w 1' >&3"));
  const pid_t left = static_cast<pid_t>(std::stol(r.stdout_tail));
  ASSERT_GT(left, 0);
  ::kill(left, SIGKILL);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(20));
  ASSERT_EQ(ctx_.bars("w").size(), 1u);
  EXPECT_EQ(ctx_.bars("w")[0]->count.load(), 1u);
}

TEST_F(CommandTaskTest, MalformedProgressLinesAreIgnoredAndTheFirstIsNoted) {
  const CommandResult r =
      run(shell("p=$LRTS_PROGRESS_FD\n"
                "echo 'frobnicate x 1' >&$p\n"
                "echo 'add x' >&$p\n"
                "echo 'add  x 1' >&$p\n"
                "echo 'add x -1' >&$p\n"
                "echo 'add x 1 2' >&$p\n"
                "echo 'add bad/id 1' >&$p\n"
                "echo 'bar y ten it Ten' >&$p\n"
                "echo '' >&$p\n"
                "echo '-3' >&$p\n"
                "echo 'add x 99999999999999999999' >&$p\n"
                "printf '%2000s\\n' '' | tr ' ' 'a' >&$p\n"  // too long, then a good line
                "echo 'add x 2' >&$p\n"
                "echo real stderr >&2\n"));
  ASSERT_EQ(ctx_.cells().size(), 1u);
  EXPECT_STREQ(ctx_.cells()[0]->description, "x");
  EXPECT_EQ(ctx_.cells()[0]->count.load(), 2u);
  EXPECT_EQ(r.stderr_tail, "real stderr\n");  // the note is in the file alone
  // The note and the program's stderr come through different pipes: in either order.
  const std::string err = read_file(prefix() + ".err");
  const std::string note = "[lrts: ignored progress line: frobnicate x 1]\n";
  EXPECT_TRUE(err == note + "real stderr\n" || err == "real stderr\n" + note) << err;
}

TEST_F(CommandTaskTest, ATaskStartsAtMost256Bars) {
  run(shell("i=0; while [ $i -lt 300 ]; do i=$((i+1)); echo \"add b$i 1\"; done >&3"));
  EXPECT_EQ(ctx_.cells().size(), 256u);
  EXPECT_NE(read_file(prefix() + ".err").find("more than 256 progress bars"), std::string::npos);
}

TEST_F(CommandTaskTest, RefusesEveryProgramUnlessAllowed) {
  const std::string refused = "this worker does not run programs (start it with --allow-commands)";
  ::unsetenv("LRTS_ALLOW_COMMANDS");
  EXPECT_EQ(error_of(shell("exit 0")), refused);
  ::setenv("LRTS_ALLOW_COMMANDS", "", 1);
  EXPECT_EQ(error_of(shell("exit 0")), refused);
}

TEST_F(CommandTaskTest, AllowListAdmitsOnlyTheProgramsOnIt) {
  ::setenv("LRTS_ALLOW_COMMANDS", "/nonexistent/tool:/bin/sh", 1);
  CommandTask by_name;
  by_name.argv = {"sh", "-c", "echo ok"};  // found in PATH, same file as /bin/sh
  EXPECT_EQ(run(by_name).stdout_tail, "ok\n");
  EXPECT_EQ(run(shell("echo ok")).stdout_tail, "ok\n");

  CommandTask echo;
  echo.argv = {"/bin/echo", "hi"};
  const std::string e = error_of(echo);
  EXPECT_EQ(e.rfind("cannot run /bin/echo (", 0), 0u) << e;
  EXPECT_NE(e.find("is not in this worker's --allow-commands"), std::string::npos) << e;
}

TEST_F(CommandTaskTest, MissingProgramsAreNamed) {
  CommandTask task;
  EXPECT_NE(error_of(task).find("argv is empty"), std::string::npos);

  task.argv = {"/nonexistent/prog", "x"};
  EXPECT_EQ(error_of(task), "cannot run /nonexistent/prog: No such file or directory");

  task.argv = {"no-such-program-lrts"};
  EXPECT_EQ(error_of(task).rfind("cannot run no-such-program-lrts: not found in PATH", 0), 0u);

  {
    std::ofstream data(dir_ + "/data.txt");
    data << "not a program\n";
  }
  task.argv = {dir_ + "/data.txt"};
  EXPECT_EQ(error_of(task), "cannot run " + dir_ + "/data.txt: not an executable file");
}

}  // namespace
}  // namespace lrts::worker
