// RecyclingAllocator: a grpc::MessageAllocator for callback-API unary
// methods that reuses request/response pairs instead of allocating fresh
// ones per call. A released pair is Clear()ed (protobuf keeps the capacity
// of its strings and repeated fields) and kept in a small cache of the
// releasing thread; the next call on that thread takes it back. A warmed-up
// server so parses Predict's features and builds its response without a
// single heap allocation, and threads share no allocator state.
//
// How a type is measured and cleared is Recycling<T>: protobuf messages by
// default, grpc::ByteBuffer (a raw request: its bytes are given back to gRPC
// on release) below; other types specialize it (see PredictExchange in
// inference_service.h).
//
// Pairs whose messages were large (a hostile or batch-sized request) are
// freed rather than cached, so the cache never pins more than
// kMaxCachedPerThread * kMaxRecycledBytes (about 16 MiB per thread, in
// practice a few KiB).
//
// Thread-safe; holders may be allocated on one thread and released on
// another. Cached pairs live until their thread exits.
#ifndef BNSERVE_SERVER_INFERENCE_MESSAGE_POOL_H_
#define BNSERVE_SERVER_INFERENCE_MESSAGE_POOL_H_

#include <grpcpp/support/byte_buffer.h>
#include <grpcpp/support/message_allocator.h>

#include <cstddef>
#include <vector>

namespace bnserve::inference {

// The size of a message, for the large-message check, and its clearing for
// reuse. The default is for protobuf messages.
template <typename T>
struct Recycling {
  static size_t Bytes(const T& m) { return m.ByteSizeLong(); }
  static void Clear(T* m) { m->Clear(); }
};

template <>
struct Recycling<grpc::ByteBuffer> {
  static size_t Bytes(const grpc::ByteBuffer& b) { return b.Length(); }
  static void Clear(grpc::ByteBuffer* b) { b->Clear(); }
};

template <typename Request, typename Response>
class RecyclingAllocator final
    : public grpc::MessageAllocator<Request, Response> {
 public:
  static constexpr size_t kMaxCachedPerThread = 256;
  static constexpr size_t kMaxRecycledBytes = 64 * 1024;

  grpc::MessageHolder<Request, Response>* AllocateMessages() override {
    if (ThreadExiting()) return new Holder();
    std::vector<Holder*>& cache = Cache();
    if (cache.empty()) return new Holder();
    Holder* h = cache.back();
    cache.pop_back();
    return h;
  }

  // Pairs cached on the calling thread (for tests).
  static size_t CachedOnThisThread() { return Cache().size(); }

 private:
  class Holder final : public grpc::MessageHolder<Request, Response> {
   public:
    Holder() {
      this->set_request(&request_);
      this->set_response(&response_);
    }
    void Release() override {
      if (ThreadExiting()) {
        delete this;
        return;
      }
      std::vector<Holder*>& cache = Cache();
      if (cache.size() >= kMaxCachedPerThread ||
          Recycling<Request>::Bytes(request_) +
                  Recycling<Response>::Bytes(response_) >
              kMaxRecycledBytes) {
        delete this;
        return;
      }
      Recycling<Request>::Clear(&request_);
      Recycling<Response>::Clear(&response_);
      cache.push_back(this);
    }

   private:
    Request request_;
    Response response_;
  };

  struct ThreadCache {
    std::vector<Holder*> holders;
    ~ThreadCache() {
      ThreadExiting() = true;
      for (Holder* h : holders) delete h;
    }
  };
  // Set once the thread's cache is destroyed: a call finishing during
  // thread exit then neither touches nor recreates it. A trivially
  // destructible thread_local stays usable until the thread ends.
  static bool& ThreadExiting() {
    thread_local bool exiting = false;
    return exiting;
  }
  static std::vector<Holder*>& Cache() {
    thread_local ThreadCache cache;
    return cache.holders;
  }
};

}  // namespace bnserve::inference

#endif  // BNSERVE_SERVER_INFERENCE_MESSAGE_POOL_H_
