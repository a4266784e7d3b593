// ThreadSanitizer annotations for gRPC's callback tags.
//
// Debian's libgrpc is not built with -fsanitize=thread, so TSan cannot see
// that a batch of operations started with grpc_call_start_batch() happens
// before the callback that libgrpc runs, often on another thread, when the
// batch completes. gRPC's C++ callback API hands its per-call objects across
// exactly that edge: CallbackWithSuccessTag::Set, the operation set and the
// interceptor state are written before the batch starts and read and written
// again by CallbackWithSuccessTag::Run on the completing thread. Without the
// edge TSan reported those objects as racing (issue 21): in gRPC's inline
// header code itself, now compiled without load/store checks
// (tests/tsan/ignorelist.txt), and in the libstdc++ code it calls out of line
// (std::function assignment, std::atomic construction), which the ignorelist
// cannot reach because clang does not inline across the sanitizer boundary.
//
// Linked into a TSan executable by scripts/tsan.sh (no source changes), this
// file makes the edge visible, exactly where libgrpc provides it:
//  - it interposes grpc_call_start_batch (libgrpc++ calls it through the
//    PLT), and when the batch's tag is one of grpcpp's callback tags it
//    releases the tag's address before libgrpc sees the batch and points the
//    tag's functor_run at a wrapper;
//  - the wrapper, run by libgrpc when the batch completes, acquires the tag's
//    address and calls the tag's own StaticRun.
// One batch, one release, one acquire on that tag: nothing else is ordered,
// so races in project code (reactors, handlers) are still reported. The sync
// object lives in the call's arena and is dropped when libgrpc frees it.
//
// Every tag grpcpp passes to grpc_call_start_batch points to an object (a
// callback tag or an operation set), so reading its first word is safe; tags
// of other kinds are passed through unchanged.
//
// The tags' StaticRun functions are found by name in the executable
// (scripts/tsan.sh exports them with --export-dynamic-symbol) rather than
// through grpcpp's headers: including those here would compile copies of
// their inline functions, and of the libstdc++ code they use, without
// instrumentation, and the linker might keep these copies for the whole
// program. An executable without gRPC callbacks has no such symbols, and
// nothing is annotated.
//
// Compiled WITHOUT -fsanitize=thread, like tests/tsan/absl_mutex_tsan.cc.
#include <dlfcn.h>
#include <grpc/grpc.h>
#include <sanitizer/tsan_interface.h>

#include <cstdio>
#include <cstdlib>

namespace {

using FunctorRun = void (*)(grpc_completion_queue_functor*, int);

// grpc::internal::CallbackWithSuccessTag::StaticRun and
// grpc::internal::CallbackWithStatusTag::StaticRun (gRPC 1.51,
// grpcpp/support/callback_common.h).
constexpr const char* kRunSymbols[] = {
    "_ZN4grpc8internal22CallbackWithSuccessTag9StaticRunEP29grpc_completion_"
    "queue_functori",
    "_ZN4grpc8internal21CallbackWithStatusTag9StaticRunEP29grpc_completion_"
    "queue_functori",
};
constexpr int kKinds = sizeof(kRunSymbols) / sizeof(kRunSymbols[0]);

const FunctorRun* Runs() {
  static const auto* runs = [] {
    static FunctorRun found[kKinds];
    for (int i = 0; i < kKinds; ++i) {
      found[i] =
          reinterpret_cast<FunctorRun>(dlsym(RTLD_DEFAULT, kRunSymbols[i]));
    }
    return found;
  }();
  return runs;
}

template <int kKind>
void AnnotatedRun(grpc_completion_queue_functor* tag, int ok) {
  __tsan_acquire(tag);
  Runs()[kKind](tag, ok);
}

constexpr FunctorRun kAnnotated[] = {&AnnotatedRun<0>, &AnnotatedRun<1>};
static_assert(sizeof(kAnnotated) / sizeof(kAnnotated[0]) == kKinds);

// Annotates `tag` if it is a grpcpp callback tag.
void Mark(void* tag) {
  if (tag == nullptr) return;
  auto* functor = static_cast<grpc_completion_queue_functor*>(tag);
  const FunctorRun run = functor->functor_run;
  for (int i = 0; i < kKinds; ++i) {
    if (Runs()[i] == nullptr) continue;
    if (run == Runs()[i] || run == kAnnotated[i]) {
      functor->functor_run = kAnnotated[i];
      __tsan_release(tag);
      return;
    }
  }
}

}  // namespace

extern "C" grpc_call_error grpc_call_start_batch(grpc_call* call,
                                                 const grpc_op* ops,
                                                 size_t nops, void* tag,
                                                 void* reserved) {
  using Real =
      grpc_call_error (*)(grpc_call*, const grpc_op*, size_t, void*, void*);
  static const auto real = [] {
    void* fn = dlsym(RTLD_NEXT, "grpc_call_start_batch");
    if (fn == nullptr) {
      std::fprintf(stderr, "grpc_tag_tsan: grpc_call_start_batch: %s\n",
                   dlerror());
      std::abort();
    }
    return reinterpret_cast<Real>(fn);
  }();
  Mark(tag);
  return real(call, ops, nops, tag, reserved);
}
