// store::ParseStoreUri, ValidateModelName and ValidateLabel on any text.
// Names are checked against an independent implementation of the rule
// [A-Za-z0-9][A-Za-z0-9._-]{0,63} (labels: first character a letter), which
// is what keeps a model name from escaping the store's root directory.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
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

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  CheckName(text, /*label=*/false);
  CheckName(text, /*label=*/true);

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
      if (uri->host.empty() || uri->port < 1 || uri->port > 65535 ||
          uri->db < 0) {
        Fail("ParseStoreUri",
             absl::StrCat("bad redis endpoint host='", Esc(uri->host),
                          "' port=", uri->port, " db=", uri->db));
      }
      break;
  }
  return 0;
}
