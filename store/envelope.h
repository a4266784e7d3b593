// The on-store format shared by every backend: a bnserve.v1.StoredSnapshot
// envelope holding the serialized snapshot and its SHA-256.
#ifndef BNSERVE_STORE_ENVELOPE_H_
#define BNSERVE_STORE_ENVELOPE_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "bnserve/v1/snapshot.pb.h"

namespace bnserve::store {

// Serializes `snapshot` (whose model and version must already be set) into a
// checksummed envelope. INTERNAL if serialization fails (e.g. > 2 GiB).
absl::StatusOr<std::string> EncodeStoredSnapshot(
    const bnserve::v1::Snapshot& snapshot);

// Parses and verifies an envelope read for (model, version). DATA_LOSS if it
// does not parse, the checksum does not match, or the envelope or snapshot
// name another model or version.
absl::StatusOr<bnserve::v1::Snapshot> DecodeStoredSnapshot(
    std::string_view bytes, std::string_view model, int64_t version);

// Wraps a training-job checkpoint's payload into a checksummed envelope
// naming its model, job and step. INTERNAL if serialization fails.
absl::StatusOr<std::string> EncodeStoredCheckpoint(std::string_view model,
                                                   std::string_view job_id,
                                                   int64_t step,
                                                   std::string_view payload);

// Verifies an envelope read for (model, job_id, step) and returns its
// payload. DATA_LOSS if it does not parse, the checksum does not match, or
// it names another model, job or step.
absl::StatusOr<std::string> DecodeStoredCheckpoint(std::string_view bytes,
                                                   std::string_view model,
                                                   std::string_view job_id,
                                                   int64_t step);

}  // namespace bnserve::store

#endif  // BNSERVE_STORE_ENVELOPE_H_
