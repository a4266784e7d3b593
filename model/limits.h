// Every size limit the model library enforces, defined once. Snapshots,
// network specs, JSON imports and requests are checked against these before
// anything is allocated, so a hostile input cannot ask for absurd memory.
#ifndef BNSERVE_MODEL_LIMITS_H_
#define BNSERVE_MODEL_LIMITS_H_

#include <cstdint>

namespace bnserve::model {

// Largest flat width: input features, dense units, batch-norm features,
// channels of an image.
inline constexpr int kMaxWidth = 1 << 16;
// Largest image height or width, and the largest kernel, stride or padding.
inline constexpr int kMaxSpatial = 1 << 12;
// Largest number of values in one example's activation at any layer
// (C * H * W), and in a conv2d layer's im2col scratch: bounds the
// per-thread inference workspace (16 MiB per buffer).
inline constexpr int64_t kMaxActivationValues = int64_t{1} << 22;
// Largest number of multiply-adds (or window reads) of one layer for one
// example: bounds the work a single request can ask for.
inline constexpr int64_t kMaxLayerOps = int64_t{1} << 28;
// Largest number of parameters in one layer (1 GiB of float32).
inline constexpr int64_t kMaxLayerParameters = int64_t{1} << 28;
// Largest number of parameters of a whole network created from a spec
// (Network::Create's default budget, 1 GiB of float32): each layer within
// kMaxLayerParameters is not enough when there can be kMaxLayers of them.
inline constexpr int64_t kMaxNetworkParameters = int64_t{1} << 28;
// Largest number of layers in a network.
inline constexpr int kMaxLayers = 1024;

}  // namespace bnserve::model

#endif  // BNSERVE_MODEL_LIMITS_H_
