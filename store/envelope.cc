#include "store/envelope.h"

#include <openssl/sha.h>

#include <cstdint>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "bnserve/v1/store.pb.h"
#include "store/strings.h"

namespace bnserve::store {
namespace {

std::string Sha256(std::string_view data) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(),
         digest);
  return std::string(reinterpret_cast<const char*>(digest), sizeof(digest));
}

}  // namespace

absl::StatusOr<std::string> EncodeStoredSnapshot(
    const bnserve::v1::Snapshot& snapshot) {
  bnserve::v1::StoredSnapshot envelope;
  if (!snapshot.SerializeToString(envelope.mutable_snapshot())) {
    return absl::InternalError(Cat("cannot serialize snapshot of model '",
                                   snapshot.model(), "' (",
                                   snapshot.ByteSizeLong(), " bytes)"));
  }
  envelope.set_sha256(Sha256(envelope.snapshot()));
  envelope.set_model(snapshot.model());
  envelope.set_version(snapshot.version());
  std::string out;
  if (!envelope.SerializeToString(&out)) {
    return absl::InternalError("cannot serialize snapshot envelope");
  }
  return out;
}

absl::StatusOr<bnserve::v1::Snapshot> DecodeStoredSnapshot(
    std::string_view bytes, std::string_view model, int64_t version) {
  const std::string what = Cat("snapshot ", model, "/", version);
  bnserve::v1::StoredSnapshot envelope;
  if (bytes.size() > static_cast<size_t>(INT32_MAX) ||
      !envelope.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
    return absl::DataLossError(Cat(what,
                                   " is corrupt: envelope does not parse (",
                                   bytes.size(), " bytes)"));
  }
  if (envelope.sha256() != Sha256(envelope.snapshot())) {
    return absl::DataLossError(
        Cat(what, " is corrupt: SHA-256 checksum mismatch"));
  }
  if (envelope.model() != model || envelope.version() != version) {
    return absl::DataLossError(Cat(what, " is corrupt: envelope is for ",
                                   envelope.model(), "/", envelope.version()));
  }
  bnserve::v1::Snapshot snapshot;
  if (!snapshot.ParseFromString(envelope.snapshot())) {
    return absl::DataLossError(
        Cat(what, " is corrupt: snapshot does not parse"));
  }
  if (snapshot.model() != model || snapshot.version() != version) {
    return absl::DataLossError(Cat(what, " is corrupt: it is ",
                                   snapshot.model(), "/", snapshot.version()));
  }
  return snapshot;
}

absl::StatusOr<std::string> EncodeStoredCheckpoint(std::string_view model,
                                                   std::string_view job_id,
                                                   int64_t step,
                                                   std::string_view payload) {
  bnserve::v1::StoredCheckpoint envelope;
  envelope.set_payload(std::string(payload));
  envelope.set_sha256(Sha256(payload));
  envelope.set_model(std::string(model));
  envelope.set_job_id(std::string(job_id));
  envelope.set_step(step);
  std::string out;
  if (!envelope.SerializeToString(&out)) {
    return absl::InternalError(Cat("cannot serialize checkpoint of job ",
                                   job_id, " (", payload.size(), " bytes)"));
  }
  return out;
}

absl::StatusOr<std::string> DecodeStoredCheckpoint(std::string_view bytes,
                                                   std::string_view model,
                                                   std::string_view job_id,
                                                   int64_t step) {
  const std::string what =
      Cat("checkpoint ", model, "/", job_id, " at step ", step);
  bnserve::v1::StoredCheckpoint envelope;
  if (bytes.size() > static_cast<size_t>(INT32_MAX) ||
      !envelope.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
    return absl::DataLossError(Cat(what,
                                   " is corrupt: envelope does not parse (",
                                   bytes.size(), " bytes)"));
  }
  if (envelope.sha256() != Sha256(envelope.payload())) {
    return absl::DataLossError(
        Cat(what, " is corrupt: SHA-256 checksum mismatch"));
  }
  if (envelope.model() != model || envelope.job_id() != job_id ||
      envelope.step() != step) {
    return absl::DataLossError(Cat(what, " is corrupt: envelope is for ",
                                   envelope.model(), "/", envelope.job_id(),
                                   " at step ", envelope.step()));
  }
  return std::move(*envelope.mutable_payload());
}

}  // namespace bnserve::store
