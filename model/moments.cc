#include "model/moments.h"

#include <algorithm>

namespace bnserve::model {

void Moments::Add(const Matrix& rows) {
  constexpr Eigen::Index kChunk = 1024;
  for (Eigen::Index start = 0; start < rows.rows(); start += kChunk) {
    const Eigen::Index n = std::min(kChunk, rows.rows() - start);
    const Eigen::MatrixXd chunk = rows.middleRows(start, n).cast<double>();
    Moments part(columns());
    part.count_ = n;
    part.mean_ = chunk.colwise().mean();
    part.m2_ = (chunk.rowwise() - part.mean_).array().square().colwise().sum();
    Merge(part);
  }
}

void Moments::Merge(const Moments& other) {
  if (other.count_ == 0) return;
  if (count_ == 0) {
    *this = other;
    return;
  }
  const double na = static_cast<double>(count_);
  const double nb = static_cast<double>(other.count_);
  const double n = na + nb;
  const Eigen::RowVectorXd delta = other.mean_ - mean_;
  mean_ += delta * (nb / n);
  m2_ += other.m2_ + delta.array().square().matrix() * (na * nb / n);
  count_ += other.count_;
}

Eigen::RowVectorXd Moments::UnbiasedVariance() const {
  return m2_ / static_cast<double>(count_ - 1);
}

Eigen::RowVectorXd Moments::BiasedVariance() const {
  return m2_ / static_cast<double>(count_);
}

}  // namespace bnserve::model
