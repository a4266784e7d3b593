#include "model/trainer.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"

namespace bnserve::model {

absl::StatusOr<Trainer> Trainer::Create(Network network,
                                        const OptimizerConfig& config) {
  if (!(config.learning_rate > 0.0f) || !std::isfinite(config.learning_rate)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "learning rate must be positive, got ", config.learning_rate));
  }
  if (!(config.weight_decay >= 0.0f) || !std::isfinite(config.weight_decay)) {
    return absl::InvalidArgumentError("weight decay must be >= 0");
  }
  if (config.kind == OptimizerConfig::Kind::kSgd &&
      !(config.momentum >= 0.0f && config.momentum < 1.0f)) {
    return absl::InvalidArgumentError(
        absl::StrCat("SGD momentum must be in [0, 1), got ", config.momentum));
  }
  if (config.kind == OptimizerConfig::Kind::kAdam &&
      !(config.beta1 >= 0.0f && config.beta1 < 1.0f && config.beta2 >= 0.0f &&
        config.beta2 < 1.0f && config.adam_eps > 0.0f)) {
    return absl::InvalidArgumentError(
        "Adam needs beta1, beta2 in [0, 1) and eps > 0");
  }
  return Trainer(std::move(network), config);
}

absl::Status Trainer::ValidateBatch(const BatchView& batch) const {
  const Eigen::Map<const Matrix> x = batch.FeatureMatrix();
  if (x.rows() == 0) {
    return absl::InvalidArgumentError("empty minibatch: it has no examples");
  }
  if (x.rows() < 2) {
    return absl::InvalidArgumentError(
        "a training minibatch needs at least 2 examples: batch "
        "normalization cannot estimate a variance from one");
  }
  if (x.cols() != network_.input_features()) {
    return absl::InvalidArgumentError(absl::StrCat("minibatch has ", x.cols(),
                                                   " features per example, the "
                                                   "model expects ",
                                                   network_.input_features()));
  }
  // One vectorised pass: 0 * v is 0 for every finite v and NaN for NaN and
  // +-Inf, so the sum is NaN exactly when some feature is not finite (Eigen's
  // allFinite() compares element by element and costs several times more).
  // The position is looked for only when bad.
  if (std::isnan((x.array() * 0.0f).sum())) {
    Eigen::Index r = 0, c = 0;
    while (std::isfinite(x(r, c))) {
      if (++c == x.cols()) c = 0, ++r;
    }
    return absl::InvalidArgumentError(
        absl::StrCat("feature ", c, " of example ", r, " is NaN or Inf"));
  }
  if (network_.task() == v1::TASK_CLASSIFICATION) {
    if (batch.labels.size() != static_cast<size_t>(x.rows())) {
      return absl::InvalidArgumentError(
          absl::StrCat("minibatch has ", x.rows(), " examples but ",
                       batch.labels.size(), " labels"));
    }
    for (size_t r = 0; r < batch.labels.size(); ++r) {
      if (batch.labels[r] < 0 || batch.labels[r] >= network_.output_dim()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "label ", batch.labels[r], " of example ", r,
            " is out of range: classes are 0..", network_.output_dim() - 1));
      }
    }
  } else {
    if (batch.target_rows != x.rows() ||
        batch.target_cols != network_.output_dim()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "regression targets must be ", x.rows(), " x ", network_.output_dim(),
          ", got ", batch.target_rows, " x ", batch.target_cols));
    }
    if (!batch.TargetMatrix().allFinite()) {
      return absl::InvalidArgumentError("a regression target is NaN or Inf");
    }
  }
  return absl::OkStatus();
}

double Trainer::ForwardBackward(const BatchView& batch, double* accuracy) {
  const int n = network_.num_layers();
  activations_.resize(n + 1);
  caches_.resize(n);
  grads_.resize(n);
  activations_[0] = batch.FeatureMatrix();
  for (int i = 0; i < n; ++i) {
    network_.layer(i).ForwardTrain(network_.shape(i), activations_[i],
                                   &activations_[i + 1], &caches_[i]);
  }
  input_grads_.resize(n + 1);
  const double loss = Head(batch, activations_[n], &input_grads_[n], accuracy);
  for (int k = n; k-- > 0;) {
    network_.layer(k).Backward(network_.shape(k), activations_[k],
                               activations_[k + 1], input_grads_[k + 1],
                               caches_[k], k > 0 ? &input_grads_[k] : nullptr,
                               &grads_[k]);
  }
  return loss;
}

double Trainer::Head(const BatchView& batch, const Matrix& y, Matrix* d,
                     double* accuracy) const {
  const Eigen::Index m = y.rows();
  double loss = 0.0;
  *accuracy = 0.0;
  if (network_.task() != v1::TASK_CLASSIFICATION) {
    *d = y - batch.TargetMatrix();
    loss = d->cast<double>().array().square().mean();
    *d *= 2.0f / static_cast<float>(d->size());
    return loss;
  }
  d->resize(m, y.cols());
  int correct = 0;
  for (Eigen::Index r = 0; r < m; ++r) {
    const float mx = y.row(r).maxCoeff();
    Eigen::Index best = 0;
    y.row(r).maxCoeff(&best);
    d->row(r) = (y.row(r).array() - mx).exp().matrix();
    const float sum = d->row(r).sum();
    d->row(r) /= sum;
    const int label = batch.labels[r];
    loss -= std::log(std::max(static_cast<double>((*d)(r, label)), 1e-30));
    (*d)(r, label) -= 1.0f;
    if (best == label) ++correct;
  }
  *d /= static_cast<float>(m);
  *accuracy = static_cast<double>(correct) / static_cast<double>(m);
  return loss / static_cast<double>(m);
}

void Trainer::ApplyOptimizer() {
  const bool adam = config_.kind == OptimizerConfig::Kind::kAdam;
  size_t index = 0;
  const float lr = config_.learning_rate;
  const float wd = config_.weight_decay;
  const double t = static_cast<double>(steps_);
  const float bc1 =
      adam ? static_cast<float>(1.0 - std::pow(config_.beta1, t)) : 1.0f;
  const float bc2 =
      adam ? static_cast<float>(1.0 - std::pow(config_.beta2, t)) : 1.0f;
  auto update = [&](float* p, const float* g, Eigen::Index size) {
    if (moment1_.size() <= index) {
      moment1_.emplace_back(size, 0.0f);
      moment2_.emplace_back(adam ? size : 0, 0.0f);
    }
    if (!adam) {
      // PyTorch SGD: g += wd * p; buf = momentum * buf + g; p -= lr * buf
      // (the first step's buf is g, which momentum * 0 + g equals).
      // One fused pass (the same operations in the same order as the
      // Eigen expressions m1 = momentum * m1 + grad + wd * param; param -=
      // lr * m1, which take two).
      const float momentum = config_.momentum;
      float* __restrict pv = p;
      float* __restrict mv = moment1_[index].data();
      for (Eigen::Index k = 0; k < size; ++k) {
        const float v = momentum * mv[k] + g[k] + wd * pv[k];
        mv[k] = v;
        pv[k] -= lr * v;
      }
    } else {
      Eigen::Map<Eigen::ArrayXf> param(p, size);
      Eigen::Map<const Eigen::ArrayXf> grad(g, size);
      Eigen::Map<Eigen::ArrayXf> m1(moment1_[index].data(), size);
      Eigen::Map<Eigen::ArrayXf> m2(moment2_[index].data(), size);
      const Eigen::ArrayXf gd = grad + wd * param;
      m1 = config_.beta1 * m1 + (1.0f - config_.beta1) * gd;
      m2 = config_.beta2 * m2 + (1.0f - config_.beta2) * gd.square();
      param -=
          (lr / bc1) * m1 / (m2.sqrt() / std::sqrt(bc2) + config_.adam_eps);
    }
    ++index;
  };
  for (int i = 0; i < network_.num_layers(); ++i) {
    const std::vector<ParamRef> params = network_.mutable_layer(i).Parameters();
    for (size_t j = 0; j < params.size(); ++j) {
      update(params[j].data, grads_[i][j].data(), params[j].size);
    }
  }
}

absl::StatusOr<double> Trainer::ComputeGradients(
    const BatchView& batch, std::vector<LayerGradients>* grads) {
  if (absl::Status s = ValidateBatch(batch); !s.ok()) return s;
  double accuracy = 0.0;
  const double loss = ForwardBackward(batch, &accuracy);
  *grads = grads_;
  return loss;
}

absl::StatusOr<StepResult> Trainer::Step(const BatchView& batch) {
  if (absl::Status s = ValidateBatch(batch); !s.ok()) return s;
  StepResult result;
  result.loss = ForwardBackward(batch, &result.accuracy);
  const int m = static_cast<int>(batch.rows);
  for (int i = 0; i < network_.num_layers(); ++i) {
    network_.mutable_layer(i).AfterStep(caches_[i]);
  }
  ++steps_;
  examples_seen_ += m;
  ApplyOptimizer();
  result.step = steps_;
  result.examples = m;
  return result;
}

TrainerState Trainer::ExportState() const {
  return {steps_, examples_seen_, moment1_, moment2_};
}

absl::Status Trainer::RestoreState(TrainerState state) {
  if (state.steps < 0 || state.examples_seen < 0) {
    return absl::InvalidArgumentError("negative trainer step or example count");
  }
  std::vector<Eigen::Index> sizes;
  for (int i = 0; i < network_.num_layers(); ++i) {
    for (const ParamRef& p : network_.mutable_layer(i).Parameters()) {
      sizes.push_back(p.size);
    }
  }
  const bool adam = config_.kind == OptimizerConfig::Kind::kAdam;
  const bool started = !state.moment1.empty();
  if (started && (state.moment1.size() != sizes.size() ||
                  state.moment2.size() != sizes.size())) {
    return absl::InvalidArgumentError(
        absl::StrCat("optimizer state has ", state.moment1.size(),
                     " buffers; the network "
                     "has ",
                     sizes.size(), " parameter tensors"));
  }
  for (size_t i = 0; started && i < sizes.size(); ++i) {
    const size_t n = static_cast<size_t>(sizes[i]);
    if (state.moment1[i].size() != n ||
        state.moment2[i].size() != (adam ? n : 0)) {
      return absl::InvalidArgumentError(
          absl::StrCat("optimizer buffer ", i,
                       " does not fit its parameter tensor of ", n, " values"));
    }
  }
  steps_ = state.steps;
  examples_seen_ = state.examples_seen;
  moment1_ = std::move(state.moment1);
  moment2_ = std::move(state.moment2);
  return absl::OkStatus();
}

}  // namespace bnserve::model
