// Pieces shared by the bnctl command implementations (internal to bnctl).
#ifndef BNSERVE_CLIENT_BNCTL_COMMAND_UTIL_H_
#define BNSERVE_CLIENT_BNCTL_COMMAND_UTIL_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "bnserve/v1/trainer.grpc.pb.h"
#include "client/bnctl/commands.h"
#include "client/bnctl/connection.h"
#include "client/bnctl/dataset.h"
#include "nlohmann/json.hpp"

namespace bnserve::client {

// Deadline of every unary call.
inline constexpr absl::Duration kUnaryTimeout = absl::Seconds(30);

// Writes `json` as one line on io.out.
void PrintJson(Io& io, const nlohmann::json& json);

// Copies rows order[begin, begin + count) of `data` into `batch`
// (features only, as raw little-endian float32: Minibatch.features_f32).
void FillFeatures(const LabeledData& data, const std::vector<int>& order,
                  int begin, int count, v1::Minibatch* batch);

// Streams every row of `dataset` (file order, minibatches of about
// `batch_size` rows, never one row) through Trainer.Recalibrate for
// `job_id`; returns the version the trainer published.
absl::StatusOr<v1::PublishResponse> StreamRecalibration(
    const Connection& connection, v1::Trainer::Stub& stub,
    const std::string& job_id, const Dataset& dataset, int batch_size);

// Prefixes a failed RPC's message with what bnctl was doing.
absl::Status RpcError(const grpc::Status& status, const std::string& doing);

}  // namespace bnserve::client

#endif  // BNSERVE_CLIENT_BNCTL_COMMAND_UTIL_H_
