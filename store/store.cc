#include "store/store.h"

#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "model/status_macros.h"
#include "store/file_store.h"
#include "store/memory_store.h"
#include "store/redis_store.h"
#include "store/strings.h"

namespace bnserve::store {
namespace {

constexpr size_t kMaxNameLength = 64;

bool IsNameChar(char c) {
  return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '.' ||
         c == '_' || c == '-';
}

absl::Status ValidateName(std::string_view what, std::string_view name,
                          bool must_start_with_letter) {
  const char* rule = must_start_with_letter ? "[A-Za-z][A-Za-z0-9._-]{0,63}"
                                            : "[A-Za-z0-9][A-Za-z0-9._-]{0,63}";
  auto fail = [&](std::string_view why) {
    return absl::InvalidArgumentError(
        Cat("invalid ", what, " '", absl::CHexEscape(Sv(name.substr(0, 80))),
            "': ", why, "; it must match ", rule));
  };
  if (name.empty()) return fail("it is empty");
  if (name.size() > kMaxNameLength) {
    return fail(Cat("it is ", name.size(), " characters long"));
  }
  const unsigned char first = static_cast<unsigned char>(name[0]);
  if (must_start_with_letter ? !absl::ascii_isalpha(first)
                             : !absl::ascii_isalnum(first)) {
    return fail(must_start_with_letter
                    ? "it must start with a letter"
                    : "it must start with a letter or digit");
  }
  for (char c : name) {
    if (!IsNameChar(c)) return fail("it contains a forbidden character");
  }
  return absl::OkStatus();
}

absl::Status BadUri(std::string_view uri, std::string_view why) {
  return absl::InvalidArgumentError(
      Cat("malformed store URI '", uri, "': ", why,
          " (expected a path, file:///abs/path, "
          "redis://host:port[/db], "
          "redis-sentinel://host:port,.../master[/db], "
          "redis-cluster://host:port,... or mem://name)"));
}

// host[:port] or [v6]:port; `port` keeps its value if none is given.
absl::Status ParseEndpoint(std::string_view uri, std::string_view hostport,
                           StoreUri::Endpoint* out) {
  std::string_view port;
  if (absl::StartsWith(Sv(hostport), "[")) {  // [::1]:6379
    const size_t close = hostport.find(']');
    if (close == std::string_view::npos) return BadUri(uri, "unclosed '['");
    out->host = std::string(hostport.substr(1, close - 1));
    std::string_view after = hostport.substr(close + 1);
    if (!after.empty()) {
      if (after[0] != ':') return BadUri(uri, "junk after ']'");
      port = after.substr(1);
      if (port.empty()) return BadUri(uri, "empty port");
    }
  } else if (const size_t colon = hostport.find(':');
             colon != std::string_view::npos) {
    out->host = std::string(hostport.substr(0, colon));
    port = hostport.substr(colon + 1);
    if (port.empty()) return BadUri(uri, "empty port");
  } else {
    out->host = std::string(hostport);
  }
  if (out->host.empty()) return BadUri(uri, "missing host");
  if (!port.empty() &&
      (!absl::SimpleAtoi(Sv(port), &out->port) || out->port < 1 ||
       out->port > 65535 ||
       !absl::ascii_isdigit(static_cast<unsigned char>(port[0])))) {
    return BadUri(uri, Cat("port '", port, "' is not in 1..65535"));
  }
  return absl::OkStatus();
}

absl::Status ParseDb(std::string_view uri, std::string_view db, int* out) {
  if (!db.empty() &&
      (!absl::SimpleAtoi(Sv(db), out) || *out < 0 ||
       !absl::ascii_isdigit(static_cast<unsigned char>(db[0])))) {
    return BadUri(uri,
                  Cat("database '", db, "' is not a non-negative integer"));
  }
  return absl::OkStatus();
}

// After "redis[-sentinel|-cluster]://": [[user]:password@]endpoints[/path].
//   redis           one host[:port], path [db]
//   redis-sentinel  comma-separated Sentinels, path master-name[/db]
//   redis-cluster   comma-separated seed nodes, no path (Cluster has db 0)
absl::StatusOr<StoreUri> ParseRedisUri(std::string_view uri,
                                       std::string_view rest, StoreUri out) {
  if (const size_t at = rest.rfind('@'); at != std::string_view::npos) {
    std::string_view userinfo = rest.substr(0, at);
    rest = rest.substr(at + 1);
    const size_t colon = userinfo.find(':');
    if (colon == std::string_view::npos) {
      out.password = std::string(userinfo);
    } else {
      out.username = std::string(userinfo.substr(0, colon));
      out.password = std::string(userinfo.substr(colon + 1));
    }
  }
  const size_t slash = rest.find('/');
  std::string_view hosts = rest.substr(0, slash);
  std::string_view path =
      slash == std::string_view::npos ? "" : rest.substr(slash + 1);
  const bool many = out.scheme != StoreUri::Scheme::kRedis;
  const int default_port =
      out.scheme == StoreUri::Scheme::kRedisSentinel ? 26379 : 6379;
  if (!many && hosts.find(',') != std::string_view::npos) {
    return BadUri(uri,
                  "redis:// takes one host; several hosts need "
                  "redis-sentinel://h1,h2/master or redis-cluster://h1,h2");
  }
  size_t pos = 0;
  while (true) {
    const size_t comma = many ? hosts.find(',', pos) : std::string_view::npos;
    StoreUri::Endpoint endpoint{"", default_port};
    BNSERVE_RETURN_IF_ERROR(ParseEndpoint(
        uri,
        hosts.substr(pos,
                     comma == std::string_view::npos ? comma : comma - pos),
        &endpoint));
    out.endpoints.push_back(std::move(endpoint));
    if (out.endpoints.size() > kMaxRedisEndpoints) {
      return BadUri(uri, Cat("more than ", kMaxRedisEndpoints, " hosts"));
    }
    if (comma == std::string_view::npos) break;
    pos = comma + 1;
  }
  out.host = out.endpoints[0].host;
  out.port = out.endpoints[0].port;
  switch (out.scheme) {
    case StoreUri::Scheme::kRedisSentinel: {
      const size_t next = path.find('/');
      out.master_name = std::string(path.substr(0, next));
      if (out.master_name.empty()) {
        return BadUri(uri, "redis-sentinel:// needs a master name after '/'");
      }
      if (!ValidateModelName(out.master_name).ok()) {
        return BadUri(
            uri, "the master name must match [A-Za-z0-9][A-Za-z0-9._-]{0,63}");
      }
      if (next != std::string_view::npos) {
        BNSERVE_RETURN_IF_ERROR(ParseDb(uri, path.substr(next + 1), &out.db));
      }
      break;
    }
    case StoreUri::Scheme::kRedisCluster:
      if (!path.empty()) {
        return BadUri(uri,
                      "a Redis Cluster has no databases: nothing may "
                      "follow the node list");
      }
      break;
    default:
      BNSERVE_RETURN_IF_ERROR(ParseDb(uri, path, &out.db));
      break;
  }
  return out;
}

}  // namespace

bool ParseVersion(std::string_view text, int64_t* version) {
  if (text.empty() || text.size() > 18 || text[0] == '0') return false;
  for (char c : text) {
    if (!absl::ascii_isdigit(static_cast<unsigned char>(c))) return false;
  }
  return absl::SimpleAtoi(Sv(text), version) && *version > 0;
}

absl::Status VersionsExhausted(std::string_view model) {
  return absl::OutOfRangeError(
      Cat("model '", model, "' has used every version number up to ",
          kMaxVersion, "; no more versions can be published"));
}

absl::Status ValidateModelName(std::string_view name) {
  return ValidateName("model name", name, /*must_start_with_letter=*/false);
}

absl::Status ValidateLabel(std::string_view label) {
  return ValidateName("label", label, /*must_start_with_letter=*/true);
}

absl::Status ValidateJobId(std::string_view job_id) {
  return ValidateName("job id", job_id, /*must_start_with_letter=*/false);
}

absl::Status ValidateCheckpointKey(std::string_view model,
                                   std::string_view job_id, int64_t step) {
  BNSERVE_RETURN_IF_ERROR(ValidateModelName(model));
  BNSERVE_RETURN_IF_ERROR(ValidateJobId(job_id));
  if (step < 0) {
    return absl::InvalidArgumentError(
        Cat("checkpoint step must be >= 0, got ", step));
  }
  return absl::OkStatus();
}

namespace {

absl::Status NoCheckpoints(const SnapshotStore& store) {
  return absl::UnimplementedError(
      Cat("store ", store.uri(), " keeps no training checkpoints"));
}

}  // namespace

absl::Status SnapshotStore::WriteCheckpoint(std::string_view, std::string_view,
                                            int64_t, std::string_view) {
  return NoCheckpoints(*this);
}

absl::StatusOr<std::string> SnapshotStore::ReadCheckpoint(std::string_view,
                                                          std::string_view,
                                                          int64_t) {
  return NoCheckpoints(*this);
}

absl::StatusOr<std::vector<CheckpointRef>> SnapshotStore::ListCheckpoints() {
  return NoCheckpoints(*this);
}

absl::Status SnapshotStore::DeleteCheckpoint(std::string_view, std::string_view,
                                             int64_t) {
  return NoCheckpoints(*this);
}

absl::StatusOr<StoreUri> ParseStoreUri(std::string_view uri) {
  StoreUri out;
  if (uri.empty()) return BadUri(uri, "it is empty");
  const size_t sep = uri.find("://");
  if (sep == std::string_view::npos) {
    out.scheme = StoreUri::Scheme::kFile;
    out.path = std::string(uri);
    return out;
  }
  const std::string scheme = absl::AsciiStrToLower(Sv(uri.substr(0, sep)));
  std::string_view rest = uri.substr(sep + 3);
  if (scheme == "file") {
    if (absl::StartsWith(Sv(rest), "localhost/")) rest.remove_prefix(9);
    if (!absl::StartsWith(Sv(rest), "/")) {
      return BadUri(uri,
                    "a file URI needs an absolute path and no host "
                    "(file:///abs/path)");
    }
    out.scheme = StoreUri::Scheme::kFile;
    out.path = std::string(rest);
    return out;
  }
  if (scheme == "mem") {
    if (rest.empty()) return BadUri(uri, "mem:// needs a name");
    out.scheme = StoreUri::Scheme::kMemory;
    out.name = std::string(rest);
    return out;
  }
  if (scheme == "redis") {
    out.scheme = StoreUri::Scheme::kRedis;
  } else if (scheme == "redis-sentinel") {
    out.scheme = StoreUri::Scheme::kRedisSentinel;
  } else if (scheme == "redis-cluster") {
    out.scheme = StoreUri::Scheme::kRedisCluster;
  } else {
    return BadUri(uri, Cat("unknown scheme '", scheme, "'"));
  }
  return ParseRedisUri(uri, rest, std::move(out));
}

absl::StatusOr<std::unique_ptr<SnapshotStore>> OpenStore(
    std::string_view uri, const StoreOptions& options) {
  BNSERVE_ASSIGN_OR_RETURN(StoreUri parsed, ParseStoreUri(uri));
  if (options.redis_min_replicas < 0) {
    return absl::InvalidArgumentError(
        Cat("redis_min_replicas is ", options.redis_min_replicas,
            "; it must be 0 (do not wait) or the number of replicas that must "
            "have every write"));
  }
  switch (parsed.scheme) {
    case StoreUri::Scheme::kFile: {
      BNSERVE_ASSIGN_OR_RETURN(auto store,
                               FileStore::Open(parsed.path, options));
      return std::unique_ptr<SnapshotStore>(std::move(store));
    }
    case StoreUri::Scheme::kMemory:
      return std::unique_ptr<SnapshotStore>(
          MemoryStore::Open(parsed.name, options));
    case StoreUri::Scheme::kRedis:
    case StoreUri::Scheme::kRedisSentinel:
    case StoreUri::Scheme::kRedisCluster:
      return std::unique_ptr<SnapshotStore>(
          std::make_unique<RedisStore>(parsed, options));
  }
  return absl::InternalError("unreachable");
}

absl::StatusOr<bnserve::v1::Snapshot> ReadLatestValid(SnapshotStore& store,
                                                      std::string_view model) {
  BNSERVE_RETURN_IF_ERROR(ValidateModelName(model));
  BNSERVE_ASSIGN_OR_RETURN(std::vector<int64_t> versions,
                           store.ListVersions(model));
  if (versions.empty()) {
    return absl::NotFoundError(Cat("model '", model, "' has no versions"));
  }
  absl::Status last_error;
  for (auto it = versions.rbegin(); it != versions.rend(); ++it) {
    absl::StatusOr<bnserve::v1::Snapshot> snapshot = store.Read(model, *it);
    if (snapshot.ok()) return snapshot;
    if (absl::IsDataLoss(snapshot.status())) {
      last_error = snapshot.status();
      continue;
    }
    if (absl::IsNotFound(snapshot.status())) continue;  // deleted meanwhile
    return snapshot.status();
  }
  if (last_error.ok()) {
    return absl::NotFoundError(Cat("model '", model, "' has no versions"));
  }
  return absl::DataLossError(
      Cat("no version of model '", model,
          "' verifies; last error: ", last_error.message()));
}

}  // namespace bnserve::store
