// The CUDA driver API, resolved at run time from libcuda.so.1 (see
// cuda_driver.cpp for why the library is not linked against libcuda).
#ifndef SPARSEK_RUNTIME_LIB_CUDA_DRIVER_H
#define SPARSEK_RUNTIME_LIB_CUDA_DRIVER_H

#include <cuda.h>

namespace sparsek::rt {

// Every driver function the wrappers use. cuda.h maps several names to
// versioned symbols (cuMemAlloc -> cuMemAlloc_v2); the table and the dlsym
// lookup both go through the same macros, so they always agree.
#define SK_DRIVER_FUNCTIONS(X)                                                 \
  X(cuInit)                                                                    \
  X(cuDeviceGet)                                                               \
  X(cuDeviceGetCount)                                                          \
  X(cuDeviceGetAttribute)                                                      \
  X(cuDevicePrimaryCtxRetain)                                                  \
  X(cuCtxPushCurrent)                                                          \
  X(cuCtxPopCurrent)                                                           \
  X(cuGetErrorName)                                                            \
  X(cuModuleLoadData)                                                          \
  X(cuModuleLoadDataEx)                                                        \
  X(cuModuleUnload)                                                            \
  X(cuModuleGetFunction)                                                       \
  X(cuModuleGetGlobal)                                                         \
  X(cuLaunchKernel)                                                            \
  X(cuLaunchKernelEx)                                                          \
  X(cuFuncSetAttribute)                                                        \
  X(cuStreamCreate)                                                            \
  X(cuStreamDestroy)                                                           \
  X(cuStreamSynchronize)                                                       \
  X(cuStreamIsCapturing)                                                       \
  X(cuStreamWaitEvent)                                                         \
  X(cuEventCreate)                                                             \
  X(cuEventDestroy)                                                            \
  X(cuEventSynchronize)                                                        \
  X(cuEventRecord)                                                             \
  X(cuEventElapsedTime)                                                        \
  X(cuMemAlloc)                                                                \
  X(cuMemAllocManaged)                                                         \
  X(cuMemFree)                                                                 \
  X(cuMemPoolCreate)                                                           \
  X(cuMemPoolSetAttribute)                                                     \
  X(cuMemAllocFromPoolAsync)                                                   \
  X(cuMemFreeAsync)                                                            \
  X(cuMemcpy)                                                                  \
  X(cuMemcpyAsync)                                                             \
  X(cuMemsetD32Async)                                                          \
  X(cuMemsetD16Async)                                                          \
  X(cuMemHostAlloc)                                                            \
  X(cuMemHostGetDevicePointer)                                                 \
  X(cuMemHostRegister)                                                         \
  X(cuMemHostUnregister)                                                       \
  X(cuTensorMapEncodeTiled)

struct DriverApi {
#define SK_DECLARE_MEMBER(name) decltype(&::name) name = nullptr;
  SK_DRIVER_FUNCTIONS(SK_DECLARE_MEMBER)
#undef SK_DECLARE_MEMBER
};

/// The loaded driver, or null when libcuda.so.1 cannot be opened or lacks
/// cuInit (then `whyUnavailable` says why). Loaded once, thread-safe.
const DriverApi *driverApi(const char **whyUnavailable = nullptr);

/// "CUDA_ERROR_..." for a driver result (never null).
const char *driverErrorName(CUresult result);

} // namespace sparsek::rt

#endif // SPARSEK_RUNTIME_LIB_CUDA_DRIVER_H
