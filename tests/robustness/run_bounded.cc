// qlm_run_bounded: runs one command on one malformed (or control) input and
// checks that it fails the way qlm promises: an exit code, one `error: ...`
// line on stderr naming the problem, no signal, no hang, bounded memory.
//
//   qlm_run_bounded [--outcome error|ok] [--expect PHRASE] [--timeout-s N]
//                   [--max-rss-mb N] [--as-limit-mb N] -- COMMAND ARGS...
//
// --outcome error (default): exit code 1 or 2, stdout empty, stderr exactly
//   one line, starting with "error: ", containing PHRASE (if given), and not
//   the text of a C++ library exception (std::bad_alloc, vector::..., ...: those
//   mean an allocation or a container operation failed where validation
//   should have rejected the input first).
// --outcome ok: exit code 0 (the valid controls).
// Always: not killed by a signal; finished within --timeout-s (default 30,
//   else killed: a hang); peak RSS (getrusage of the child) at most
//   --max-rss-mb; and with --as-limit-mb the child's address space is
//   limited (RLIMIT_AS), so that an attempt to allocate more fails instead
//   of swapping (not usable under AddressSanitizer, which reserves terabytes
//   of address space: there ASAN_OPTIONS caps single allocations instead).
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

[[noreturn]] void Usage(const char* why) {
  std::fprintf(stderr,
               "qlm_run_bounded: %s\nusage: qlm_run_bounded [--outcome error|ok] "
               "[--expect PHRASE] [--timeout-s N] [--max-rss-mb N] [--as-limit-mb N] -- CMD...\n",
               why);
  std::exit(2);
}

int failures = 0;
void Fail(const std::string& what) {
  std::printf("FAIL: %s\n", what.c_str());
  ++failures;
}

std::string Printable(const std::string& s) {
  std::string out;
  for (const char c : s) {
    if (c == '\n') {
      out += "\\n";
    } else if (static_cast<unsigned char>(c) < 0x20) {
      out += '?';
    } else {
      out += c;
    }
  }
  return out.size() > 2000 ? out.substr(0, 2000) + "..." : out;
}

}  // namespace

int main(int argc, char** argv) {
  std::string outcome = "error", expect;
  long timeout_s = 30, max_rss_mb = 0, as_limit_mb = 0;
  int i = 1;
  for (; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--") {
      ++i;
      break;
    }
    if (i + 1 >= argc) Usage(("missing value for " + a).c_str());
    const char* v = argv[++i];
    if (a == "--outcome") {
      outcome = v;
    } else if (a == "--expect") {
      expect = v;
    } else if (a == "--timeout-s") {
      timeout_s = std::atol(v);
    } else if (a == "--max-rss-mb") {
      max_rss_mb = std::atol(v);
    } else if (a == "--as-limit-mb") {
      as_limit_mb = std::atol(v);
    } else {
      Usage(("unknown option " + a).c_str());
    }
  }
  if (i >= argc) Usage("no command");
  if (outcome != "error" && outcome != "ok") Usage("--outcome must be error or ok");

  std::string cmdline;
  for (int j = i; j < argc; ++j) cmdline += std::string(j > i ? " " : "") + argv[j];
  std::printf("$ %s\n", cmdline.c_str());
  std::fflush(stdout);

  int out_pipe[2], err_pipe[2];
  if (::pipe2(out_pipe, O_CLOEXEC) != 0 || ::pipe2(err_pipe, O_CLOEXEC) != 0) {
    std::perror("pipe");
    return 2;
  }
  const auto start = std::chrono::steady_clock::now();
  const pid_t pid = ::fork();
  if (pid < 0) {
    std::perror("fork");
    return 2;
  }
  if (pid == 0) {
    ::setpgid(0, 0);
    ::dup2(out_pipe[1], 1);
    ::dup2(err_pipe[1], 2);
    if (as_limit_mb > 0) {
      const rlim_t bytes = static_cast<rlim_t>(as_limit_mb) << 20;
      const rlimit lim{bytes, bytes};
      ::setrlimit(RLIMIT_AS, &lim);
    }
    // Under ASan: one allocation above 2 GiB is reported (and aborts).
    std::string asan = "max_allocation_size_mb=2048:allocator_may_return_null=0";
    if (const char* old = std::getenv("ASAN_OPTIONS"); old != nullptr && *old != '\0') {
      asan = std::string(old) + ":" + asan;
    }
    ::setenv("ASAN_OPTIONS", asan.c_str(), 1);
    ::execv(argv[i], argv + i);
    std::fprintf(stderr, "qlm_run_bounded: cannot run %s: %s\n", argv[i], std::strerror(errno));
    ::_exit(127);
  }
  ::close(out_pipe[1]);
  ::close(err_pipe[1]);

  std::string out, err;
  bool timed_out = false;
  pollfd fds[2] = {{out_pipe[0], POLLIN, 0}, {err_pipe[0], POLLIN, 0}};
  int open_fds = 2;
  while (open_fds > 0) {
    const auto elapsed = std::chrono::steady_clock::now() - start;
    const long left_ms =
        timeout_s * 1000 - std::chrono::duration_cast<std::chrono::milliseconds>(elapsed).count();
    if (left_ms <= 0) {
      timed_out = true;
      break;
    }
    const int r = ::poll(fds, 2, static_cast<int>(left_ms));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) break;
    for (int k = 0; k < 2; ++k) {
      if (fds[k].fd < 0 || !(fds[k].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      char buf[4096];
      const ssize_t n = ::read(fds[k].fd, buf, sizeof(buf));
      if (n > 0) {
        std::string& dst = k == 0 ? out : err;
        if (dst.size() < (1u << 20)) dst.append(buf, static_cast<size_t>(n));
      } else {
        ::close(fds[k].fd);
        fds[k].fd = -1;
        --open_fds;
      }
    }
  }
  if (timed_out) ::kill(-pid, SIGKILL);
  int status = 0;
  rusage ru{};
  while (::wait4(pid, &status, 0, &ru) < 0 && errno == EINTR) {
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const long rss_mb = ru.ru_maxrss / 1024;

  std::printf("stderr: %s\n", Printable(err).c_str());
  if (!out.empty()) std::printf("stdout: %s\n", Printable(out).c_str());
  if (timed_out) {
    Fail("no result after " + std::to_string(timeout_s) + " s: killed (a hang)");
  } else if (WIFSIGNALED(status)) {
    Fail("killed by signal " + std::to_string(WTERMSIG(status)) + " (" +
         strsignal(WTERMSIG(status)) + ")");
  } else {
    const int code = WEXITSTATUS(status);
    std::printf("exit code %d after %.2f s, peak RSS %ld MB\n", code, seconds, rss_mb);
    if (outcome == "ok") {
      if (code != 0) Fail("exit code " + std::to_string(code) + ", expected 0 (a valid input)");
    } else {
      if (code != 1 && code != 2) {
        Fail("exit code " + std::to_string(code) + ", expected 1 or 2");
      }
      if (!out.empty()) Fail("stdout is not empty");
      size_t lines = 0;
      for (const char c : err) lines += c == '\n';
      if (!err.empty() && err.back() != '\n') ++lines;
      if (lines != 1) Fail("stderr has " + std::to_string(lines) + " lines, expected exactly 1");
      if (err.rfind("error: ", 0) != 0) Fail("stderr does not start with \"error: \"");
      if (!expect.empty() && err.find(expect) == std::string::npos) {
        Fail("the error does not contain \"" + expect + "\"");
      }
      // A message that is just a C++ library exception's text means an
      // allocation or container operation failed where validation should
      // have rejected the input first. (A parser's own message may quote
      // the JSON library's diagnostics after its own words; that is fine.)
      const std::string msg = err.size() >= 7 ? err.substr(7) : "";
      for (const char* lib : {"std::", "vector::", "basic_string::", "map::at", "[json.exception",
                              "stoi", "stol", "stoul"}) {
        if (msg.rfind(lib, 0) == 0) {
          Fail(std::string("the error is a C++ library exception (\"") + lib +
               "...\"), not a validation message");
        }
      }
      if (err.find("bad_alloc") != std::string::npos ||
          err.find("bad_array_new_length") != std::string::npos) {
        Fail("the error is an allocation failure, not a validation message");
      }
    }
  }
  if (max_rss_mb > 0 && rss_mb > max_rss_mb) {
    Fail("peak RSS " + std::to_string(rss_mb) + " MB exceeds " + std::to_string(max_rss_mb) +
         " MB");
  }
  if (failures == 0) std::printf("PASS\n");
  return failures == 0 ? 0 : 1;
}
