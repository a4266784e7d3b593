// Network <-> v1::Snapshot conversion. FromSnapshot checks every size before
// copying and delegates the semantic checks to ValidateAndSetShape.
#include <utility>

#include "absl/strings/str_cat.h"
#include "model/network.h"
#include "model/status_macros.h"

namespace bnserve::model {
namespace {

template <typename Repeated>
void CopyOut(const RowVector& v, Repeated* field) {
  field->Assign(v.data(), v.data() + v.size());
}

// Copies `field` into `out` after checking it has `expected` entries.
template <typename Repeated>
absl::Status CopyIn(const Repeated& field, int64_t expected, int layer,
                    const char* what, RowVector* out) {
  if (field.size() != expected) {
    return absl::InvalidArgumentError(
        absl::StrCat("layer ", layer, ": ", what, " has ", field.size(),
                     " values, expected ", expected));
  }
  *out = Eigen::Map<const RowVector>(field.data(), field.size());
  return absl::OkStatus();
}

absl::Status CheckDim(int layer, const char* what, int64_t v) {
  if (v <= 0 || v > kMaxWidth) {
    return absl::InvalidArgumentError(absl::StrCat("layer ", layer, ": ", what,
                                                   " must be between 1 and ",
                                                   kMaxWidth, ", got ", v));
  }
  return absl::OkStatus();
}

}  // namespace

v1::Snapshot Network::ToSnapshot() const {
  v1::Snapshot s;
  s.set_task(task_);
  s.set_input_features(input_features_);
  s.set_output_dim(output_dim_);
  for (const Layer& layer : layers_) {
    v1::Layer* pl = s.add_layers();
    if (const auto* d = std::get_if<Dense>(&layer)) {
      v1::DenseLayer* pd = pl->mutable_dense();
      pd->set_in(d->in());
      pd->set_out(d->out());
      pd->mutable_weight()->Assign(d->weight.data(),
                                   d->weight.data() + d->weight.size());
      CopyOut(d->bias, pd->mutable_bias());
    } else if (const auto* bn = std::get_if<BatchNorm>(&layer)) {
      v1::BatchNormLayer* pb = pl->mutable_batch_norm();
      pb->set_features(bn->features());
      CopyOut(bn->gamma, pb->mutable_gamma());
      CopyOut(bn->beta, pb->mutable_beta());
      CopyOut(bn->running_mean, pb->mutable_running_mean());
      CopyOut(bn->running_var, pb->mutable_running_var());
      pb->set_momentum(bn->config.momentum);
      pb->set_eps(bn->config.eps);
      pb->set_num_batches_tracked(bn->num_batches_tracked);
      pb->set_average(bn->config.average);
      pb->set_variance(bn->config.variance);
      pb->set_stats_source(bn->stats_source);
      pb->set_stats_examples(bn->stats_examples);
    } else {
      pl->mutable_activation()->set_fn(std::get<ActivationLayer>(layer).fn);
    }
  }
  return s;
}

absl::StatusOr<Network> Network::FromSnapshot(const v1::Snapshot& snapshot) {
  Network net;
  net.task_ = snapshot.task();
  net.input_features_ = snapshot.input_features();
  net.output_dim_ = snapshot.output_dim();
  for (int i = 0; i < snapshot.layers_size(); ++i) {
    const v1::Layer& pl = snapshot.layers(i);
    switch (pl.kind_case()) {
      case v1::Layer::kDense: {
        const v1::DenseLayer& pd = pl.dense();
        BNSERVE_RETURN_IF_ERROR(CheckDim(i, "dense in", pd.in()));
        BNSERVE_RETURN_IF_ERROR(CheckDim(i, "dense out", pd.out()));
        const int64_t n = int64_t{pd.in()} * pd.out();
        if (pd.weight_size() != n) {
          return absl::InvalidArgumentError(
              absl::StrCat("layer ", i, ": dense weight has ", pd.weight_size(),
                           " values, expected out x in = ", n));
        }
        Dense d;
        d.weight =
            Eigen::Map<const Matrix>(pd.weight().data(), pd.out(), pd.in());
        if (pd.bias_size() != 0) {
          BNSERVE_RETURN_IF_ERROR(
              CopyIn(pd.bias(), pd.out(), i, "dense bias", &d.bias));
        }
        net.layers_.push_back(std::move(d));
        break;
      }
      case v1::Layer::kBatchNorm: {
        const v1::BatchNormLayer& pb = pl.batch_norm();
        BNSERVE_RETURN_IF_ERROR(
            CheckDim(i, "batch-norm features", pb.features()));
        BatchNorm bn;
        BNSERVE_RETURN_IF_ERROR(
            CopyIn(pb.gamma(), pb.features(), i, "gamma", &bn.gamma));
        BNSERVE_RETURN_IF_ERROR(
            CopyIn(pb.beta(), pb.features(), i, "beta", &bn.beta));
        BNSERVE_RETURN_IF_ERROR(CopyIn(pb.running_mean(), pb.features(), i,
                                       "running_mean", &bn.running_mean));
        BNSERVE_RETURN_IF_ERROR(CopyIn(pb.running_var(), pb.features(), i,
                                       "running_var", &bn.running_var));
        bn.config.momentum = pb.momentum();
        bn.config.eps = pb.eps();
        bn.config.average = pb.average() == v1::AVERAGE_MODE_UNSPECIFIED
                                ? v1::AVERAGE_EMA
                                : pb.average();
        bn.config.variance = pb.variance() == v1::VARIANCE_ESTIMATOR_UNSPECIFIED
                                 ? v1::VARIANCE_UNBIASED
                                 : pb.variance();
        if (!v1::AverageMode_IsValid(bn.config.average) ||
            !v1::VarianceEstimator_IsValid(bn.config.variance) ||
            !v1::StatsSource_IsValid(pb.stats_source())) {
          return absl::InvalidArgumentError(
              absl::StrCat("layer ", i,
                           ": unknown batch-norm average mode, variance "
                           "estimator or statistics source"));
        }
        bn.num_batches_tracked = pb.num_batches_tracked();
        bn.stats_source = pb.stats_source();
        bn.stats_examples = pb.stats_examples();
        net.layers_.push_back(std::move(bn));
        break;
      }
      case v1::Layer::kActivation:
        net.layers_.push_back(ActivationLayer{pl.activation().fn()});
        break;
      default:
        return absl::InvalidArgumentError(
            absl::StrCat("layer ", i, " has an unknown or missing kind"));
    }
  }
  BNSERVE_RETURN_IF_ERROR(net.ValidateAndSetShape());
  return net;
}

}  // namespace bnserve::model
