// Pieces both server binaries share: environment-variable flag defaults,
// TLS credentials, logging and SIGTERM handling. main() only turns flags into
// an options struct and calls these.
#ifndef BNSERVE_SERVER_COMMON_SERVER_SETUP_H_
#define BNSERVE_SERVER_COMMON_SERVER_SETUP_H_

#include <grpcpp/impl/server_builder_option.h>
#include <grpcpp/security/server_credentials.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace bnserve::server {

// Parses the command line with Abseil flags after giving every flag listed
// in `flag_names` its value from the environment variable
// BNSERVE_<NAME IN UPPER CASE>, if set: command-line flags win. Exits with a
// message on a malformed value. Logs a warning for every other BNSERVE_*
// variable of the environment (UnknownEnvironmentVariables: a typo such as
// BNSERVE_VERSION_TO_KEEP would otherwise be ignored silently), naming the
// closest variable this binary reads; unknown variables are not fatal, so
// one environment (a compose anchor, a ConfigMap) can serve several
// binaries. Logs that the file store's test-only fault point is set, if it
// is. Returns the positional arguments.
std::vector<char*> ParseFlagsWithEnvironment(
    int argc, char** argv, const std::vector<std::string>& flag_names);

// The same for every flag defined in the source file `defining_file` (pass
// __FILE__ from the main that defines the flags): the list is derived from
// the flags themselves, so a new flag is never forgotten.
std::vector<char*> ParseFlagsWithEnvironment(int argc, char** argv,
                                             const char* defining_file);

// The BNSERVE_* environment variables read by the code below the servers
// rather than as flags: the dense kernel override (model/dense_kernel.cc)
// and the file store's test-only fault point (kPublishPauseEnv,
// store/file_store.h). tests/deploy/validate_manifests.py reads this list
// and checks that it names every BNSERVE_* literal in the sources.
extern const char* const kLibraryEnvironmentVariables[2];

// The BNSERVE_* names in `environment` (NAME=VALUE strings, null-terminated,
// as `environ`) that are neither BNSERVE_<FLAG> for a name in `flag_names`
// nor in kLibraryEnvironmentVariables, each with a hint: the closest known
// name when one is within 3 edits ("BNSERVE_X (did you mean BNSERVE_Y?)").
// Sorted.
std::vector<std::string> UnknownEnvironmentVariables(
    const char* const* environment, const std::vector<std::string>& flag_names);

// A ServerBuilder option that removes gRPC server reflection. Linking
// grpc++_reflection registers its plugin for every server of the process,
// so not calling InitProtoReflectionServerBuilderPlugin is not enough.
std::unique_ptr<grpc::ServerBuilderOption> WithoutReflection();

struct TlsOptions {
  std::string cert_file;       // PEM certificate chain; empty = plaintext
  std::string key_file;        // PEM private key
  std::string client_ca_file;  // PEM CA; set = mutual TLS (client certs
                               // required and verified)
};

// Plaintext credentials when no certificate is given, TLS otherwise.
// InvalidArgument when a file is missing or only one of cert/key is given.
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const TlsOptions& options);

// Reads a whole file; NotFound if it cannot be opened.
absl::StatusOr<std::string> ReadFileToString(const std::string& path);

enum class LogLevel { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3 };
// "debug" | "info" | "warning" | "error"; InvalidArgument otherwise.
absl::Status SetLogLevel(absl::string_view level);
// Writes one timestamped line to stderr when `level` is enabled.
// Thread-safe.
void Log(LogLevel level, absl::string_view message);

// Blocks SIGTERM and SIGINT in the calling thread; call before starting any
// thread so every thread inherits the mask. Then WaitForTerminationSignal()
// returns the signal number when one arrives (safe as PID 1 in a container).
void BlockTerminationSignals();
int WaitForTerminationSignal();

// The first call of a server's main(): turns Abseil's mutex deadlock
// detection off (Debian's Abseil is built with it on, so every Mutex lock,
// ours and gRPC's, would update a global lock graph: ~3% of a serving
// process's CPU), keeps freed heap memory for reuse (see below) and blocks
// the termination signals (see above).
void PrepareServerProcess();

// glibc gives the free top of a thread's heap back to the kernel once it
// exceeds 128 KiB (madvise), and maps blocks over 128 KiB of their own. A
// server that receives large messages (gRPC's read buffers, a 16 KiB
// minibatch each) then pays a page fault per page touched again and a TLB
// flush per return: a third of the trainer's CPU per streamed minibatch.
// This keeps up to 16 MiB free per heap and serves blocks up to 1 MiB from
// the heaps (docs/BENCHMARKS.md, "Streamed training").
void KeepFreedMemory();

// One malloc heap for the whole process instead of one per thread (glibc
// makes up to 8 per core). For the trainer, whose gRPC threads take turns
// receiving, parsing and training a stream: memory one thread frees is
// reused by the next, so a stream's buffers are faulted in once, not once
// per heap (first stream's page faults 7,150 -> 3,850, later streams
// ~1,000-2,800 -> ~0; RSS after four streams 69 -> 40 MiB; docs/
// BENCHMARKS.md). Not for the inference server, whose threads allocate
// concurrently. Call before the process starts threads.
void UseOneMallocHeap();

}  // namespace bnserve::server

#endif  // BNSERVE_SERVER_COMMON_SERVER_SETUP_H_
