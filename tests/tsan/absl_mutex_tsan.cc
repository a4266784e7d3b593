// ThreadSanitizer annotations for Debian's absl::Mutex.
//
// Debian's libabsl_synchronization.so is not built with -fsanitize=thread, so
// TSan cannot see that absl::Mutex orders the accesses it protects and
// reports every ABSL_GUARDED_BY member touched by two threads as a data race.
// Linked into a TSan executable (scripts/tsan.sh does it, no source changes
// needed), this file interposes the exported absl::Mutex / CondVar entry
// points: each one calls the library's own implementation (found with
// dlsym(RTLD_NEXT)) and tells TSan about the ordering with
// __tsan_acquire/__tsan_release on the mutex's address. Calls from inside
// the shared libraries (absl::Notification, gRPC's gpr_mu) go through the
// PLT as well, so they are annotated too.
//
// Conditions (Await, LockWhen*) are evaluated by whichever thread holds the
// mutex at the time, often the unlocking thread, so each one is wrapped:
// its evaluation acquires the mutex's clock (and the waiter's, for the
// Condition object itself) and releases it again, as if it ran in its own
// critical section.
//
// Readers and writers are treated alike (every unlock releases, every lock
// acquires): TSan then misses races between two readers only, which cannot
// write under a reader lock anyway.
//
// This file is compiled WITHOUT -fsanitize=thread (it only calls the TSan
// interface), so that the Condition objects it builds and evaluates are as
// invisible to TSan as the library code that reads them.
#include <dlfcn.h>
#include <sanitizer/tsan_interface.h>

#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

// The mangled names below spell Debian's inline namespace, absl::debian3.
#define BNSERVE_STR2(x) #x
#define BNSERVE_STR(x) BNSERVE_STR2(x)
static_assert(std::string_view(
                  BNSERVE_STR(ABSL_OPTION_INLINE_NAMESPACE_NAME)) == "debian3",
              "update the mangled absl symbol names for this Abseil build");

namespace {

template <typename Fn>
Fn Real(const char* symbol) {
  void* fn = dlsym(RTLD_NEXT, symbol);
  if (fn == nullptr) {
    std::fprintf(stderr, "absl_mutex_tsan: %s not found: %s\n", symbol,
                 dlerror());
    std::abort();
  }
  return reinterpret_cast<Fn>(fn);
}

// The library's implementation of a member function, resolved once.
#define BNSERVE_REAL(Ret, symbol, ...) \
  static const auto real = Real<Ret (*)(__VA_ARGS__)>(symbol)

void Acquire(const void* mu) { __tsan_acquire(const_cast<void*>(mu)); }
void Release(const void* mu) { __tsan_release(const_cast<void*>(mu)); }

// A waiter's condition, evaluated under `mu` by whichever thread holds it.
struct Annotated {
  const absl::Condition* cond;
  const void* mu;
};

bool EvalAnnotated(Annotated* a) {
  Acquire(a);  // the waiter's writes, e.g. of the Condition it built
  Acquire(a->mu);
  const bool met = a->cond->Eval();
  Release(a->mu);
  return met;
}

}  // namespace

// Declares `wrapped`, a Condition that evaluates `cond` with annotations.
#define BNSERVE_WRAP(cond)                             \
  Annotated annotated{&(cond), this};                  \
  const Condition wrapped(&EvalAnnotated, &annotated); \
  Release(&annotated)

namespace absl {
ABSL_NAMESPACE_BEGIN

void Mutex::Lock() {
  BNSERVE_REAL(void, "_ZN4absl7debian35Mutex4LockEv", Mutex*);
  real(this);
  Acquire(this);
}

void Mutex::ReaderLock() {
  BNSERVE_REAL(void, "_ZN4absl7debian35Mutex10ReaderLockEv", Mutex*);
  real(this);
  Acquire(this);
}

bool Mutex::TryLock() {
  BNSERVE_REAL(bool, "_ZN4absl7debian35Mutex7TryLockEv", Mutex*);
  const bool locked = real(this);
  if (locked) Acquire(this);
  return locked;
}

bool Mutex::ReaderTryLock() {
  BNSERVE_REAL(bool, "_ZN4absl7debian35Mutex13ReaderTryLockEv", Mutex*);
  const bool locked = real(this);
  if (locked) Acquire(this);
  return locked;
}

void Mutex::Unlock() {
  BNSERVE_REAL(void, "_ZN4absl7debian35Mutex6UnlockEv", Mutex*);
  Release(this);
  real(this);
}

void Mutex::ReaderUnlock() {
  BNSERVE_REAL(void, "_ZN4absl7debian35Mutex12ReaderUnlockEv", Mutex*);
  Release(this);
  real(this);
}

void Mutex::LockWhen(const Condition& cond) {
  BNSERVE_REAL(void, "_ZN4absl7debian35Mutex8LockWhenERKNS0_9ConditionE",
               Mutex*, const Condition&);
  BNSERVE_WRAP(cond);
  real(this, wrapped);
  Acquire(this);
}

void Mutex::ReaderLockWhen(const Condition& cond) {
  BNSERVE_REAL(void, "_ZN4absl7debian35Mutex14ReaderLockWhenERKNS0_9ConditionE",
               Mutex*, const Condition&);
  BNSERVE_WRAP(cond);
  real(this, wrapped);
  Acquire(this);
}

bool Mutex::LockWhenWithTimeout(const Condition& cond, Duration timeout) {
  BNSERVE_REAL(
      bool,
      "_ZN4absl7debian35Mutex19LockWhenWithTimeoutERKNS0_9ConditionENS0_"
      "8DurationE",
      Mutex*, const Condition&, Duration);
  BNSERVE_WRAP(cond);
  const bool met = real(this, wrapped, timeout);
  Acquire(this);  // held on return either way
  return met;
}

bool Mutex::ReaderLockWhenWithTimeout(const Condition& cond, Duration timeout) {
  BNSERVE_REAL(
      bool,
      "_ZN4absl7debian35Mutex25ReaderLockWhenWithTimeoutERKNS0_9ConditionENS0_"
      "8DurationE",
      Mutex*, const Condition&, Duration);
  BNSERVE_WRAP(cond);
  const bool met = real(this, wrapped, timeout);
  Acquire(this);
  return met;
}

bool Mutex::LockWhenWithDeadline(const Condition& cond, Time deadline) {
  BNSERVE_REAL(
      bool,
      "_ZN4absl7debian35Mutex20LockWhenWithDeadlineERKNS0_9ConditionENS0_"
      "4TimeE",
      Mutex*, const Condition&, Time);
  BNSERVE_WRAP(cond);
  const bool met = real(this, wrapped, deadline);
  Acquire(this);
  return met;
}

bool Mutex::ReaderLockWhenWithDeadline(const Condition& cond, Time deadline) {
  BNSERVE_REAL(
      bool,
      "_ZN4absl7debian35Mutex26ReaderLockWhenWithDeadlineERKNS0_9ConditionENS0_"
      "4TimeE",
      Mutex*, const Condition&, Time);
  BNSERVE_WRAP(cond);
  const bool met = real(this, wrapped, deadline);
  Acquire(this);
  return met;
}

// Await* release the mutex while waiting and hold it again on return.
void Mutex::Await(const Condition& cond) {
  BNSERVE_REAL(void, "_ZN4absl7debian35Mutex5AwaitERKNS0_9ConditionE", Mutex*,
               const Condition&);
  BNSERVE_WRAP(cond);
  Release(this);
  real(this, wrapped);
  Acquire(this);
}

bool Mutex::AwaitWithTimeout(const Condition& cond, Duration timeout) {
  BNSERVE_REAL(bool,
               "_ZN4absl7debian35Mutex16AwaitWithTimeoutERKNS0_9ConditionENS0_"
               "8DurationE",
               Mutex*, const Condition&, Duration);
  BNSERVE_WRAP(cond);
  Release(this);
  const bool met = real(this, wrapped, timeout);
  Acquire(this);
  return met;
}

bool Mutex::AwaitWithDeadline(const Condition& cond, Time deadline) {
  BNSERVE_REAL(
      bool,
      "_ZN4absl7debian35Mutex17AwaitWithDeadlineERKNS0_9ConditionENS0_4TimeE",
      Mutex*, const Condition&, Time);
  BNSERVE_WRAP(cond);
  Release(this);
  const bool met = real(this, wrapped, deadline);
  Acquire(this);
  return met;
}

void CondVar::Wait(Mutex* mu) {
  BNSERVE_REAL(void, "_ZN4absl7debian37CondVar4WaitEPNS0_5MutexE", CondVar*,
               Mutex*);
  Release(mu);
  real(this, mu);
  Acquire(mu);
}

bool CondVar::WaitWithTimeout(Mutex* mu, Duration timeout) {
  BNSERVE_REAL(bool,
               "_ZN4absl7debian37CondVar15WaitWithTimeoutEPNS0_5MutexENS0_"
               "8DurationE",
               CondVar*, Mutex*, Duration);
  Release(mu);
  const bool timed_out = real(this, mu, timeout);
  Acquire(mu);
  return timed_out;
}

bool CondVar::WaitWithDeadline(Mutex* mu, Time deadline) {
  BNSERVE_REAL(bool,
               "_ZN4absl7debian37CondVar16WaitWithDeadlineEPNS0_5MutexENS0_"
               "4TimeE",
               CondVar*, Mutex*, Time);
  Release(mu);
  const bool timed_out = real(this, mu, deadline);
  Acquire(mu);
  return timed_out;
}

ABSL_NAMESPACE_END
}  // namespace absl
