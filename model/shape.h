// The shape of one example's activation between two layers: either a flat
// vector of `channels` features, or an image of `channels` x `height` x
// `width` values stored channel-major (C, H, W row-major, as PyTorch's
// x.reshape(N, -1)). A flat shape has height = width = 1.
#ifndef BNSERVE_MODEL_SHAPE_H_
#define BNSERVE_MODEL_SHAPE_H_

#include <cstdint>
#include <string>

#include "absl/strings/str_cat.h"

namespace bnserve::model {

struct Shape {
  int channels = 0;
  int height = 1;
  int width = 1;
  bool spatial = false;  // an image [C, H, W] rather than a flat vector

  static Shape Flat(int features) { return Shape{features, 1, 1, false}; }
  static Shape Image(int c, int h, int w) { return Shape{c, h, w, true}; }

  // Values per example.
  int64_t size() const { return int64_t{channels} * height * width; }
  // Values per channel (1 for a flat shape).
  int64_t plane() const { return int64_t{height} * width; }
  // "[64]" or "[16, 8, 8]".
  std::string ToString() const {
    return spatial ? absl::StrCat("[", channels, ", ", height, ", ", width, "]")
                   : absl::StrCat("[", channels, "]");
  }
  bool operator==(const Shape& o) const {
    return channels == o.channels && height == o.height && width == o.width &&
           spatial == o.spatial;
  }
};

}  // namespace bnserve::model

#endif  // BNSERVE_MODEL_SHAPE_H_
