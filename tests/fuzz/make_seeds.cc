// Writes the binary seed corpora of the fuzz targets (the text ones, CSV and
// store URIs, are written by hand) into tests/fuzz/corpus/<target>/:
//   make_seeds tests/fuzz/corpus
// Deterministic: rerunning it rewrites the same bytes. Each seed starts with
// the selector bytes its target reads (see the target's header comment).
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>

#include "bnserve/v1/inference.pb.h"
#include "bnserve/v1/store.pb.h"
#include "bnserve/v1/trainer.pb.h"
#include "inference/grpc_service.pb.h"
#include "model/network.h"
#include "store/envelope.h"
#include "tests/fuzz/fuzz_models.h"

namespace v1 = bnserve::v1;
using bnserve::fuzz::Fail;
using bnserve::fuzz::kFeatures;
using bnserve::fuzz::TinySnapshot;

namespace {

std::filesystem::path root;

void Write(const std::string& target, const std::string& name,
           const std::string& prefix,
           const google::protobuf::MessageLite& message) {
  const std::filesystem::path dir = root / target;
  std::filesystem::create_directories(dir);
  std::ofstream out(dir / name, std::ios::binary | std::ios::trunc);
  out << prefix << message.SerializeAsString();
  if (!out) Fail("write", (dir / name).string());
}

void Snapshots() {
  Write("snapshot", "classifier", "", TinySnapshot(v1::TASK_CLASSIFICATION));
  Write("snapshot", "regressor", "", TinySnapshot(v1::TASK_REGRESSION));
  // Declares a dense layer of 2^30 x 2^30 without sending its weights.
  v1::Snapshot huge = TinySnapshot(v1::TASK_CLASSIFICATION);
  huge.mutable_layers(0)->mutable_dense()->set_in(1 << 30);
  huge.mutable_layers(0)->mutable_dense()->set_out(1 << 30);
  huge.set_input_features(1 << 30);
  Write("snapshot", "huge_dense", "", huge);
  v1::Snapshot wide_bn = TinySnapshot(v1::TASK_REGRESSION);
  wide_bn.mutable_layers(1)->mutable_batch_norm()->set_features(
      std::numeric_limits<int32_t>::max());
  Write("snapshot", "huge_batch_norm", "", wide_bn);
  v1::Snapshot nan = TinySnapshot(v1::TASK_CLASSIFICATION);
  nan.mutable_layers(1)->mutable_batch_norm()->set_running_var(
      0, std::numeric_limits<float>::quiet_NaN());
  Write("snapshot", "nan_running_var", "", nan);
  // Every layer kind: input normalization, conv2d, pooling, flatten.
  v1::NetworkSpec spec;
  spec.set_task(v1::TASK_CLASSIFICATION);
  spec.set_input_features(2 * 5 * 5);
  for (int d : {2, 5, 5}) spec.add_input_shape(d);
  spec.set_output_dim(3);
  auto add = [&spec]() { return spec.add_layers(); };
  add()->mutable_batch_norm();
  v1::Conv2dSpec* conv = add()->mutable_conv2d();
  conv->set_out_channels(3);
  conv->set_kernel_h(3);
  conv->set_pad_h(1);
  conv->set_pad_w(1);
  add()->mutable_batch_norm();
  add()->set_activation(v1::ACTIVATION_RELU);
  add()->mutable_max_pool2d()->set_kernel_h(2);
  v1::Pool2dSpec* avg = add()->mutable_avg_pool2d();
  avg->set_kernel_h(2);
  avg->set_stride_h(1);
  avg->set_pad_h(1);
  avg->set_pad_w(1);
  add()->mutable_flatten();
  v1::DenseSpec* head = add()->mutable_dense();
  head->set_units(3);
  head->set_bias(true);
  absl::StatusOr<bnserve::model::Network> cnn =
      bnserve::model::Network::Create(spec, 7);
  if (!cnn.ok()) Fail("Network::Create", cnn.status().ToString());
  Write("snapshot", "cnn", "", cnn->ToSnapshot());
  // A conv kernel larger than the padded input and a stride of 0.
  v1::Snapshot big_kernel = cnn->ToSnapshot();
  big_kernel.mutable_layers(1)->mutable_conv2d()->set_kernel_h(1 << 20);
  Write("snapshot", "cnn_big_kernel", "", big_kernel);
  v1::Snapshot stride0 = cnn->ToSnapshot();
  stride0.mutable_layers(4)->mutable_max_pool2d()->set_stride_h(0);
  Write("snapshot", "cnn_stride_0", "", stride0);
}

void Envelopes() {
  v1::StoredSnapshot envelope;
  absl::StatusOr<std::string> bytes =
      bnserve::store::EncodeStoredSnapshot(TinySnapshot(v1::TASK_REGRESSION));
  if (!bytes.ok() || !envelope.ParseFromString(*bytes)) {
    Fail("EncodeStoredSnapshot", bytes.status().ToString());
  }
  Write("envelope", "as_is", std::string(1, '\0'), envelope);
  Write("envelope", "fixed_checksum", "\x01", envelope);
  Write("envelope", "other_model", "\x03", envelope);
  v1::StoredSnapshot empty;
  empty.set_model("m");
  empty.set_version(1);
  Write("envelope", "empty_snapshot", "\x01", empty);
}

v1::Minibatch Batch(int rows, int cols) {
  v1::Minibatch mb;
  mb.set_rows(rows);
  mb.set_cols(cols);
  for (int i = 0; i < rows * cols; ++i) mb.add_features(0.25f * (i % 7) - 0.5f);
  return mb;
}

void Minibatches() {
  v1::Minibatch clf = Batch(4, kFeatures);
  for (int i = 0; i < 4; ++i) clf.add_labels(i % bnserve::fuzz::kClasses);
  Write("minibatch", "classification", std::string(1, '\0'), clf);
  v1::Minibatch reg = Batch(3, kFeatures);
  for (int i = 0; i < 3 * bnserve::fuzz::kOutputs; ++i)
    reg.add_targets(0.5f * i);
  Write("minibatch", "regression", "\x01", reg);
  v1::Minibatch huge;
  huge.set_rows(std::numeric_limits<int32_t>::max());
  huge.set_cols(std::numeric_limits<int32_t>::max());
  huge.add_features(1.0f);
  Write("minibatch", "huge_shape", std::string(1, '\0'), huge);
  v1::Minibatch ragged = Batch(2, kFeatures);
  ragged.set_rows(3);
  ragged.add_labels(0);
  Write("minibatch", "ragged", std::string(1, '\0'), ragged);
  v1::Minibatch raw = clf;  // the same features as raw float32 bytes
  raw.clear_features();
  raw.set_features_f32(
      std::string(reinterpret_cast<const char*>(clf.features().data()),
                  clf.features_size() * sizeof(float)));
  Write("minibatch", "features_f32", std::string(1, '\0'), raw);
}

// Inference seeds: byte 0 = call, byte 1 = name mode (0: "clf", 2: "reg",
// 1: the request's own name).
// The inference fuzz target's input: a call byte, a model-name byte, then
// the request.
std::string InferencePrefix(int call, int name_mode) {
  return std::string{static_cast<char>(call), static_cast<char>(name_mode)};
}

// bnserve.v1.Inference requests: Predict, PredictBatch, GetModelMetadata.
void PredictSeeds() {
  v1::PredictRequest predict;
  predict.set_model("clf");
  for (int i = 0; i < kFeatures; ++i) predict.add_features(0.5f * i);
  Write("inference", "predict", InferencePrefix(0, 0), predict);
  // Huge finite inputs that overflow the model (non-finite outputs).
  v1::PredictRequest overflow = predict;
  for (int i = 0; i < kFeatures; ++i) overflow.set_features(i, 3e38f);
  Write("inference", "predict_overflow", InferencePrefix(0, 0), overflow);
  predict.mutable_select()->set_label("stable");
  Write("inference", "predict_label", InferencePrefix(0, 1), predict);
  predict.mutable_select()->set_version(2);
  Write("inference", "predict_version", InferencePrefix(0, 1), predict);

  v1::PredictBatchRequest batch;
  batch.set_rows(2);
  for (int i = 0; i < 2 * kFeatures; ++i) batch.add_features(0.1f * i);
  Write("inference", "predict_batch", InferencePrefix(1, 2), batch);
  batch.set_rows(std::numeric_limits<int32_t>::max());
  Write("inference", "predict_batch_huge_rows", InferencePrefix(1, 0), batch);
  // Just past the fuzzer's work bound (2^16 / ~100 parameters): refused;
  // real values, so only the bound refuses them.
  v1::PredictBatchRequest over_work;
  over_work.set_rows(1024);
  for (int i = 0; i < 1024 * kFeatures; ++i) over_work.add_features(0.01f * i);
  Write("inference", "predict_batch_over_work", InferencePrefix(1, 0),
        over_work);

  v1::ModelMetadataRequest metadata;
  metadata.set_model("clf");
  Write("inference", "metadata", InferencePrefix(2, 1), metadata);
}

// KServe v2 ModelInfer with absurd declared shapes: each must be refused
// before any allocation.
void AbsurdKserveSeeds(const inference::ModelInferRequest& infer,
                       const inference::ModelInferRequest& raw) {
  inference::ModelInferRequest absurd = infer;
  absurd.mutable_inputs(0)->set_shape(0, int64_t{1} << 62);
  Write("inference", "kserve_rows_2e62", InferencePrefix(3, 0), absurd);
  absurd.mutable_inputs(0)->set_shape(0, std::numeric_limits<int64_t>::max());
  absurd.mutable_inputs(0)->set_shape(1, std::numeric_limits<int64_t>::max());
  Write("inference", "kserve_shape_max", InferencePrefix(7, 0), absurd);
  absurd.mutable_inputs(0)->set_shape(0, -1);
  absurd.mutable_inputs(0)->set_shape(1, kFeatures);
  Write("inference", "kserve_rows_negative", InferencePrefix(3, 0), absurd);
  inference::ModelInferRequest raw_absurd = raw;
  raw_absurd.mutable_inputs(0)->set_shape(0, 65536);
  Write("inference", "kserve_raw_max_rows", InferencePrefix(6, 0), raw_absurd);
  // Just past the fuzzer's work bound (as predict_batch_over_work).
  inference::ModelInferRequest over_work = raw;
  over_work.mutable_inputs(0)->set_shape(0, 1024);
  over_work.set_raw_input_contents(
      0, std::string(1024 * kFeatures * sizeof(float), '\0'));
  Write("inference", "kserve_over_work", InferencePrefix(6, 0), over_work);
}

// KServe v2 requests (inference.GRPCInferenceService).
void KserveSeeds() {
  inference::ModelInferRequest infer;
  infer.set_model_name("clf");
  infer.set_id("seed");
  auto* input = infer.add_inputs();
  input->set_name("input");
  input->set_datatype("FP32");
  input->add_shape(2);
  input->add_shape(kFeatures);
  for (int i = 0; i < 2 * kFeatures; ++i) {
    input->mutable_contents()->add_fp32_contents(0.2f * i);
  }
  Write("inference", "kserve_infer", InferencePrefix(3, 1), infer);
  inference::ModelInferRequest class_id = infer;
  class_id.add_outputs()->set_name("class_id");
  Write("inference", "kserve_infer_class_id", InferencePrefix(3, 0), class_id);

  inference::ModelInferRequest raw = infer;
  raw.mutable_inputs(0)->clear_contents();
  std::string values(2 * kFeatures * sizeof(float), '\0');
  for (int i = 0; i < 2 * kFeatures; ++i) {
    const float v = 0.3f * i;
    std::memcpy(values.data() + i * sizeof(float), &v, sizeof(float));
  }
  raw.add_raw_input_contents(values);
  Write("inference", "kserve_infer_raw", InferencePrefix(6, 2), raw);
  AbsurdKserveSeeds(infer, raw);

  inference::ModelMetadataRequest kmeta;
  kmeta.set_name("reg");
  Write("inference", "kserve_metadata", InferencePrefix(4, 1), kmeta);
  inference::ModelReadyRequest ready;
  ready.set_name("clf");
  ready.set_version("stable");
  Write("inference", "kserve_ready_label", InferencePrefix(5, 1), ready);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s CORPUS_DIR\n", argv[0]);
    return 2;
  }
  root = argv[1];
  Snapshots();
  Envelopes();
  Minibatches();
  PredictSeeds();
  KserveSeeds();
  return 0;
}
