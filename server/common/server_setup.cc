#include "server/common/server_setup.h"

#include <grpcpp/impl/server_builder_plugin.h>
#include <grpcpp/security/server_credentials.h>
#include <malloc.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>

#include "absl/flags/parse.h"
#include "absl/flags/reflection.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "model/status_macros.h"

namespace bnserve::server {
namespace {

std::atomic<int> g_log_level{static_cast<int>(LogLevel::kInfo)};
absl::Mutex g_log_mutex;

std::string EnvName(const std::string& flag) {
  return "BNSERVE_" + absl::AsciiStrToUpper(flag);
}

// Levenshtein distance.
size_t EditDistance(absl::string_view a, absl::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1,
                         diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = up;
    }
  }
  return row[b.size()];
}

// Warns about unknown BNSERVE_* variables and notes the test-only fault
// point.
void CheckEnvironment(const std::vector<std::string>& flag_names) {
  for (const std::string& unknown :
       UnknownEnvironmentVariables(environ, flag_names)) {
    Log(LogLevel::kWarning,
        absl::StrCat("unknown environment variable ", unknown,
                     ": ignored (this binary reads BNSERVE_<FLAG> for its "
                     "flags, see --help)"));
  }
  if (const char* pause = std::getenv(kLibraryEnvironmentVariables[1])) {
    Log(LogLevel::kWarning,
        absl::StrCat(kLibraryEnvironmentVariables[1], "=", pause,
                     " is set: the file store's test-only fault point can "
                     "pause publishes; never set it in production"));
  }
}

}  // namespace

const char* const kLibraryEnvironmentVariables[2] = {
    "BNSERVE_DENSE_KERNEL", "BNSERVE_TEST_PUBLISH_PAUSE_DIR"};

std::vector<std::string> UnknownEnvironmentVariables(
    const char* const* environment,
    const std::vector<std::string>& flag_names) {
  std::vector<std::string> known(std::begin(kLibraryEnvironmentVariables),
                                 std::end(kLibraryEnvironmentVariables));
  for (const std::string& flag : flag_names) known.push_back(EnvName(flag));
  std::vector<std::string> unknown;
  for (const char* const* e = environment; e != nullptr && *e != nullptr; ++e) {
    const absl::string_view entry(*e);
    const absl::string_view name = entry.substr(0, entry.find('='));
    if (!absl::StartsWith(name, "BNSERVE_") ||
        std::find(known.begin(), known.end(), name) != known.end()) {
      continue;
    }
    std::string line(name);
    const std::string* closest = nullptr;
    size_t best = 4;  // suggest within 3 edits
    for (const std::string& k : known) {
      const size_t d = EditDistance(name, k);
      if (d < best) {
        best = d;
        closest = &k;
      }
    }
    if (closest != nullptr)
      absl::StrAppend(&line, " (did you mean ", *closest, "?)");
    unknown.push_back(std::move(line));
  }
  std::sort(unknown.begin(), unknown.end());
  return unknown;
}

std::vector<char*> ParseFlagsWithEnvironment(
    int argc, char** argv, const std::vector<std::string>& flag_names) {
  for (const std::string& name : flag_names) {
    const std::string env = EnvName(name);
    const char* value = std::getenv(env.c_str());
    if (value == nullptr) continue;
    absl::CommandLineFlag* flag = absl::FindCommandLineFlag(name);
    std::string error;
    if (flag == nullptr || !flag->ParseFrom(value, &error)) {
      std::cerr << "invalid value for " << env << ": " << error << "\n";
      std::exit(2);
    }
  }
  std::vector<char*> positional = absl::ParseCommandLine(argc, argv);
  CheckEnvironment(flag_names);
  return positional;
}

std::vector<char*> ParseFlagsWithEnvironment(int argc, char** argv,
                                             const char* defining_file) {
  std::vector<std::string> names;
  for (const auto& [name, flag] : absl::GetAllFlags()) {
    if (flag->Filename() == defining_file) names.emplace_back(name);
  }
  return ParseFlagsWithEnvironment(argc, argv, names);
}

namespace {

class WithoutReflectionOption final : public grpc::ServerBuilderOption {
 public:
  void UpdateArguments(grpc::ChannelArguments*) override {}
  void UpdatePlugins(std::vector<std::unique_ptr<grpc::ServerBuilderPlugin>>*
                         plugins) override {
    std::erase_if(*plugins, [](const auto& plugin) {
      return plugin->name() == "proto_server_reflection";
    });
  }
};

}  // namespace

std::unique_ptr<grpc::ServerBuilderOption> WithoutReflection() {
  return std::make_unique<WithoutReflectionOption>();
}

absl::StatusOr<std::string> ReadFileToString(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const TlsOptions& options) {
  if (options.cert_file.empty() && options.key_file.empty()) {
    if (!options.client_ca_file.empty()) {
      return absl::InvalidArgumentError(
          "--tls_client_ca needs --tls_cert and --tls_key");
    }
    return grpc::InsecureServerCredentials();
  }
  if (options.cert_file.empty() || options.key_file.empty()) {
    return absl::InvalidArgumentError(
        "TLS needs both --tls_cert and --tls_key");
  }
  grpc::SslServerCredentialsOptions ssl(
      options.client_ca_file.empty()
          ? GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE
          : GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  grpc::SslServerCredentialsOptions::PemKeyCertPair pair;
  BNSERVE_ASSIGN_OR_RETURN(pair.cert_chain,
                           ReadFileToString(options.cert_file));
  BNSERVE_ASSIGN_OR_RETURN(pair.private_key,
                           ReadFileToString(options.key_file));
  ssl.pem_key_cert_pairs.push_back(pair);
  if (!options.client_ca_file.empty()) {
    BNSERVE_ASSIGN_OR_RETURN(ssl.pem_root_certs,
                             ReadFileToString(options.client_ca_file));
  }
  return grpc::SslServerCredentials(ssl);
}

absl::Status SetLogLevel(absl::string_view level) {
  const std::string l = absl::AsciiStrToLower(level);
  LogLevel value;
  if (l == "debug") {
    value = LogLevel::kDebug;
  } else if (l == "info") {
    value = LogLevel::kInfo;
  } else if (l == "warning") {
    value = LogLevel::kWarning;
  } else if (l == "error") {
    value = LogLevel::kError;
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        "log level must be debug, info, warning or error, got '", level, "'"));
  }
  g_log_level = static_cast<int>(value);
  return absl::OkStatus();
}

void Log(LogLevel level, absl::string_view message) {
  if (static_cast<int>(level) < g_log_level.load()) return;
  static constexpr const char* kNames[] = {"DEBUG", "INFO", "WARN", "ERROR"};
  const std::string line =
      absl::StrCat(absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::Now(),
                                    absl::UTCTimeZone()),
                   " ", kNames[static_cast<int>(level)], " ", message, "\n");
  absl::MutexLock lock(&g_log_mutex);
  std::fputs(line.c_str(), stderr);
  std::fflush(stderr);
}

void BlockTerminationSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

void KeepFreedMemory() {
  mallopt(M_TRIM_THRESHOLD, 16 << 20);
  mallopt(M_MMAP_THRESHOLD, 1 << 20);
}

void UseOneMallocHeap() { mallopt(M_ARENA_MAX, 1); }

void PrepareServerProcess() {
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  KeepFreedMemory();
  BlockTerminationSignals();
}

int WaitForTerminationSignal() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  int signal = 0;
  sigwait(&set, &signal);
  return signal;
}

}  // namespace bnserve::server
