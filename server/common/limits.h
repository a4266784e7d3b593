// Every bound the servers put on what one request may cost, defined once.
// Sizes are 64-bit; products of request-controlled numbers go through
// SaturatingMul so that no bound check can itself overflow. Bounds are
// checked before anything is allocated for the request.
#ifndef BNSERVE_SERVER_COMMON_LIMITS_H_
#define BNSERVE_SERVER_COMMON_LIMITS_H_

#include <cstdint>
#include <limits>

namespace bnserve::server {

// gRPC messages: --max_message_mb of both servers is in [1, kMaxMessageMb]
// (gRPC takes the size as an int).
inline constexpr int kMaxMessageMb = 2047;
inline constexpr int kDefaultMessageMb = 64;

// Inference: rows of one batch call (PredictBatch, KServe ModelInfer).
inline constexpr int64_t kMaxBatchRows = 65536;
// Inference: default work of one call, rows x the model's parameter count
// (about its multiply-adds): ~1-2 s of one core (--max_request_work).
inline constexpr int64_t kDefaultMaxRequestWork = int64_t{1} << 32;

// HTTP ports (KServe REST, /metrics): the largest request body is the
// largest gRPC message (--max_message_mb); every read or write of a
// connection must progress within kHttpIoTimeoutSeconds (slow clients are
// dropped) and an idle keep-alive connection is closed after it;
// kHttpThreads workers per port.
inline constexpr int kHttpIoTimeoutSeconds = 5;
inline constexpr int kHttpThreads = 8;

// Trainer: values (rows x cols) of one training minibatch.
inline constexpr int64_t kMaxMinibatchValues = int64_t{1} << 28;
// Trainer: default memory of one training step's activations, caches and
// gradients with respect to them (--max_step_mb).
inline constexpr int64_t kDefaultMaxStepMb = 1024;

// Trainer: default parameters of one job's network (--max_job_parameters):
// 2^24 floats are 64 MiB of weights, up to four times that with gradients
// and Adam's moments. Checked on the spec (or the parent snapshot) before
// the network is built.
inline constexpr int64_t kDefaultMaxJobParameters = int64_t{1} << 24;
// Trainer: default number of jobs held at once (--max_jobs); with the
// per-job budget it bounds the trainer's parameters.
inline constexpr int kDefaultMaxJobs = 64;
// Trainer: default time a job without an open stream is kept after its last
// activity before it is forgotten (--job_retention_seconds).
inline constexpr int64_t kDefaultJobRetentionSeconds = 3600;
// Training steps between two checkpoints of a job (--checkpoint_every): a
// checkpoint (two fsyncs) took about 20 ms on the shared development
// machine, some 400 steps of a small network, so 5000 keeps it under 5% of
// training throughput (docs/BENCHMARKS.md) while a crash replays at most
// 5000 steps (about a second of such a network's training).
inline constexpr int64_t kDefaultCheckpointEvery = 5000;
// How long a training job's lease lasts without renewal (trainers sharing a
// Redis store): a job of a dead trainer moves to another after at most this.
inline constexpr int64_t kDefaultJobLeaseMs = 10000;

// Trainer dashboard: points of one job's history kept in memory (loss,
// accuracy and, per batch-norm layer, the running and minibatch statistics
// of its first kDashboardUnits units); beyond it the history is downsampled
// (every other point dropped, the stride doubled), so a job of any length
// holds between kJobHistoryPoints / 2 and kJobHistoryPoints points plus its
// latest step. Publish marks kept per job: the newest kJobHistoryPublishes.
inline constexpr int kJobHistoryPoints = 512;
inline constexpr int kJobHistoryPublishes = 256;
inline constexpr int kDashboardUnits = 4;

// a * b for non-negative a and b, or INT64_MAX if that overflows.
inline constexpr int64_t SaturatingMul(int64_t a, int64_t b) {
  if (a == 0 || b == 0) return 0;
  if (a > std::numeric_limits<int64_t>::max() / b) {
    return std::numeric_limits<int64_t>::max();
  }
  return a * b;
}

// a + b for non-negative a and b, or INT64_MAX if that overflows.
inline constexpr int64_t SaturatingAdd(int64_t a, int64_t b) {
  if (a > std::numeric_limits<int64_t>::max() - b) {
    return std::numeric_limits<int64_t>::max();
  }
  return a + b;
}

}  // namespace bnserve::server

#endif  // BNSERVE_SERVER_COMMON_LIMITS_H_
