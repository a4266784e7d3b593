// bench-loadgen: the project's load generator (callback-API gRPC client).
//
//   --mode=predict   unary bnserve.v1.Inference/Predict calls, one digits
//                    test row each (cycled). Closed loop with --concurrency
//                    calls always in flight, or open loop at --rate calls/s
//                    (latency measured from each call's scheduled start, so
//                    a stalled server is not hidden by coordinated
//                    omission; the sender sleeps, never spins). Runs
//                    --warmup_s then --duration_s, or stops after
//                    --requests calls. Prints one JSON line: qps,
//                    p50/p99/p999/max latency (us), ok and error counts and
//                    the first error; open loop also the p99/p999 from the
//                    actual send and the send's lag behind schedule.
//                    --target may list several servers (comma-separated,
//                    open loop only): each gets --rate calls/s and the calls
//                    alternate between them one by one, so every server sees
//                    the same moments of the machine's noise; one JSON line
//                    per server, in --target's order.
//   --mode=frame     writes the h2load request body (gRPC length-prefixed
//                    PredictRequest of test row 0) to --out.
//   --mode=train     creates a job on the trainer at --target (digits
//                    [128, 64], SGD lr 0.01 momentum 0.9, no publishing) and
//                    streams --epochs epochs of --batch_size minibatches
//                    through Train; --window bounds the minibatches sent
//                    ahead of the progress replies (1 = lockstep, 0 =
//                    only gRPC flow control); --pack_bytes packs several
//                    minibatches per request, as bnctl. Prints examples/s.
//   --mode=train_local  the same minibatches through model::Trainer in this
//                    process (the in-process reference for --mode=train).
#include <grpcpp/grpcpp.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <time.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <numeric>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "bench/bench_util.h"
#include "bnserve/v1/inference.grpc.pb.h"
#include "bnserve/v1/trainer.grpc.pb.h"
#include "model/network.h"
#include "model/trainer.h"

ABSL_FLAG(std::string, mode, "predict",
          "predict | frame | train | train_local");
ABSL_FLAG(std::string, target, "127.0.0.1:50052",
          "server host:port; predict open loop: several, comma-separated");
ABSL_FLAG(std::string, model, "digits", "model name");
ABSL_FLAG(std::string, data, "data/digits/test.csv",
          "CSV (header, label last): test rows for predict, training rows "
          "for train");
ABSL_FLAG(int32_t, concurrency, 16, "closed loop: calls in flight");
ABSL_FLAG(double, rate, 0, "open loop: calls per second (0 = closed loop)");
ABSL_FLAG(int32_t, max_outstanding, 4096,
          "open loop: calls in flight beyond which a call is dropped");
ABSL_FLAG(int32_t, channels, 1, "gRPC channels (separate connections)");
ABSL_FLAG(double, warmup_s, 1, "seconds before measuring");
ABSL_FLAG(double, duration_s, 5, "seconds measured");
ABSL_FLAG(int64_t, requests, 0,
          "stop after this many calls instead (0 = use duration_s)");
ABSL_FLAG(std::string, out, "h2load-body.bin", "frame: output file");
ABSL_FLAG(int32_t, batch_size, 64, "train: minibatch rows");
ABSL_FLAG(int32_t, epochs, 20, "train: epochs over the data");
ABSL_FLAG(int32_t, window, 0,
          "train: minibatches sent ahead of progress replies (0 = no limit)");
ABSL_FLAG(uint32_t, progress_interval_ms, 0,
          "train: TrainRequest.progress_interval_ms (0 = a progress per "
          "minibatch, which --window > 0 needs)");
ABSL_FLAG(int64_t, pack_bytes, 1 << 20,
          "train: features packed into one TrainRequest (TrainRequest.batches; "
          "bnctl packs 1 MiB); 0 = one minibatch per request, which "
          "--window > 0 needs");

namespace bnserve::bench {
namespace {

// ---------------------------------------------------------------- predict

struct PredictRun {
  std::vector<std::unique_ptr<v1::Inference::Stub>> stubs;
  std::vector<v1::PredictRequest> requests;
  bool closed_loop = true;
  int64_t max_requests = 0;                  // 0 = time-bound
  int64_t measure_from = 0, measure_to = 0;  // ns, steady clock

  std::atomic<bool> stop{false};
  std::atomic<int64_t> issued{0};
  std::atomic<int64_t> dropped{0};

  absl::Mutex mu;
  int64_t outstanding ABSL_GUARDED_BY(mu) = 0;
  int64_t ok ABSL_GUARDED_BY(mu) = 0;
  int64_t errors ABSL_GUARDED_BY(mu) = 0;
  int64_t measured ABSL_GUARDED_BY(mu) = 0;
  std::string first_error ABSL_GUARDED_BY(mu);
  std::vector<int64_t> latencies ABSL_GUARDED_BY(mu);  // ns, measured calls
  // Open loop: latency from the actual send, and the send's lag behind its
  // due time (the load generator's own lateness), ns.
  std::vector<int64_t> sent_latencies ABSL_GUARDED_BY(mu);
  std::vector<int64_t> send_lags ABSL_GUARDED_BY(mu);
  int64_t first_done = 0, last_done = 0;  // request-bound runs

  void Issue(int64_t scheduled_ns);
};

class PredictCall final : public grpc::ClientUnaryReactor {
 public:
  PredictCall(PredictRun* run, int64_t index, int64_t scheduled_ns)
      : run_(run), scheduled_(scheduled_ns), sent_(NowNanos()) {
    const v1::PredictRequest& request =
        run->requests[index % run->requests.size()];
    run->stubs[index % run->stubs.size()]->async()->Predict(&context_, &request,
                                                            &response_, this);
    StartCall();
  }

  void OnDone(const grpc::Status& status) override {
    const int64_t end = NowNanos();
    PredictRun* run = run_;
    bool again = false;
    {
      absl::MutexLock lock(&run->mu);
      if (status.ok()) {
        ++run->ok;
      } else {
        if (run->errors++ == 0) {
          run->first_error = absl::StrFormat("%d: %s", status.error_code(),
                                             status.error_message());
        }
      }
      const bool in_window =
          run->max_requests > 0
              ? true
              : (end >= run->measure_from && end < run->measure_to);
      if (in_window) {
        ++run->measured;
        run->latencies.push_back(end - scheduled_);
        if (!run->closed_loop) {
          run->sent_latencies.push_back(end - sent_);
          run->send_lags.push_back(sent_ - scheduled_);
        }
        if (run->first_done == 0) run->first_done = end;
        run->last_done = end;
      }
      // The next call is reserved under the lock, so the main thread never
      // sees zero calls outstanding while one is about to start.
      again = run->closed_loop && !run->stop.load();
      if (again) ++run->outstanding;
    }
    if (again) run->Issue(NowNanos());
    delete this;
    // Counted down last, so the main thread only goes on once this call's
    // memory is released.
    absl::MutexLock lock(&run->mu);
    --run->outstanding;
  }

 private:
  PredictRun* const run_;
  const int64_t scheduled_;
  const int64_t sent_;
  grpc::ClientContext context_;
  v1::PredictResponse response_;
};

// Starts one call; the caller has already counted it in `outstanding`.
void PredictRun::Issue(int64_t scheduled_ns) {
  const int64_t index = issued.fetch_add(1);
  if (max_requests > 0 && index >= max_requests) {
    absl::MutexLock lock(&mu);
    stop.store(true);
    --outstanding;
    return;
  }
  new PredictCall(this, index, scheduled_ns);
}

std::vector<v1::PredictRequest> MakePredictRequests(const std::string& model,
                                                    const Table& t) {
  std::vector<v1::PredictRequest> requests(t.rows);
  for (int r = 0; r < t.rows; ++r) {
    requests[r].set_model(model);
    const float* row = t.features.data() + static_cast<size_t>(r) * t.cols;
    requests[r].mutable_features()->Add(row, row + t.cols);
  }
  return requests;
}

std::shared_ptr<grpc::Channel> Connect(const std::string& target, int i) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  args.SetInt("bnserve.bench.channel_index", i);  // distinct connections
  args.SetMaxReceiveMessageSize(64 << 20);
  auto channel = grpc::CreateCustomChannel(
      target, grpc::InsecureChannelCredentials(), args);
  if (!channel->WaitForConnected(std::chrono::system_clock::now() +
                                 std::chrono::seconds(10))) {
    std::fprintf(stderr, "cannot connect to %s\n", target.c_str());
    std::exit(1);
  }
  return channel;
}

// The open loop: call i is due at start + i / rate whatever happened to
// the calls before it. The thread sleeps until each due time (absolute
// clock_nanosleep with 1 ns timer slack, no spinning: a spinning sender
// would take one of the machine's two cores from the servers under test)
// and a late wake-up sends every call that is due at once. Each call's
// latency runs from its due time, so the sender's own lateness is counted
// against the server too; it is reported apart as the send lag. With
// several runs (servers), each is offered `rate` calls/s: the combined
// schedule runs at runs.size() * rate and call i goes to run i % size.
void RunOpenLoop(const std::vector<PredictRun*>& runs, double rate,
                 int64_t start, int64_t end) {
  prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
  const double interval = 1e9 / (rate * static_cast<double>(runs.size()));
  const int64_t max_out = absl::GetFlag(FLAGS_max_outstanding);
  for (int64_t i = 0;; ++i) {
    PredictRun& run = *runs[i % runs.size()];
    if (run.stop.load()) break;
    const int64_t at = start + static_cast<int64_t>(i * interval);
    if (at >= end) break;
    if (NowNanos() < at) {
      timespec ts{static_cast<time_t>(at / 1000000000),
                  static_cast<long>(at % 1000000000)};
      while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, nullptr) ==
             EINTR) {
      }
    }
    bool full;
    {
      absl::MutexLock lock(&run.mu);
      full = run.outstanding >= max_out;
      if (!full) ++run.outstanding;
    }
    if (full) {
      run.dropped.fetch_add(1);
    } else {
      run.Issue(at);
    }
  }
}

void PrintPredict(PredictRun& run, const std::string& target, double rate,
                  double seconds) ABSL_EXCLUSIVE_LOCKS_REQUIRED(run.mu);

// Connects `run` to `target` and sets up its requests and time window.
void SetUpRun(PredictRun& run, const std::string& target, const Table& t,
              int64_t start) {
  run.requests = MakePredictRequests(absl::GetFlag(FLAGS_model), t);
  for (int i = 0; i < absl::GetFlag(FLAGS_channels); ++i) {
    run.stubs.push_back(v1::Inference::NewStub(Connect(target, i)));
  }
  const double rate = absl::GetFlag(FLAGS_rate);
  run.closed_loop = rate <= 0;
  run.max_requests = absl::GetFlag(FLAGS_requests);
  if (!run.closed_loop) {
    // Grown once here, not under the lock in the middle of the run.
    const size_t expected = static_cast<size_t>(
        rate * (absl::GetFlag(FLAGS_duration_s) + 1) * 1.2 + 1024);
    absl::MutexLock lock(&run.mu);
    run.latencies.reserve(expected);
    run.sent_latencies.reserve(expected);
    run.send_lags.reserve(expected);
  }
  run.measure_from =
      start + static_cast<int64_t>(absl::GetFlag(FLAGS_warmup_s) * 1e9);
  run.measure_to = run.measure_from +
                   static_cast<int64_t>(absl::GetFlag(FLAGS_duration_s) * 1e9);
}

// Stops `run`, waits for its calls and prints its JSON line.
bool FinishRun(PredictRun& run, const std::string& target, int64_t start) {
  {
    absl::MutexLock lock(&run.mu);
    run.stop.store(true);
    run.mu.Await(absl::Condition(
        +[](int64_t* n) { return *n == 0; }, &run.outstanding));
  }
  absl::MutexLock lock(&run.mu);
  double seconds = absl::GetFlag(FLAGS_duration_s);
  if (run.max_requests > 0) {
    seconds = static_cast<double>(run.last_done - start) / 1e9;
  }
  PrintPredict(run, target, absl::GetFlag(FLAGS_rate), seconds);
  return run.errors == 0;
}

int RunPredict() {
  const Table t = ReadLabelledCsv(absl::GetFlag(FLAGS_data));
  const std::vector<std::string> targets =
      absl::StrSplit(absl::GetFlag(FLAGS_target), ',', absl::SkipEmpty());
  const double rate = absl::GetFlag(FLAGS_rate);
  if (targets.empty() || (targets.size() > 1 && rate <= 0)) {
    std::fprintf(stderr, "--target: one server, or several with --rate\n");
    return 2;
  }
  // Never destroyed: the process _Exit()s, and a callback thread may still
  // be leaving run.mu when the main thread prints the results.
  std::vector<PredictRun*> runs;
  for (size_t i = 0; i < targets.size(); ++i) runs.push_back(new PredictRun);
  const int64_t start = NowNanos();
  for (size_t i = 0; i < targets.size(); ++i) {
    SetUpRun(*runs[i], targets[i], t, start);
  }
  PredictRun& first = *runs[0];
  const int64_t end = first.max_requests > 0 ? INT64_MAX : first.measure_to;
  if (first.closed_loop) {
    for (int i = 0; i < absl::GetFlag(FLAGS_concurrency); ++i) {
      {
        absl::MutexLock lock(&first.mu);
        ++first.outstanding;
      }
      first.Issue(NowNanos());
    }
    while (!first.stop.load() && NowNanos() < end) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  } else {
    RunOpenLoop(runs, rate, start, end);
  }
  bool ok = true;
  for (size_t i = 0; i < targets.size(); ++i) {
    ok = FinishRun(*runs[i], targets[i], start) && ok;
  }
  return ok ? 0 : 1;
}

void PrintPredict(PredictRun& run, const std::string& target, double rate,
                  double seconds) ABSL_EXCLUSIVE_LOCKS_REQUIRED(run.mu) {
  const double qps = static_cast<double>(run.measured) / seconds;
  std::vector<int64_t>& lat = run.latencies;
  std::vector<int64_t>& sent = run.sent_latencies;
  std::vector<int64_t>& lag = run.send_lags;
  std::printf(
      "{\"mode\": \"predict\", \"target\": \"%s\", \"concurrency\": %d, "
      "\"rate\": %.0f, \"qps\": %.1f, \"p50_us\": %.1f, \"p99_us\": %.1f, "
      "\"p999_us\": %.1f, \"max_us\": %.1f, \"sent_p99_us\": %.1f, "
      "\"sent_p999_us\": %.1f, \"send_lag_p99_us\": %.1f, "
      "\"send_lag_max_us\": %.1f, \"measured\": %lld, \"ok\": %lld, "
      "\"errors\": %lld, \"dropped\": %lld, \"first_error\": \"%s\"}\n",
      target.c_str(), run.closed_loop ? absl::GetFlag(FLAGS_concurrency) : 0,
      rate, qps, Quantile(lat, 0.5) / 1e3, Quantile(lat, 0.99) / 1e3,
      Quantile(lat, 0.999) / 1e3, Quantile(lat, 1.0) / 1e3,
      Quantile(sent, 0.99) / 1e3, Quantile(sent, 0.999) / 1e3,
      Quantile(lag, 0.99) / 1e3, Quantile(lag, 1.0) / 1e3,
      static_cast<long long>(run.measured), static_cast<long long>(run.ok),
      static_cast<long long>(run.errors),
      static_cast<long long>(run.dropped.load()), run.first_error.c_str());
}

int RunFrame() {
  const Table t = ReadLabelledCsv(absl::GetFlag(FLAGS_data));
  const v1::PredictRequest request =
      MakePredictRequests(absl::GetFlag(FLAGS_model), t)[0];
  const std::string body = request.SerializeAsString();
  std::string framed(5, '\0');
  const uint32_t n = static_cast<uint32_t>(body.size());
  framed[1] = static_cast<char>(n >> 24);
  framed[2] = static_cast<char>(n >> 16);
  framed[3] = static_cast<char>(n >> 8);
  framed[4] = static_cast<char>(n);
  framed += body;
  std::ofstream(absl::GetFlag(FLAGS_out), std::ios::binary) << framed;
  std::printf("{\"mode\": \"frame\", \"bytes\": %zu}\n", framed.size());
  return 0;
}

// ------------------------------------------------------------------ train

// Full minibatches of the data in file order (the remainder is dropped).
std::vector<v1::Minibatch> MakeMinibatches(const Table& t, int b) {
  std::vector<v1::Minibatch> out;
  for (int start = 0; start + b <= t.rows; start += b) {
    v1::Minibatch m;
    m.set_rows(b);
    m.set_cols(t.cols);
    const float* p = t.features.data() + static_cast<size_t>(start) * t.cols;
    // As bnctl: raw little-endian float32 (Minibatch.features_f32).
    m.set_features_f32(reinterpret_cast<const char*>(p),
                       static_cast<size_t>(b) * t.cols * sizeof(float));
    m.mutable_labels()->Add(t.labels.begin() + start,
                            t.labels.begin() + start + b);
    out.push_back(std::move(m));
  }
  return out;
}

class TrainStream final
    : public grpc::ClientBidiReactor<v1::TrainRequest, v1::TrainProgress> {
 public:
  // Sends `total` requests: messages[i % size] for all but the last, which
  // is `last`.
  TrainStream(v1::Trainer::Stub* stub, std::vector<v1::TrainRequest> messages,
              v1::TrainRequest last, int64_t total, int window)
      : messages_(std::move(messages)),
        last_(std::move(last)),
        total_(total),
        window_(window) {
    stub->async()->Train(&context_, this);
    StartRead(&progress_);
    {
      absl::MutexLock lock(&mu_);
      MaybeWriteLocked();
    }
    StartCall();
  }

  void OnWriteDone(bool ok) override {
    absl::MutexLock lock(&mu_);
    writing_ = false;
    if (ok) MaybeWriteLocked();
  }
  void OnReadDone(bool ok) override {
    if (!ok) return;
    absl::MutexLock lock(&mu_);
    ++received_;
    last_loss_ = progress_.loss();
    MaybeWriteLocked();
    StartRead(&progress_);
  }
  void OnDone(const grpc::Status& status) override {
    absl::MutexLock lock(&mu_);
    status_ = status;
    done_ = true;
  }

  grpc::Status Await() {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(&done_));
    return status_;
  }
  double last_loss() {
    absl::MutexLock lock(&mu_);
    return last_loss_;
  }

 private:
  void MaybeWriteLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (writing_ || writes_done_) return;
    if (sent_ == total_) {
      writes_done_ = true;
      StartWritesDone();
      return;
    }
    if (window_ > 0 && sent_ - received_ >= window_) return;
    writing_ = true;
    StartWrite(sent_ + 1 == total_ ? &last_
                                   : &messages_[sent_ % messages_.size()]);
    ++sent_;
  }

  grpc::ClientContext context_;
  const std::vector<v1::TrainRequest> messages_;
  const v1::TrainRequest last_;
  const int64_t total_;
  const int window_;
  v1::TrainProgress progress_;
  absl::Mutex mu_;
  int64_t sent_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t received_ ABSL_GUARDED_BY(mu_) = 0;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool writes_done_ ABSL_GUARDED_BY(mu_) = false;
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  double last_loss_ ABSL_GUARDED_BY(mu_) = 0;
  grpc::Status status_ ABSL_GUARDED_BY(mu_);
};

// CreateJob for the digits net [128, 64] (SGD, momentum 0.9), published
// only on request; false (and a message on stderr) if it fails.
bool CreateTrainJob(v1::Trainer::Stub& stub, int cols, v1::Job* job) {
  v1::CreateJobRequest create;
  create.set_model(absl::GetFlag(FLAGS_model));
  *create.mutable_spec() = DigitsSpec({128, 64}, cols);
  create.mutable_optimizer()->set_kind(v1::OptimizerSpec::SGD);
  create.mutable_optimizer()->set_learning_rate(0.01f);
  create.mutable_optimizer()->set_momentum(0.9f);
  create.set_seed(42);
  create.mutable_publish()->set_on_stream_close(false);
  grpc::ClientContext context;
  const grpc::Status st = stub.CreateJob(&context, create, job);
  if (!st.ok()) {
    std::fprintf(stderr, "CreateJob: %s\n", st.error_message().c_str());
  }
  return st.ok();
}

// The requests of a whole run, as bnctl packs them: the epochs' minibatches
// back to back, `per_request` to a request (across epoch boundaries), the
// last request perhaps fewer. The requests repeat with a period of
// batches / gcd(batches, per_request), so only that many are built
// (`cycle`), besides the `last`.
struct TrainRequests {
  std::vector<v1::TrainRequest> cycle;
  v1::TrainRequest last;
  int64_t total = 0;  // requests in the run
};

TrainRequests PackTrainRequests(const std::vector<v1::Minibatch>& batches,
                                const std::string& job_id, int64_t total_steps,
                                int64_t per_request) {
  const int64_t nb = static_cast<int64_t>(batches.size());
  auto request = [&](int64_t first, int64_t count) {
    v1::TrainRequest m;
    m.set_job_id(job_id);
    m.set_progress_interval_ms(absl::GetFlag(FLAGS_progress_interval_ms));
    *m.mutable_batch() = batches[first % nb];
    for (int64_t j = 1; j < count; ++j) {
      *m.add_batches() = batches[(first + j) % nb];
    }
    return m;
  };
  TrainRequests r;
  for (int64_t k = 0; k < nb / std::gcd(nb, per_request); ++k) {
    r.cycle.push_back(request(k * per_request, per_request));
  }
  r.total = (total_steps + per_request - 1) / per_request;
  r.last = request((r.total - 1) * per_request,
                   total_steps - (r.total - 1) * per_request);
  return r;
}

int RunTrain() {
  const Table t = ReadLabelledCsv(absl::GetFlag(FLAGS_data));
  const int b = absl::GetFlag(FLAGS_batch_size);
  const std::vector<v1::Minibatch> batches = MakeMinibatches(t, b);
  auto stub = v1::Trainer::NewStub(Connect(absl::GetFlag(FLAGS_target), 0));
  v1::Job job;
  if (!CreateTrainJob(*stub, t.cols, &job)) return 1;
  const int64_t bytes = int64_t{b} * t.cols * int64_t{sizeof(float)};
  const int64_t total_steps =
      static_cast<int64_t>(batches.size()) * absl::GetFlag(FLAGS_epochs);
  const int64_t per_request =
      std::min(total_steps,
               std::max<int64_t>(1, absl::GetFlag(FLAGS_pack_bytes) / bytes));
  if (per_request > 1 && absl::GetFlag(FLAGS_window) > 0) {
    std::fprintf(stderr, "--window > 0 needs --pack_bytes=0\n");
    return 2;
  }
  TrainRequests requests =
      PackTrainRequests(batches, job.job_id(), total_steps, per_request);
  const int64_t start = NowNanos();
  TrainStream stream(stub.get(), std::move(requests.cycle),
                     std::move(requests.last), requests.total,
                     absl::GetFlag(FLAGS_window));
  const grpc::Status st = stream.Await();
  const double seconds = static_cast<double>(NowNanos() - start) / 1e9;
  if (!st.ok()) {
    std::fprintf(stderr, "Train: %s\n", st.error_message().c_str());
    return 1;
  }
  std::printf(
      "{\"mode\": \"train\", \"batch_size\": %d, \"window\": %d, "
      "\"minibatches_per_request\": %lld, "
      "\"examples\": %lld, \"seconds\": %.4f, \"examples_per_s\": %.1f, "
      "\"last_loss\": %.4f}\n",
      b, absl::GetFlag(FLAGS_window), static_cast<long long>(per_request),
      static_cast<long long>(total_steps * b), seconds,
      static_cast<double>(total_steps * b) / seconds, stream.last_loss());
  return 0;
}

double CpuSeconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

int RunTrainLocal() {
  const Table t = ReadLabelledCsv(absl::GetFlag(FLAGS_data));
  const int b = absl::GetFlag(FLAGS_batch_size);
  // The rows MakeMinibatches sends, in the same order.
  std::vector<model::Batch> batches;
  for (int start = 0; start + b <= t.rows; start += b) {
    model::Batch batch;
    batch.features = Eigen::Map<const model::Matrix>(
        t.features.data() + static_cast<size_t>(start) * t.cols, b, t.cols);
    batch.labels.assign(t.labels.begin() + start, t.labels.begin() + start + b);
    batches.push_back(std::move(batch));
  }
  model::OptimizerConfig config;
  config.learning_rate = 0.01f;
  config.momentum = 0.9f;
  auto net = model::Network::Create(DigitsSpec({128, 64}, t.cols), 42);
  auto trainer = model::Trainer::Create(*std::move(net), config);
  if (!trainer.ok()) return 1;
  const int epochs = absl::GetFlag(FLAGS_epochs);
  const int64_t start = NowNanos();
  const double cpu0 = CpuSeconds();
  double loss = 0;
  for (int e = 0; e < epochs; ++e) {
    for (const model::Batch& batch : batches) {
      auto r = trainer->Step(batch);
      if (!r.ok()) return 1;
      loss = r->loss;
    }
  }
  const double seconds = static_cast<double>(NowNanos() - start) / 1e9;
  const double cpu = CpuSeconds() - cpu0;
  const int64_t examples = static_cast<int64_t>(batches.size()) * epochs * b;
  std::printf(
      "{\"mode\": \"train_local\", \"batch_size\": %d, \"examples\": %lld, "
      "\"seconds\": %.4f, \"cpu_seconds\": %.4f, \"examples_per_s\": %.1f, "
      "\"last_loss\": %.4f}\n",
      b, static_cast<long long>(examples), seconds, cpu,
      static_cast<double>(examples) / seconds, loss);
  return 0;
}

}  // namespace
}  // namespace bnserve::bench

int main(int argc, char** argv) {
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  absl::ParseCommandLine(argc, argv);
  const std::string mode = absl::GetFlag(FLAGS_mode);
  if (mode == "predict") {
    // Leave without running destructors: gRPC's threads may still be
    // unwinding from the last callbacks.
    const int code = bnserve::bench::RunPredict();
    std::fflush(stdout);
    std::_Exit(code);
  }
  if (mode == "frame") return bnserve::bench::RunFrame();
  if (mode == "train") return bnserve::bench::RunTrain();
  if (mode == "train_local") return bnserve::bench::RunTrainLocal();
  std::fprintf(stderr, "unknown --mode=%s\n", mode.c_str());
  return 2;
}
