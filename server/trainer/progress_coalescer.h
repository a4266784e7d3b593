#ifndef BNSERVE_SERVER_TRAINER_PROGRESS_COALESCER_H_
#define BNSERVE_SERVER_TRAINER_PROGRESS_COALESCER_H_

#include <vector>

#include "absl/time/time.h"
#include "bnserve/v1/trainer.pb.h"

namespace bnserve::server {

// Decides which of a Train stream's progress messages are written and
// carries the loss and accuracy of the steps in between into the next one
// written (TrainRequest.progress_interval_ms). With a zero interval every
// step's progress is written; otherwise at most one per interval, but always
// one that reports a publish. A stream that sends slower than the interval
// still gets every step. Not thread-safe: one per stream, used by the
// stream's reactions (which never run concurrently).
class ProgressCoalescer {
 public:
  explicit ProgressCoalescer(absl::Duration interval = absl::ZeroDuration())
      : interval_(interval) {}

  void set_interval(absl::Duration interval) { interval_ = interval; }

  // Records the progress of one step (its loss and accuracy). True if it is
  // to be written now: `progress` then lists every step not yet written in
  // step_losses / step_accuracies.
  bool AddStep(v1::TrainProgress& progress, absl::Time now);

  // For the closing progress (the stream's last message): lists the steps
  // not yet written. Always written.
  void Close(v1::TrainProgress& progress);

 private:
  void MoveTo(v1::TrainProgress& progress);

  absl::Duration interval_;
  absl::Time last_written_ = absl::InfinitePast();
  std::vector<float> losses_;
  std::vector<float> accuracies_;
};

}  // namespace bnserve::server

#endif  // BNSERVE_SERVER_TRAINER_PROGRESS_COALESCER_H_
