// C API of the CUDA wrappers that MLIR 22's gpu-to-llvm host code calls
// (mgpu*), plus the helpers a caller needs around them (sticky errors,
// current stream, timing events). No CUDA or MLIR header is needed to use it.
#ifndef SPARSEK_RUNTIME_MGPU_H
#define SPARSEK_RUNTIME_MGPU_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sparsek/runtime/status.h"

#ifdef __cplusplus
extern "C" {
#endif

// ---------------------------------------------------------------------------
// Functions called by generated code. Signatures are those of the LLVM 22
// lowering (checked against mlir-opt 22 output). Generated code never checks
// results, so failures are recorded as a sticky error (first one wins) and
// the functions return null / do nothing; they never abort or print.
// Opaque handles: module = CUmodule, function = CUfunction, stream = CUstream,
// event = CUevent.
// ---------------------------------------------------------------------------
SK_RT_API void *mgpuModuleLoad(void *data, size_t gpuBlobSize);
SK_RT_API void *mgpuModuleLoadJIT(void *data, int optLevel);
SK_RT_API void mgpuModuleUnload(void *module);
SK_RT_API void *mgpuModuleGetFunction(void *module, const char *name);
SK_RT_API void mgpuLaunchKernel(void *function, intptr_t gridX, intptr_t gridY,
                                intptr_t gridZ, intptr_t blockX,
                                intptr_t blockY, intptr_t blockZ, int32_t smem,
                                void *stream, void **params, void **extra,
                                size_t paramsCount);
SK_RT_API void mgpuLaunchClusterKernel(void *function, intptr_t clusterX,
                                       intptr_t clusterY, intptr_t clusterZ,
                                       intptr_t gridX, intptr_t gridY,
                                       intptr_t gridZ, intptr_t blockX,
                                       intptr_t blockY, intptr_t blockZ,
                                       int32_t smem, void *stream,
                                       void **params, void **extra);
SK_RT_API void *mgpuStreamCreate(void);
SK_RT_API void mgpuStreamDestroy(void *stream);
SK_RT_API void mgpuStreamSynchronize(void *stream);
SK_RT_API void mgpuStreamWaitEvent(void *stream, void *event);
SK_RT_API void *mgpuEventCreate(void);
SK_RT_API void mgpuEventDestroy(void *event);
SK_RT_API void mgpuEventSynchronize(void *event);
SK_RT_API void mgpuEventRecord(void *event, void *stream);
SK_RT_API void *mgpuMemAlloc(uint64_t sizeBytes, void *stream,
                             bool isHostShared);
SK_RT_API void mgpuMemFree(void *ptr, void *stream);
SK_RT_API void mgpuMemcpy(void *dst, void *src, size_t sizeBytes, void *stream);
SK_RT_API void mgpuMemset32(void *dst, uint32_t value, size_t count,
                            void *stream);
SK_RT_API void mgpuMemset16(void *dst, uint16_t value, size_t count,
                            void *stream);
SK_RT_API void mgpuMemHostRegister(void *ptr, uint64_t sizeBytes);
SK_RT_API void mgpuMemHostRegisterMemRef(int64_t rank, void *descriptor,
                                         int64_t elementSizeBytes);
SK_RT_API void mgpuMemHostUnregister(void *ptr);
SK_RT_API void mgpuMemHostUnregisterMemRef(int64_t rank, void *descriptor,
                                           int64_t elementSizeBytes);
SK_RT_API void mgpuSetDefaultDevice(int32_t device);
/// Encodes a TMA descriptor for a ranked memref (rank 1..5) and returns a
/// device pointer to it (freed with mgpuMemFree), as upstream does. The enum
/// operands arrive as i64 from generated code.
SK_RT_API void *
mgpuTensorMapEncodeTiledMemref(int64_t tensorRank, void *rankedDescriptor,
                               int64_t tensorDataType, int64_t interleave,
                               int64_t swizzle, int64_t l2Promotion,
                               int64_t oobFill, int64_t *inputBoxDims);

// ---------------------------------------------------------------------------
// The device status of generated kernels (include/sparsek-c/Status.h codes).
// Per compiled library (`key`: the address of its host status word) and
// device, made on first use: a word in device memory that kernels finding
// invalid input set by compare-and-swap (the first error stays), and a
// mirror in pinned, host-mapped memory that the thread whose swap won copies
// the code into. The host reads the mirror without synchronizing: it holds
// every error of kernels that have finished (synchronize the stream to be
// sure a given call's kernels have). Nothing here synchronizes except the
// clear, so a decode step stays capturable in a CUDA graph (make one eager
// call before capturing: the first use allocates).
// ---------------------------------------------------------------------------
/// The descriptor generated code receives for a memref<i32>.
typedef struct {
  int32_t *allocated;
  int32_t *aligned;
  int64_t offset;
} sk_rt_word_memref;
/// Generated code: the device word of library `key` on the default device
/// (a null descriptor, with a sticky error, when it cannot be allocated).
SK_RT_API void _mlir_ciface_sk_rt_device_status_word(sk_rt_word_memref *out,
                                                     intptr_t key);
/// Generated code: the device address of library `key`'s host-mapped mirror.
SK_RT_API void _mlir_ciface_sk_rt_device_status_mirror(sk_rt_word_memref *out,
                                                       intptr_t key);
/// The first error kernels of library `key` recorded on any device since the
/// last clear (0 if none), read from the mirror without synchronizing.
SK_RT_API int32_t sk_rt_device_status_read(intptr_t key);
/// Synchronizes `stream` (null: the legacy default stream), then zeroes the
/// device word and the mirror of library `key` on the default device, the
/// word in order on `stream`. Failures are sticky errors.
SK_RT_API void sk_rt_device_status_clear(intptr_t key, void *stream);

// ---------------------------------------------------------------------------
// Helpers for callers (frameworks, tests, benchmarks).
// ---------------------------------------------------------------------------

/// Status of the first recorded failure since the last clear (SK_OK if none).
SK_RT_API sk_status sk_rt_get_status(void);
/// Copies the first recorded failure's message (CUDA error name and the call
/// that failed) into buf (always NUL-terminated when size > 0); returns the
/// status. The message is "" when there is no error.
SK_RT_API sk_status sk_rt_get_last_error(char *buf, size_t size);
/// Forgets the recorded failure.
SK_RT_API void sk_rt_clear_error(void);

/// Initializes the driver and the primary context of the default device.
/// Returns SK_OK, SK_ERR_NO_DEVICE (no libcuda.so.1 or no GPU) or SK_ERR_CUDA.
/// Does not touch the sticky error.
SK_RT_API sk_status sk_rt_init(void);
/// 1 when a driver and at least one GPU are usable, else 0.
SK_RT_API int sk_rt_has_device(void);

/// Reinterprets an integer handle (e.g. torch.cuda.Stream.cuda_stream) as a
/// stream pointer; 0 is the legacy default stream.
SK_RT_API void *sk_rt_stream_from_ptr(uintptr_t handle);
/// Makes mgpuStreamCreate return `stream` on this thread (and
/// mgpuStreamDestroy ignore it), so that generated code runs on the caller's
/// stream instead of one of its own. Pass null to go back to fresh streams.
SK_RT_API void sk_rt_set_current_stream(void *stream);
/// Like sk_rt_set_current_stream, but null lends the legacy default stream
/// (torch's default stream) instead of going back to fresh streams; the
/// entry points of generated code call this with their stream argument.
SK_RT_API void sk_rt_lend_stream(void *stream);
SK_RT_API void *sk_rt_get_current_stream(void);

/// Events that can be timed (mgpuEventCreate's events cannot, like upstream).
SK_RT_API void *sk_rt_event_create_timed(void);
/// Milliseconds between two recorded, completed events; negative on failure.
SK_RT_API float sk_rt_event_elapsed_ms(void *start, void *end);

#ifdef __cplusplus
}
#endif

#endif // SPARSEK_RUNTIME_MGPU_H
