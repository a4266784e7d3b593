#include "server/trainer/progress_coalescer.h"

namespace bnserve::server {

bool ProgressCoalescer::AddStep(v1::TrainProgress& progress, absl::Time now) {
  losses_.push_back(static_cast<float>(progress.loss()));
  accuracies_.push_back(static_cast<float>(progress.accuracy()));
  if (interval_ > absl::ZeroDuration() && !progress.published() &&
      now - last_written_ < interval_) {
    return false;
  }
  last_written_ = now;
  MoveTo(progress);
  return true;
}

void ProgressCoalescer::Close(v1::TrainProgress& progress) { MoveTo(progress); }

void ProgressCoalescer::MoveTo(v1::TrainProgress& progress) {
  progress.mutable_step_losses()->Assign(losses_.begin(), losses_.end());
  progress.mutable_step_accuracies()->Assign(accuracies_.begin(),
                                             accuracies_.end());
  losses_.clear();
  accuracies_.clear();
}

}  // namespace bnserve::server
