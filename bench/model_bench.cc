// In-process compute benchmarks (Google Benchmark):
//   BM_PredictFolded / BM_PredictUnfolded   one digits example through the
//       [128, 64] network, batch norm folded into the dense layers or not;
//   BM_PredictWidth/W                       folded, hidden [W, W]: the cost
//       grows as W^2 (the W x W dense layer dominates);
//   BM_DenseKernelGeneric / BM_DenseKernelAvx2   the digits dense layers
//       through the portable and the AVX2+FMA single-example kernels;
//   BM_TrainStep/B                          one SGD-momentum step of the
//       digits [128, 64] network on a minibatch of B rows; items = examples,
//       counter FLOP/s = the step's GEMM FLOPs per second (TrainGemmFlops);
//   BM_FmaPeakAvx2 / BM_FmaPeakAvx512       one core's FMA peak, measured:
//       independent chains of 256-bit / 512-bit FMAs on registers only,
//       counter FLOP/s (skipped on CPUs without the instructions);
//   BM_PredictCnnFolded / BM_PredictCnnUnfolded   one digits example as a
//       1x8x8 image through the demo's CNN (conv:16:3:p1, bn, relu,
//       maxpool:2, conv:32:3:p1, bn, relu, maxpool:2, flatten, dense:64, bn,
//       relu, dense:10), batch norm folded or not;
//   BM_TrainStepCnn/B                       one SGD-momentum step of that
//       CNN on B rows (bench/torch_cnn.py is the PyTorch side);
//   BM_GemmGeneric / BM_GemmAvx2            the CNN's three conv GEMMs of a
//       training step at batch 64 (forward, weight gradient, input
//       gradient of the second conv) through the portable and the AVX2+FMA
//       builds of model/gemm.h.
// Data: --digits_train / --digits_test (defaults: data/digits/*.csv relative
// to the working directory), read before the benchmarks start.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "bench/bench_util.h"
#include "model/dense.h"
#include "model/dense_kernel.h"
#include "model/gemm.h"
#include "model/network.h"
#include "model/trainer.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define BNSERVE_BENCH_X86 1
#include <immintrin.h>
#else
#define BNSERVE_BENCH_X86 0
#endif

namespace bnserve::bench {
namespace {

std::string g_train = "data/digits/train.csv";
std::string g_test = "data/digits/test.csv";

const Table& TestSet() {
  static const Table* t = new Table(ReadLabelledCsv(g_test));
  return *t;
}
const Table& TrainSet() {
  static const Table* t = new Table(ReadLabelledCsv(g_train));
  return *t;
}

model::Network MakeNetwork(const std::vector<int>& hidden) {
  auto net = model::Network::Create(DigitsSpec(hidden), 42);
  if (!net.ok()) {
    std::fprintf(stderr, "%s\n", net.status().ToString().c_str());
    std::exit(2);
  }
  return *std::move(net);
}

// The demo's CNN on digits as 1x8x8 images.
v1::NetworkSpec CnnSpec() {
  v1::NetworkSpec spec = DigitsSpec({});
  spec.clear_hidden();
  for (int d : {1, 8, 8}) spec.add_input_shape(d);
  auto conv = [&spec](int out) {
    v1::Conv2dSpec* c = spec.add_layers()->mutable_conv2d();
    c->set_out_channels(out);
    c->set_kernel_h(3);
    c->set_pad_h(1);
    c->set_pad_w(1);
  };
  auto bn_relu = [&spec] {
    spec.add_layers()->mutable_batch_norm();
    spec.add_layers()->set_activation(v1::ACTIVATION_RELU);
  };
  for (int out : {16, 32}) {
    conv(out);
    bn_relu();
    spec.add_layers()->mutable_max_pool2d()->set_kernel_h(2);
  }
  spec.add_layers()->mutable_flatten();
  spec.add_layers()->mutable_dense()->set_units(64);
  bn_relu();
  v1::DenseSpec* head = spec.add_layers()->mutable_dense();
  head->set_units(10);
  head->set_bias(true);
  return spec;
}

model::Network MakeCnn() {
  auto net = model::Network::Create(CnnSpec(), 42);
  if (!net.ok()) {
    std::fprintf(stderr, "%s\n", net.status().ToString().c_str());
    std::exit(2);
  }
  return *std::move(net);
}

void RunPredict(benchmark::State& state, const model::Network& net) {
  const Table& t = TestSet();
  model::Workspace ws;
  std::vector<float> out(net.output_dim());
  int row = 0;
  for (auto _ : state) {
    net.Forward(t.features.data() + static_cast<size_t>(row) * t.cols,
                out.data(), &ws);
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
    if (++row == t.rows) row = 0;
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_PredictFolded(benchmark::State& state) {
  const model::Network net = MakeNetwork({128, 64}).Folded();
  RunPredict(state, net);
}
BENCHMARK(BM_PredictFolded);

void BM_PredictUnfolded(benchmark::State& state) {
  const model::Network net = MakeNetwork({128, 64});
  RunPredict(state, net);
}
BENCHMARK(BM_PredictUnfolded);

void BM_PredictWidth(benchmark::State& state) {
  const int w = static_cast<int>(state.range(0));
  const model::Network net = MakeNetwork({w, w}).Folded();
  RunPredict(state, net);
}
BENCHMARK(BM_PredictWidth)->RangeMultiplier(2)->Range(64, 1024);

// The single-example dense kernels side by side on the digits layer shapes
// (64 -> 128, 128 -> 64, 64 -> 10, one call each): the runtime-dispatched
// AVX2+FMA kernel and the portable Eigen one.
template <bool kAvx2>
void BM_DenseKernel(benchmark::State& state) {
  if (kAvx2 && !model::internal::CpuHasAvx2Fma()) {
    state.SkipWithError("CPU without AVX2+FMA");
    return;
  }
  const int shapes[3][2] = {{128, 64}, {64, 128}, {10, 64}};
  std::vector<std::vector<float>> w, b;
  for (const auto& s : shapes) {
    w.emplace_back(static_cast<size_t>(s[0]) * s[1], 0.01f);
    b.emplace_back(s[0], 0.1f);
  }
  std::vector<float> x(128, 0.5f), y(128);
  auto kernel = kAvx2 ? &model::internal::DenseForwardAvx2
                      : &model::internal::DenseForwardGeneric;
  for (auto _ : state) {
    for (int i = 0; i < 3; ++i) {
      kernel(w[i].data(), b[i].data(), x.data(), y.data(), shapes[i][0],
             shapes[i][1]);
    }
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_DenseKernel<false>)->Name("BM_DenseKernelGeneric");
BENCHMARK(BM_DenseKernel<true>)->Name("BM_DenseKernelAvx2");

// The second conv layer of the CNN at batch 64: W 32 x 144, im2col columns
// 144 x (4 * 4 * 64), output gradient 32 x 1024.
template <bool kAvx2>
void BM_Gemm(benchmark::State& state) {
  if (kAvx2 && !model::internal::CpuHasAvx2Fma()) {
    state.SkipWithError("CPU without AVX2+FMA");
    return;
  }
  const int k = 32, p = 144, n = 1024;
  std::vector<float> w(k * p, 0.01f), cols(p * n, 0.5f), d(k * n, 0.1f);
  std::vector<float> out(k * n), dw(k * p), dcols(p * n);
  auto gemm =
      kAvx2 ? &model::internal::GemmAvx2 : &model::internal::GemmGeneric;
  for (auto _ : state) {
    gemm({w.data(), k, p}, {cols.data(), p, n}, out.data(), false);
    gemm({d.data(), k, n}, {cols.data(), p, n, true}, dw.data(), false);
    gemm({w.data(), k, p, true}, {d.data(), k, n}, dcols.data(), false);
    benchmark::DoNotOptimize(out.data());
    benchmark::DoNotOptimize(dw.data());
    benchmark::DoNotOptimize(dcols.data());
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_Gemm<false>)->Name("BM_GemmGeneric");
BENCHMARK(BM_Gemm<true>)->Name("BM_GemmAvx2");

// One core's FMA peak. kFmaChains accumulators, each updated by one FMA per
// round (acc = acc * a + b, which converges: no overflow, no denormals),
// are independent dependency chains: with 2 FMA pipes of 4 cycles' latency
// 8 chains keep both busy, 12 leave slack and still fit in the 16 ymm
// registers with a and b. One FMA on L lanes = 2 L FLOP.
constexpr int kFmaChains = 12;
constexpr int64_t kFmaRounds = 4096;  // per benchmark iteration

#if BNSERVE_BENCH_X86
__attribute__((target("avx2,fma"))) float FmaChainsAvx2(float a, float b,
                                                        int64_t rounds) {
  __m256 acc[kFmaChains];
  for (int c = 0; c < kFmaChains; ++c) acc[c] = _mm256_set1_ps(0.01f * c);
  const __m256 va = _mm256_set1_ps(a), vb = _mm256_set1_ps(b);
  for (int64_t r = 0; r < rounds; ++r) {
#pragma GCC unroll 16
    for (int c = 0; c < kFmaChains; ++c) {
      acc[c] = _mm256_fmadd_ps(acc[c], va, vb);
    }
  }
  for (int c = 1; c < kFmaChains; ++c) acc[0] = _mm256_add_ps(acc[0], acc[c]);
  return _mm256_cvtss_f32(acc[0]);
}

__attribute__((target("avx512f"))) float FmaChainsAvx512(float a, float b,
                                                         int64_t rounds) {
  __m512 acc[kFmaChains];
  for (int c = 0; c < kFmaChains; ++c) acc[c] = _mm512_set1_ps(0.01f * c);
  const __m512 va = _mm512_set1_ps(a), vb = _mm512_set1_ps(b);
  for (int64_t r = 0; r < rounds; ++r) {
#pragma GCC unroll 16
    for (int c = 0; c < kFmaChains; ++c) {
      acc[c] = _mm512_fmadd_ps(acc[c], va, vb);
    }
  }
  for (int c = 1; c < kFmaChains; ++c) acc[0] = _mm512_add_ps(acc[0], acc[c]);
  return _mm512_cvtss_f32(acc[0]);
}
void RunFmaPeak(benchmark::State& state, float (*chains)(float, float, int64_t),
                int lanes) {
  float a = 0.999f, b = 0.001f;
  for (auto _ : state) {
    benchmark::DoNotOptimize(a);  // opaque: nothing can be folded
    benchmark::DoNotOptimize(b);
    float sum = chains(a, b, kFmaRounds);
    benchmark::DoNotOptimize(sum);
  }
  const double flop_per_iteration = 2.0 * lanes * kFmaChains * kFmaRounds;
  state.counters["FLOP/s"] = benchmark::Counter(
      flop_per_iteration * static_cast<double>(state.iterations()),
      benchmark::Counter::kIsRate);
}

#endif  // BNSERVE_BENCH_X86

void BM_FmaPeakAvx2(benchmark::State& state) {
#if BNSERVE_BENCH_X86
  if (model::internal::CpuHasAvx2Fma()) {
    RunFmaPeak(state, &FmaChainsAvx2, 8);
    return;
  }
#endif
  state.SkipWithError("CPU without AVX2+FMA");
}
BENCHMARK(BM_FmaPeakAvx2);

void BM_FmaPeakAvx512(benchmark::State& state) {
#if BNSERVE_BENCH_X86
  if (__builtin_cpu_supports("avx512f")) {
    RunFmaPeak(state, &FmaChainsAvx512, 16);
    return;
  }
#endif
  state.SkipWithError("CPU without AVX-512F");
}
BENCHMARK(BM_FmaPeakAvx512);

// FLOPs per example of the matrix products in one training step, as the
// trainer runs them (model/trainer.cc, model/dense.cc), 2 per multiply-add:
// each dense layer in -> out does the forward X W^T and the weight gradient
// dY^T X (2 in out each), and the input gradient dY W (2 in out) unless it
// is layer 0, whose input gradient the trainer never asks for. Batch norm,
// activations, softmax and the optimizer are not counted; nor are
// convolutions (used for the dense-only digits MLP).
double TrainGemmFlops(const model::Network& net) {
  double flops = 0;
  for (int i = 0; i < net.num_layers(); ++i) {
    const model::Dense* d = net.layer(i).As<model::Dense>();
    if (d == nullptr) continue;
    const double mac = static_cast<double>(d->in()) * d->out();
    flops += 2 * mac * (i > 0 ? 3 : 2);
  }
  return flops;
}

// With flop_per_example > 0, also the counter FLOP/s.
void RunTrainStep(benchmark::State& state, model::Network net,
                  double flop_per_example = 0) {
  const int b = static_cast<int>(state.range(0));
  const Table& t = TrainSet();
  model::OptimizerConfig config;
  config.kind = model::OptimizerConfig::Kind::kSgd;
  config.learning_rate = 0.01f;
  config.momentum = 0.9f;
  auto trainer = model::Trainer::Create(std::move(net), config);
  if (!trainer.ok()) {
    state.SkipWithError(trainer.status().ToString().c_str());
    return;
  }
  // Pre-built minibatches covering the training set (cycled).
  std::vector<model::Batch> batches;
  for (int start = 0; start + b <= t.rows || batches.empty(); start += b) {
    model::Batch batch;
    batch.features.resize(b, t.cols);
    for (int r = 0; r < b; ++r) {
      const int src = (start + r) % t.rows;
      std::memcpy(batch.features.row(r).data(),
                  t.features.data() + static_cast<size_t>(src) * t.cols,
                  sizeof(float) * t.cols);
      batch.labels.push_back(t.labels[src]);
    }
    batches.push_back(std::move(batch));
  }
  size_t i = 0;
  for (auto _ : state) {
    auto result = trainer->Step(batches[i]);
    benchmark::DoNotOptimize(result);
    if (++i == batches.size()) i = 0;
  }
  state.SetItemsProcessed(state.iterations() * b);
  if (flop_per_example > 0) {
    state.counters["FLOP/s"] = benchmark::Counter(
        flop_per_example * static_cast<double>(state.iterations() * b),
        benchmark::Counter::kIsRate);
  }
}

void BM_TrainStep(benchmark::State& state) {
  model::Network net = MakeNetwork({128, 64});
  const double flops = TrainGemmFlops(net);
  RunTrainStep(state, std::move(net), flops);
}
BENCHMARK(BM_TrainStep)->RangeMultiplier(2)->Range(16, 1024);

void BM_TrainStepCnn(benchmark::State& state) {
  RunTrainStep(state, MakeCnn());
}
BENCHMARK(BM_TrainStepCnn)->Arg(64);

void BM_PredictCnnFolded(benchmark::State& state) {
  static const model::Network* net = new model::Network(MakeCnn().Folded());
  RunPredict(state, *net);
}
BENCHMARK(BM_PredictCnnFolded);

void BM_PredictCnnUnfolded(benchmark::State& state) {
  static const model::Network* net = new model::Network(MakeCnn());
  RunPredict(state, *net);
}
BENCHMARK(BM_PredictCnnUnfolded);

}  // namespace
}  // namespace bnserve::bench

int main(int argc, char** argv) {
  std::vector<char*> rest;
  for (int i = 0; i < argc; ++i) {
    if (std::strncmp(argv[i], "--digits_train=", 15) == 0) {
      bnserve::bench::g_train = argv[i] + 15;
    } else if (std::strncmp(argv[i], "--digits_test=", 14) == 0) {
      bnserve::bench::g_test = argv[i] + 14;
    } else {
      rest.push_back(argv[i]);
    }
  }
  int n = static_cast<int>(rest.size());
  benchmark::Initialize(&n, rest.data());
  if (benchmark::ReportUnrecognizedArguments(n, rest.data())) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
