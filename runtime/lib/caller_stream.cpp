// Streams lent by callers (torch's current stream) to generated code.
#include "caller_stream.h"

#include "sparsek/runtime/mgpu.h"

#include <cstdint>

namespace {
// Per thread, like the current stream of frameworks. `lent` tells a lent
// legacy default stream (null) from no lent stream: generated code on the
// default stream must run on it, not on a fresh non-blocking stream that
// does not wait for the caller's earlier work.
thread_local void *lentStream = nullptr;
thread_local bool lent = false;
} // namespace

bool sparsek::rt::hasCallerStream() { return lent; }

void *sparsek::rt::callerStream() { return lentStream; }

extern "C" void sk_rt_set_current_stream(void *stream) {
  lentStream = stream;
  lent = stream != nullptr;
}

extern "C" void sk_rt_lend_stream(void *stream) {
  lentStream = stream;
  lent = true;
}

extern "C" void *sk_rt_get_current_stream(void) { return lentStream; }

extern "C" void *sk_rt_stream_from_ptr(uintptr_t handle) {
  return reinterpret_cast<void *>(handle);
}
