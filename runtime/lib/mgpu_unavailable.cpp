// The mgpu* functions of a runtime built without a CUDA toolkit: the symbols
// exist (so generated host code still links and loads) and every call
// records SK_ERR_UNSUPPORTED as the sticky error.
#include "sparsek/runtime/mgpu.h"

#include "caller_stream.h"
#include "sticky_error.h"

using sparsek::rt::recordError;

namespace {
void unsupported(const char *caller) {
  recordError(SK_ERR_UNSUPPORTED, "%s: runtime built without CUDA", caller);
}
} // namespace

extern "C" {
void *mgpuModuleLoad(void *, size_t) {
  unsupported("mgpuModuleLoad");
  return nullptr;
}
void *mgpuModuleLoadJIT(void *, int) {
  unsupported("mgpuModuleLoadJIT");
  return nullptr;
}
void mgpuModuleUnload(void *) { unsupported("mgpuModuleUnload"); }
void *mgpuModuleGetFunction(void *, const char *) {
  unsupported("mgpuModuleGetFunction");
  return nullptr;
}
void mgpuLaunchKernel(void *, intptr_t, intptr_t, intptr_t, intptr_t, intptr_t,
                      intptr_t, int32_t, void *, void **, void **, size_t) {
  unsupported("mgpuLaunchKernel");
}
void mgpuLaunchClusterKernel(void *, intptr_t, intptr_t, intptr_t, intptr_t,
                             intptr_t, intptr_t, intptr_t, intptr_t, intptr_t,
                             int32_t, void *, void **, void **) {
  unsupported("mgpuLaunchClusterKernel");
}
void *mgpuStreamCreate(void) {
  if (sparsek::rt::hasCallerStream())
    return sparsek::rt::callerStream();
  unsupported("mgpuStreamCreate");
  return nullptr;
}
void mgpuStreamDestroy(void *) {}
void mgpuStreamSynchronize(void *) { unsupported("mgpuStreamSynchronize"); }
void mgpuStreamWaitEvent(void *, void *) { unsupported("mgpuStreamWaitEvent"); }
void *mgpuEventCreate(void) {
  unsupported("mgpuEventCreate");
  return nullptr;
}
void mgpuEventDestroy(void *) {}
void mgpuEventSynchronize(void *) { unsupported("mgpuEventSynchronize"); }
void mgpuEventRecord(void *, void *) { unsupported("mgpuEventRecord"); }
void _mlir_ciface_sk_rt_device_status_word(sk_rt_word_memref *out, intptr_t) {
  unsupported("sk_rt_device_status_word");
  if (out)
    *out = sk_rt_word_memref{nullptr, nullptr, 0};
}
void _mlir_ciface_sk_rt_device_status_mirror(sk_rt_word_memref *out, intptr_t) {
  unsupported("sk_rt_device_status_mirror");
  if (out)
    *out = sk_rt_word_memref{nullptr, nullptr, 0};
}
int32_t sk_rt_device_status_read(intptr_t) { return 0; }
void sk_rt_device_status_clear(intptr_t, void *) {}
void *mgpuMemAlloc(uint64_t, void *, bool) {
  unsupported("mgpuMemAlloc");
  return nullptr;
}
void mgpuMemFree(void *, void *) {}
void mgpuMemcpy(void *, void *, size_t, void *) { unsupported("mgpuMemcpy"); }
void mgpuMemset32(void *, uint32_t, size_t, void *) {
  unsupported("mgpuMemset32");
}
void mgpuMemset16(void *, uint16_t, size_t, void *) {
  unsupported("mgpuMemset16");
}
void mgpuMemHostRegister(void *, uint64_t) {
  unsupported("mgpuMemHostRegister");
}
void mgpuMemHostRegisterMemRef(int64_t, void *, int64_t) {
  unsupported("mgpuMemHostRegisterMemRef");
}
void mgpuMemHostUnregister(void *) {}
void mgpuMemHostUnregisterMemRef(int64_t, void *, int64_t) {}
void mgpuSetDefaultDevice(int32_t) {}
void *mgpuTensorMapEncodeTiledMemref(int64_t, void *, int64_t, int64_t, int64_t,
                                     int64_t, int64_t, int64_t *) {
  unsupported("mgpuTensorMapEncodeTiledMemref");
  return nullptr;
}
sk_status sk_rt_init(void) { return SK_ERR_UNSUPPORTED; }
int sk_rt_has_device(void) { return 0; }
void *sk_rt_event_create_timed(void) {
  unsupported("sk_rt_event_create_timed");
  return nullptr;
}
float sk_rt_event_elapsed_ms(void *, void *) {
  unsupported("sk_rt_event_elapsed_ms");
  return -1.0f;
}
} // extern "C"
