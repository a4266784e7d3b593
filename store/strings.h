// Debian 12's Abseil is built with its own absl::string_view (not an alias of
// std::string_view), so absl string functions do not accept std::string_view.
// These adapters keep the rest of store/ written in std::string_view.
#ifndef BNSERVE_STORE_STRINGS_H_
#define BNSERVE_STORE_STRINGS_H_

#include <string>
#include <string_view>
#include <type_traits>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace bnserve::store {

inline absl::string_view Sv(std::string_view s) {
  return absl::string_view(s.data(), s.size());
}
inline std::string_view StdSv(absl::string_view s) {
  return std::string_view(s.data(), s.size());
}

namespace strings_internal {
template <typename T>
decltype(auto) Piece(const T& v) {
  if constexpr (std::is_convertible_v<const T&, std::string_view>) {
    return Sv(std::string_view(v));
  } else {
    return (v);
  }
}
}  // namespace strings_internal

// absl::StrCat that also takes std::string_view.
template <typename... Args>
std::string Cat(const Args&... args) {
  return absl::StrCat(strings_internal::Piece(args)...);
}

}  // namespace bnserve::store

#endif  // BNSERVE_STORE_STRINGS_H_
