// Dense float32 tensors used throughout the model library.
//
// A batch is a row-major matrix: one example per row, one feature or unit per
// column. Per-unit vectors (gamma, beta, running statistics, biases) are row
// vectors so that they broadcast over the rows of a batch.
#ifndef BNSERVE_MODEL_TENSOR_H_
#define BNSERVE_MODEL_TENSOR_H_

#include <Eigen/Core>

namespace bnserve::model {

using Matrix =
    Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using RowVector = Eigen::Matrix<float, 1, Eigen::Dynamic>;

// Upper bound on any layer width or input width accepted from a spec or a
// snapshot: keeps a hostile snapshot from requesting absurd allocations.
inline constexpr int kMaxWidth = 1 << 16;

}  // namespace bnserve::model

#endif  // BNSERVE_MODEL_TENSOR_H_
