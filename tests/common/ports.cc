#include "tests/common/ports.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <random>
#include <string>

namespace bnserve::testing {
namespace {

constexpr char kLockDir[] = "/tmp/bnserve-test-ports";

// [first, last) of the ports tests may use: below the ephemeral range.
void CandidateRange(int* first, int* last) {
  int low = 32768, high = 60999;
  if (FILE* f = std::fopen("/proc/sys/net/ipv4/ip_local_port_range", "r")) {
    if (std::fscanf(f, "%d %d", &low, &high) != 2) low = 32768, high = 60999;
    std::fclose(f);
  }
  if (low - 15000 >= 2000) {
    *first = 15000;
    *last = low;
  } else {  // an unusual range: use the ports above it
    *first = high + 1;
    *last = 65536;
  }
}

bool Bindable(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  const bool ok =
      bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  close(fd);
  return ok;
}

}  // namespace

int ReservePort() {
  mkdir(kLockDir, 0777);
  chmod(kLockDir, 0777);
  int first = 0, last = 0;
  CandidateRange(&first, &last);
  std::random_device seed;
  std::mt19937 rng(seed());
  std::uniform_int_distribution<int> pick(first, last - 1);
  for (int attempt = 0; attempt < 1000; ++attempt) {
    const int port = pick(rng);
    const std::string lock = std::string(kLockDir) + "/" + std::to_string(port);
    // flock is per open file description: a second lock from this process
    // fails too, so no port is handed out twice.
    const int fd = open(lock.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0666);
    if (fd < 0) continue;
    if (flock(fd, LOCK_EX | LOCK_NB) == 0 && Bindable(port)) {
      return port;  // fd stays open until the process exits
    }
    close(fd);
  }
  return -1;
}

}  // namespace bnserve::testing
