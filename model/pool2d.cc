#include "model/pool2d.h"

#include <algorithm>
#include <limits>

#include "absl/strings/str_cat.h"
#include "model/status_macros.h"

namespace bnserve::model {
namespace {

// Calls f(out_index, in_index_or_-1...) for each window: visits every output
// position of every channel with the in-bounds input positions of its
// window. `emit(o, begin_y, end_y, begin_x, end_x, plane_offset)`.
template <typename F>
void ForEachWindow(const Shape& in, const Window2d& w, F emit) {
  const int oh = w.OutHeight(in.height), ow = w.OutWidth(in.width);
  int64_t o = 0;
  for (int c = 0; c < in.channels; ++c) {
    const int64_t base = int64_t{c} * in.height * in.width;
    for (int oy = 0; oy < oh; ++oy) {
      const int y0 = oy * w.stride_h - w.pad_h;
      const int y_begin = std::max(y0, 0);
      const int y_end = std::min(y0 + w.kernel_h, in.height);
      for (int ox = 0; ox < ow; ++ox, ++o) {
        const int x0 = ox * w.stride_w - w.pad_w;
        emit(o, y_begin, y_end, std::max(x0, 0),
             std::min(x0 + w.kernel_w, in.width), base);
      }
    }
  }
}

// Max over one window; writes the flat input index of the maximum (the
// first one on ties, as PyTorch). Activations are finite (inputs and
// parameters are checked), so no NaN handling. Selects, not branches: which
// value wins is data-dependent, and a mispredicted branch per value cost
// more than the comparisons.
float WindowMax(const float* x, int width, int y_begin, int y_end, int x_begin,
                int x_end, int64_t base, int32_t* arg) {
  float best = -std::numeric_limits<float>::infinity();
  int64_t best_index = base + int64_t{y_begin} * width + x_begin;
  for (int yy = y_begin; yy < y_end; ++yy) {
    for (int xx = x_begin; xx < x_end; ++xx) {
      const int64_t idx = base + int64_t{yy} * width + xx;
      const float v = x[idx];
      const bool better = v > best;
      best = better ? v : best;
      best_index = better ? idx : best_index;
    }
  }
  if (arg != nullptr) *arg = static_cast<int32_t>(best_index);
  return best;
}

// Max pooling of one example with 2 x 2 windows and no padding (the usual
// max pool): the same maxima and argmax positions as WindowMax, with the
// window's four offsets fixed, so there is no per-window bounds arithmetic.
// `arg` may be null.
void MaxPool2x2(const float* x, const Shape& in, const Window2d& w, float* y,
                int32_t* arg) {
  const int oh = w.OutHeight(in.height), ow = w.OutWidth(in.width);
  const int W = in.width;
  int64_t o = 0;
  for (int c = 0; c < in.channels; ++c) {
    const int64_t plane = int64_t{c} * in.height * W;
    for (int oy = 0; oy < oh; ++oy) {
      const int64_t row = plane + int64_t{oy} * w.stride_h * W;
      for (int ox = 0; ox < ow; ++ox, ++o) {
        const int64_t i0 = row + int64_t{ox} * w.stride_w;
        const int64_t idx[4] = {i0, i0 + 1, i0 + W, i0 + W + 1};
        float best = x[i0];
        int64_t best_index = i0;
        for (int k = 1; k < 4; ++k) {
          const float v = x[idx[k]];
          const bool better = v > best;
          best = better ? v : best;
          best_index = better ? idx[k] : best_index;
        }
        y[o] = best;
        if (arg != nullptr) arg[o] = static_cast<int32_t>(best_index);
      }
    }
  }
}

bool Is2x2Unpadded(const Window2d& w) {
  return w.kernel_h == 2 && w.kernel_w == 2 && w.pad_h == 0 && w.pad_w == 0;
}

float WindowSum(const float* x, int width, int y_begin, int y_end, int x_begin,
                int x_end, int64_t base) {
  float sum = 0.0f;
  for (int yy = y_begin; yy < y_end; ++yy) {
    for (int xx = x_begin; xx < x_end; ++xx) {
      sum += x[base + int64_t{yy} * width + xx];
    }
  }
  return sum;
}

// A pooling layer of kind T with the window `w`, or w's error.
template <typename T>
absl::StatusOr<std::unique_ptr<Layer>> Make(absl::StatusOr<Window2d> w) {
  if (!w.ok()) return w.status();
  auto l = std::make_unique<T>();
  l->window = *w;
  return l;
}

}  // namespace

absl::StatusOr<Window2d> Pool2d::WindowFromProto(const v1::Pool2dLayer& p,
                                                 const std::string& path) {
  Window2d w{p.kernel_h(), p.kernel_w(), p.stride_h(),
             p.stride_w(), p.pad_h(),    p.pad_w()};
  if (absl::Status s = w.CheckRanges(true); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ".", s.message()));
  }
  return w;
}

absl::StatusOr<Window2d> Pool2d::WindowFromJson(const Json& j,
                                                const std::string& p) {
  BNSERVE_RETURN_IF_ERROR(
      json::CheckObject(j, p, {"type", "kernel_size", "stride", "padding"}));
  BNSERVE_ASSIGN_OR_RETURN(Window2d w, Window2d::FromJson(j, p, true));
  if (absl::Status s = w.CheckRanges(true); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(p, ".", s.message()));
  }
  return w;
}

absl::StatusOr<Window2d> Pool2d::WindowFromSpec(const v1::Pool2dSpec& s,
                                                const Shape& in) {
  Window2d w;
  w.kernel_h = s.kernel_h();
  w.kernel_w = s.kernel_w() == 0 ? s.kernel_h() : s.kernel_w();
  w.stride_h = s.stride_h() == 0 ? w.kernel_h : s.stride_h();
  w.stride_w = s.stride_w() == 0 ? (s.stride_h() == 0 ? w.kernel_w : w.stride_h)
                                 : s.stride_w();
  w.pad_h = s.pad_h();
  w.pad_w = s.pad_w();
  BNSERVE_RETURN_IF_ERROR(w.Apply(in, true, "pooling").status());
  return w;
}

absl::StatusOr<Shape> Pool2d::OutputShape(const Shape& in) const {
  BNSERVE_ASSIGN_OR_RETURN(Shape out, window.Apply(in, true, type()));
  const int64_t reads = out.size() * window.kernel_h * window.kernel_w;
  if (reads > kMaxLayerOps) {
    return absl::InvalidArgumentError(
        absl::StrCat("one example needs ", reads,
                     " window reads, more than the limit of ", kMaxLayerOps));
  }
  return out;
}

std::string Pool2d::Describe() const {
  return absl::StrCat(type(), " ", window.Describe());
}

void Pool2d::ToProto(v1::Layer* out) const {
  v1::Pool2dLayer* p = MutableProto(out);
  p->set_kernel_h(window.kernel_h);
  p->set_kernel_w(window.kernel_w);
  p->set_stride_h(window.stride_h);
  p->set_stride_w(window.stride_w);
  p->set_pad_h(window.pad_h);
  p->set_pad_w(window.pad_w);
}

void Pool2d::ToSpec(v1::LayerSpec* out) const {
  v1::Pool2dSpec* p = MutableSpec(out);
  p->set_kernel_h(window.kernel_h);
  p->set_kernel_w(window.kernel_w);
  p->set_stride_h(window.stride_h);
  p->set_stride_w(window.stride_w);
  p->set_pad_h(window.pad_h);
  p->set_pad_w(window.pad_w);
}

Json Pool2d::ToJson() const {
  Json j = Json::object();
  j["type"] = type();
  window.ToJson(&j);
  return j;
}

// --- max ---

absl::StatusOr<std::unique_ptr<Layer>> MaxPool2d::FromProto(
    const v1::Layer& proto, const std::string& path) {
  return Make<MaxPool2d>(WindowFromProto(proto.max_pool2d(), path));
}

absl::StatusOr<std::unique_ptr<Layer>> MaxPool2d::FromJson(
    const Json& j, const std::string& p) {
  return Make<MaxPool2d>(WindowFromJson(j, p));
}

absl::StatusOr<std::unique_ptr<Layer>> MaxPool2d::FromSpec(
    const v1::LayerSpec& spec, const Shape& in, const LayerInit&) {
  return Make<MaxPool2d>(WindowFromSpec(spec.max_pool2d(), in));
}

void MaxPool2d::Forward(const Shape& in, const float* x, float* y,
                        float*) const {
  if (Is2x2Unpadded(window)) {
    MaxPool2x2(x, in, window, y, nullptr);
    return;
  }
  ForEachWindow(in, window,
                [&](int64_t o, int yb, int ye, int xb, int xe, int64_t base) {
                  y[o] = WindowMax(x, in.width, yb, ye, xb, xe, base, nullptr);
                });
}

void MaxPool2d::ForwardTrain(const Shape& in, const Matrix& x, Matrix* y,
                             LayerCache* cache) const {
  const Shape out = *window.Apply(in, true, "max_pool2d");
  const int64_t n = out.size();
  y->resize(x.rows(), n);
  cache->index.resize(static_cast<size_t>(x.rows() * n));
  for (Eigen::Index r = 0; r < x.rows(); ++r) {
    const float* xr = x.row(r).data();
    float* yr = y->row(r).data();
    int32_t* arg = cache->index.data() + r * n;
    if (Is2x2Unpadded(window)) {
      MaxPool2x2(xr, in, window, yr, arg);
      continue;
    }
    ForEachWindow(in, window,
                  [&](int64_t o, int yb, int ye, int xb, int xe, int64_t base) {
                    yr[o] =
                        WindowMax(xr, in.width, yb, ye, xb, xe, base, arg + o);
                  });
  }
}

void MaxPool2d::Backward(const Shape& in, const Matrix&, const Matrix&,
                         const Matrix& dy, const LayerCache& cache, Matrix* dx,
                         LayerGradients*) const {
  if (dx == nullptr) return;
  dx->setZero(dy.rows(), in.size());
  const int64_t n = dy.cols();
  for (Eigen::Index r = 0; r < dy.rows(); ++r) {
    const int32_t* arg = cache.index.data() + r * n;
    float* dxr = dx->row(r).data();
    for (int64_t o = 0; o < n; ++o) dxr[arg[o]] += dy(r, o);
  }
}

// --- average ---

absl::StatusOr<std::unique_ptr<Layer>> AvgPool2d::FromProto(
    const v1::Layer& proto, const std::string& path) {
  return Make<AvgPool2d>(WindowFromProto(proto.avg_pool2d(), path));
}

absl::StatusOr<std::unique_ptr<Layer>> AvgPool2d::FromJson(
    const Json& j, const std::string& p) {
  return Make<AvgPool2d>(WindowFromJson(j, p));
}

absl::StatusOr<std::unique_ptr<Layer>> AvgPool2d::FromSpec(
    const v1::LayerSpec& spec, const Shape& in, const LayerInit&) {
  return Make<AvgPool2d>(WindowFromSpec(spec.avg_pool2d(), in));
}

void AvgPool2d::Forward(const Shape& in, const float* x, float* y,
                        float*) const {
  const float inv =
      1.0f / static_cast<float>(window.kernel_h * window.kernel_w);
  ForEachWindow(in, window,
                [&](int64_t o, int yb, int ye, int xb, int xe, int64_t base) {
                  y[o] = WindowSum(x, in.width, yb, ye, xb, xe, base) * inv;
                });
}

void AvgPool2d::ForwardTrain(const Shape& in, const Matrix& x, Matrix* y,
                             LayerCache*) const {
  const Shape out = *window.Apply(in, true, "avg_pool2d");
  y->resize(x.rows(), out.size());
  for (Eigen::Index r = 0; r < x.rows(); ++r) {
    Forward(in, x.row(r).data(), y->row(r).data(), nullptr);
  }
}

void AvgPool2d::Backward(const Shape& in, const Matrix&, const Matrix&,
                         const Matrix& dy, const LayerCache&, Matrix* dx,
                         LayerGradients*) const {
  if (dx == nullptr) return;
  dx->setZero(dy.rows(), in.size());
  const float inv =
      1.0f / static_cast<float>(window.kernel_h * window.kernel_w);
  for (Eigen::Index r = 0; r < dy.rows(); ++r) {
    const float* d = dy.row(r).data();
    float* dxr = dx->row(r).data();
    ForEachWindow(in, window,
                  [&](int64_t o, int yb, int ye, int xb, int xe, int64_t base) {
                    const float g = d[o] * inv;
                    for (int yy = yb; yy < ye; ++yy) {
                      for (int xx = xb; xx < xe; ++xx)
                        dxr[base + int64_t{yy} * in.width + xx] += g;
                    }
                  });
  }
}

}  // namespace bnserve::model
