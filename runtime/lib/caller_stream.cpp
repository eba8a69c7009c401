// Streams lent by callers (torch's current stream) to generated code.
#include "caller_stream.h"

#include "sparsek/runtime/mgpu.h"

#include <cstdint>

namespace {
// Per thread, like the current stream of frameworks.
thread_local void *lentStream = nullptr;
} // namespace

void *sparsek::rt::callerStream() { return lentStream; }

extern "C" void sk_rt_set_current_stream(void *stream) { lentStream = stream; }

extern "C" void *sk_rt_get_current_stream(void) { return lentStream; }

extern "C" void *sk_rt_stream_from_ptr(uintptr_t handle) {
  return reinterpret_cast<void *>(handle);
}
