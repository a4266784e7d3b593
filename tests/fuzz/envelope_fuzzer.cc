// Store envelope decoding (store/envelope.h), what every backend does with
// the bytes it reads. The first input byte picks a mode:
//   even: the rest is decoded as is, for model "m" version 1 (the checksum
//         almost never matches: exercises the framing checks);
//   odd:  the rest is parsed as an envelope whose SHA-256 is then fixed up,
//         and decoded for the model and version it names, so the fuzzer
//         reaches the snapshot parsing and the name/version checks behind
//         the checksum (bit 1 set: decoded for "m" version 1 instead). A
//         decoded snapshot is then validated as a reader would
//         (Network::FromSnapshot) and must re-encode.
#include <openssl/sha.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "absl/strings/str_cat.h"
#include "bnserve/v1/store.pb.h"
#include "model/network.h"
#include "store/envelope.h"
#include "tests/fuzz/fuzz_models.h"

using bnserve::fuzz::Fail;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const bool fix_checksum = data[0] & 1;
  std::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  std::string bytes(rest);
  std::string model = "m";
  int64_t version = 1;
  if (fix_checksum) {
    bnserve::v1::StoredSnapshot envelope;
    if (!envelope.ParseFromString(bytes)) return 0;
    unsigned char digest[SHA256_DIGEST_LENGTH];
    SHA256(reinterpret_cast<const unsigned char*>(envelope.snapshot().data()),
           envelope.snapshot().size(), digest);
    envelope.set_sha256(
        std::string(reinterpret_cast<char*>(digest), sizeof(digest)));
    if (!(data[0] & 2)) {
      model = envelope.model();
      version = envelope.version();
    }
    bytes = envelope.SerializeAsString();
  }
  absl::StatusOr<bnserve::v1::Snapshot> snapshot =
      bnserve::store::DecodeStoredSnapshot(bytes, model, version);
  if (!snapshot.ok()) {
    if (!absl::IsDataLoss(snapshot.status())) {
      Fail("DecodeStoredSnapshot",
           absl::StrCat("unexpected code: ", snapshot.status().ToString()));
    }
    return 0;
  }
  if (snapshot->model() != model || snapshot->version() != version) {
    Fail("DecodeStoredSnapshot", "returned another model or version");
  }
  (void)bnserve::model::Network::FromSnapshot(*snapshot);
  absl::StatusOr<std::string> encoded =
      bnserve::store::EncodeStoredSnapshot(*snapshot);
  if (!encoded.ok()) Fail("EncodeStoredSnapshot", encoded.status().ToString());
  if (!bnserve::store::DecodeStoredSnapshot(*encoded, model, version).ok()) {
    Fail("envelope round trip", "a re-encoded snapshot does not decode");
  }
  return 0;
}
