// Exact per-column mean and variance over any number of rows, accumulated in
// double precision chunk by chunk and merged with Chan et al.'s parallel
// update, so a stream of minibatches gives the same result as one pass over
// all rows.
//
// Not thread-safe; use one instance per thread and Merge the results.
#ifndef BNSERVE_MODEL_MOMENTS_H_
#define BNSERVE_MODEL_MOMENTS_H_

#include <Eigen/Core>
#include <cstdint>

#include "model/tensor.h"

namespace bnserve::model {

class Moments {
 public:
  explicit Moments(int columns)
      : mean_(Eigen::RowVectorXd::Zero(columns)),
        m2_(Eigen::RowVectorXd::Zero(columns)) {}

  // Adds every row of `rows` (must have columns() columns).
  void Add(const Matrix& rows);
  // Merges another accumulator over the same columns.
  void Merge(const Moments& other);

  int64_t count() const { return count_; }
  int columns() const { return static_cast<int>(mean_.size()); }
  const Eigen::RowVectorXd& mean() const { return mean_; }
  // Sum of squared deviations divided by (count - 1); requires count >= 2.
  Eigen::RowVectorXd UnbiasedVariance() const;
  // Sum of squared deviations divided by count; requires count >= 1.
  Eigen::RowVectorXd BiasedVariance() const;

 private:
  int64_t count_ = 0;
  Eigen::RowVectorXd mean_;
  Eigen::RowVectorXd m2_;  // sum of squared deviations from mean_
};

}  // namespace bnserve::model

#endif  // BNSERVE_MODEL_MOMENTS_H_
