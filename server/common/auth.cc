#include "server/common/auth.h"

#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace bnserve::server {

absl::StatusOr<TokenAuth> TokenAuth::FromFile(const std::string& path) {
  if (path.empty()) return TokenAuth();
  std::ifstream in(path);
  if (!in) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot read the token file ", path));
  }
  std::stringstream buffer;
  buffer << in.rdbuf();
  std::string token(absl::StripAsciiWhitespace(buffer.str()));
  if (token.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("the token file ", path, " is empty"));
  }
  return TokenAuth(std::move(token));
}

absl::Status TokenAuth::Check(const grpc::ServerContextBase& context) const {
  if (!enabled()) return absl::OkStatus();
  const auto& metadata = context.client_metadata();
  auto it = metadata.find("authorization");
  if (it == metadata.end()) return CheckAuthorization(nullptr);
  const std::string value(it->second.data(), it->second.size());
  return CheckAuthorization(&value);
}

absl::Status TokenAuth::CheckAuthorization(
    const std::string* authorization) const {
  if (!enabled()) return absl::OkStatus();
  if (authorization == nullptr) {
    return absl::UnauthenticatedError(
        "this server requires 'authorization: Bearer <token>'");
  }
  const std::string& value = *authorization;
  const std::string expected = "Bearer " + token_;
  // Constant-time comparison.
  unsigned char diff = value.size() == expected.size() ? 0 : 1;
  for (size_t i = 0; i < value.size() && i < expected.size(); ++i) {
    diff |= static_cast<unsigned char>(value[i] ^ expected[i]);
  }
  if (diff != 0) return absl::UnauthenticatedError("invalid bearer token");
  return absl::OkStatus();
}

}  // namespace bnserve::server
