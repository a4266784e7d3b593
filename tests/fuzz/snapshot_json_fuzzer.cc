// client::SnapshotFromJsonText (`bnctl import`): any text is either refused
// with InvalidArgument or gives a snapshot that the model validates, exports
// again and re-imports to the same message (every layer kind's JSON).
#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "client/bnctl/snapshot_json.h"
#include "model/network.h"
#include "tests/fuzz/fuzz_models.h"

using bnserve::fuzz::Fail;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view text(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<bnserve::v1::Snapshot> s =
      bnserve::client::SnapshotFromJsonText(text);
  if (!s.ok()) {
    if (!absl::IsInvalidArgument(s.status())) {
      Fail("SnapshotFromJsonText", s.status().ToString());
    }
    return 0;
  }
  if (!bnserve::model::Network::FromSnapshot(*s).ok()) {
    Fail("FromSnapshot", "an imported snapshot does not validate");
  }
  absl::StatusOr<std::string> again = bnserve::client::SnapshotToJsonText(*s);
  if (!again.ok()) Fail("SnapshotToJsonText", again.status().ToString());
  absl::StatusOr<bnserve::v1::Snapshot> back =
      bnserve::client::SnapshotFromJsonText(*again);
  if (!back.ok()) Fail("re-import", back.status().ToString());
  if (back->SerializeAsString() != s->SerializeAsString()) {
    Fail("round trip", "export -> import changed the snapshot");
  }
  return 0;
}
