// The PyTorch reference networks of make_torch_reference.py as bnserve
// specs, with their reference values (torch_reference.inc): a CNN on 2x7x7
// images (EMA and cumulative statistics), and input normalization over flat
// features and over images. Used by trainer_test (training) and
// network_test (inference and recalibration).
#ifndef BNSERVE_TESTS_MODEL_TORCH_CASES_H_
#define BNSERVE_TESTS_MODEL_TORCH_CASES_H_

#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "model/network.h"
#include "model/trainer.h"
#include "tests/model/test_util.h"

namespace bnserve::model::torch_ref {

#include "tests/model/torch_reference.inc"

using Values = const std::vector<float>*;

struct TorchCase {
  std::string name;
  v1::NetworkSpec spec;
  int rows = 0;                                 // per training minibatch
  std::vector<Values> params;                   // PyTorch parameters() order
  std::vector<Values> xs;                       // 3 minibatches
  std::vector<const std::vector<int>*> labels;  // classification
  std::vector<Values> targets;                  // regression (rows x outputs)
  Values train_logits0 = nullptr;  // train-mode forward of minibatch 0
  Values train_loss0 = nullptr;
  std::vector<Values> grads;              // of minibatch 0, before any update
  Values losses = nullptr;                // of the 3 SGD steps
  std::vector<Values> after;              // parameters after the 3 steps
  std::vector<Values> run_mean, run_var;  // per batch norm, after 3 steps
  // Eval mode after the 3 steps, then after exact recalibration.
  Values eval_x = nullptr, eval_out = nullptr;
  Values recal_x = nullptr;
  std::vector<Values> recal_mean, recal_var;
  Values recal_eval_out = nullptr;
};

// The optimizer of every reference: SGD, lr 0.05, momentum 0.9.
inline OptimizerConfig TorchSgd() {
  return {.kind = OptimizerConfig::Kind::kSgd,
          .learning_rate = 0.05f,
          .momentum = 0.9f,
          .weight_decay = 0.0f};
}

// conv 3x3 s1 p1 (no bias) -> BN2d -> relu -> maxpool 2 -> conv 2x2 s2 p1 ->
// BN2d -> relu -> avgpool 2 s1 p1 -> flatten -> dense 45 -> 3.
inline v1::NetworkSpec CnnSpec(v1::AverageMode average) {
  using namespace test;  // NOLINT: spec helpers
  return ImageSpec(
      2, 7, 7, 3,
      {ConvSpec(4, 3, 3, 1, 1, 1, 1, false), BatchNormSpec(average),
       ActivationSpec(v1::ACTIVATION_RELU), PoolSpec(true, 2, 2, 2, 2, 0, 0),
       ConvSpec(5, 2, 2, 2, 2, 1, 1, true), BatchNormSpec(average),
       ActivationSpec(v1::ACTIVATION_RELU), PoolSpec(false, 2, 2, 1, 1, 1, 1),
       FlattenSpec(), DenseSpec(3, true)});
}

inline TorchCase CnnCase(bool cumulative) {
  TorchCase c;
  c.name = cumulative ? "cnn (cumulative)" : "cnn";
  c.spec = CnnSpec(cumulative ? v1::AVERAGE_CUMULATIVE : v1::AVERAGE_EMA);
  c.rows = 6;
  c.params = {&kCnnP0, &kCnnP1, &kCnnP2, &kCnnP3, &kCnnP4,
              &kCnnP5, &kCnnP6, &kCnnP7, &kCnnP8};
  c.xs = {&kCnnX0, &kCnnX1, &kCnnX2};
  c.labels = {&kCnnLabels0, &kCnnLabels1, &kCnnLabels2};
  c.train_logits0 = &kCnnTrainLogits0;
  c.train_loss0 = &kCnnTrainLoss0;
  c.grads = {&kCnnG0, &kCnnG1, &kCnnG2, &kCnnG3, &kCnnG4,
             &kCnnG5, &kCnnG6, &kCnnG7, &kCnnG8};
  if (cumulative) {
    c.losses = &kCnnCumLosses;
    c.after = {&kCnnCumAfterP0, &kCnnCumAfterP1, &kCnnCumAfterP2,
               &kCnnCumAfterP3, &kCnnCumAfterP4, &kCnnCumAfterP5,
               &kCnnCumAfterP6, &kCnnCumAfterP7, &kCnnCumAfterP8};
    c.run_mean = {&kCnnCumRunMean0, &kCnnCumRunMean1};
    c.run_var = {&kCnnCumRunVar0, &kCnnCumRunVar1};
    return c;
  }
  c.losses = &kCnnEmaLosses;
  c.after = {&kCnnEmaAfterP0, &kCnnEmaAfterP1, &kCnnEmaAfterP2,
             &kCnnEmaAfterP3, &kCnnEmaAfterP4, &kCnnEmaAfterP5,
             &kCnnEmaAfterP6, &kCnnEmaAfterP7, &kCnnEmaAfterP8};
  c.run_mean = {&kCnnEmaRunMean0, &kCnnEmaRunMean1};
  c.run_var = {&kCnnEmaRunVar0, &kCnnEmaRunVar1};
  c.eval_x = &kCnnEvalX;
  c.eval_out = &kCnnEvalOut;
  c.recal_x = &kCnnRecalX;
  c.recal_mean = {&kCnnRecalMean0, &kCnnRecalMean1};
  c.recal_var = {&kCnnRecalVar0, &kCnnRecalVar1};
  c.recal_eval_out = &kCnnRecalEvalOut;
  return c;
}

// BatchNorm1d over 5 raw features of scales 0.1 to 1000, then the
// shorthand's dense (no bias) -> BN -> relu -> dense.
inline TorchCase InputNormCase() {
  TorchCase c;
  c.name = "input norm (flat)";
  c.spec.set_task(v1::TASK_CLASSIFICATION);
  c.spec.set_input_features(5);
  c.spec.set_output_dim(3);
  c.spec.add_hidden(6);
  c.spec.set_input_norm(true);
  c.rows = 8;
  c.params = {&kInNormP0, &kInNormP1, &kInNormP2, &kInNormP3,
              &kInNormP4, &kInNormP5, &kInNormP6};
  c.xs = {&kInNormX0, &kInNormX1, &kInNormX2};
  c.labels = {&kInNormLabels0, &kInNormLabels1, &kInNormLabels2};
  c.train_logits0 = &kInNormTrainLogits0;
  c.grads = {&kInNormG0, &kInNormG1, &kInNormG2, &kInNormG3,
             &kInNormG4, &kInNormG5, &kInNormG6};
  c.losses = &kInNormLosses;
  c.after = {&kInNormAfterP0, &kInNormAfterP1, &kInNormAfterP2, &kInNormAfterP3,
             &kInNormAfterP4, &kInNormAfterP5, &kInNormAfterP6};
  c.run_mean = {&kInNormRunMean0, &kInNormRunMean1};
  c.run_var = {&kInNormRunVar0, &kInNormRunVar1};
  c.eval_x = &kInNormEvalX;
  c.eval_out = &kInNormEvalOut;
  c.recal_x = &kInNormRecalX;
  c.recal_mean = {&kInNormRecalMean0, &kInNormRecalMean1};
  c.recal_var = {&kInNormRecalVar0, &kInNormRecalVar1};
  c.recal_eval_out = &kInNormRecalEvalOut;
  return c;
}

// BatchNorm2d over raw 2x5x5 images (channel scales 20 and 0.05) -> conv
// 3x3 (no padding, no bias) -> BN2d -> relu -> flatten -> dense 27 -> 2.
inline TorchCase InputNorm2dCase() {
  using namespace test;  // NOLINT: spec helpers
  TorchCase c;
  c.name = "input norm (image)";
  c.spec = ImageSpec(
      2, 5, 5, 2,
      {BatchNormSpec(), ConvSpec(3, 3, 3, 1, 1, 0, 0, false), BatchNormSpec(),
       ActivationSpec(v1::ACTIVATION_RELU), FlattenSpec(), DenseSpec(2, true)});
  c.rows = 5;
  c.params = {&kInNorm2dP0, &kInNorm2dP1, &kInNorm2dP2, &kInNorm2dP3,
              &kInNorm2dP4, &kInNorm2dP5, &kInNorm2dP6};
  c.xs = {&kInNorm2dX0, &kInNorm2dX1, &kInNorm2dX2};
  c.labels = {&kInNorm2dLabels0, &kInNorm2dLabels1, &kInNorm2dLabels2};
  c.train_logits0 = &kInNorm2dTrainLogits0;
  c.grads = {&kInNorm2dG0, &kInNorm2dG1, &kInNorm2dG2, &kInNorm2dG3,
             &kInNorm2dG4, &kInNorm2dG5, &kInNorm2dG6};
  c.losses = &kInNorm2dLosses;
  c.after = {&kInNorm2dAfterP0, &kInNorm2dAfterP1, &kInNorm2dAfterP2,
             &kInNorm2dAfterP3, &kInNorm2dAfterP4, &kInNorm2dAfterP5,
             &kInNorm2dAfterP6};
  c.run_mean = {&kInNorm2dRunMean0, &kInNorm2dRunMean1};
  c.run_var = {&kInNorm2dRunVar0, &kInNorm2dRunVar1};
  c.eval_x = &kInNorm2dEvalX;
  c.eval_out = &kInNorm2dEvalOut;
  c.recal_x = &kInNorm2dRecalX;
  c.recal_mean = {&kInNorm2dRecalMean0, &kInNorm2dRecalMean1};
  c.recal_var = {&kInNorm2dRecalVar0, &kInNorm2dRecalVar1};
  c.recal_eval_out = &kInNorm2dRecalEvalOut;
  return c;
}

inline std::vector<TorchCase> AllCases() {
  return {CnnCase(false), CnnCase(true), InputNormCase(), InputNorm2dCase()};
}

// The hidden-layer shorthand 4 -> [6, 5] -> 3 (dense without bias -> batch
// norm -> activation, twice: stacked batch norms) with each activation and
// both heads; PyTorch computed it in float64 (make_torch_reference.py,
// mlp_case). Training references only.
#define BNSERVE_MLP_CASE(P, NAME, ACT, TASK)                             \
  [] {                                                                   \
    TorchCase c;                                                         \
    c.name = NAME;                                                       \
    c.spec.set_task(TASK);                                               \
    c.spec.set_input_features(4);                                        \
    c.spec.set_output_dim(3);                                            \
    c.spec.add_hidden(6);                                                \
    c.spec.add_hidden(5);                                                \
    c.spec.set_hidden_activation(ACT);                                   \
    c.rows = 7;                                                          \
    c.params = {                                                         \
        &P##P0, &P##P1, &P##P2, &P##P3, &P##P4, &P##P5, &P##P6, &P##P7}; \
    c.xs = {&P##X0, &P##X1, &P##X2};                                     \
    c.train_logits0 = &P##TrainLogits0;                                  \
    c.grads = {                                                          \
        &P##G0, &P##G1, &P##G2, &P##G3, &P##G4, &P##G5, &P##G6, &P##G7}; \
    c.losses = &P##Losses;                                               \
    c.after = {&P##AfterP0, &P##AfterP1, &P##AfterP2, &P##AfterP3,       \
               &P##AfterP4, &P##AfterP5, &P##AfterP6, &P##AfterP7};      \
    c.run_mean = {&P##RunMean0, &P##RunMean1};                           \
    c.run_var = {&P##RunVar0, &P##RunVar1};                              \
    return c;                                                            \
  }()

inline std::vector<TorchCase> MlpCases() {
  std::vector<TorchCase> cases = {
      BNSERVE_MLP_CASE(kMlpRelu, "mlp relu", v1::ACTIVATION_RELU,
                       v1::TASK_CLASSIFICATION),
      BNSERVE_MLP_CASE(kMlpTanh, "mlp tanh", v1::ACTIVATION_TANH,
                       v1::TASK_CLASSIFICATION),
      BNSERVE_MLP_CASE(kMlpSigmoid, "mlp sigmoid", v1::ACTIVATION_SIGMOID,
                       v1::TASK_CLASSIFICATION),
      BNSERVE_MLP_CASE(kMlpIdentity, "mlp identity", v1::ACTIVATION_IDENTITY,
                       v1::TASK_CLASSIFICATION),
      BNSERVE_MLP_CASE(kMlpTanhMse, "mlp tanh mse", v1::ACTIVATION_TANH,
                       v1::TASK_REGRESSION),
      BNSERVE_MLP_CASE(kMlpSigmoidMse, "mlp sigmoid mse",
                       v1::ACTIVATION_SIGMOID, v1::TASK_REGRESSION)};
  cases[0].labels = {&kMlpReluLabels0, &kMlpReluLabels1, &kMlpReluLabels2};
  cases[1].labels = {&kMlpTanhLabels0, &kMlpTanhLabels1, &kMlpTanhLabels2};
  cases[2].labels = {&kMlpSigmoidLabels0, &kMlpSigmoidLabels1,
                     &kMlpSigmoidLabels2};
  cases[3].labels = {&kMlpIdentityLabels0, &kMlpIdentityLabels1,
                     &kMlpIdentityLabels2};
  cases[4].targets = {&kMlpTanhMseY0, &kMlpTanhMseY1, &kMlpTanhMseY2};
  cases[5].targets = {&kMlpSigmoidMseY0, &kMlpSigmoidMseY1, &kMlpSigmoidMseY2};
  return cases;
}
#undef BNSERVE_MLP_CASE

// Every training reference: AllCases() then MlpCases().
inline std::vector<TorchCase> TrainingCases() {
  std::vector<TorchCase> all = AllCases();
  for (TorchCase& c : MlpCases()) all.push_back(std::move(c));
  return all;
}

// Every trainable tensor of `net` in order (Layer::Parameters(), layer by
// layer), which is PyTorch's parameters() order for these networks.
inline std::vector<ParamRef> AllParameters(Network* net) {
  std::vector<ParamRef> all;
  for (int i = 0; i < net->num_layers(); ++i) {
    for (const ParamRef& p : net->mutable_layer(i).Parameters()) {
      all.push_back(p);
    }
  }
  return all;
}

// The case's network with PyTorch's initial parameters. Conv2d weights are
// K x (C*kh*kw) row-major = Conv2d.weight flattened; dense weights out x in.
inline Network LoadNetwork(const TorchCase& c) {
  absl::StatusOr<Network> net = Network::Create(c.spec, 1);
  EXPECT_TRUE(net.ok()) << net.status();
  std::vector<ParamRef> params = AllParameters(&*net);
  EXPECT_EQ(params.size(), c.params.size()) << c.name;
  for (size_t i = 0; i < params.size() && i < c.params.size(); ++i) {
    EXPECT_EQ(params[i].size, static_cast<int64_t>(c.params[i]->size()))
        << c.name << " parameter " << i;
    if (params[i].size != static_cast<int64_t>(c.params[i]->size())) continue;
    std::copy(c.params[i]->begin(), c.params[i]->end(), params[i].data);
  }
  return *std::move(net);
}

inline Batch TorchBatch(const TorchCase& c, int step) {
  Batch b;
  b.features = test::FromVector(*c.xs[step], c.rows);
  if (!c.targets.empty()) {
    b.targets = test::FromVector(*c.targets[step], c.rows);
  } else {
    b.labels.assign(c.labels[step]->begin(), c.labels[step]->end());
  }
  return b;
}

// The batch-norm layers of `net`, in order.
inline std::vector<BatchNorm*> BatchNorms(Network* net) {
  std::vector<BatchNorm*> out;
  for (int i = 0; i < net->num_layers(); ++i) {
    if (BatchNorm* bn = net->mutable_layer_as<BatchNorm>(i)) out.push_back(bn);
  }
  return out;
}

// The case's network after its 3 SGD steps; checks each step's loss.
inline Network TrainThreeSteps(const TorchCase& c, float loss_tol = 1e-5f) {
  Trainer trainer = *Trainer::Create(LoadNetwork(c), TorchSgd());
  for (int step = 0; step < 3; ++step) {
    absl::StatusOr<StepResult> r = trainer.Step(TorchBatch(c, step));
    EXPECT_TRUE(r.ok()) << r.status();
    if (!r.ok()) break;
    test::ExpectClose(std::vector<float>{static_cast<float>(r->loss)}.data(), 1,
                      {(*c.losses)[step]}, loss_tol,
                      c.name + " loss of step " + std::to_string(step));
  }
  return trainer.network();
}

}  // namespace bnserve::model::torch_ref

#endif  // BNSERVE_TESTS_MODEL_TORCH_CASES_H_
