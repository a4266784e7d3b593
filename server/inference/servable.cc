#include "server/inference/servable.h"

#include <cmath>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "model/status_macros.h"

namespace bnserve::inference {

Servable::Servable(v1::Snapshot info, model::Network unfolded,
                   model::Network folded)
    : info_(std::move(info)),
      unfolded_(std::move(unfolded)),
      folded_(std::move(folded)),
      parameter_count_(folded_.parameter_count()),
      loaded_at_(absl::Now()) {}

absl::StatusOr<std::shared_ptr<const Servable>> Servable::Create(
    const v1::Snapshot& snapshot, const DriftOptions& drift) {
  BNSERVE_ASSIGN_OR_RETURN(model::Network unfolded,
                           model::Network::FromSnapshot(snapshot));
  model::Network folded = unfolded.Folded();
  v1::Snapshot info = snapshot;
  info.clear_layers();
  std::shared_ptr<Servable> s(
      new Servable(std::move(info), std::move(unfolded), std::move(folded)));
  for (int i = 0; i < snapshot.layers_size(); ++i) {
    if (!snapshot.layers(i).has_batch_norm()) continue;
    const v1::BatchNormLayer& bn = snapshot.layers(i).batch_norm();
    v1::BatchNormStatistics st;
    st.set_layer(i);
    st.set_features(bn.features());
    st.set_stats_source(bn.stats_source());
    st.set_stats_examples(bn.stats_examples());
    st.set_num_batches_tracked(bn.num_batches_tracked());
    st.set_momentum(bn.momentum());
    st.set_eps(bn.eps());
    st.set_average(bn.average());
    st.set_variance(bn.variance());
    s->batch_norm_.push_back(std::move(st));
  }
  s->drift_ = std::make_unique<DriftMonitor>(&s->unfolded_, drift.sample_every,
                                             drift.alpha);
  // Warm-up: touches every weight once and grows this thread's workspace;
  // a network whose outputs are not finite for a zero input is refused.
  std::vector<float> zeros(s->input_features(), 0.0f);
  std::vector<float> out(s->output_dim());
  model::Workspace ws;
  s->folded_.Forward(zeros.data(), out.data(), &ws);
  if (FirstNonFinite(out.data(), static_cast<int64_t>(out.size())) >= 0) {
    return absl::InvalidArgumentError(
        "warm-up produced a non-finite output for an all-zero input");
  }
  return std::shared_ptr<const Servable>(std::move(s));
}

void Servable::Run(const float* x, float* out) const {
  thread_local model::Workspace ws;
  folded_.Forward(x, out, &ws);
  // An input that overflowed the model (the caller refuses it) is not live
  // traffic the statistics should follow.
  if (FirstNonFinite(out, output_dim()) < 0) drift_->MaybeSample(x);
}

int64_t FirstNonFinite(const float* x, int64_t n) {
  // A branch-free pass the compiler vectorizes (a float is NaN or infinite
  // exactly when its exponent bits are all ones); the position is searched
  // only when something was found.
  uint32_t any = 0;
  for (int64_t i = 0; i < n; ++i) {
    uint32_t bits;
    std::memcpy(&bits, x + i, sizeof(bits));
    any |= static_cast<uint32_t>((bits & 0x7f800000u) == 0x7f800000u);
  }
  if (any == 0) return -1;
  for (int64_t i = 0; i < n; ++i) {
    if (!std::isfinite(x[i])) return i;
  }
  return -1;
}

}  // namespace bnserve::inference
