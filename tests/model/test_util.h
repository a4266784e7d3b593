// Helpers shared by the model tests: matrices from reference vectors,
// tolerant comparisons that remember the largest differences seen, small
// network specs, and central finite-difference gradient checks at the layer
// level (Layer::ForwardTrain/Backward) and at the network level
// (Trainer::ComputeGradients).
#ifndef BNSERVE_TESTS_MODEL_TEST_UTIL_H_
#define BNSERVE_TESTS_MODEL_TEST_UTIL_H_

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <iostream>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "model/layer.h"
#include "model/network.h"
#include "model/tensor.h"
#include "model/trainer.h"

namespace bnserve::model::test {

inline Matrix FromVector(const std::vector<float>& v, int rows) {
  return Eigen::Map<const Matrix>(v.data(), rows,
                                  static_cast<Eigen::Index>(v.size()) / rows);
}

inline RowVector Row(const std::vector<float>& v) {
  return Eigen::Map<const RowVector>(v.data(),
                                     static_cast<Eigen::Index>(v.size()));
}

// Normal(mean, scale) values, deterministic from `seed`.
inline Matrix RandomMatrix(int rows, int cols, uint64_t seed,
                           float scale = 1.0f, float mean = 0.0f) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> dist(mean, scale);
  Matrix m(rows, cols);
  for (Eigen::Index i = 0; i < m.size(); ++i) m.data()[i] = dist(rng);
  return m;
}

// The largest differences seen by ExpectClose in this test binary, printed
// by PrintParityReport (for the parity report).
struct ParityStats {
  double max_abs = 0.0;
  double max_rel = 0.0;  // |a - e| / max(|e|, 1), the tolerance's scale
  std::string max_abs_what, max_rel_what;
};
inline ParityStats& GlobalParityStats() {
  static ParityStats stats;
  return stats;
}

// Expects |actual - expected| <= tol * max(1, |expected|) elementwise.
inline void ExpectClose(const float* actual, int64_t size,
                        const std::vector<float>& expected, float tol,
                        const std::string& what) {
  ASSERT_EQ(size, static_cast<int64_t>(expected.size())) << what;
  ParityStats& stats = GlobalParityStats();
  for (int64_t i = 0; i < size; ++i) {
    const double e = expected[i];
    const double a = actual[i];
    const double diff = std::abs(a - e);
    const double rel = diff / std::max(std::abs(e), 1.0);
    if (diff > stats.max_abs) {
      stats.max_abs = diff;
      stats.max_abs_what = what;
    }
    if (rel > stats.max_rel) {
      stats.max_rel = rel;
      stats.max_rel_what = what;
    }
    EXPECT_NEAR(a, e, tol * std::max(1.0, std::abs(e)))
        << what << "[" << i << "]";
  }
}

template <typename Derived>
void ExpectClose(const Eigen::DenseBase<Derived>& actual,
                 const std::vector<float>& expected, float tol,
                 const std::string& what) {
  // Row-major copy so that the element order is PyTorch's.
  const Matrix m = actual.derived().template cast<float>();
  ExpectClose(m.data(), m.size(), expected, tol, what);
}

inline void PrintParityReport(const char* name) {
  const ParityStats& s = GlobalParityStats();
  std::cout << "[parity] " << name << ": max |diff| " << s.max_abs << " ("
            << s.max_abs_what << "), max |diff| / max(1, |expected|) "
            << s.max_rel << " (" << s.max_rel_what << ")\n";
}

// Layer specs for building networks in tests.
inline v1::LayerSpec ConvSpec(int out_channels, int kh, int kw, int sh, int sw,
                              int ph, int pw, bool bias) {
  v1::LayerSpec s;
  v1::Conv2dSpec* c = s.mutable_conv2d();
  c->set_out_channels(out_channels);
  c->set_kernel_h(kh);
  c->set_kernel_w(kw);
  c->set_stride_h(sh);
  c->set_stride_w(sw);
  c->set_pad_h(ph);
  c->set_pad_w(pw);
  c->set_bias(bias);
  return s;
}

inline v1::LayerSpec PoolSpec(bool max, int kh, int kw, int sh, int sw, int ph,
                              int pw) {
  v1::LayerSpec s;
  v1::Pool2dSpec* p = max ? s.mutable_max_pool2d() : s.mutable_avg_pool2d();
  p->set_kernel_h(kh);
  p->set_kernel_w(kw);
  p->set_stride_h(sh);
  p->set_stride_w(sw);
  p->set_pad_h(ph);
  p->set_pad_w(pw);
  return s;
}

inline v1::LayerSpec BatchNormSpec(v1::AverageMode average = v1::AVERAGE_EMA) {
  v1::LayerSpec s;
  s.mutable_batch_norm()->set_average(average);
  return s;
}

inline v1::LayerSpec ActivationSpec(v1::Activation fn) {
  v1::LayerSpec s;
  s.set_activation(fn);
  return s;
}

inline v1::LayerSpec FlattenSpec() {
  v1::LayerSpec s;
  s.mutable_flatten();
  return s;
}

inline v1::LayerSpec DenseSpec(int units, bool bias) {
  v1::LayerSpec s;
  s.mutable_dense()->set_units(units);
  s.mutable_dense()->set_bias(bias);
  return s;
}

// A classification spec over [c, h, w] images (or flat features when h and
// w are 0) with the given layers.
inline v1::NetworkSpec ImageSpec(int c, int h, int w, int classes,
                                 const std::vector<v1::LayerSpec>& layers) {
  v1::NetworkSpec spec;
  spec.set_task(v1::TASK_CLASSIFICATION);
  spec.set_output_dim(classes);
  if (h == 0) {
    spec.set_input_features(c);
  } else {
    spec.set_input_features(c * h * w);
    spec.add_input_shape(c);
    spec.add_input_shape(h);
    spec.add_input_shape(w);
  }
  for (const v1::LayerSpec& l : layers) *spec.add_layers() = l;
  return spec;
}

// Gives every batch norm of `net` non-trivial gamma, beta and running
// statistics.
inline void PerturbBatchNorms(Network* net, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> u(0.0f, 1.0f);
  for (int i = 0; i < net->num_layers(); ++i) {
    BatchNorm* bn = net->mutable_layer_as<BatchNorm>(i);
    if (bn == nullptr) continue;
    for (int c = 0; c < bn->features(); ++c) {
      bn->gamma(c) = 0.5f + u(rng);
      bn->beta(c) = u(rng) - 0.5f;
      bn->running_mean(c) = 2.0f * u(rng) - 1.0f;
      bn->running_var(c) = 0.2f + 2.0f * u(rng);
    }
  }
}

// Central finite differences of L = sum(r .* y), y = layer.ForwardTrain(x)
// (batch statistics for batch norm), with respect to every input value and
// every parameter, against Layer::Backward. Returns the number of values
// checked.
inline int CheckLayerGradients(Layer* layer, const Shape& in, const Matrix& x,
                               float h, double abs_tol, double rel_tol,
                               uint64_t seed = 77) {
  Matrix y;
  LayerCache cache;
  layer->ForwardTrain(in, x, &y, &cache);
  const Matrix r = RandomMatrix(static_cast<int>(y.rows()),
                                static_cast<int>(y.cols()), seed);
  Matrix dx;
  LayerGradients grads;
  layer->Backward(in, x, y, r, cache, &dx, &grads);
  auto loss = [&](const Matrix& xx) {
    Matrix yy;
    LayerCache c;
    layer->ForwardTrain(in, xx, &yy, &c);
    return (yy.cast<double>().array() * r.cast<double>().array()).sum();
  };
  int checked = 0;
  EXPECT_EQ(dx.rows(), x.rows());
  EXPECT_EQ(dx.cols(), x.cols());
  Matrix xp = x;
  for (Eigen::Index k = 0; k < x.size(); ++k) {
    const float saved = xp.data()[k];
    xp.data()[k] = saved + h;
    const double plus = loss(xp);
    xp.data()[k] = saved - h;
    const double minus = loss(xp);
    xp.data()[k] = saved;
    const double numeric = (plus - minus) / (2.0 * h);
    EXPECT_NEAR(dx.data()[k], numeric, abs_tol + rel_tol * std::abs(numeric))
        << layer->type() << " dx[" << k << "]";
    ++checked;
  }
  const std::vector<ParamRef> params = layer->Parameters();
  EXPECT_EQ(grads.size(), params.size()) << layer->type();
  for (size_t j = 0; j < params.size() && j < grads.size(); ++j) {
    EXPECT_EQ(grads[j].size(), params[j].size);
    for (int64_t k = 0; k < params[j].size; ++k) {
      float* p = params[j].data + k;
      const float saved = *p;
      *p = saved + h;
      const double plus = loss(x);
      *p = saved - h;
      const double minus = loss(x);
      *p = saved;
      const double numeric = (plus - minus) / (2.0 * h);
      EXPECT_NEAR(grads[j](k), numeric, abs_tol + rel_tol * std::abs(numeric))
          << layer->type() << " parameter " << j << "[" << k << "]";
      ++checked;
    }
  }
  return checked;
}

// d loss / d *p by central differences of the training loss (batch
// statistics), in double: the step is chosen per parameter, h * max(1, |p|),
// the denominator is the step actually taken (the float parameter rounds
// p +- step), and two step sizes are combined by Richardson extrapolation,
// (4 D(step / 2) - D(step)) / 3, which cancels the step^2 error term.
inline double NumericGradient(Trainer& trainer, const Batch& batch, float* p,
                              float h) {
  const float saved = *p;
  auto central = [&](float step) {
    std::vector<LayerGradients> unused;
    const float up = saved + step;
    const float down = saved - step;
    *p = up;
    const double plus = *trainer.ComputeGradients(batch, &unused);
    *p = down;
    const double minus = *trainer.ComputeGradients(batch, &unused);
    *p = saved;
    return (plus - minus) / (double{up} - double{down});
  };
  const float step = h * std::max(1.0f, std::abs(saved));
  return (4.0 * central(step / 2) - central(step)) / 3.0;
}

// NumericGradient for every parameter of `net`, against
// Trainer::ComputeGradients (gradients per layer in Layer::Parameters()
// order), within abs_tol + rel_tol * |numeric|. Returns the number checked.
inline int CheckNetworkGradients(const Network& net, const Batch& batch,
                                 float h, double abs_tol, double rel_tol) {
  Trainer trainer = *Trainer::Create(net, {});
  std::vector<LayerGradients> grads;
  EXPECT_TRUE(trainer.ComputeGradients(batch, &grads).ok());
  Network& n = trainer.mutable_network();
  EXPECT_EQ(grads.size(), static_cast<size_t>(n.num_layers()));
  int checked = 0;
  for (int i = 0; i < n.num_layers(); ++i) {
    const std::vector<ParamRef> params = n.mutable_layer(i).Parameters();
    EXPECT_EQ(grads[i].size(), params.size()) << n.layer(i).type();
    for (size_t j = 0; j < params.size() && j < grads[i].size(); ++j) {
      EXPECT_EQ(grads[i][j].size(), params[j].size);
      for (int64_t k = 0; k < params[j].size; ++k) {
        const double numeric =
            NumericGradient(trainer, batch, params[j].data + k, h);
        EXPECT_NEAR(grads[i][j](k), numeric,
                    abs_tol + rel_tol * std::abs(numeric))
            << "layers[" << i << "] (" << n.layer(i).type() << ") parameter "
            << j << "[" << k << "]";
        ++checked;
      }
    }
  }
  return checked;
}

// A classification minibatch of `rows` random examples.
inline Batch RandomBatch(int rows, int features, int classes, uint64_t seed,
                         float scale = 1.0f, float mean = 0.0f) {
  Batch b;
  b.features = RandomMatrix(rows, features, seed, scale, mean);
  for (int r = 0; r < rows; ++r) b.labels.push_back((r * 7 + 3) % classes);
  return b;
}

// Expects a's and b's outputs on `x` equal within `rel` relative
// (max(1, |a|)).
inline void ExpectSameOutputs(const Network& a, const Network& b,
                              const Matrix& x, float rel) {
  const Matrix ya = a.PredictBatch(x);
  const Matrix yb = b.PredictBatch(x);
  ASSERT_EQ(ya.rows(), yb.rows());
  ASSERT_EQ(ya.cols(), yb.cols());
  for (Eigen::Index i = 0; i < ya.size(); ++i) {
    EXPECT_NEAR(yb.data()[i], ya.data()[i],
                rel * std::max(1.0f, std::abs(ya.data()[i])))
        << "output " << i;
  }
}

}  // namespace bnserve::model::test

#endif  // BNSERVE_TESTS_MODEL_TEST_UTIL_H_
