// Helpers shared by the inference server tests: snapshots with non-trivial
// batch-norm statistics, the model library's reference outputs, unique names.
#ifndef BNSERVE_TESTS_SERVER_INFERENCE_TEST_UTIL_H_
#define BNSERVE_TESTS_SERVER_INFERENCE_TEST_UTIL_H_

#include <cstdint>
#include <string>
#include <vector>

#include "bnserve/v1/snapshot.pb.h"

namespace bnserve::inference::testing {

// A snapshot of `model`: `features` inputs, hidden layers [8, 6] (Dense ->
// BatchNorm -> relu) and `outputs` outputs, with random weights, gamma, beta
// and running statistics drawn from `seed` (so batch norm matters), feature
// names f0.. and, for classification, class names c0...
v1::Snapshot MakeSnapshot(const std::string& model, uint64_t seed,
                          v1::Task task = v1::TASK_CLASSIFICATION,
                          int features = 4, int outputs = 3);

// Inference-mode outputs of the network of `snapshot` for `x`, the
// reference the server must match, computed independently of the model
// library: straight from the snapshot's fields, in double, with the
// documented formulas (y = W x + b; gamma * (z - running_mean) /
// sqrt(running_var + eps) + beta; relu, tanh, sigmoid, identity). Only flat
// networks of dense, batch_norm and activation layers (what MakeSnapshot
// builds); aborts on anything else.
std::vector<float> ReferenceOutputs(const v1::Snapshot& snapshot,
                                    const std::vector<float>& x);

// softmax(outputs) in double (exp(o - max) / sum), independent of the model
// library's and the server's softmax.
std::vector<float> ReferenceProbabilities(const std::vector<float>& outputs);

// `n` deterministic pseudo-random feature values.
std::vector<float> RandomFeatures(int n, uint64_t seed);

// A name unique within this process run (for mem:// stores and models).
std::string UniqueName(const std::string& prefix);

}  // namespace bnserve::inference::testing

#endif  // BNSERVE_TESTS_SERVER_INFERENCE_TEST_UTIL_H_
