#include "model/conv2d.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "model/dense_kernel.h"
#include "model/gemm.h"
#include "model/status_macros.h"

namespace bnserve::model {
namespace {

// [*lo, *hi): the output positions o in [0, out) whose input position
// o * stride - pad + tap lies inside [0, size).
void ValidRange(int out, int size, int stride, int pad, int tap, int* lo,
                int* hi) {
  const int first = pad - tap;  // o * stride >= first
  *lo = first <= 0 ? 0 : std::min(out, (first + stride - 1) / stride);
  const int last = size - 1 + pad - tap;  // o * stride <= last
  *hi = last < 0 ? 0 : std::min(out, last / stride + 1);
  *hi = std::max(*hi, *lo);
}

// out (cols x rows) = a (rows x cols) transposed, both row-major, in 8 x 8
// tiles: a plain transposed copy reads one of the two with a stride of a
// whole row and spends its time in cache misses, and with rows a power of
// two apart (4 KiB for 1024 floats) more than 8 rows of a tile fall into
// one set of the 8-way L1 cache.
void Transpose(const float* a, int64_t rows, int64_t cols, float* out) {
  constexpr int64_t kTile = 8;
  for (int64_t r0 = 0; r0 < rows; r0 += kTile) {
    const int64_t r1 = std::min(rows, r0 + kTile);
    for (int64_t c0 = 0; c0 < cols; c0 += kTile) {
      const int64_t c1 = std::min(cols, c0 + kTile);
      for (int64_t c = c0; c < c1; ++c) {
        for (int64_t r = r0; r < r1; ++r) out[c * rows + r] = a[r * cols + c];
      }
    }
  }
}

// A rows x cols matrix holding `a` transposed.
Matrix Transposed(const float* a, int64_t rows, int64_t cols) {
  Matrix t(cols, rows);
  Transpose(a, rows, cols, t.data());
  return t;
}

// The minibatch layout of training: "example-innermost", one row per input
// (or output) value and one column per example, i.e. the transpose of the
// batch matrix. Then the m examples of one value are contiguous, and the
// im2col copies below move whole runs of (positions x m) floats at a time
// instead of a few floats per example.
//
// Writes the kernel windows of the minibatch `xt` (in.size() x m,
// example-innermost) as a patch x (oh * ow * m) matrix `cols`: row
// (c, i, j), column (oy, ox, example). The in-bounds range of each kernel
// column is computed once, so the inner loops are plain copies.
void Im2Col(const float* xt, int64_t m, const Shape& in, const Window2d& w,
            int oh, int ow, float* cols) {
  const int H = in.height, W = in.width;
  const int64_t run = int64_t{ow} * m;  // one output row of every example
  float* dst = cols;
  for (int c = 0; c < in.channels; ++c) {
    for (int i = 0; i < w.kernel_h; ++i) {
      for (int j = 0; j < w.kernel_w; ++j) {
        int lo, hi;
        ValidRange(ow, W, w.stride_w, w.pad_w, j, &lo, &hi);
        for (int oy = 0; oy < oh; ++oy, dst += run) {
          const int iy = oy * w.stride_h - w.pad_h + i;
          if (iy < 0 || iy >= H || lo == hi) {  // only padding
            std::fill(dst, dst + run, 0.0f);
            continue;
          }
          // The input of output position lo, then every stride_w-th one.
          const float* src =
              xt +
              ((int64_t{c} * H + iy) * W + lo * w.stride_w - w.pad_w + j) * m;
          std::fill(dst, dst + lo * m, 0.0f);
          if (w.stride_w == 1) {
            std::copy(src, src + (hi - lo) * m, dst + lo * m);
          } else {
            for (int k = 0; k < hi - lo; ++k) {
              std::copy(src + k * w.stride_w * m,
                        src + (k * w.stride_w + 1) * m, dst + (lo + k) * m);
            }
          }
          std::fill(dst + hi * m, dst + run, 0.0f);
        }
      }
    }
  }
}

// The kernel window of each output position of one example `x` as a row of
// `patch` values: an (oh * ow) x patch row-major matrix (the transpose of
// Im2Col's), so that each output position is one matrix-vector product.
void Im2Row(const float* x, const Shape& in, const Window2d& w, int oh, int ow,
            float* rows) {
  const int H = in.height, W = in.width;
  float* dst = rows;
  for (int oy = 0; oy < oh; ++oy) {
    for (int ox = 0; ox < ow; ++ox) {
      for (int c = 0; c < in.channels; ++c) {
        const float* xc = x + int64_t{c} * H * W;
        for (int i = 0; i < w.kernel_h; ++i) {
          const int iy = oy * w.stride_h - w.pad_h + i;
          const bool row_in = iy >= 0 && iy < H;
          for (int j = 0; j < w.kernel_w; ++j) {
            const int ix = ox * w.stride_w - w.pad_w + j;
            *dst++ =
                (row_in && ix >= 0 && ix < W) ? xc[int64_t{iy} * W + ix] : 0.0f;
          }
        }
      }
    }
  }
}

// The adjoint of Im2Col: adds each entry of `cols` back onto the input
// value it was read from, in `dxt` (in.size() x m, example-innermost).
void Col2Im(const float* cols, int64_t m, const Shape& in, const Window2d& w,
            int oh, int ow, float* dxt) {
  const int H = in.height, W = in.width;
  const int64_t run = int64_t{ow} * m;
  const float* src = cols;
  for (int c = 0; c < in.channels; ++c) {
    for (int i = 0; i < w.kernel_h; ++i) {
      for (int j = 0; j < w.kernel_w; ++j) {
        int lo, hi;
        ValidRange(ow, W, w.stride_w, w.pad_w, j, &lo, &hi);
        for (int oy = 0; oy < oh; ++oy, src += run) {
          const int iy = oy * w.stride_h - w.pad_h + i;
          if (iy < 0 || iy >= H || lo == hi) continue;
          float* d =
              dxt +
              ((int64_t{c} * H + iy) * W + lo * w.stride_w - w.pad_w + j) * m;
          const float* s = src + lo * m;
          if (w.stride_w == 1) {
            for (int64_t k = 0; k < (hi - lo) * m; ++k) d[k] += s[k];
          } else {
            for (int k = 0; k < hi - lo; ++k) {
              float* dk = d + k * w.stride_w * m;
              for (int64_t e = 0; e < m; ++e) dk[e] += s[k * m + e];
            }
          }
        }
      }
    }
  }
}

Window2d WindowFromProto(const v1::Conv2dLayer& p) {
  return Window2d{p.kernel_h(), p.kernel_w(), p.stride_h(),
                  p.stride_w(), p.pad_h(),    p.pad_w()};
}

// "path.field", or "field" for an empty path (a spec, whose errors the
// network prefixes with the layer's path).
std::string Field(const std::string& path, absl::string_view field) {
  return path.empty() ? std::string(field) : absl::StrCat(path, ".", field);
}

absl::Status CheckSizes(const std::string& path, int64_t in_channels,
                        int64_t out_channels, const Window2d& w) {
  BNSERVE_RETURN_IF_ERROR(
      CheckRange(Field(path, "in_channels"), in_channels, 1, kMaxWidth));
  BNSERVE_RETURN_IF_ERROR(
      CheckRange(Field(path, "out_channels"), out_channels, 1, kMaxWidth));
  if (absl::Status s = w.CheckRanges(false); !s.ok()) {
    return absl::InvalidArgumentError(Field(path, s.message()));
  }
  const int64_t n = out_channels * in_channels * w.kernel_h * w.kernel_w;
  if (n > kMaxLayerParameters) {
    return absl::InvalidArgumentError(
        Field(path, absl::StrCat("weight: the kernel has ", n,
                                 " weights, more than the limit of ",
                                 kMaxLayerParameters)));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<Layer>> Conv2d::FromProto(
    const v1::Layer& proto, const std::string& path) {
  const v1::Conv2dLayer& p = proto.conv2d();
  const Window2d w = WindowFromProto(p);
  BNSERVE_RETURN_IF_ERROR(
      CheckSizes(path, p.in_channels(), p.out_channels(), w));
  // Counts before sizes: a few bytes declaring a large kernel allocate
  // nothing.
  const int64_t n =
      int64_t{p.out_channels()} * p.in_channels() * w.kernel_h * w.kernel_w;
  if (p.weight_size() != n) {
    return json::Invalid(
        path + ".weight",
        absl::StrCat("has ", p.weight_size(), " values, expected ", n));
  }
  if (p.bias_size() != 0 && p.bias_size() != p.out_channels()) {
    return json::Invalid(path + ".bias",
                         absl::StrCat("has ", p.bias_size(),
                                      " values, expected ", p.out_channels()));
  }
  auto conv = std::make_unique<Conv2d>();
  conv->in_channels = p.in_channels();
  conv->window = w;
  conv->weight.resize(p.out_channels(), conv->patch());
  BNSERVE_RETURN_IF_ERROR(CopyFloats(p.weight(), conv->weight.size(),
                                     path + ".weight", conv->weight.data()));
  if (p.bias_size() != 0) {
    conv->bias.resize(p.out_channels());
    BNSERVE_RETURN_IF_ERROR(CopyFloats(p.bias(), p.out_channels(),
                                       path + ".bias", conv->bias.data()));
  }
  return conv;
}

absl::StatusOr<std::unique_ptr<Layer>> Conv2d::FromJson(const Json& j,
                                                        const std::string& p) {
  BNSERVE_RETURN_IF_ERROR(
      json::CheckObject(j, p,
                        {"type", "in_channels", "out_channels", "kernel_size",
                         "stride", "padding", "weight", "bias"}));
  BNSERVE_ASSIGN_OR_RETURN(
      int64_t c, json::IntMember(j, p, "in_channels", 1, kMaxWidth, {}));
  BNSERVE_ASSIGN_OR_RETURN(
      int64_t k, json::IntMember(j, p, "out_channels", 1, kMaxWidth, {}));
  BNSERVE_ASSIGN_OR_RETURN(Window2d w, Window2d::FromJson(j, p, false));
  BNSERVE_RETURN_IF_ERROR(CheckSizes(p, c, k, w));
  BNSERVE_ASSIGN_OR_RETURN(const Json* weight, json::Require(j, p, "weight"));
  std::vector<float> values;
  BNSERVE_RETURN_IF_ERROR(json::ReadNestedFloats(
      *weight, p + ".weight", {k, c, w.kernel_h, w.kernel_w},
      absl::StrCat(k, " x ", c, " x ", w.kernel_h, " x ", w.kernel_w,
                   " nested lists (out_channels, in_channels, kh, kw: "
                   "PyTorch Conv2d.weight)"),
      &values));
  auto conv = std::make_unique<Conv2d>();
  conv->in_channels = static_cast<int>(c);
  conv->window = w;
  conv->weight = Eigen::Map<const Matrix>(values.data(), k, conv->patch());
  const Json* bias = json::Find(j, "bias");
  if (bias != nullptr && !bias->is_null()) {
    std::vector<float> b;
    BNSERVE_RETURN_IF_ERROR(json::ReadFloats(*bias, p + ".bias", k, &b));
    conv->bias = Eigen::Map<const RowVector>(b.data(), k);
  }
  return conv;
}

absl::StatusOr<std::unique_ptr<Layer>> Conv2d::FromSpec(
    const v1::LayerSpec& spec, const Shape& in, const LayerInit& init) {
  const v1::Conv2dSpec& s = spec.conv2d();
  Window2d w{
      s.kernel_h(),
      s.kernel_w() == 0 ? s.kernel_h() : s.kernel_w(),
      s.stride_h() == 0 ? 1 : s.stride_h(),
      s.stride_w() == 0 ? (s.stride_h() == 0 ? 1 : s.stride_h()) : s.stride_w(),
      s.pad_h(),
      s.pad_w()};
  BNSERVE_RETURN_IF_ERROR(CheckSizes("", in.channels, s.out_channels(), w));
  BNSERVE_RETURN_IF_ERROR(w.Apply(in, false, "conv2d").status());
  BNSERVE_RETURN_IF_ERROR(CheckParameterBudget(
      "conv2d",
      int64_t{s.out_channels()} *
          (int64_t{in.channels} * w.kernel_h * w.kernel_w + (s.bias() ? 1 : 0)),
      init));
  auto conv = std::make_unique<Conv2d>();
  conv->in_channels = in.channels;
  conv->window = w;
  conv->weight.resize(s.out_channels(), conv->patch());
  const int64_t kk = int64_t{w.kernel_h} * w.kernel_w;
  InitWeights(init, conv->patch(), s.out_channels() * kk, conv->weight.data(),
              conv->weight.size());
  if (s.bias()) conv->bias = RowVector::Zero(s.out_channels());
  return conv;
}

absl::StatusOr<Shape> Conv2d::OutputShape(const Shape& in) const {
  BNSERVE_ASSIGN_OR_RETURN(Shape out, window.Apply(in, false, "conv2d"));
  if (in.channels != in_channels) {
    return absl::InvalidArgumentError(absl::StrCat("conv2d over ", in_channels,
                                                   " input channels follows ",
                                                   in.ToString()));
  }
  if (weight.cols() != patch() ||
      (has_bias() && bias.size() != weight.rows())) {
    return absl::InvalidArgumentError("weight or bias of the wrong size");
  }
  out.channels = out_channels();
  if (out.size() > kMaxActivationValues ||
      ScratchSize(in) > kMaxActivationValues) {
    return absl::InvalidArgumentError(absl::StrCat(
        "output ", out.ToString(), " or its im2col matrix (", ScratchSize(in),
        " values) has more than ", kMaxActivationValues, " values"));
  }
  if (CacheValues(in) * out_channels() > kMaxLayerOps) {
    return absl::InvalidArgumentError(
        absl::StrCat("one example needs ", CacheValues(in) * out_channels(),
                     " multiply-adds, more than the limit of ", kMaxLayerOps));
  }
  BNSERVE_RETURN_IF_ERROR(CheckFinite("weight", weight.data(), weight.size()));
  BNSERVE_RETURN_IF_ERROR(CheckFinite("bias", bias.data(), bias.size()));
  return out;
}

std::string Conv2d::Describe() const {
  return absl::StrCat("conv2d ", in_channels, "->", out_channels(), " ",
                      window.Describe(), has_bias() ? "" : " (no bias)");
}

int64_t Conv2d::ScratchSize(const Shape& in) const {
  // Im2Row's rows, then the outputs position-major.
  return (patch() + out_channels()) * window.OutHeight(in.height) *
         window.OutWidth(in.width);
}

int64_t Conv2d::CacheValues(const Shape& in) const {
  return patch() * window.OutHeight(in.height) * window.OutWidth(in.width);
}

void Conv2d::Forward(const Shape& in, const float* x, float* y,
                     float* scratch) const {
  // One example: each output position is the dense kernel's W x + b (the
  // runtime-dispatched AVX2+FMA matrix-vector product), then the outputs
  // are transposed to channel-major. Faster here than a GEMM, which packs
  // W for every call.
  const int oh = window.OutHeight(in.height), ow = window.OutWidth(in.width);
  const int64_t n = int64_t{oh} * ow;
  const int k = out_channels();
  const int p = static_cast<int>(patch());
  float* rows = scratch;
  float* by_position = scratch + n * p;
  Im2Row(x, in, window, oh, ow, rows);
  const float* b = has_bias() ? bias.data() : nullptr;
  for (int64_t pos = 0; pos < n; ++pos) {
    DenseForward(weight.data(), b, rows + pos * p, by_position + pos * k, k, p);
  }
  for (int c = 0; c < k; ++c) {
    for (int64_t pos = 0; pos < n; ++pos)
      y[c * n + pos] = by_position[pos * k + c];
  }
}

void Conv2d::ForwardTrain(const Shape& in, const Matrix& x, Matrix* y,
                          LayerCache* cache) const {
  // Example-innermost (see Im2Col): out = W * cols is K x (oh * ow * m),
  // which read as (K * oh * ow) x m is y transposed.
  const int oh = window.OutHeight(in.height), ow = window.OutWidth(in.width);
  const int64_t n = int64_t{oh} * ow;
  const Eigen::Index m = x.rows();
  const Matrix xt = Transposed(x.data(), m, x.cols());
  Matrix& cols = cache->a;
  cols.resize(patch(), n * m);
  Im2Col(xt.data(), m, in, window, oh, ow, cols.data());
  Matrix out(out_channels(), n * m);
  Gemm({weight.data(), weight.rows(), weight.cols()},
       {cols.data(), cols.rows(), cols.cols()}, out.data());
  if (has_bias()) out.colwise() += bias.transpose();
  y->resize(m, out_channels() * n);
  Transpose(out.data(), out_channels() * n, m, y->data());
}

void Conv2d::Backward(const Shape& in, const Matrix&, const Matrix&,
                      const Matrix& dy, const LayerCache& cache, Matrix* dx,
                      LayerGradients* grads) const {
  const int oh = window.OutHeight(in.height), ow = window.OutWidth(in.width);
  const int64_t n = int64_t{oh} * ow;
  const Eigen::Index m = dy.rows();
  // dL/d(W * cols), K x (oh * ow * m): dy transposed, example-innermost.
  const Matrix d = Transposed(dy.data(), m, dy.cols());
  const GemmOperand dop{d.data(), out_channels(), n * m};
  grads->resize(has_bias() ? 2 : 1);
  (*grads)[0].resize(weight.size());
  Gemm(dop, {cache.a.data(), cache.a.rows(), cache.a.cols(), true},
       (*grads)[0].data());
  if (has_bias()) {
    (*grads)[1] = Eigen::Map<const Matrix>(d.data(), out_channels(), n * m)
                      .rowwise()
                      .sum();
  }
  if (dx == nullptr) return;
  Matrix dcols(patch(), n * m);
  Gemm({weight.data(), weight.rows(), weight.cols(), true}, dop, dcols.data());
  Matrix dxt = Matrix::Zero(in.size(), m);
  Col2Im(dcols.data(), m, in, window, oh, ow, dxt.data());
  dx->resize(m, in.size());
  Transpose(dxt.data(), in.size(), m, dx->data());
}

std::vector<ParamRef> Conv2d::Parameters() {
  std::vector<ParamRef> params = {{weight.data(), weight.size()}};
  if (has_bias()) params.push_back({bias.data(), bias.size()});
  return params;
}

std::unique_ptr<Layer> Conv2d::AbsorbFollowing(const Shape&,
                                               const RowVector& scale,
                                               const RowVector& shift) const {
  auto f = std::make_unique<Conv2d>(*this);
  FoldFollowingAffine(weight, bias, scale, shift, &f->weight, &f->bias);
  return f;
}

std::unique_ptr<Layer> Conv2d::AbsorbPreceding(const Shape&,
                                               const RowVector& scale,
                                               const RowVector& shift) const {
  if (window.pad_h != 0 || window.pad_w != 0) return nullptr;
  // Each input channel's scale and shift, repeated over its kh * kw taps.
  const int64_t taps = int64_t{window.kernel_h} * window.kernel_w;
  Eigen::VectorXd s(patch()), t(patch());
  for (int c = 0; c < in_channels; ++c) {
    s.segment(c * taps, taps).setConstant(scale(c));
    t.segment(c * taps, taps).setConstant(shift(c));
  }
  auto f = std::make_unique<Conv2d>(*this);
  FoldPrecedingAffine(weight, bias, s, t, &f->weight, &f->bias);
  return f;
}

void Conv2d::ToProto(v1::Layer* out) const {
  v1::Conv2dLayer* p = out->mutable_conv2d();
  p->set_in_channels(in_channels);
  p->set_out_channels(out_channels());
  p->set_kernel_h(window.kernel_h);
  p->set_kernel_w(window.kernel_w);
  p->set_stride_h(window.stride_h);
  p->set_stride_w(window.stride_w);
  p->set_pad_h(window.pad_h);
  p->set_pad_w(window.pad_w);
  p->mutable_weight()->Assign(weight.data(), weight.data() + weight.size());
  p->mutable_bias()->Assign(bias.data(), bias.data() + bias.size());
}

Json Conv2d::ToJson() const {
  Json j = Json::object();
  j["type"] = type();
  j["in_channels"] = in_channels;
  j["out_channels"] = out_channels();
  window.ToJson(&j);
  j["weight"] = json::NestedFloatArray(
      weight.data(),
      {out_channels(), in_channels, window.kernel_h, window.kernel_w});
  j["bias"] =
      has_bias() ? json::FloatArray(bias.data(), bias.size()) : Json(nullptr);
  return j;
}

void Conv2d::ToSpec(v1::LayerSpec* out) const {
  v1::Conv2dSpec* s = out->mutable_conv2d();
  s->set_out_channels(out_channels());
  s->set_kernel_h(window.kernel_h);
  s->set_kernel_w(window.kernel_w);
  s->set_stride_h(window.stride_h);
  s->set_stride_w(window.stride_w);
  s->set_pad_h(window.pad_h);
  s->set_pad_w(window.pad_w);
  s->set_bias(has_bias());
}

}  // namespace bnserve::model
