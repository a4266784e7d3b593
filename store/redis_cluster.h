// Redis Cluster helpers, pure functions: the slot of a key and the redirect
// replies (MOVED / ASK) of a Cluster node. Thread-safe (no state).
#ifndef BNSERVE_STORE_REDIS_CLUSTER_H_
#define BNSERVE_STORE_REDIS_CLUSTER_H_

#include <optional>
#include <string_view>

#include "store/store.h"

namespace bnserve::store {

inline constexpr int kClusterSlots = 16384;

// The Cluster slot of `key`: CRC16/XMODEM of the key, or of its hash tag
// (the bytes between the first '{' and the first '}' after it, if there are
// any), modulo 16384. Every key of a model is `bnserve:{<model>}:…`, so all
// of them share the slot of `<model>`.
int ClusterSlot(std::string_view key);

// "MOVED <slot> <host>:<port>" (the slot lives elsewhere now: update the slot
// map) or "ASK <slot> <host>:<port>" (the slot is being migrated: send the
// next command there, after ASKING). In both cases the command was not
// executed. The host may be an IPv6 address (the port follows the last ':')
// or empty (meaning the node that replied).
struct ClusterRedirect {
  enum class Kind { kMoved, kAsk };
  Kind kind;
  int slot;
  StoreUri::Endpoint to;
};
// nullopt unless `error` (an error reply without the leading '-') is a
// well-formed MOVED or ASK with a slot in 0..16383 and a port in 1..65535.
std::optional<ClusterRedirect> ParseClusterRedirect(std::string_view error);

}  // namespace bnserve::store

#endif  // BNSERVE_STORE_REDIS_CLUSTER_H_
