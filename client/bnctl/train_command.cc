// bnctl train: CSV -> CreateJob -> one Train stream for all epochs ->
// published version (-> Recalibrate -> exact-statistics version).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <numeric>
#include <ostream>
#include <random>
#include <thread>
#include <utility>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "bnserve/v1/trainer.grpc.pb.h"
#include "client/bnctl/command_util.h"
#include "client/bnctl/commands.h"
#include "client/bnctl/dataset.h"
#include "client/bnctl/layer_syntax.h"
#include "model/status_macros.h"

namespace bnserve::client {
namespace {

// More classes than this is almost surely a regression target.
constexpr int kMaxClasses = 10000;

// Without a terminal: a line per epoch, and every this many steps within
// long epochs.
constexpr int64_t kPlainLineSteps = 500;

// How often the trainer reports (TrainRequest.progress_interval_ms): each
// report lists every step since the last, so nothing is lost, and the
// trainer does not write and wake us once per minibatch.
constexpr uint32_t kProgressIntervalMs = 100;

// Features packed into one Train request (TrainRequest.batches): each
// request costs the trainer a read and a thread wake-up whatever its size,
// so small minibatches travel several at a time (docs/BENCHMARKS.md).
constexpr int64_t kPackedFeatureBytes = 1 << 20;

v1::Activation ActivationFromName(const std::string& name) {
  if (name == "tanh") return v1::ACTIVATION_TANH;
  if (name == "sigmoid") return v1::ACTIVATION_SIGMOID;
  if (name == "identity") return v1::ACTIVATION_IDENTITY;
  return v1::ACTIVATION_RELU;
}

// Follows the progress messages of one Train stream (called from the reader
// thread only) and renders them on stderr: a progress bar on a terminal,
// one plain line per epoch otherwise.
class ProgressTracker {
 public:
  // `sizes`: the rows of each minibatch of an epoch.
  ProgressTracker(Io& io, bool classification, int epochs,
                  std::vector<int> sizes)
      : io_(io),
        classification_(classification),
        epochs_(epochs),
        steps_per_epoch_(static_cast<int>(sizes.size())),
        sizes_(std::move(sizes)) {}

  // A progress lists the loss and accuracy of every step since the previous
  // one (step_losses, ending at `step`); a trainer from before that field
  // sends one progress per step with its loss in `loss`.
  void OnProgress(const v1::TrainProgress& p) {
    if (p.published()) published_ = true;
    last_version_ = p.last_published_version();
    const int n = p.step_losses_size();
    if (n > 0 && p.step_accuracies_size() == n) {
      for (int i = 0; i < n; ++i) {
        const int64_t step = p.step() - n + 1 + i;
        AddStep(step, RowsOf(step), p.step_losses(i), p.step_accuracies(i));
      }
    } else if (n == 0 && p.step() > last_step_) {
      AddStep(p.step(), std::max<int64_t>(1, p.examples_seen() - examples_),
              p.loss(), p.accuracy());
    }
    examples_ = std::max(examples_, p.examples_seen());
    examples_per_second_ = p.examples_per_second();
    if (io_.err_is_tty) {
      DrawBar(/*force=*/false);
    } else if (p.published() && steps_ % steps_per_epoch_ != 0) {
      io_.err << "published version " << p.last_published_version()
              << " at step " << p.step() << "\n";
    }
  }

  // After the stream ended: the partial epoch (if the stream broke) counts
  // as the last one; the bar gets its newline.
  void Finish() {
    if (epoch_rows_ > 0) EndEpoch();
    if (io_.err_is_tty) {
      DrawBar(/*force=*/true);
      io_.err << "\n";
    }
    io_.err.flush();
  }

  // After a resume: the job's publishes so far (its steps are replayed).
  void Resumed(const v1::Job& job) {
    if (job.last_published_version() > 0) {
      last_version_ = job.last_published_version();
    }
  }

  bool published() const { return published_; }
  int64_t last_version() const { return last_version_; }
  int64_t steps() const { return steps_; }
  int64_t examples() const { return examples_; }
  double final_loss() const { return final_loss_; }
  double final_accuracy() const { return final_accuracy_; }

 private:
  // Accounts one step (once: a resumed stream may report a step again).
  void AddStep(int64_t step, int64_t rows, double loss, double accuracy) {
    if (step <= last_step_) return;
    last_step_ = step;
    steps_ = step;
    epoch_rows_ += static_cast<double>(rows);
    epoch_loss_ += loss * static_cast<double>(rows);
    epoch_accuracy_ += accuracy * static_cast<double>(rows);
    if (steps_ % steps_per_epoch_ == 0) {
      EndEpoch();
    } else if (!io_.err_is_tty && steps_ % kPlainLineSteps == 0) {
      PlainLine(absl::StrFormat("epoch %d/%d", steps_ / steps_per_epoch_ + 1,
                                epochs_),
                epoch_loss_ / epoch_rows_, epoch_accuracy_ / epoch_rows_);
    }
  }

  int64_t RowsOf(int64_t step) const {
    return step < 1 ? 1 : sizes_[(step - 1) % steps_per_epoch_];
  }

  void EndEpoch() {
    final_loss_ = epoch_loss_ / epoch_rows_;
    final_accuracy_ = epoch_accuracy_ / epoch_rows_;
    epoch_loss_ = epoch_accuracy_ = epoch_rows_ = 0.0;
    const int64_t epoch = (steps_ + steps_per_epoch_ - 1) / steps_per_epoch_;
    if (!io_.err_is_tty) {
      PlainLine(absl::StrFormat("epoch %d/%d", epoch, epochs_), final_loss_,
                final_accuracy_);
    }
  }

  // One line for logs: where we are, the (running) epoch means, throughput.
  void PlainLine(const std::string& where, double loss, double accuracy) {
    io_.err << absl::StrFormat("%s  step %d  loss %.4f", where, steps_, loss);
    if (classification_)
      io_.err << absl::StrFormat("  accuracy %.4f", accuracy);
    io_.err << absl::StrFormat("  %.0f examples/s", examples_per_second_);
    if (last_version_ > 0) io_.err << "  published v" << last_version_;
    io_.err << "\n";
    io_.err.flush();
  }

  void DrawBar(bool force) {
    const auto now = std::chrono::steady_clock::now();
    if (!force && now - last_draw_ < std::chrono::milliseconds(100)) return;
    last_draw_ = now;
    const int64_t total = int64_t{epochs_} * steps_per_epoch_;
    const double fraction =
        total > 0 ? std::min(1.0, static_cast<double>(steps_) / total) : 1.0;
    constexpr int kWidth = 28;
    const int filled = static_cast<int>(fraction * kWidth);
    std::string bar(filled, '=');
    if (filled < kWidth) bar += '>' + std::string(kWidth - filled - 1, ' ');
    const int64_t epoch =
        std::min<int64_t>(epochs_, steps_ / steps_per_epoch_ + 1);
    // Running mean of the current epoch, or the last full epoch's.
    const bool have_epoch = epoch_rows_ > 0;
    const double loss = have_epoch ? epoch_loss_ / epoch_rows_ : final_loss_;
    const double acc =
        have_epoch ? epoch_accuracy_ / epoch_rows_ : final_accuracy_;
    std::string line =
        absl::StrFormat("\r[%s] %3.0f%% epoch %d/%d step %d/%d loss %.4f", bar,
                        100.0 * fraction, epoch, epochs_, steps_, total, loss);
    if (classification_) absl::StrAppendFormat(&line, " acc %.4f", acc);
    absl::StrAppendFormat(&line, " %.0f ex/s", examples_per_second_);
    if (last_version_ > 0) absl::StrAppend(&line, " v", last_version_);
    io_.err << line << "\x1b[K";
    io_.err.flush();
  }

  Io& io_;
  const bool classification_;
  const int epochs_;
  const int steps_per_epoch_;
  const std::vector<int> sizes_;
  int64_t last_step_ = -1;
  int64_t steps_ = 0;
  int64_t examples_ = 0;
  double epoch_rows_ = 0.0, epoch_loss_ = 0.0, epoch_accuracy_ = 0.0;
  double final_loss_ = 0.0, final_accuracy_ = 0.0;
  double examples_per_second_ = 0.0;
  bool published_ = false;
  int64_t last_version_ = 0;
  std::chrono::steady_clock::time_point last_draw_{};
};

// Where the time of `bnctl train` went: reading the CSV, building the
// minibatch messages (inside `train`), and the whole training stream.
nlohmann::json TimingJson(absl::Duration load, absl::Duration batching,
                          absl::Duration train) {
  return {{"load_csv", absl::ToDoubleSeconds(load)},
          {"build_minibatches", absl::ToDoubleSeconds(batching)},
          {"train", absl::ToDoubleSeconds(train)}};
}

// The architecture: --layers or the --hidden shorthand, and --input-shape
// checked against the CSV's feature columns.
absl::Status SetArchitecture(const TrainOptions& o, const Dataset& dataset,
                             v1::NetworkSpec* spec) {
  if (!o.input_shape.empty()) {
    BNSERVE_ASSIGN_OR_RETURN(std::vector<int> dims,
                             ParseInputShape(o.input_shape));
    const int64_t values = int64_t{dims[0]} * dims[1] * dims[2];
    if (values != dataset.data.features) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--input-shape ", o.input_shape, " has ", values, " values but ",
          o.data, " has ", dataset.data.features, " feature columns"));
    }
    for (int d : dims) spec->add_input_shape(d);
  }
  if (o.layers.empty()) {
    for (int width : o.hidden) spec->add_hidden(width);
    spec->set_hidden_activation(ActivationFromName(o.activation));
    spec->set_input_norm(!o.no_input_norm);
    return absl::OkStatus();
  }
  BNSERVE_ASSIGN_OR_RETURN(std::vector<v1::LayerSpec> layers,
                           ParseLayers(o.layers, spec->batch_norm()));
  for (v1::LayerSpec& l : layers) *spec->add_layers() = std::move(l);
  v1::LayerSpec* head = spec->add_layers();
  head->mutable_dense()->set_units(spec->output_dim());
  head->mutable_dense()->set_bias(true);
  return absl::OkStatus();
}

absl::StatusOr<v1::CreateJobRequest> MakeJobRequest(const TrainOptions& o,
                                                    const Dataset& dataset,
                                                    int num_classes) {
  const bool classification = o.task == "classification";
  const bool from_scratch = !o.from_version && !o.from_label;
  v1::CreateJobRequest req;
  req.set_model(o.model);
  v1::NetworkSpec* spec = req.mutable_spec();
  spec->set_input_features(dataset.data.features);
  spec->set_task(classification ? v1::TASK_CLASSIFICATION
                                : v1::TASK_REGRESSION);
  // When continuing, the stored model decides the number of classes (this
  // file may lack the largest one); the trainer checks the labels.
  if (from_scratch) spec->set_output_dim(classification ? num_classes : 1);
  spec->mutable_batch_norm()->set_momentum(o.bn_momentum);
  BNSERVE_RETURN_IF_ERROR(SetArchitecture(o, dataset, spec));
  v1::OptimizerSpec* opt = req.mutable_optimizer();
  opt->set_kind(o.optimizer == "adam" ? v1::OptimizerSpec::ADAM
                                      : v1::OptimizerSpec::SGD);
  opt->set_learning_rate(o.lr);
  if (o.momentum) opt->set_momentum(*o.momentum);
  opt->set_weight_decay(o.weight_decay);
  req.set_seed(o.seed);
  req.mutable_publish()->set_every_n_steps(o.publish_every);
  req.mutable_publish()->set_on_stream_close(true);
  req.set_checkpoint_every(o.checkpoint_every);
  if (o.from_version) req.set_from_version(*o.from_version);
  if (o.from_label) req.set_from_label(*o.from_label);
  for (const std::string& name : dataset.data.feature_names) {
    req.add_feature_names(name);
  }
  if (classification && from_scratch) {
    for (int k = 0; k < num_classes; ++k) req.add_class_names(absl::StrCat(k));
  }
  return req;
}

// Reconnecting to a trainer that went away: which failures to wait out,
// and for how long per outage (--resume-timeout, counted from the first
// failure after the trainer last answered), with a doubling backoff.
class Resumer {
 public:
  Resumer(const TrainOptions& o, Io& io)
      : io_(io), timeout_(absl::Seconds(o.resume_timeout_seconds)) {}

  // The trainer answered: the next failure starts a new outage.
  void Recovered() {
    outage_ = false;
    backoff_ = absl::Milliseconds(100);
  }

  // True (after a backoff sleep) if `status` is UNAVAILABLE (or, for an
  // idempotent call, CANCELLED: a draining server cancels calls in flight)
  // and the resume deadline has not passed.
  bool ShouldRetry(const grpc::Status& status, bool idempotent = false) {
    if (!outage_) {
      outage_ = true;
      deadline_ = absl::Now() + timeout_;
    }
    const grpc::StatusCode code = status.error_code();
    if (!(code == grpc::StatusCode::UNAVAILABLE ||
          (idempotent && code == grpc::StatusCode::CANCELLED)) ||
        absl::Now() >= deadline_) {
      return false;
    }
    absl::SleepFor(std::min(backoff_, deadline_ - absl::Now()));
    backoff_ = std::min(backoff_ * 2, absl::Seconds(2));
    return absl::Now() < deadline_;
  }

  // Waits (within the deadline) until the trainer answers GetJob for the
  // job and returns it: its `steps` is where training continues. NOT_FOUND
  // or DATA_LOSS (a trainer without the job's checkpoint) end the wait.
  absl::StatusOr<v1::Job> AwaitJob(const Connection& connection,
                                   v1::Trainer::Stub& stub,
                                   const std::string& job_id) {
    while (true) {
      grpc::ClientContext context;
      connection.Prepare(&context, kUnaryTimeout);
      v1::GetJobRequest get;
      get.set_job_id(job_id);
      v1::Job job;
      grpc::Status status = stub.GetJob(&context, get, &job);
      if (status.ok()) {
        Recovered();
        io_.err << "trainer back: job " << job_id << " resumes at step "
                << job.steps() + 1 << "\n";
        return job;
      }
      if (!ShouldRetry(status, /*idempotent=*/true)) {
        return RpcError(status, absl::StrCat("resuming job ", job_id));
      }
    }
  }

 private:
  Io& io_;
  const absl::Duration timeout_;
  bool outage_ = false;
  absl::Time deadline_ = absl::InfinitePast();
  absl::Duration backoff_ = absl::Milliseconds(100);
};

// Fills one minibatch: rows order[begin, begin + size) of the dataset, with
// their class ids (classification) or targets.
void FillMinibatch(const LabeledData& data, const std::vector<int>& order,
                   int begin, int size, const std::vector<int32_t>* class_ids,
                   v1::Minibatch* batch) {
  FillFeatures(data, order, begin, size, batch);
  for (int i = begin; i < begin + size; ++i) {
    if (class_ids != nullptr) {
      batch->add_labels((*class_ids)[order[i]]);
    } else {
      batch->add_targets(data.labels[order[i]]);
    }
  }
}

// Opens one Train stream and sends the minibatches of steps `first_step`
// to the end, several per request up to kPackedFeatureBytes (each request
// numbered with its first step, so the trainer refuses one that does not
// follow its state), then closes it. The order of every epoch depends only
// on the seed: epochs before `first_step` are shuffled again, not sent.
grpc::Status StreamSteps(const Connection& connection, v1::Trainer::Stub& stub,
                         const std::string& job_id, const TrainOptions& o,
                         const Dataset& dataset,
                         const std::vector<int32_t>& class_ids,
                         const std::vector<int>& sizes, int64_t first_step,
                         ProgressTracker& tracker, absl::Duration* batching) {
  const LabeledData& data = dataset.data;
  const std::vector<int32_t>* labels =
      o.task == "classification" ? &class_ids : nullptr;
  grpc::ClientContext context;
  connection.Prepare(&context);
  std::unique_ptr<grpc::ClientReaderWriter<v1::TrainRequest, v1::TrainProgress>>
      stream = stub.Train(&context);
  // A reader thread follows the progress; flow control is the backpressure.
  std::thread reader([&] {
    v1::TrainProgress progress;
    while (stream->Read(&progress)) tracker.OnProgress(progress);
  });
  std::mt19937_64 rng(o.seed);
  std::vector<int> order(data.rows);
  std::iota(order.begin(), order.end(), 0);
  v1::TrainRequest request;
  int64_t step = 0, packed_bytes = 0;
  bool ok = true;  // false: the server ended the call; Finish() says why
  for (int epoch = 0; epoch < o.epochs && ok; ++epoch) {
    if (!o.no_shuffle) Shuffle(order, rng);
    int begin = 0;
    for (int size : sizes) {
      begin += size;
      if (++step < first_step) continue;
      const absl::Time batch_start = absl::Now();
      const bool first_of_request = packed_bytes == 0;
      if (first_of_request) request.set_step(step);
      if (step == first_step) {
        request.set_job_id(job_id);
        request.set_progress_interval_ms(kProgressIntervalMs);
      }
      FillMinibatch(
          data, order, begin - size, size, labels,
          first_of_request ? request.mutable_batch() : request.add_batches());
      packed_bytes += int64_t{size} * data.features * int64_t{sizeof(float)};
      *batching += absl::Now() - batch_start;
      if (packed_bytes >= kPackedFeatureBytes) {
        ok = stream->Write(request);
        request.Clear();
        packed_bytes = 0;
        if (!ok) break;
      }
    }
  }
  if (ok && packed_bytes > 0) stream->Write(request);
  stream->WritesDone();
  reader.join();
  return stream->Finish();
}

// After a resume with every step applied: publishes unless the job's last
// publish is at its last step, and records the version in `tracker`.
grpc::Status PublishIfBehind(const Connection& connection,
                             v1::Trainer::Stub& stub, const std::string& job_id,
                             ProgressTracker& tracker) {
  grpc::ClientContext get_context;
  connection.Prepare(&get_context, kUnaryTimeout);
  v1::GetJobRequest get;
  get.set_job_id(job_id);
  v1::Job job;
  grpc::Status status = stub.GetJob(&get_context, get, &job);
  if (!status.ok()) return status;
  if (job.last_published_version() > 0 &&
      job.last_published_step() == job.steps()) {
    tracker.Resumed(job);
    return status;
  }
  grpc::ClientContext context;
  connection.Prepare(&context, kUnaryTimeout);
  v1::PublishRequest publish;
  publish.set_job_id(job_id);
  v1::PublishResponse response;
  status = stub.Publish(&context, publish, &response);
  if (status.ok()) {
    job.set_last_published_version(response.version());
    tracker.Resumed(job);
  }
  return status;
}

// What a training stream sends: the CSV, its class ids (classification)
// and the minibatch sizes of an epoch.
struct TrainInputs {
  const Dataset* dataset;
  const std::vector<int32_t>* class_ids;
  const std::vector<int>* sizes;
};

// Streams every step of the job, resuming (Resumer) after the trainer went
// away: from the job's step as the trainer knows it, or, when every step was
// applied, by publishing if needed. Finishes the tracker either way.
absl::Status TrainAllSteps(const Connection& connection,
                           v1::Trainer::Stub& stub, const std::string& job_id,
                           const TrainOptions& o, const TrainInputs& in,
                           Resumer& resumer, ProgressTracker& tracker,
                           absl::Duration* batching) {
  const int64_t total_steps = int64_t{o.epochs} * int64_t(in.sizes->size());
  int64_t next_step = 1;
  while (true) {
    grpc::Status status;
    if (next_step <= total_steps) {
      status =
          StreamSteps(connection, stub, job_id, o, *in.dataset, *in.class_ids,
                      *in.sizes, next_step, tracker, batching);
    } else {
      // Every step was applied before the trainer went away: publish if the
      // last publish is older than the last step (else it is the result).
      status = PublishIfBehind(connection, stub, job_id, tracker);
    }
    if (status.ok()) break;
    if (!resumer.ShouldRetry(status)) {
      tracker.Finish();
      return RpcError(status, absl::StrCat("training stream of job ", job_id));
    }
    absl::StatusOr<v1::Job> resumed =
        resumer.AwaitJob(connection, stub, job_id);
    if (!resumed.ok()) {
      tracker.Finish();
      return resumed.status();
    }
    next_step = resumed->steps() + 1;
    tracker.Resumed(*resumed);
  }
  tracker.Finish();
  return absl::OkStatus();
}

// The version the training published: from the progress, or (older or
// differently configured trainers) from the job.
absl::StatusOr<int64_t> PublishedVersion(const Connection& connection,
                                         v1::Trainer::Stub& stub,
                                         const std::string& job_id,
                                         const ProgressTracker& tracker) {
  int64_t version = tracker.last_version();
  if (version <= 0) {
    grpc::ClientContext get_context;
    connection.Prepare(&get_context, kUnaryTimeout);
    v1::GetJobRequest get;
    get.set_job_id(job_id);
    v1::Job done;
    grpc::Status s = stub.GetJob(&get_context, get, &done);
    if (!s.ok()) return RpcError(s, "reading the job");
    version = done.last_published_version();
  }
  if (version <= 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("the trainer did not publish job ", job_id));
  }
  return version;
}

void PrintTrained(Io& io, const std::string& model, int64_t version,
                  const ProgressTracker& tracker, bool classification) {
  io.out << "published model " << model << " version " << version
         << absl::StrFormat(" (steps %d, examples %d, final loss %.4f",
                            tracker.steps(), tracker.examples(),
                            tracker.final_loss());
  if (classification) {
    io.out << absl::StrFormat(", train accuracy %.4f",
                              tracker.final_accuracy());
  }
  io.out << ")\n";
  io.out.flush();
}

// "job J: N examples x F features, K classes, E epochs of M minibatches".
void PrintJobLine(Io& io, const std::string& job_id, const LabeledData& data,
                  int num_classes, int epochs, size_t minibatches) {
  io.err << "job " << job_id << ": " << data.rows << " examples x "
         << data.features << " features"
         << (num_classes > 0 ? absl::StrCat(", ", num_classes, " classes")
                             : std::string(", regression"))
         << ", " << epochs << " epochs of " << minibatches << " minibatches\n";
}

// --recalibrate: exact statistics over the CSV, published as a new version
// (added to `result`).
absl::Status Recalibrate(const Connection& connection, v1::Trainer::Stub& stub,
                         const std::string& job_id, const TrainOptions& o,
                         const Dataset& dataset, Io& io,
                         nlohmann::json& result) {
  absl::StatusOr<v1::PublishResponse> recal = StreamRecalibration(
      connection, stub, job_id, dataset, std::max(256, o.batch_size));
  if (!recal.ok()) return recal.status();
  result["recalibrated_version"] = recal->version();
  result["recalibrated_examples"] = recal->stats_examples();
  if (!o.common.json) {
    io.out << "published model " << o.model << " version " << recal->version()
           << " with exact batch-norm statistics over "
           << recal->stats_examples() << " examples\n";
  }
  return absl::OkStatus();
}

// What RunTrain prepares from the CSV before it contacts the trainer.
struct PreparedData {
  Dataset dataset;
  absl::Duration load_time;
  int num_classes = 0;             // classification only
  std::vector<int32_t> class_ids;  // classification only, one per row
  std::vector<int> sizes;          // the minibatch sizes of one epoch
  v1::CreateJobRequest request;
};

// Loads and checks the CSV, numbers the classes, sizes the minibatches and
// builds the CreateJob request; errors name the file or the option.
absl::StatusOr<PreparedData> PrepareData(const TrainOptions& o) {
  PreparedData p;
  const absl::Time load_start = absl::Now();
  BNSERVE_ASSIGN_OR_RETURN(p.dataset, LoadDataset(o.data, o.label_column));
  p.load_time = absl::Now() - load_start;
  if (o.task == "classification") {
    BNSERVE_ASSIGN_OR_RETURN(
        p.class_ids, ClassLabels(p.dataset, kMaxClasses, &p.num_classes));
  }
  absl::StatusOr<std::vector<int>> sizes =
      BatchSizes(p.dataset.data.rows, o.batch_size);
  if (!sizes.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(o.data, ": ", sizes.status().message()));
  }
  p.sizes = *std::move(sizes);
  BNSERVE_ASSIGN_OR_RETURN(p.request,
                           MakeJobRequest(o, p.dataset, p.num_classes));
  return p;
}

// CreateJob is not retried: before the job exists there is nothing to
// resume, an unreachable address should fail at once, and a retry after a
// lost answer could create the job twice.
absl::StatusOr<v1::Job> CreateJob(const Connection& connection,
                                  v1::Trainer::Stub& stub,
                                  const v1::CreateJobRequest& request) {
  v1::Job job;
  grpc::ClientContext context;
  connection.Prepare(&context, kUnaryTimeout);
  if (grpc::Status st = stub.CreateJob(&context, request, &job); !st.ok()) {
    return RpcError(st, "creating the training job");
  }
  return job;
}

}  // namespace

absl::StatusOr<int> RunTrain(const TrainOptions& o, Io& io) {
  const bool classification = o.task == "classification";
  BNSERVE_ASSIGN_OR_RETURN(PreparedData prepared, PrepareData(o));
  absl::StatusOr<Connection> connection = Connection::Open(o.common.connection);
  if (!connection.ok()) return connection.status();
  std::unique_ptr<v1::Trainer::Stub> stub =
      v1::Trainer::NewStub(connection->channel());
  BNSERVE_ASSIGN_OR_RETURN(const v1::Job job,
                           CreateJob(*connection, *stub, prepared.request));
  Resumer resumer(o, io);
  if (!o.common.json) {
    PrintJobLine(io, job.job_id(), prepared.dataset.data, prepared.num_classes,
                 o.epochs, prepared.sizes.size());
  }

  ProgressTracker tracker(io, classification, o.epochs, prepared.sizes);
  const absl::Time train_start = absl::Now();
  absl::Duration batching;
  const TrainInputs inputs{&prepared.dataset, &prepared.class_ids,
                           &prepared.sizes};
  BNSERVE_RETURN_IF_ERROR(TrainAllSteps(*connection, *stub, job.job_id(), o,
                                        inputs, resumer, tracker, &batching));
  const absl::Duration train_time = absl::Now() - train_start;

  BNSERVE_ASSIGN_OR_RETURN(
      const int64_t version,
      PublishedVersion(*connection, *stub, job.job_id(), tracker));

  nlohmann::json result = {
      {"model", o.model},
      {"job_id", job.job_id()},
      {"version", version},
      {"steps", tracker.steps()},
      {"examples", tracker.examples()},
      {"final_loss", tracker.final_loss()},
      {"seconds", TimingJson(prepared.load_time, batching, train_time)}};
  if (classification) result["train_accuracy"] = tracker.final_accuracy();
  if (!o.common.json) {
    PrintTrained(io, o.model, version, tracker, classification);
  }

  if (o.recalibrate) {
    BNSERVE_RETURN_IF_ERROR(Recalibrate(*connection, *stub, job.job_id(), o,
                                        prepared.dataset, io, result));
  }
  if (o.common.json) PrintJson(io, result);
  return 0;
}

namespace {

// --task, --hidden, --layers, --input-shape, --no-input-norm, --activation.
void AddNetworkOptions(CLI::App* cmd, TrainOptions* train) {
  cmd->add_option("--task", train->task, "output head")
      ->check(CLI::IsMember({"classification", "regression"}));
  cmd->add_option("--hidden", train->hidden,
                  "hidden widths, each Dense -> BatchNorm -> activation")
      ->delimiter(',')
      ->check(CLI::Range(1, 1 << 16));
  cmd->add_option(
         "--layers", train->layers,
         "explicit hidden layers instead of --hidden, e.g. "
         "conv:16:3:p1,bn,relu,maxpool:2,flatten,dense:64,bn,relu (tokens: "
         "conv:OUT:K[:sS][:pP], dense:N, bn, relu|tanh|sigmoid|identity, "
         "maxpool:K[:sS][:pP], avgpool:K[:sS][:pP], flatten; the output "
         "layer is added)")
      ->excludes("--hidden");
  cmd->add_option("--input-shape", train->input_shape,
                  "C,H,W: the feature columns are an image in C, H, W "
                  "order (needed by conv and pooling layers)");
  cmd->add_flag("--no-input-norm", train->no_input_norm,
                "with --hidden: no batch norm over the raw input "
                "features (by default one normalizes them)");
  cmd->add_option("--activation", train->activation, "hidden activation")
      ->check(CLI::IsMember({"relu", "tanh", "sigmoid", "identity"}));
}

// --epochs to --no-shuffle. --momentum goes to `momentum`; the returned
// option tells whether it was given (unset means the trainer's default).
CLI::Option* AddOptimizerOptions(CLI::App* cmd, TrainOptions* train,
                                 float* momentum) {
  cmd->add_option("--epochs", train->epochs, "passes over the data")
      ->check(CLI::Range(1, 1000000));
  cmd->add_option("--batch-size", train->batch_size,
                  "rows per minibatch (>= 2; a last batch of one row is "
                  "merged into the previous one)")
      ->check(CLI::Range(2, 1 << 20));
  cmd->add_option("--optimizer", train->optimizer, "optimizer")
      ->check(CLI::IsMember({"sgd", "adam"}));
  cmd->add_option("--lr", train->lr,
                  "learning rate (0: the trainer's default, 0.01 for SGD, "
                  "0.001 for Adam)")
      ->check(CLI::Range(0.0f, 1e6f));
  CLI::Option* momentum_opt =
      cmd->add_option("--momentum", *momentum,
                      "SGD momentum in [0, 1) (PyTorch's definition)")
          ->check(CLI::Range(0.0f, 0.999999f));
  cmd->add_option("--weight-decay", train->weight_decay,
                  "L2 penalty added to the gradient")
      ->check(CLI::Range(0.0f, 1e6f));
  cmd->add_option("--bn-momentum", train->bn_momentum,
                  "batch-norm running-statistics momentum: weight of the NEW "
                  "minibatch value (PyTorch convention; Keras' 0.99 is 0.01)")
      ->check(CLI::Range(1e-6f, 1.0f));
  cmd->add_option("--seed", train->seed,
                  "seed of the weight initialisation and the shuffling");
  cmd->add_flag("--no-shuffle", train->no_shuffle,
                "keep the file order instead of shuffling every epoch");
  return momentum_opt;
}

}  // namespace

Subcommand AddTrainCommand(CLI::App& app) {
  auto train = std::make_shared<TrainOptions>();
  CLI::App* cmd = app.add_subcommand(
      "train",
      "Train a network on a CSV file over one Train stream, publish it and "
      "print the version");
  AddConnectionOptions(cmd, &train->common, "--trainer", "localhost:50051",
                       "trainer");
  cmd->add_option("--model", train->model, "model name")->required();
  cmd->add_option("--data", train->data,
                  "training CSV with a header row and a label column")
      ->required();
  cmd->add_option("--label-column", train->label_column,
                  "name of the label (target) column");
  AddNetworkOptions(cmd, train.get());
  auto momentum = std::make_shared<float>(0.9f);
  CLI::Option* momentum_opt =
      AddOptimizerOptions(cmd, train.get(), momentum.get());
  auto from_version = std::make_shared<int64_t>(0);
  auto from_label = std::make_shared<std::string>();
  CLI::Option* from_version_opt = cmd->add_option(
      "--from-version", *from_version, "continue from this published version");
  CLI::Option* from_label_opt =
      cmd->add_option("--from-label", *from_label,
                      "continue from the version this label points at");
  from_version_opt->excludes(from_label_opt);
  cmd->add_option("--publish-every", train->publish_every,
                  "also publish every N training steps (0: only at the end)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--checkpoint-every", train->checkpoint_every,
                  "checkpoint the job every N steps (0: the trainer's "
                  "--checkpoint_every)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option(
         "--resume-timeout", train->resume_timeout_seconds,
         "seconds to keep reconnecting each time the trainer goes away "
         "(UNAVAILABLE): the job resumes from its last checkpoint "
         "and the minibatches are re-sent from there (0: give up "
         "at once)")
      ->check(CLI::Range(0.0, 86400.0));
  cmd->add_flag("--recalibrate", train->recalibrate,
                "then publish the next version with exact population "
                "batch-norm statistics over the training set");
  return {cmd, [=](Io& io) -> absl::StatusOr<int> {
            if (momentum_opt->count() > 0) train->momentum = *momentum;
            if (from_version_opt->count() > 0) {
              if (*from_version < 1) {
                return UsageError(io, "--from-version must be >= 1");
              }
              train->from_version = *from_version;
            }
            if (from_label_opt->count() > 0) train->from_label = *from_label;
            return RunTrain(*train, io);
          }};
}

}  // namespace bnserve::client
