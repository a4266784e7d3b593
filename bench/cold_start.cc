// bench-cold-start: process start -> health SERVING. Starts the command
// after `--` (it must listen on 127.0.0.1:--port), waits until the port
// accepts a TCP connection, then calls grpc.health.v1.Health/Check("")
// every 0.5 ms until it answers SERVING. Then reads the process's resident
// memory (VmRSS) and stops it with SIGTERM. Repeats --iterations times and
// prints one JSON line: per-run times (ms) and RSS (KiB).
#include <arpa/inet.h>
#include <grpcpp/grpcpp.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "bench/bench_util.h"
#include "health.grpc.pb.h"

extern char** environ;

ABSL_FLAG(int32_t, port, 0, "port the command listens on");
ABSL_FLAG(int32_t, iterations, 10, "process starts measured");
ABSL_FLAG(double, timeout_s, 10, "give up on one start after this");

namespace bnserve::bench {
namespace {

bool PortOpen(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const bool ok =
      connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  close(fd);
  return ok;
}

int64_t RssKib(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stoll(line.substr(6));
  }
  return -1;
}

// Waits until 127.0.0.1:`port` accepts connections and answers the gRPC
// health check SERVING, or until `deadline_ns` (NowNanos); true if serving.
// The channel closes before it returns, so a SIGTERM right after has no
// call to drain.
bool WaitUntilServing(int port, int64_t deadline_ns) {
  while (!PortOpen(port) && NowNanos() < deadline_ns) {
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  auto stub = grpc::health::v1::Health::NewStub(grpc::CreateChannel(
      "127.0.0.1:" + std::to_string(port), grpc::InsecureChannelCredentials()));
  while (NowNanos() < deadline_ns) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() +
                         std::chrono::milliseconds(200));
    grpc::health::v1::HealthCheckRequest request;
    grpc::health::v1::HealthCheckResponse response;
    if (stub->Check(&context, request, &response).ok() &&
        response.status() == grpc::health::v1::HealthCheckResponse::SERVING) {
      return true;
    }
    std::this_thread::sleep_for(std::chrono::microseconds(500));
  }
  return false;
}

int Run(std::vector<char*> command) {
  const int port = absl::GetFlag(FLAGS_port);
  const int64_t timeout_ns =
      static_cast<int64_t>(absl::GetFlag(FLAGS_timeout_s) * 1e9);
  command.push_back(nullptr);
  std::vector<double> times_ms;
  std::vector<int64_t> rss_kib;
  for (int it = 0; it < absl::GetFlag(FLAGS_iterations); ++it) {
    const int64_t t0 = NowNanos();
    pid_t pid;
    if (posix_spawn(&pid, command[0], nullptr, nullptr, command.data(),
                    environ) != 0) {
      std::perror("posix_spawn");
      return 2;
    }
    const bool serving = WaitUntilServing(port, t0 + timeout_ns);
    const int64_t t1 = NowNanos();
    const int64_t rss = RssKib(pid);
    kill(pid, SIGTERM);
    int wstatus = 0;
    waitpid(pid, &wstatus, 0);
    if (!serving) {
      std::fprintf(stderr, "no SERVING within the timeout\n");
      return 1;
    }
    times_ms.push_back(static_cast<double>(t1 - t0) / 1e6);
    rss_kib.push_back(rss);
  }
  std::vector<double> sorted = times_ms;
  std::sort(sorted.begin(), sorted.end());
  std::printf(
      "{\"mode\": \"cold_start\", \"median_ms\": %.2f, \"max_ms\": %.2f, "
      "\"times_ms\": [%s], \"rss_kib\": [%s]}\n",
      sorted[sorted.size() / 2], sorted.back(),
      absl::StrJoin(times_ms, ", ",
                    [](std::string* out, double v) {
                      absl::StrAppend(out, absl::StrFormat("%.2f", v));
                    })
          .c_str(),
      absl::StrJoin(rss_kib, ", ").c_str());
  return 0;
}

}  // namespace
}  // namespace bnserve::bench

int main(int argc, char** argv) {
  std::vector<char*> positional = absl::ParseCommandLine(argc, argv);
  positional.erase(positional.begin());  // program name
  if (positional.empty()) {
    std::fprintf(stderr, "usage: bench-cold-start --port=P -- COMMAND...\n");
    return 2;
  }
  return bnserve::bench::Run(positional);
}
