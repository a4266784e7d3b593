// ProgressCoalescer: which progress messages of a Train stream are written,
// and that the ones held back reach the next one written.
#include "server/trainer/progress_coalescer.h"

#include "gtest/gtest.h"

namespace bnserve::server {
namespace {

v1::TrainProgress StepProgress(int64_t step, bool published = false) {
  v1::TrainProgress p;
  p.set_step(step);
  p.set_loss(static_cast<double>(step) / 4);  // exact in float
  p.set_accuracy(static_cast<double>(step) / 8);
  p.set_published(published);
  return p;
}

TEST(ProgressCoalescerTest, WithoutIntervalEveryStepIsWrittenWithItsLoss) {
  ProgressCoalescer c;
  const absl::Time t = absl::FromUnixSeconds(100);
  for (int step = 1; step <= 3; ++step) {
    v1::TrainProgress p = StepProgress(step);
    ASSERT_TRUE(c.AddStep(p, t));  // same instant: no interval to wait for
    ASSERT_EQ(p.step_losses_size(), 1);
    EXPECT_EQ(p.step_losses(0), step / 4.0f);
    EXPECT_EQ(p.step_accuracies(0), step / 8.0f);
  }
}

TEST(ProgressCoalescerTest,
     AnIntervalHoldsStepsBackAndTheNextWrittenListsThem) {
  ProgressCoalescer c(absl::Milliseconds(100));
  const absl::Time t0 = absl::FromUnixSeconds(100);
  v1::TrainProgress p = StepProgress(1);
  ASSERT_TRUE(c.AddStep(p, t0));  // the first step is reported at once
  EXPECT_EQ(p.step_losses_size(), 1);
  for (int step = 2; step <= 4; ++step) {
    p = StepProgress(step);
    EXPECT_FALSE(c.AddStep(p, t0 + absl::Milliseconds(10 * step)));
  }
  p = StepProgress(5);
  ASSERT_TRUE(c.AddStep(p, t0 + absl::Milliseconds(100)));
  ASSERT_EQ(p.step_losses_size(), 4);  // steps 2..5
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(p.step_losses(i), (i + 2) / 4.0f);
    EXPECT_EQ(p.step_accuracies(i), (i + 2) / 8.0f);
  }
  // The interval counts from the last write.
  p = StepProgress(6);
  EXPECT_FALSE(c.AddStep(p, t0 + absl::Milliseconds(199)));
}

TEST(ProgressCoalescerTest, APublishIsWrittenAtOnceAndCloseTakesTheRest) {
  ProgressCoalescer c(absl::Hours(1));
  const absl::Time t0 = absl::FromUnixSeconds(100);
  v1::TrainProgress p = StepProgress(1);
  ASSERT_TRUE(c.AddStep(p, t0));
  p = StepProgress(2);
  EXPECT_FALSE(c.AddStep(p, t0));
  p = StepProgress(3, /*published=*/true);
  ASSERT_TRUE(c.AddStep(p, t0));
  EXPECT_EQ(p.step_losses_size(), 2);  // steps 2 and 3
  p = StepProgress(4);
  EXPECT_FALSE(c.AddStep(p, t0));
  v1::TrainProgress closing = StepProgress(4);
  c.Close(closing);
  ASSERT_EQ(closing.step_losses_size(), 1);
  EXPECT_EQ(closing.step_losses(0), 1.0f);
  v1::TrainProgress again = StepProgress(4);
  c.Close(again);  // nothing left
  EXPECT_EQ(again.step_losses_size(), 0);
}

}  // namespace
}  // namespace bnserve::server
