// Test helper for the Python client test: publishes a test snapshot
// (tests/server/inference/test_util.h) into a store and prints, as one JSON
// object, the assigned version, an example and the model library's
// inference-mode outputs for it, computed independently of the model library
// (test_util's ReferenceOutputs and ReferenceProbabilities).
//
//   publish_test_model STORE_URI MODEL SEED
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "model/network.h"
#include "store/store.h"
#include "tests/server/inference/test_util.h"

namespace {

void PrintArray(const char* name, const std::vector<float>& v) {
  std::printf("\"%s\": [", name);
  for (size_t i = 0; i < v.size(); ++i) {
    std::printf("%s%.9g", i == 0 ? "" : ", ", v[i]);
  }
  std::printf("]");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: %s STORE_URI MODEL SEED\n", argv[0]);
    return 2;
  }
  using namespace bnserve;
  auto store = store::OpenStore(argv[1]);
  if (!store.ok()) {
    std::fprintf(stderr, "%s\n", store.status().ToString().c_str());
    return 1;
  }
  const uint64_t seed = std::strtoull(argv[3], nullptr, 10);
  v1::Snapshot snapshot = inference::testing::MakeSnapshot(argv[2], seed);
  auto version = (*store)->Publish(snapshot);
  if (!version.ok()) {
    std::fprintf(stderr, "%s\n", version.status().ToString().c_str());
    return 1;
  }
  const std::vector<float> x =
      inference::testing::RandomFeatures(snapshot.input_features(), seed + 1);
  const std::vector<float> out =
      inference::testing::ReferenceOutputs(snapshot, x);
  std::printf("{\"version\": %lld, ", static_cast<long long>(*version));
  PrintArray("features", x);
  std::printf(", ");
  PrintArray("outputs", out);
  std::printf(", ");
  PrintArray("probabilities", inference::testing::ReferenceProbabilities(out));
  std::printf(
      ", \"class_id\": %d}\n",
      static_cast<int>(std::max_element(out.begin(), out.end()) - out.begin()));
  return 0;
}
