// The ReLU kernels behind ApplyActivation (model/activation.h): x where
// x > 0, else +0 (NaN included). Which one runs is decided once per process
// from the CPU, as for the dense kernel (model/dense_kernel.h); both give the
// same bits.
//
// Pure functions; thread-safe.
#ifndef BNSERVE_MODEL_RELU_KERNEL_H_
#define BNSERVE_MODEL_RELU_KERNEL_H_

#include <Eigen/Core>

namespace bnserve::model::internal {

// The portable loop (the build's vector width).
void ReluGeneric(float* data, Eigen::Index size);
// Eight AVX2 lanes at a time; only to be called when CpuHasAvx2Fma() (the
// portable loop on builds without the AVX2 kernel).
void ReluAvx2(float* data, Eigen::Index size);

}  // namespace bnserve::model::internal

#endif  // BNSERVE_MODEL_RELU_KERNEL_H_
