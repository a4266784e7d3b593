// Dense float32 tensors used throughout the model library.
//
// A batch is a row-major matrix: one example per row, one feature or unit per
// column. An image example is stored flat in C, H, W row-major order (PyTorch's
// x.reshape(N, -1)). Per-unit vectors (gamma, beta, running statistics,
// biases) are row vectors so that they broadcast over the rows of a batch.
#ifndef BNSERVE_MODEL_TENSOR_H_
#define BNSERVE_MODEL_TENSOR_H_

#include <Eigen/Core>

#include "model/limits.h"

namespace bnserve::model {

using Matrix =
    Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using RowVector = Eigen::Matrix<float, 1, Eigen::Dynamic>;

}  // namespace bnserve::model

#endif  // BNSERVE_MODEL_TENSOR_H_
