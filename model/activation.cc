#include "model/activation.h"

#include <algorithm>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define BNSERVE_HAVE_AVX2_RELU 1
#include <immintrin.h>
#else
#define BNSERVE_HAVE_AVX2_RELU 0
#endif

#include "absl/strings/str_cat.h"
#include "model/dense_kernel.h"
#include "model/relu_kernel.h"
#include "model/status_macros.h"

namespace bnserve::model {
namespace internal {

void ReluGeneric(float* data, Eigen::Index size) {
  // A plain loop the compiler turns into vector compare-and-mask
  // instructions (about 4x fewer instructions than Eigen's NaN-aware max).
  for (Eigen::Index i = 0; i < size; ++i) {
    data[i] = data[i] > 0.0f ? data[i] : 0.0f;
  }
}

#if BNSERVE_HAVE_AVX2_RELU
// The same compare and mask as the generic loop, eight lanes at a time (the
// build's baseline has four).
__attribute__((target("avx2"))) void ReluAvx2(float* data, Eigen::Index size) {
  const __m256 zero = _mm256_setzero_ps();
  Eigen::Index i = 0;
  for (; i + 8 <= size; i += 8) {
    const __m256 x = _mm256_loadu_ps(data + i);
    _mm256_storeu_ps(data + i,
                     _mm256_and_ps(_mm256_cmp_ps(zero, x, _CMP_LT_OQ), x));
  }
  for (; i < size; ++i) data[i] = data[i] > 0.0f ? data[i] : 0.0f;
}
#else
void ReluAvx2(float* data, Eigen::Index size) { ReluGeneric(data, size); }
#endif

}  // namespace internal

namespace {

using ReluKernel = void (*)(float*, Eigen::Index);

// Chosen once per process from the CPU, as the dense kernel is.
ReluKernel Relu() {
  static const ReluKernel kernel =
      internal::CpuHasAvx2Fma() ? &internal::ReluAvx2 : &internal::ReluGeneric;
  return kernel;
}

}  // namespace

void ApplyActivation(v1::Activation fn, float* data, Eigen::Index size) {
  Eigen::Map<Eigen::ArrayXf> a(data, size);
  switch (fn) {
    case v1::ACTIVATION_RELU:
      Relu()(data, size);
      break;
    case v1::ACTIVATION_TANH:
      a = a.tanh();
      break;
    case v1::ACTIVATION_SIGMOID:
      a = 1.0f / (1.0f + (-a).exp());
      break;
    default:
      break;
  }
}

const char* ActivationName(v1::Activation fn) {
  switch (fn) {
    case v1::ACTIVATION_RELU:
      return "relu";
    case v1::ACTIVATION_TANH:
      return "tanh";
    case v1::ACTIVATION_SIGMOID:
      return "sigmoid";
    case v1::ACTIVATION_IDENTITY:
      return "identity";
    default:
      return nullptr;
  }
}

absl::StatusOr<std::unique_ptr<Layer>> ActivationLayer::FromProto(
    const v1::Layer& proto, const std::string&) {
  return std::make_unique<ActivationLayer>(proto.activation().fn());
}

absl::StatusOr<std::unique_ptr<Layer>> ActivationLayer::FromJson(
    const Json& j, const std::string& p) {
  BNSERVE_RETURN_IF_ERROR(json::CheckObject(j, p, {"type", "fn"}));
  BNSERVE_ASSIGN_OR_RETURN(
      v1::Activation fn,
      json::EnumMember<v1::Activation>(j, p, "fn",
                                       {{"relu", v1::ACTIVATION_RELU},
                                        {"tanh", v1::ACTIVATION_TANH},
                                        {"sigmoid", v1::ACTIVATION_SIGMOID},
                                        {"identity", v1::ACTIVATION_IDENTITY}},
                                       std::nullopt));
  return std::make_unique<ActivationLayer>(fn);
}

absl::StatusOr<std::unique_ptr<Layer>> ActivationLayer::FromSpec(
    const v1::LayerSpec& spec, const Shape&, const LayerInit&) {
  return std::make_unique<ActivationLayer>(spec.activation());
}

absl::StatusOr<Shape> ActivationLayer::OutputShape(const Shape& in) const {
  if (ActivationName(fn) == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("fn: unknown activation ", fn));
  }
  return in;
}

std::string ActivationLayer::Describe() const {
  const char* name = ActivationName(fn);
  return name == nullptr ? "activation ?" : name;
}

void ActivationLayer::Forward(const Shape& in, const float* x, float* y,
                              float*) const {
  if (y != x) std::copy(x, x + in.size(), y);
  ApplyActivation(fn, y, in.size());
}

void ActivationLayer::ForwardTrain(const Shape&, const Matrix& x, Matrix* y,
                                   LayerCache*) const {
  *y = x;
  ApplyActivation(fn, y->data(), y->size());
}

void ActivationLayer::Backward(const Shape&, const Matrix&, const Matrix& y,
                               const Matrix& dy, const LayerCache&, Matrix* dx,
                               LayerGradients*) const {
  if (dx == nullptr) return;
  switch (fn) {
    case v1::ACTIVATION_RELU: {
      // A plain loop the compiler vectorizes (Eigen's select is not): both
      // loads unconditional, then a select (a conditional load of dy kept
      // it scalar and branchy).
      dx->resize(dy.rows(), dy.cols());
      const float* yv = y.data();
      const float* d = dy.data();
      float* out = dx->data();
      for (Eigen::Index i = 0; i < dy.size(); ++i) {
        const float g = d[i];
        out[i] = yv[i] > 0.0f ? g : 0.0f;
      }
      break;
    }
    case v1::ACTIVATION_TANH:
      *dx = (dy.array() * (1.0f - y.array().square())).matrix();
      break;
    case v1::ACTIVATION_SIGMOID:
      *dx = (dy.array() * y.array() * (1.0f - y.array())).matrix();
      break;
    default:
      *dx = dy;
      break;
  }
}

void ActivationLayer::ToProto(v1::Layer* out) const {
  out->mutable_activation()->set_fn(fn);
}

Json ActivationLayer::ToJson() const {
  Json j = Json::object();
  j["type"] = type();
  const char* name = ActivationName(fn);
  j["fn"] = name == nullptr ? "identity" : name;
  return j;
}

void ActivationLayer::ToSpec(v1::LayerSpec* out) const {
  out->set_activation(fn);
}

}  // namespace bnserve::model
