// Metrics: request counters and the latency histogram, recorded lock-free
// from many threads, rendered in the Prometheus text format.
#include "server/inference/metrics.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"

namespace bnserve::inference {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

TEST(MetricsTest, CountsByMethodAndCodeWithACumulativeHistogram) {
  Metrics m;
  m.RecordRequest("Predict", grpc::StatusCode::OK, absl::Microseconds(30));
  m.RecordRequest("Predict", grpc::StatusCode::OK, absl::Microseconds(300));
  m.RecordRequest("Predict", grpc::StatusCode::INVALID_ARGUMENT,
                  absl::Seconds(2));
  m.RecordRequest("ModelInfer", grpc::StatusCode::OK, absl::Microseconds(70));
  EXPECT_EQ(m.RequestCount("Predict", grpc::StatusCode::OK), 2u);
  EXPECT_EQ(m.RequestCount("Predict", grpc::StatusCode::INVALID_ARGUMENT), 1u);
  EXPECT_EQ(m.RequestCount("ModelInfer", grpc::StatusCode::OK), 1u);
  EXPECT_EQ(m.RequestCount("PredictBatch", grpc::StatusCode::OK), 0u);

  const std::string text = m.Render({}, true);
  const std::string p = "bnserve_inference_";
  EXPECT_THAT(text, HasSubstr(p + "requests_total{method=\"Predict\",code="
                                  "\"OK\"} 2\n"));
  EXPECT_THAT(text, HasSubstr(p + "requests_total{method=\"Predict\",code="
                                  "\"INVALID_ARGUMENT\"} 1\n"));
  EXPECT_THAT(text, Not(HasSubstr("code=\"NOT_FOUND\"")));
  // 30 us <= 50 us; 300 us <= 500 us; 2 s only in +Inf.
  const std::string b =
      p + "request_duration_seconds_bucket{method=\"Predict\"";
  EXPECT_THAT(text, HasSubstr(b + ",le=\"5e-05\"} 1\n"));
  EXPECT_THAT(text, HasSubstr(b + ",le=\"0.00025\"} 1\n"));
  EXPECT_THAT(text, HasSubstr(b + ",le=\"0.0005\"} 2\n"));
  EXPECT_THAT(text, HasSubstr(b + ",le=\"1\"} 2\n"));
  EXPECT_THAT(text, HasSubstr(b + ",le=\"+Inf\"} 3\n"));
  EXPECT_THAT(text, HasSubstr(p + "request_duration_seconds_count{method="
                                  "\"Predict\"} 3\n"));
  EXPECT_THAT(text, HasSubstr(p + "request_duration_seconds_sum{method="
                                  "\"Predict\"} 2.00033\n"));
  // Methods render sorted by name.
  EXPECT_LT(text.find("method=\"ModelInfer\""),
            text.find("method=\"Predict\""));
}

TEST(MetricsTest, ConcurrentRecordingLosesNothing) {
  Metrics m;
  constexpr int kThreads = 8;
  constexpr int kPerThread = 20000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&m, t] {
      // Half the threads also register methods of their own while others
      // record, so registration races with the lock-free lookups.
      const std::string own = absl::StrCat("Method", t);
      for (int i = 0; i < kPerThread; ++i) {
        m.RecordRequest("Predict", grpc::StatusCode::OK,
                        absl::Microseconds(1 + i % 900));
        if (t % 2 == 0) {
          m.RecordRequest(own, grpc::StatusCode::UNAVAILABLE,
                          absl::Microseconds(10));
        }
      }
    });
  }
  for (std::thread& th : threads) th.join();
  EXPECT_EQ(m.RequestCount("Predict", grpc::StatusCode::OK),
            static_cast<uint64_t>(kThreads) * kPerThread);
  for (int t = 0; t < kThreads; t += 2) {
    EXPECT_EQ(m.RequestCount(absl::StrCat("Method", t),
                             grpc::StatusCode::UNAVAILABLE),
              static_cast<uint64_t>(kPerThread));
  }
  EXPECT_THAT(m.Render({}, true),
              HasSubstr(absl::StrCat("request_duration_seconds_count{method="
                                     "\"Predict\"} ",
                                     kThreads * kPerThread, "\n")));
}

TEST(MetricsTest, MethodsBeyondTheLimitAreCountedAsOther) {
  Metrics m;
  for (int i = 0; i < Metrics::kMaxMethods + 5; ++i) {
    m.RecordRequest(absl::StrCat("M", i), grpc::StatusCode::OK,
                    absl::Microseconds(1));
  }
  EXPECT_EQ(m.RequestCount("M0", grpc::StatusCode::OK), 1u);
  EXPECT_EQ(m.RequestCount(absl::StrCat("M", Metrics::kMaxMethods - 2),
                           grpc::StatusCode::OK),
            1u);
  EXPECT_EQ(m.RequestCount("other", grpc::StatusCode::OK), 6u);
}

TEST(MetricsTest, LoadCountersAndEscapedLabels) {
  Metrics m;
  m.RecordLoad("digits");
  m.RecordLoad("digits");
  m.RecordLoadFailure("we\"ird");
  const std::string text = m.Render({}, false);
  EXPECT_THAT(text, HasSubstr("bnserve_inference_model_reloads_total{model="
                              "\"digits\"} 2\n"));
  EXPECT_THAT(text, HasSubstr("bnserve_inference_model_load_failures_total{"
                              "model=\"we\\\"ird\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("bnserve_inference_ready 0\n"));
}

}  // namespace
}  // namespace bnserve::inference
