// store::ParseStoreUri (file, mem, redis, redis-sentinel and redis-cluster
// URIs), ParseClusterRedirect (a Cluster node's MOVED / ASK reply),
// ValidateModelName and ValidateLabel on any text.
// Names are checked against an independent implementation of the rule
// [A-Za-z0-9][A-Za-z0-9._-]{0,63} (labels: first character a letter), which
// is what keeps a model name from escaping the store's root directory.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "store/redis_cluster.h"
#include "store/store.h"
#include "tests/fuzz/fuzz_models.h"

using bnserve::fuzz::Fail;
using bnserve::store::StoreUri;

namespace {

// Debian's absl::string_view is not std::string_view.
std::string Esc(std::string_view s) {
  return absl::CEscape(absl::string_view(s.data(), s.size()));
}

bool IsAlpha(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}
bool IsDigit(char c) { return c >= '0' && c <= '9'; }

bool ReferenceName(std::string_view s, bool letter_first) {
  if (s.empty() || s.size() > 64) return false;
  if (!(IsAlpha(s[0]) || (!letter_first && IsDigit(s[0])))) return false;
  for (char c : s) {
    if (!(IsAlpha(c) || IsDigit(c) || c == '.' || c == '_' || c == '-')) {
      return false;
    }
  }
  return true;
}

void CheckName(std::string_view s, bool label) {
  const absl::Status status = label ? bnserve::store::ValidateLabel(s)
                                    : bnserve::store::ValidateModelName(s);
  const char* what = label ? "ValidateLabel" : "ValidateModelName";
  if (!status.ok() && !absl::IsInvalidArgument(status)) {
    Fail(what, status.ToString());
  }
  if (status.ok() != ReferenceName(s, label)) {
    Fail(what,
         absl::StrCat(status.ok() ? "accepted" : "refused", " '", Esc(s), "'"));
  }
  if (status.ok() && (s == "." || s == ".." ||
                      s.find_first_of(std::string_view("/\\\0", 3)) !=
                          std::string_view::npos)) {
    Fail(what, "accepted a name that can leave the store root");
  }
}

bool BadEndpoint(const StoreUri::Endpoint& e) {
  return e.host.empty() || e.port < 1 || e.port > 65535 ||
         e.host.find(',') != std::string::npos;
}

void CheckRedis(std::string_view text, const StoreUri& uri) {
  const bool many = uri.scheme != StoreUri::Scheme::kRedis;
  if (uri.endpoints.empty() ||
      uri.endpoints.size() > bnserve::store::kMaxRedisEndpoints ||
      (!many && uri.endpoints.size() != 1)) {
    Fail("ParseStoreUri",
         absl::StrCat(uri.endpoints.size(), " hosts in '", Esc(text), "'"));
  }
  for (const StoreUri::Endpoint& e : uri.endpoints) {
    if (BadEndpoint(e)) {
      Fail("ParseStoreUri", absl::StrCat("bad redis endpoint host='",
                                         Esc(e.host), "' port=", e.port));
    }
  }
  if (uri.host != uri.endpoints[0].host || uri.port != uri.endpoints[0].port ||
      uri.db < 0) {
    Fail("ParseStoreUri", "host/port/db disagree with the endpoints");
  }
  const bool sentinel = uri.scheme == StoreUri::Scheme::kRedisSentinel;
  if (sentinel != !uri.master_name.empty() ||
      (sentinel && !ReferenceName(uri.master_name, false))) {
    Fail("ParseStoreUri",
         absl::StrCat("master name '", Esc(uri.master_name), "'"));
  }
  if (uri.scheme == StoreUri::Scheme::kRedisCluster && uri.db != 0) {
    Fail("ParseStoreUri", "a Cluster URI with a database");
  }
}

void CheckRedirect(std::string_view text) {
  auto redirect = bnserve::store::ParseClusterRedirect(text);
  if (!redirect.has_value()) return;
  if (redirect->slot < 0 || redirect->slot >= bnserve::store::kClusterSlots ||
      redirect->to.port < 1 || redirect->to.port > 65535 ||
      (text.substr(0, 6) != "MOVED " && text.substr(0, 4) != "ASK ")) {
    Fail("ParseClusterRedirect", absl::StrCat("accepted '", Esc(text), "'"));
  }
  if (bnserve::store::ClusterSlot(text) < 0 ||
      bnserve::store::ClusterSlot(text) >= bnserve::store::kClusterSlots) {
    Fail("ClusterSlot", "out of range");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  CheckName(text, /*label=*/false);
  CheckName(text, /*label=*/true);
  CheckRedirect(text);

  absl::StatusOr<StoreUri> uri = bnserve::store::ParseStoreUri(text);
  if (!uri.ok()) {
    if (!absl::IsInvalidArgument(uri.status())) {
      Fail("ParseStoreUri", uri.status().ToString());
    }
    return 0;
  }
  switch (uri->scheme) {
    case StoreUri::Scheme::kFile:
      if (uri->path.empty()) Fail("ParseStoreUri", "empty file path");
      if (text.find("://") != std::string_view::npos && uri->path[0] != '/') {
        Fail("ParseStoreUri", "a file:// URI with a relative path");
      }
      break;
    case StoreUri::Scheme::kMemory:
      if (uri->name.empty()) Fail("ParseStoreUri", "empty mem:// name");
      break;
    case StoreUri::Scheme::kRedis:
    case StoreUri::Scheme::kRedisSentinel:
    case StoreUri::Scheme::kRedisCluster:
      CheckRedis(text, *uri);
      break;
  }
  return 0;
}
