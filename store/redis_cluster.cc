#include "store/redis_cluster.h"

#include <cstdint>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "store/strings.h"

namespace bnserve::store {
namespace {

uint16_t Crc16Xmodem(std::string_view data) {
  uint16_t crc = 0;
  for (char c : data) {
    crc ^= static_cast<uint16_t>(static_cast<unsigned char>(c)) << 8;
    for (int bit = 0; bit < 8; ++bit) {
      crc = (crc & 0x8000) != 0 ? static_cast<uint16_t>((crc << 1) ^ 0x1021)
                                : static_cast<uint16_t>(crc << 1);
    }
  }
  return crc;
}

// Digits only, no sign: absl::SimpleAtoi alone accepts "+5" and " 5".
bool ParseBoundedInt(std::string_view text, int lo, int hi, int* out) {
  if (text.empty() || text.size() > 5) return false;
  for (char c : text) {
    if (!absl::ascii_isdigit(static_cast<unsigned char>(c))) return false;
  }
  return absl::SimpleAtoi(Sv(text), out) && *out >= lo && *out <= hi;
}

}  // namespace

int ClusterSlot(std::string_view key) {
  if (const size_t open = key.find('{'); open != std::string_view::npos) {
    const size_t close = key.find('}', open + 1);
    if (close != std::string_view::npos && close > open + 1) {
      key = key.substr(open + 1, close - open - 1);
    }
  }
  return Crc16Xmodem(key) % kClusterSlots;
}

std::optional<ClusterRedirect> ParseClusterRedirect(std::string_view error) {
  ClusterRedirect out;
  if (error.substr(0, 6) == "MOVED ") {
    out.kind = ClusterRedirect::Kind::kMoved;
    error.remove_prefix(6);
  } else if (error.substr(0, 4) == "ASK ") {
    out.kind = ClusterRedirect::Kind::kAsk;
    error.remove_prefix(4);
  } else {
    return std::nullopt;
  }
  const size_t space = error.find(' ');
  if (space == std::string_view::npos ||
      !ParseBoundedInt(error.substr(0, space), 0, kClusterSlots - 1,
                       &out.slot)) {
    return std::nullopt;
  }
  const std::string_view address = error.substr(space + 1);
  const size_t colon = address.rfind(':');
  if (colon == std::string_view::npos ||
      !ParseBoundedInt(address.substr(colon + 1), 1, 65535, &out.to.port)) {
    return std::nullopt;
  }
  std::string_view host = address.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  if (host.find_first_of(" []") != std::string_view::npos) return std::nullopt;
  out.to.host = std::string(host);
  return out;
}

}  // namespace bnserve::store
