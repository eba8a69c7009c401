//===- Isolation.cpp - One compilation in a child process -----------------===//
//
// The parent only forks, reads a pipe and waits: it never runs MLIR or LLVM
// code, so no lock of theirs can be held by another of its threads when it
// forks (the child would inherit it locked). The child starts from the
// caller's memory, runs the work, writes the Outcome to the pipe and leaves
// with _exit (no atexit handlers or stdio flushes of the caller's state).
//
//===----------------------------------------------------------------------===//
#include "Isolation.h"

#include <cerrno>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <string_view>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

using namespace mlir::sparsek::capi;

namespace {

/// The child's stderr kept in a message: the upstream error comes first,
/// a stack dump may follow.
constexpr size_t kMaxLoggedBytes = 16 << 10;

bool writeAll(int fd, const char *data, size_t size) {
  while (size > 0) {
    ssize_t n = ::write(fd, data, size);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      return false;
    data += n;
    size -= static_cast<size_t>(n);
  }
  return true;
}

/// Reads `fd` to its end; false on a read error.
bool readAll(int fd, std::string &out) {
  char buffer[1 << 16];
  while (true) {
    ssize_t n = ::read(fd, buffer, sizeof(buffer));
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      return false;
    if (n == 0)
      return true;
    out.append(buffer, static_cast<size_t>(n));
  }
}

void putString(std::string &bytes, const std::string &s) {
  uint64_t size = s.size();
  bytes.append(reinterpret_cast<const char *>(&size), sizeof(size));
  bytes += s;
}

bool takeString(std::string_view &bytes, std::string &s) {
  uint64_t size;
  if (bytes.size() < sizeof(size))
    return false;
  std::memcpy(&size, bytes.data(), sizeof(size));
  bytes.remove_prefix(sizeof(size));
  if (bytes.size() < size)
    return false;
  s.assign(bytes.data(), size);
  bytes.remove_prefix(size);
  return true;
}

/// [ok byte][text][error], each string as a 64-bit length and its bytes.
std::string encode(const Outcome &outcome) {
  std::string bytes(1, outcome.ok ? '\1' : '\0');
  putString(bytes, outcome.text);
  putString(bytes, outcome.error);
  return bytes;
}

/// False unless `all` is one whole encoded Outcome.
bool decode(std::string_view all, Outcome &outcome) {
  if (all.empty())
    return false;
  outcome.ok = all[0] == '\1';
  all.remove_prefix(1);
  return takeString(all, outcome.text) && takeString(all, outcome.error) &&
         all.empty();
}

std::string readLog(int fd) {
  std::string text;
  if (::lseek(fd, 0, SEEK_SET) != 0 || !readAll(fd, text))
    return "";
  if (text.size() > kMaxLoggedBytes)
    text = text.substr(0, kMaxLoggedBytes) + "\n[... output cut]";
  return text;
}

std::string describe(int status) {
  if (WIFSIGNALED(status)) {
    int sig = WTERMSIG(status);
    return "was killed by signal " + std::to_string(sig) + " (" +
           ::strsignal(sig) + ")";
  }
  if (WIFEXITED(status))
    return "exited with status " + std::to_string(WEXITSTATUS(status));
  return "ended abnormally";
}

Outcome errorOutcome(const std::string &message) {
  Outcome outcome;
  outcome.error = message;
  return outcome;
}

/// The child's diagnostic journal (journalDiagnostic); -1 elsewhere.
int journalFd = -1;

/// The child: default signal actions (a crash ends it at once, not in the
/// caller's handlers, e.g. Python's faulthandler), no core file, stderr to
/// `log`, diagnostics also to `journal`; runs `work` and writes the Outcome
/// to `out`.
[[noreturn]] void runChild(llvm::function_ref<Outcome()> work, int out, int log,
                           int journal) {
  for (int sig :
       {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT, SIGINT, SIGTERM, SIGPIPE})
    std::signal(sig, SIG_DFL);
  struct rlimit noCore = {0, 0};
  ::setrlimit(RLIMIT_CORE, &noCore);
  ::dup2(log, STDERR_FILENO);
  journalFd = journal;
  std::string bytes = encode(work());
  ::_exit(writeAll(out, bytes.data(), bytes.size()) ? 0 : 120);
}

/// An anonymous temporary file, closed (and so deleted) with this object.
struct ScratchFile {
  FILE *file = std::tmpfile();
  ~ScratchFile() {
    if (file)
      std::fclose(file);
  }
  int fd() const { return ::fileno(file); }
};

/// Both ends of a pipe, each closed once.
struct Pipe {
  int fds[2] = {-1, -1};
  bool open() { return ::pipe2(fds, O_CLOEXEC) == 0; }
  void close(int end) {
    if (fds[end] >= 0)
      ::close(fds[end]);
    fds[end] = -1;
  }
  ~Pipe() {
    close(0);
    close(1);
  }
};

} // namespace

Outcome mlir::sparsek::capi::runIsolated(llvm::function_ref<Outcome()> work) {
  const char *inProcess = std::getenv("SPARSEK_COMPILER_IN_PROCESS");
  if (inProcess && std::strcmp(inProcess, "1") == 0)
    return work();
  Pipe pipe;
  if (!pipe.open())
    return errorOutcome(std::string("cannot create a pipe to the compiler "
                                    "process: ") +
                        std::strerror(errno));
  ScratchFile log, journal;
  if (!log.file || !journal.file)
    return errorOutcome(std::string("cannot create a file for the compiler "
                                    "process's output: ") +
                        std::strerror(errno));
  pid_t pid = ::fork();
  if (pid == 0) {
    pipe.close(0);
    runChild(work, pipe.fds[1], log.fd(), journal.fd());
  }
  int forkError = errno;
  pipe.close(1); // the child's end: EOF once the child is gone
  if (pid < 0)
    return errorOutcome(std::string("cannot start the compiler process: ") +
                        std::strerror(forkError));
  std::string bytes;
  bool complete = readAll(pipe.fds[0], bytes);
  int status = 0;
  pid_t waited;
  while ((waited = ::waitpid(pid, &status, 0)) < 0 && errno == EINTR) {
  }
  std::string output = readLog(log.fd());
  // waitpid fails only where the caller ignores SIGCHLD (children are then
  // reaped unseen): the Outcome alone tells whether the child finished.
  bool exitedCleanly =
      waited < 0 || (WIFEXITED(status) && WEXITSTATUS(status) == 0);
  Outcome outcome;
  if (complete && exitedCleanly && decode(bytes, outcome)) {
    if (!output.empty())
      std::fwrite(output.data(), 1, output.size(), stderr);
    return outcome;
  }
  std::string diagnostics = readLog(journal.fd());
  return errorOutcome(
      "the compiler process " +
      (waited < 0 ? std::string("ended without a result") : describe(status)) +
      ": SparseK or upstream MLIR/LLVM failed on this input (the calling "
      "process is unaffected)" +
      (diagnostics.empty() ? ""
                           : "\ndiagnostics before that:\n" + diagnostics) +
      (output.empty() ? "" : "\nits output:\n" + output));
}

void mlir::sparsek::capi::journalDiagnostic(llvm::StringRef text) {
  if (journalFd >= 0)
    writeAll(journalFd, text.data(), text.size());
}
