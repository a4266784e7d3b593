// The command-line syntax for a network's layers (`bnctl train --layers`)
// and its input shape (`--input-shape`).
//
//   --input-shape 1,8,8
//   --layers
//   conv:16:3:p1,bn,relu,maxpool:2,conv:32:3:p1,bn,relu,maxpool:2,flatten,dense:64,bn,relu
//
// Tokens, comma-separated, in forward order:
//   conv:OUT:K[:sS][:pP]   2-D convolution, OUT channels, K x K kernel (or
//                          KHxKW), stride S (default 1), zero padding P
//                          (default 0), as PyTorch Conv2d
//   dense:N                fully connected layer of N units
//   bn                     batch norm (per feature, or per channel of an
//                          image); first token: input normalization
//   relu | tanh | sigmoid | identity
//   maxpool:K[:sS][:pP]    max pooling; stride defaults to K (PyTorch)
//   avgpool:K[:sS][:pP]    average pooling (padding counts as zeros)
//   flatten                image -> flat vector (channel-major)
// A dense or conv layer directly followed by bn has no bias (beta replaces
// it). The output layer (dense with one unit per class, or per regression
// output) is appended by bnctl, so the list ends with the last hidden layer.
//
// Pure functions; thread-safe.
#ifndef BNSERVE_CLIENT_BNCTL_LAYER_SYNTAX_H_
#define BNSERVE_CLIENT_BNCTL_LAYER_SYNTAX_H_

#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "bnserve/v1/snapshot.pb.h"

namespace bnserve::client {

// Parses the --layers list. Batch-norm layers get `bn` as their settings.
// InvalidArgument names the offending token and what was expected.
absl::StatusOr<std::vector<v1::LayerSpec>> ParseLayers(
    absl::string_view text, const v1::BatchNormSpec& bn);

// Parses "C,H,W" (each a positive integer).
absl::StatusOr<std::vector<int>> ParseInputShape(absl::string_view text);

}  // namespace bnserve::client

#endif  // BNSERVE_CLIENT_BNCTL_LAYER_SYNTAX_H_
