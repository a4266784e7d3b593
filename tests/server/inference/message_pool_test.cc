// RecyclingAllocator: released pairs come back cleared on the same thread,
// large ones are freed instead of cached, and the cache is bounded.
#include "server/inference/message_pool.h"

#include <gtest/gtest.h>

#include <thread>
#include <vector>

#include "bnserve/v1/inference.pb.h"
#include "server/inference/inference_service.h"

namespace bnserve::inference {
namespace {

using Allocator = RecyclingAllocator<v1::PredictRequest, v1::PredictResponse>;
using Holder = grpc::MessageHolder<v1::PredictRequest, v1::PredictResponse>;

// Each test runs on a fresh thread, so the thread's cache starts empty.
template <typename F>
void OnFreshThread(F f) {
  std::thread(f).join();
}

TEST(RecyclingAllocatorTest, AReleasedPairComesBackClearedWithItsCapacity) {
  OnFreshThread([] {
    Allocator alloc;
    Holder* h = alloc.AllocateMessages();
    h->request()->set_model("digits");
    h->request()->mutable_features()->Resize(64, 1.0f);
    h->response()->set_class_name("seven");
    h->response()->mutable_outputs()->Resize(10, 2.0f);
    const float* features = h->request()->features().data();
    h->Release();
    EXPECT_EQ(Allocator::CachedOnThisThread(), 1u);

    Holder* again = alloc.AllocateMessages();
    EXPECT_EQ(again, h);
    EXPECT_EQ(Allocator::CachedOnThisThread(), 0u);
    EXPECT_TRUE(again->request()->model().empty());
    EXPECT_EQ(again->request()->features_size(), 0);
    EXPECT_TRUE(again->response()->class_name().empty());
    EXPECT_EQ(again->response()->outputs_size(), 0);
    // The storage is kept: refilling needs no new allocation.
    EXPECT_GE(again->request()->features().Capacity(), 64);
    again->request()->mutable_features()->Resize(64, 0.0f);
    EXPECT_EQ(again->request()->features().data(), features);
    again->Release();
  });
}

TEST(RecyclingAllocatorTest, LargeMessagesAreFreedNotCached) {
  OnFreshThread([] {
    Allocator alloc;
    Holder* h = alloc.AllocateMessages();
    h->request()->mutable_features()->Resize(
        static_cast<int>(Allocator::kMaxRecycledBytes / sizeof(float)) + 1,
        1.0f);
    h->Release();
    EXPECT_EQ(Allocator::CachedOnThisThread(), 0u);
  });
}

TEST(RecyclingAllocatorTest, TheCacheIsBounded) {
  OnFreshThread([] {
    Allocator alloc;
    std::vector<Holder*> held;
    for (size_t i = 0; i < Allocator::kMaxCachedPerThread + 10; ++i) {
      held.push_back(alloc.AllocateMessages());
    }
    for (Holder* h : held) h->Release();
    EXPECT_EQ(Allocator::CachedOnThisThread(), Allocator::kMaxCachedPerThread);
  });
}

TEST(RecyclingAllocatorTest, PairsMayBeReleasedOnAnotherThread) {
  Allocator alloc;
  std::vector<Holder*> held;
  OnFreshThread([&] {
    for (int i = 0; i < 5; ++i) held.push_back(alloc.AllocateMessages());
  });
  OnFreshThread([&] {
    for (Holder* h : held) h->Release();
    EXPECT_EQ(Allocator::CachedOnThisThread(), 5u);
  });  // the thread's exit frees them (ASan/LSan would report a leak)
}

// Predict's raw request bytes and its PredictExchange (request and response)
// are recycled together: both messages come back cleared, a large one is
// freed instead.
TEST(RecyclingAllocatorTest, PredictExchangesAreRecycledCleared) {
  using ExchangeAllocator =
      RecyclingAllocator<grpc::ByteBuffer, PredictExchange>;
  OnFreshThread([] {
    ExchangeAllocator alloc;
    auto* h = alloc.AllocateMessages();
    h->response()->request.mutable_features()->Resize(64, 1.0f);
    h->response()->response.set_class_name("seven");
    h->Release();
    EXPECT_EQ(ExchangeAllocator::CachedOnThisThread(), 1u);
    auto* again = alloc.AllocateMessages();
    EXPECT_EQ(again, h);
    EXPECT_FALSE(again->request()->Valid());
    EXPECT_EQ(again->response()->request.features_size(), 0);
    EXPECT_GE(again->response()->request.features().Capacity(), 64);
    EXPECT_TRUE(again->response()->response.class_name().empty());
    again->response()->response.mutable_outputs()->Resize(
        static_cast<int>(ExchangeAllocator::kMaxRecycledBytes / sizeof(float)),
        1.0f);
    again->Release();
    EXPECT_EQ(ExchangeAllocator::CachedOnThisThread(), 0u);
  });
}

}  // namespace
}  // namespace bnserve::inference
