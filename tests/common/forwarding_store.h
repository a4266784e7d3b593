// ForwardingStore: a store::SnapshotStore that passes every call of the
// store interface's required methods to another store, for test fakes that
// change one or two of them (a Publish that blocks, a version that cannot
// be read) and behave like the wrapped store otherwise. The optional
// methods (checkpoints, the job registry) keep the interface's defaults:
// a fake that needs them overrides them. Thread safety: that of the
// wrapped store; `inner` must outlive the ForwardingStore.
#ifndef BNSERVE_TESTS_COMMON_FORWARDING_STORE_H_
#define BNSERVE_TESTS_COMMON_FORWARDING_STORE_H_

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "store/store.h"

namespace bnserve::testing {

class ForwardingStore : public store::SnapshotStore {
 public:
  explicit ForwardingStore(store::SnapshotStore* inner) : inner_(inner) {}

  absl::StatusOr<int64_t> Publish(const v1::Snapshot& s) override {
    return inner_->Publish(s);
  }
  absl::StatusOr<v1::Snapshot> Read(std::string_view m, int64_t v) override {
    return inner_->Read(m, v);
  }
  absl::StatusOr<int64_t> Latest(std::string_view m) override {
    return inner_->Latest(m);
  }
  absl::StatusOr<std::vector<int64_t>> ListVersions(
      std::string_view m) override {
    return inner_->ListVersions(m);
  }
  absl::StatusOr<std::vector<std::string>> ListModels() override {
    return inner_->ListModels();
  }
  absl::Status SetLabel(std::string_view m, std::string_view l,
                        int64_t v) override {
    return inner_->SetLabel(m, l, v);
  }
  absl::StatusOr<int64_t> ResolveLabel(std::string_view m,
                                       std::string_view l) override {
    return inner_->ResolveLabel(m, l);
  }
  absl::StatusOr<std::map<std::string, int64_t>> ListLabels(
      std::string_view m) override {
    return inner_->ListLabels(m);
  }
  absl::Status DeleteLabel(std::string_view m, std::string_view l) override {
    return inner_->DeleteLabel(m, l);
  }
  absl::Status DeleteVersion(std::string_view m, int64_t v) override {
    return inner_->DeleteVersion(m, v);
  }
  absl::StatusOr<std::vector<int64_t>> ApplyRetention(std::string_view m,
                                                      int keep) override {
    return inner_->ApplyRetention(m, keep);
  }
  absl::StatusOr<std::unique_ptr<store::WatchHandle>> Watch(
      std::function<void(const store::StoreEvent&)> callback) override {
    return inner_->Watch(std::move(callback));
  }
  std::string uri() const override { return inner_->uri(); }

 private:
  store::SnapshotStore* const inner_;
};

}  // namespace bnserve::testing

#endif  // BNSERVE_TESTS_COMMON_FORWARDING_STORE_H_
