// The mgpu* functions that MLIR 22's gpu-to-llvm host code calls, on the CUDA
// driver API in the device's primary context (the one PyTorch uses, so that
// pointers and streams from torch work here). Failures become the sticky
// error; nothing aborts or prints.
#include "sparsek/runtime/mgpu.h"

#include "sticky_error.h"

#include <algorithm>
#include <cstring>
#include <deque>
#include <mutex>
#include <vector>

#include "caller_stream.h"
#include "cuda_driver.h"

using namespace sparsek::rt;

namespace {

// Generated code calls mgpuSetDefaultDevice per thread, like upstream.
thread_local int32_t defaultDevice = 0;

constexpr int32_t kMaxDevices = 64;

/// Primary contexts, retained on first use and kept for the life of the
/// process (releasing them at exit races with other users such as torch).
struct ContextTable {
  std::mutex mutex;
  bool initDone = false;
  CUresult initResult = CUDA_SUCCESS;
  CUcontext contexts[kMaxDevices] = {};
  // The memory pool of stream-ordered allocations (see mgpuMemAlloc), made
  // on first use; `poolTried` keeps a failed creation from being retried.
  CUmemoryPool pools[kMaxDevices] = {};
  bool poolTried[kMaxDevices] = {};
};
ContextTable contextTable;

/// Returns the primary context of `device` or null, with the status and a
/// message describing the failure.
CUcontext primaryContext(int32_t device, sk_status *status,
                         const char **message, CUresult *result) {
  *result = CUDA_SUCCESS;
  const char *why = nullptr;
  const DriverApi *driver = driverApi(&why);
  if (!driver) {
    *status = SK_ERR_NO_DEVICE;
    *message = why;
    return nullptr;
  }
  if (device < 0 || device >= kMaxDevices) {
    *status = SK_ERR_INVALID_ARGUMENT;
    *message = "device ordinal out of range";
    return nullptr;
  }
  std::lock_guard<std::mutex> lock(contextTable.mutex);
  if (!contextTable.initDone) {
    contextTable.initResult = driver->cuInit(0);
    contextTable.initDone = true;
  }
  *result = contextTable.initResult;
  if (*result != CUDA_SUCCESS) {
    *status = *result == CUDA_ERROR_NO_DEVICE ? SK_ERR_NO_DEVICE : SK_ERR_CUDA;
    *message = "cuInit";
    return nullptr;
  }
  if (CUcontext ctx = contextTable.contexts[device])
    return ctx;
  CUdevice dev;
  *result = driver->cuDeviceGet(&dev, device);
  if (*result != CUDA_SUCCESS) {
    *status =
        *result == CUDA_ERROR_INVALID_DEVICE ? SK_ERR_NO_DEVICE : SK_ERR_CUDA;
    *message = "cuDeviceGet";
    return nullptr;
  }
  CUcontext ctx = nullptr;
  *result = driver->cuDevicePrimaryCtxRetain(&ctx, dev);
  if (*result != CUDA_SUCCESS) {
    *status = SK_ERR_CUDA;
    *message = "cuDevicePrimaryCtxRetain";
    return nullptr;
  }
  contextTable.contexts[device] = ctx;
  return ctx;
}

/// The project's own memory pool on `device` for stream-ordered allocations,
/// or null when the driver lacks them. A pool of our own, not the device's
/// default one, so that its release threshold concerns nobody else: it keeps
/// freed memory for reuse (the next call of the same entry point allocates
/// the same temporaries) instead of returning it at every synchronization.
CUmemoryPool streamOrderedPool(const DriverApi *driver, int32_t device) {
  if (!driver->cuMemPoolCreate || !driver->cuMemPoolSetAttribute ||
      !driver->cuMemAllocFromPoolAsync || !driver->cuMemFreeAsync ||
      device < 0 || device >= kMaxDevices)
    return nullptr;
  std::lock_guard<std::mutex> lock(contextTable.mutex);
  if (contextTable.poolTried[device])
    return contextTable.pools[device];
  contextTable.poolTried[device] = true;
  CUmemPoolProps props = {};
  props.allocType = CU_MEM_ALLOCATION_TYPE_PINNED;
  props.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
  props.location.id = device;
  CUmemoryPool pool = nullptr;
  if (driver->cuMemPoolCreate(&pool, &props) != CUDA_SUCCESS)
    return nullptr;
  cuuint64_t keep = ~cuuint64_t(0);
  driver->cuMemPoolSetAttribute(pool, CU_MEMPOOL_ATTR_RELEASE_THRESHOLD, &keep);
  contextTable.pools[device] = pool;
  return pool;
}

/// The stream a memory operation of generated code is ordered on: its own
/// stream argument, else the stream the caller lent. Allocations on no
/// stream at all (generated code called without a lent stream, through a
/// synchronous gpu.alloc) stay synchronous.
bool orderedStream(void *stream, CUstream *out) {
  if (stream) {
    *out = static_cast<CUstream>(stream);
    return true;
  }
  *out = static_cast<CUstream>(callerStream());
  return hasCallerStream();
}

/// Makes the default device's primary context current for one wrapper call
/// and restores the caller's context after it. `caller` names the wrapper in
/// error messages.
class ScopedContext {
public:
  explicit ScopedContext(const char *caller) : caller(caller) {
    sk_status status = SK_OK;
    const char *message = nullptr;
    CUresult result;
    CUcontext ctx = primaryContext(defaultDevice, &status, &message, &result);
    if (!ctx) {
      if (result != CUDA_SUCCESS)
        recordError(status, "%s: %s failed with %s", caller, message,
                    driverErrorName(result));
      else
        recordError(status, "%s: %s", caller, message);
      return;
    }
    driver = driverApi();
    if (!check(driver->cuCtxPushCurrent(ctx), "cuCtxPushCurrent")) {
      driver = nullptr;
      return;
    }
    pushed = true;
  }
  ~ScopedContext() {
    if (pushed)
      driver->cuCtxPopCurrent(nullptr);
  }
  ScopedContext(const ScopedContext &) = delete;
  ScopedContext &operator=(const ScopedContext &) = delete;

  /// The driver, or null if there is no usable context (already recorded).
  const DriverApi *api() const { return driver; }

  /// Records a failed driver call; true when `result` is success.
  bool check(CUresult result, const char *call) const {
    if (result == CUDA_SUCCESS)
      return true;
    recordError(result == CUDA_ERROR_OUT_OF_MEMORY ? SK_ERR_OUT_OF_MEMORY
                                                   : SK_ERR_CUDA,
                "%s: %s failed with %s", caller, call, driverErrorName(result));
    return false;
  }

  /// Records that an optional driver entry point is missing; true if present.
  bool has(const void *entry, const char *call) const {
    if (entry)
      return true;
    recordError(SK_ERR_UNSUPPORTED, "%s: the driver lacks %s", caller, call);
    return false;
  }

private:
  const char *caller;
  const DriverApi *driver = nullptr;
  bool pushed = false;
};

#define SK_CALL(scope, fn, ...)                                                \
  ((scope).has(reinterpret_cast<const void *>((scope).api()->fn), #fn) &&      \
   (scope).check((scope).api()->fn(__VA_ARGS__), #fn))

CUdeviceptr devicePtr(const void *ptr) {
  return reinterpret_cast<CUdeviceptr>(ptr);
}

/// cuLaunchKernelEx's configuration of a launch with `count` attributes.
CUlaunchConfig launchConfig(intptr_t gridX, intptr_t gridY, intptr_t gridZ,
                            intptr_t blockX, intptr_t blockY, intptr_t blockZ,
                            int32_t smem, void *stream,
                            CUlaunchAttribute *attributes, unsigned count) {
  CUlaunchConfig config = {};
  config.gridDimX = static_cast<unsigned>(gridX);
  config.gridDimY = static_cast<unsigned>(gridY);
  config.gridDimZ = static_cast<unsigned>(gridZ);
  config.blockDimX = static_cast<unsigned>(blockX);
  config.blockDimY = static_cast<unsigned>(blockY);
  config.blockDimZ = static_cast<unsigned>(blockZ);
  config.sharedMemBytes = static_cast<unsigned>(smem);
  config.hStream = static_cast<CUstream>(stream);
  config.attrs = attributes;
  config.numAttrs = count;
  return config;
}

/// Modules whose kernels all start by waiting for the grids before them
/// (sparsek-gpu-launch-dependents marks them with this global): only their
/// kernels may be launched to overlap the end of the previous grid.
constexpr const char *kWaitsOnGridMarker = "__sparsek_waits_on_grid";

struct WaitingModules {
  std::mutex mutex;
  std::vector<CUmodule> modules;
};
WaitingModules waitingModules;

void noteIfWaitsOnGrid(const ScopedContext &scope, CUmodule module) {
  CUdeviceptr marker = 0;
  size_t bytes = 0;
  if (!scope.api()->cuModuleGetGlobal ||
      scope.api()->cuModuleGetGlobal(&marker, &bytes, module,
                                     kWaitsOnGridMarker) != CUDA_SUCCESS)
    return;
  std::lock_guard<std::mutex> lock(waitingModules.mutex);
  waitingModules.modules.push_back(module);
}

bool waitsOnGrid(CUmodule module) {
  std::lock_guard<std::mutex> lock(waitingModules.mutex);
  for (CUmodule m : waitingModules.modules)
    if (m == module)
      return true;
  return false;
}

void forgetModule(CUmodule module) {
  std::lock_guard<std::mutex> lock(waitingModules.mutex);
  auto &modules = waitingModules.modules;
  modules.erase(std::remove(modules.begin(), modules.end(), module),
                modules.end());
}

// Generated code looks a kernel up (mgpuModuleGetFunction) right before
// launching it on the same thread; the lookup leaves here whether the
// kernel's module waits on the grid before it.
thread_local CUfunction lastFunction = nullptr;
thread_local bool lastFunctionWaits = false;
thread_local CUmodule lastFunctionModule = nullptr;

/// The dynamic shared memory each looked-up function has been opted in to,
/// so that repeated launches skip the driver call. An entry leaves with its
/// module: a later module may get the same function handle.
struct SharedMemoryOptIn {
  CUmodule module;
  CUfunction function;
  int32_t bytes;
};
struct SharedMemoryOptIns {
  std::mutex mutex;
  std::vector<SharedMemoryOptIn> entries;
};
SharedMemoryOptIns sharedMemoryOptIns;

bool optedIn(CUfunction function, int32_t smem) {
  std::lock_guard<std::mutex> lock(sharedMemoryOptIns.mutex);
  for (const SharedMemoryOptIn &entry : sharedMemoryOptIns.entries)
    if (entry.function == function)
      return entry.bytes >= smem;
  return false;
}

void noteOptIn(CUmodule module, CUfunction function, int32_t smem) {
  std::lock_guard<std::mutex> lock(sharedMemoryOptIns.mutex);
  for (SharedMemoryOptIn &entry : sharedMemoryOptIns.entries)
    if (entry.function == function) {
      entry.bytes = std::max(entry.bytes, smem);
      return;
    }
  sharedMemoryOptIns.entries.push_back({module, function, smem});
}

void forgetOptIns(CUmodule module) {
  std::lock_guard<std::mutex> lock(sharedMemoryOptIns.mutex);
  auto &entries = sharedMemoryOptIns.entries;
  entries.erase(std::remove_if(entries.begin(), entries.end(),
                               [&](const SharedMemoryOptIn &entry) {
                                 return entry.module == module;
                               }),
                entries.end());
}

/// Opts `function` in to `smem` bytes of dynamic shared memory. The 48 KiB
/// default counts the kernel's static shared memory too, so any dynamic
/// amount may need the opt-in.
bool allowDynamicSharedMemory(const ScopedContext &scope, CUfunction function,
                              int32_t smem) {
  if (smem <= 0 || optedIn(function, smem))
    return true;
  if (!SK_CALL(scope, cuFuncSetAttribute, function,
               CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, smem))
    return false;
  // Only a function whose module is known (the lookup just before the
  // launch) is remembered; any other asks the driver every time.
  if (function == lastFunction && lastFunctionModule)
    noteOptIn(lastFunctionModule, function, smem);
  return true;
}

/// Layout of a ranked memref descriptor as generated code passes it.
struct MemRefHeader {
  char *allocated;
  char *aligned;
  int64_t offset;
  int64_t sizesAndStrides[]; // sizes[rank] then strides[rank]
};

/// Byte extent of a dense memref; false (recorded) if it is not dense.
bool denseMemRefBytes(const char *caller, int64_t rank, const void *descriptor,
                      int64_t elementSize, char **start, uint64_t *bytes) {
  if (!descriptor || rank < 0 || elementSize <= 0) {
    recordError(SK_ERR_INVALID_ARGUMENT, "%s: invalid memref descriptor",
                caller);
    return false;
  }
  auto *header = static_cast<const MemRefHeader *>(descriptor);
  const int64_t *sizes = header->sizesAndStrides;
  const int64_t *strides = sizes + rank;
  int64_t expectedStride = 1;
  for (int64_t i = rank - 1; i >= 0; --i) {
    if (sizes[i] != 1 && strides[i] != expectedStride) {
      recordError(SK_ERR_INVALID_ARGUMENT,
                  "%s: only dense memrefs can be registered", caller);
      return false;
    }
    expectedStride *= sizes[i];
  }
  *start = header->aligned + header->offset * elementSize;
  *bytes = static_cast<uint64_t>(expectedStride * elementSize);
  return true;
}

} // namespace

extern "C" {

void *mgpuModuleLoad(void *data, size_t /*gpuBlobSize*/) {
  ScopedContext scope("mgpuModuleLoad");
  CUmodule module = nullptr;
  if (!scope.api() || !SK_CALL(scope, cuModuleLoadData, &module, data))
    return nullptr;
  noteIfWaitsOnGrid(scope, module);
  return module;
}

void *mgpuModuleLoadJIT(void *data, int optLevel) {
  ScopedContext scope("mgpuModuleLoadJIT");
  if (!scope.api())
    return nullptr;
  char log[1024] = "";
  CUjit_option options[] = {CU_JIT_ERROR_LOG_BUFFER,
                            CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES,
                            CU_JIT_OPTIMIZATION_LEVEL};
  void *values[] = {log, reinterpret_cast<void *>(sizeof(log)),
                    reinterpret_cast<void *>(static_cast<intptr_t>(optLevel))};
  CUmodule module = nullptr;
  CUresult result =
      scope.api()->cuModuleLoadDataEx(&module, data, 3, options, values);
  if (result != CUDA_SUCCESS) {
    recordError(SK_ERR_CUDA,
                "mgpuModuleLoadJIT: cuModuleLoadDataEx failed with %s: %s",
                driverErrorName(result), log);
    return nullptr;
  }
  noteIfWaitsOnGrid(scope, module);
  return module;
}

void mgpuModuleUnload(void *module) {
  ScopedContext scope("mgpuModuleUnload");
  if (!scope.api() || !module)
    return;
  forgetModule(static_cast<CUmodule>(module));
  forgetOptIns(static_cast<CUmodule>(module));
  SK_CALL(scope, cuModuleUnload, static_cast<CUmodule>(module));
}

void *mgpuModuleGetFunction(void *module, const char *name) {
  ScopedContext scope("mgpuModuleGetFunction");
  CUfunction function = nullptr;
  if (!scope.api())
    return nullptr;
  if (!module || !name) {
    recordError(SK_ERR_INVALID_ARGUMENT,
                "mgpuModuleGetFunction: null module or name (did the module "
                "fail to load?)");
    return nullptr;
  }
  SK_CALL(scope, cuModuleGetFunction, &function, static_cast<CUmodule>(module),
          name);
  lastFunction = function;
  lastFunctionModule = function ? static_cast<CUmodule>(module) : nullptr;
  lastFunctionWaits = function && waitsOnGrid(static_cast<CUmodule>(module));
  return function;
}

void mgpuLaunchKernel(void *function, intptr_t gridX, intptr_t gridY,
                      intptr_t gridZ, intptr_t blockX, intptr_t blockY,
                      intptr_t blockZ, int32_t smem, void *stream,
                      void **params, void **extra, size_t /*paramsCount*/) {
  ScopedContext scope("mgpuLaunchKernel");
  if (!scope.api())
    return;
  if (!function) {
    recordError(SK_ERR_INVALID_ARGUMENT, "mgpuLaunchKernel: null function");
    return;
  }
  auto fn = static_cast<CUfunction>(function);
  if (!allowDynamicSharedMemory(scope, fn, smem))
    return;
  if (fn == lastFunction && lastFunctionWaits &&
      scope.api()->cuLaunchKernelEx) {
    // The kernel waits for the grids before it (griddepcontrol.wait) before
    // touching memory, so it may launch while they drain: programmatic
    // stream serialization. Where the driver refuses the attribute, the
    // ordinary launch below gives the same result.
    CUlaunchAttribute attribute = {};
    attribute.id = CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION;
    attribute.value.programmaticStreamSerializationAllowed = 1;
    CUlaunchConfig config = launchConfig(gridX, gridY, gridZ, blockX, blockY,
                                         blockZ, smem, stream, &attribute, 1);
    if (scope.api()->cuLaunchKernelEx(&config, fn, params, extra) ==
        CUDA_SUCCESS)
      return;
  }
  SK_CALL(scope, cuLaunchKernel, fn, gridX, gridY, gridZ, blockX, blockY,
          blockZ, smem, static_cast<CUstream>(stream), params, extra);
}

void mgpuLaunchClusterKernel(void *function, intptr_t clusterX,
                             intptr_t clusterY, intptr_t clusterZ,
                             intptr_t gridX, intptr_t gridY, intptr_t gridZ,
                             intptr_t blockX, intptr_t blockY, intptr_t blockZ,
                             int32_t smem, void *stream, void **params,
                             void **extra) {
  ScopedContext scope("mgpuLaunchClusterKernel");
  if (!scope.api())
    return;
  if (!function) {
    recordError(SK_ERR_INVALID_ARGUMENT,
                "mgpuLaunchClusterKernel: null function");
    return;
  }
  auto fn = static_cast<CUfunction>(function);
  if (!allowDynamicSharedMemory(scope, fn, smem))
    return;
  CUlaunchAttribute attributes[2] = {};
  attributes[0].id = CU_LAUNCH_ATTRIBUTE_CLUSTER_DIMENSION;
  attributes[0].value.clusterDim.x = static_cast<unsigned>(clusterX);
  attributes[0].value.clusterDim.y = static_cast<unsigned>(clusterY);
  attributes[0].value.clusterDim.z = static_cast<unsigned>(clusterZ);
  attributes[1].id = CU_LAUNCH_ATTRIBUTE_CLUSTER_SCHEDULING_POLICY_PREFERENCE;
  attributes[1].value.clusterSchedulingPolicyPreference =
      CU_CLUSTER_SCHEDULING_POLICY_SPREAD;
  CUlaunchConfig config = launchConfig(gridX, gridY, gridZ, blockX, blockY,
                                       blockZ, smem, stream, attributes, 2);
  SK_CALL(scope, cuLaunchKernelEx, &config, fn, params, extra);
}

void *mgpuStreamCreate(void) {
  if (hasCallerStream())
    return callerStream();
  ScopedContext scope("mgpuStreamCreate");
  CUstream stream = nullptr;
  if (scope.api())
    SK_CALL(scope, cuStreamCreate, &stream, CU_STREAM_NON_BLOCKING);
  return stream;
}

void mgpuStreamDestroy(void *stream) {
  // The caller's stream (sk_rt_set_current_stream) is borrowed, not owned.
  if (!stream || stream == callerStream())
    return;
  ScopedContext scope("mgpuStreamDestroy");
  if (scope.api())
    SK_CALL(scope, cuStreamDestroy, static_cast<CUstream>(stream));
}

void mgpuStreamSynchronize(void *stream) {
  // gpu-to-llvm synchronizes after every launch it does not make async. On
  // the stream a caller lent (the entry points lend theirs) that is a host
  // round trip per kernel that nothing needs: generated code never reads
  // device memory on the host, its temporaries are freed in stream order
  // (mgpuMemFree), and the caller orders its later work on its own stream.
  // Skipping it also makes the entry points capturable in a CUDA graph, where
  // a synchronization is an error.
  if (hasCallerStream() && stream == callerStream())
    return;
  ScopedContext scope("mgpuStreamSynchronize");
  if (scope.api())
    SK_CALL(scope, cuStreamSynchronize, static_cast<CUstream>(stream));
}

void mgpuStreamWaitEvent(void *stream, void *event) {
  ScopedContext scope("mgpuStreamWaitEvent");
  if (scope.api())
    SK_CALL(scope, cuStreamWaitEvent, static_cast<CUstream>(stream),
            static_cast<CUevent>(event), 0);
}

void *mgpuEventCreate(void) {
  ScopedContext scope("mgpuEventCreate");
  CUevent event = nullptr;
  if (scope.api())
    SK_CALL(scope, cuEventCreate, &event, CU_EVENT_DISABLE_TIMING);
  return event;
}

void mgpuEventDestroy(void *event) {
  ScopedContext scope("mgpuEventDestroy");
  if (scope.api() && event)
    SK_CALL(scope, cuEventDestroy, static_cast<CUevent>(event));
}

void mgpuEventSynchronize(void *event) {
  ScopedContext scope("mgpuEventSynchronize");
  if (scope.api())
    SK_CALL(scope, cuEventSynchronize, static_cast<CUevent>(event));
}

void mgpuEventRecord(void *event, void *stream) {
  ScopedContext scope("mgpuEventRecord");
  if (scope.api())
    SK_CALL(scope, cuEventRecord, static_cast<CUevent>(event),
            static_cast<CUstream>(stream));
}

// Device allocations of generated code are stream-ordered where a stream
// orders them (cuMemAllocFromPoolAsync / cuMemFreeAsync): no device-wide
// synchronization per temporary buffer, and legal inside a CUDA graph
// capture. A pointer is freed the way it was allocated: the pool's
// allocations are remembered (few live at a time: a function's temporaries).
namespace {
std::mutex orderedMutex;
std::vector<void *> orderedAllocations;

void rememberOrdered(void *ptr) {
  std::lock_guard<std::mutex> lock(orderedMutex);
  orderedAllocations.push_back(ptr);
}

bool forgetOrdered(void *ptr) {
  std::lock_guard<std::mutex> lock(orderedMutex);
  for (size_t i = 0; i < orderedAllocations.size(); ++i) {
    if (orderedAllocations[i] == ptr) {
      orderedAllocations[i] = orderedAllocations.back();
      orderedAllocations.pop_back();
      return true;
    }
  }
  return false;
}
} // namespace

void *mgpuMemAlloc(uint64_t sizeBytes, void *stream, bool isHostShared) {
  ScopedContext scope("mgpuMemAlloc");
  CUdeviceptr ptr = 0;
  if (!scope.api() || sizeBytes == 0)
    return nullptr;
  CUstream ordered = nullptr;
  if (isHostShared) {
    SK_CALL(scope, cuMemAllocManaged, &ptr, sizeBytes, CU_MEM_ATTACH_GLOBAL);
  } else if (CUmemoryPool pool =
                 orderedStream(stream, &ordered)
                     ? streamOrderedPool(scope.api(), defaultDevice)
                     : nullptr) {
    SK_CALL(scope, cuMemAllocFromPoolAsync, &ptr, sizeBytes, pool, ordered);
    if (ptr)
      rememberOrdered(reinterpret_cast<void *>(ptr));
  } else {
    SK_CALL(scope, cuMemAlloc, &ptr, sizeBytes);
  }
  return reinterpret_cast<void *>(ptr);
}

void mgpuMemFree(void *ptr, void *stream) {
  ScopedContext scope("mgpuMemFree");
  if (!scope.api() || !ptr)
    return;
  CUstream ordered = nullptr;
  if (forgetOrdered(ptr)) {
    // Freed in order on the stream that used it last (a stream-ordered
    // allocation may be freed on any stream; the lent one is the one the
    // kernels ran on).
    orderedStream(stream, &ordered);
    SK_CALL(scope, cuMemFreeAsync, devicePtr(ptr), ordered);
  } else {
    SK_CALL(scope, cuMemFree, devicePtr(ptr));
  }
}

void mgpuMemcpy(void *dst, void *src, size_t sizeBytes, void *stream) {
  ScopedContext scope("mgpuMemcpy");
  if (scope.api() && sizeBytes > 0)
    SK_CALL(scope, cuMemcpyAsync, devicePtr(dst), devicePtr(src), sizeBytes,
            static_cast<CUstream>(stream));
}

void mgpuMemset32(void *dst, uint32_t value, size_t count, void *stream) {
  ScopedContext scope("mgpuMemset32");
  if (scope.api() && count > 0)
    SK_CALL(scope, cuMemsetD32Async, devicePtr(dst), value, count,
            static_cast<CUstream>(stream));
}

void mgpuMemset16(void *dst, uint16_t value, size_t count, void *stream) {
  ScopedContext scope("mgpuMemset16");
  if (scope.api() && count > 0)
    SK_CALL(scope, cuMemsetD16Async, devicePtr(dst), value, count,
            static_cast<CUstream>(stream));
}

void mgpuMemHostRegister(void *ptr, uint64_t sizeBytes) {
  ScopedContext scope("mgpuMemHostRegister");
  if (scope.api() && ptr && sizeBytes > 0)
    SK_CALL(scope, cuMemHostRegister, ptr, sizeBytes, 0);
}

void mgpuMemHostRegisterMemRef(int64_t rank, void *descriptor,
                               int64_t elementSizeBytes) {
  char *start = nullptr;
  uint64_t bytes = 0;
  if (denseMemRefBytes("mgpuMemHostRegisterMemRef", rank, descriptor,
                       elementSizeBytes, &start, &bytes))
    mgpuMemHostRegister(start, bytes);
}

void mgpuMemHostUnregister(void *ptr) {
  ScopedContext scope("mgpuMemHostUnregister");
  if (scope.api() && ptr)
    SK_CALL(scope, cuMemHostUnregister, ptr);
}

void mgpuMemHostUnregisterMemRef(int64_t rank, void *descriptor,
                                 int64_t elementSizeBytes) {
  char *start = nullptr;
  uint64_t bytes = 0;
  if (denseMemRefBytes("mgpuMemHostUnregisterMemRef", rank, descriptor,
                       elementSizeBytes, &start, &bytes) &&
      bytes > 0)
    mgpuMemHostUnregister(start);
}

void mgpuSetDefaultDevice(int32_t device) { defaultDevice = device; }

void *mgpuTensorMapEncodeTiledMemref(int64_t tensorRank, void *rankedDescriptor,
                                     int64_t tensorDataType, int64_t interleave,
                                     int64_t swizzle, int64_t l2Promotion,
                                     int64_t oobFill, int64_t *inputBoxDims) {
  const char *caller = "mgpuTensorMapEncodeTiledMemref";
  // Bytes per element, indexed by CUtensorMapDataType (UINT8 .. TFLOAT32_FTZ).
  static const int64_t kElementBytes[] = {1, 2, 4, 4, 8, 8, 2,
                                          4, 8, 2, 4, 4, 4};
  constexpr int64_t kNumTypes = sizeof(kElementBytes) / sizeof(int64_t);
  if (tensorRank < 1 || tensorRank > 5 || !rankedDescriptor || !inputBoxDims ||
      tensorDataType < 0 || tensorDataType >= kNumTypes) {
    recordError(SK_ERR_INVALID_ARGUMENT,
                "%s: rank must be 1..5 with a known data type", caller);
    return nullptr;
  }
  ScopedContext scope(caller);
  if (!scope.api())
    return nullptr;
  auto *header = static_cast<const MemRefHeader *>(rankedDescriptor);
  const int64_t *sizes = header->sizesAndStrides;
  const int64_t *strides = sizes + tensorRank;
  const int64_t elementBytes = kElementBytes[tensorDataType];
  // TMA lists dimensions innermost first; memrefs list them outermost first.
  cuuint64_t globalDim[5] = {1, 1, 1, 1, 1}, globalStrides[5] = {0};
  cuuint32_t boxDim[5] = {1, 1, 1, 1, 1}, elementStrides[5] = {1, 1, 1, 1, 1};
  for (int64_t i = 0; i < tensorRank; ++i) {
    globalDim[i] = static_cast<cuuint64_t>(sizes[tensorRank - 1 - i]);
    boxDim[i] = static_cast<cuuint32_t>(inputBoxDims[tensorRank - 1 - i]);
  }
  for (int64_t i = 0; i + 1 < tensorRank; ++i)
    globalStrides[i] =
        static_cast<cuuint64_t>(strides[tensorRank - 2 - i] * elementBytes);
  CUtensorMap map;
  if (!SK_CALL(scope, cuTensorMapEncodeTiled, &map,
               static_cast<CUtensorMapDataType>(tensorDataType),
               static_cast<cuuint32_t>(tensorRank),
               header->aligned + header->offset * elementBytes, globalDim,
               globalStrides, boxDim, elementStrides,
               static_cast<CUtensorMapInterleave>(interleave),
               static_cast<CUtensorMapSwizzle>(swizzle),
               static_cast<CUtensorMapL2promotion>(l2Promotion),
               static_cast<CUtensorMapFloatOOBfill>(oobFill)))
    return nullptr;
  // Kernels take the descriptor by device pointer, as upstream does.
  CUdeviceptr deviceMap = 0;
  if (!SK_CALL(scope, cuMemAlloc, &deviceMap, sizeof(map)))
    return nullptr;
  if (!SK_CALL(scope, cuMemcpy, deviceMap, reinterpret_cast<CUdeviceptr>(&map),
               sizeof(map))) {
    scope.api()->cuMemFree(deviceMap);
    return nullptr;
  }
  return reinterpret_cast<void *>(deviceMap);
}

// The device status words (mgpu.h): a small table, since a process loads few
// libraries; entries live as long as the process (kernels of a library may
// still run when it is unloaded).
namespace {
struct DeviceStatusWords {
  intptr_t key;
  int32_t device;
  CUdeviceptr word;
  volatile int32_t *mirror; // host address
  CUdeviceptr mirrorOnDevice;
};
std::mutex statusMutex;
// A deque: entries stay in place as it grows (callers keep pointers).
std::deque<DeviceStatusWords> statusWords;

/// The words of `key` on the default device, made on first use (null, with
/// a sticky error, if that fails).
const DeviceStatusWords *deviceStatusWords(intptr_t key) {
  std::lock_guard<std::mutex> lock(statusMutex);
  for (const DeviceStatusWords &w : statusWords)
    if (w.key == key && w.device == defaultDevice)
      return &w;
  ScopedContext scope("sk_rt_device_status_word");
  if (!scope.api())
    return nullptr;
  DeviceStatusWords w{key, defaultDevice, 0, nullptr, 0};
  void *host = nullptr;
  if (!SK_CALL(scope, cuMemHostAlloc, &host, sizeof(int32_t),
               CU_MEMHOSTALLOC_DEVICEMAP | CU_MEMHOSTALLOC_PORTABLE))
    return nullptr;
  w.mirror = static_cast<int32_t *>(host);
  *w.mirror = 0;
  if (!SK_CALL(scope, cuMemHostGetDevicePointer, &w.mirrorOnDevice, host, 0) ||
      !SK_CALL(scope, cuMemAlloc, &w.word, sizeof(int32_t)))
    return nullptr; // the pinned word stays allocated: 4 bytes, once
  // Zeroed in order on the stream the kernels will use; waited for unless
  // that stream is being captured (then the memset is a node before them).
  CUstream stream = nullptr;
  orderedStream(nullptr, &stream);
  CUstreamCaptureStatus capture = CU_STREAM_CAPTURE_STATUS_NONE;
  if (!SK_CALL(scope, cuMemsetD32Async, w.word, 0, 1, stream) ||
      !SK_CALL(scope, cuStreamIsCapturing, stream, &capture) ||
      (capture == CU_STREAM_CAPTURE_STATUS_NONE &&
       !SK_CALL(scope, cuStreamSynchronize, stream))) {
    scope.api()->cuMemFree(w.word);
    return nullptr;
  }
  statusWords.push_back(w);
  return &statusWords.back();
}

void setWordMemRef(sk_rt_word_memref *out, CUdeviceptr ptr) {
  if (!out)
    return;
  out->allocated = out->aligned = reinterpret_cast<int32_t *>(ptr);
  out->offset = 0;
}
} // namespace

void _mlir_ciface_sk_rt_device_status_word(sk_rt_word_memref *out,
                                           intptr_t key) {
  const DeviceStatusWords *w = deviceStatusWords(key);
  setWordMemRef(out, w ? w->word : 0);
}

void _mlir_ciface_sk_rt_device_status_mirror(sk_rt_word_memref *out,
                                             intptr_t key) {
  const DeviceStatusWords *w = deviceStatusWords(key);
  setWordMemRef(out, w ? w->mirrorOnDevice : 0);
}

int32_t sk_rt_device_status_read(intptr_t key) {
  std::lock_guard<std::mutex> lock(statusMutex);
  for (const DeviceStatusWords &w : statusWords)
    if (w.key == key && *w.mirror != 0)
      return *w.mirror;
  return 0;
}

void sk_rt_device_status_clear(intptr_t key, void *stream) {
  ScopedContext scope("sk_rt_device_status_clear");
  if (!scope.api())
    return;
  CUstream s = static_cast<CUstream>(stream);
  std::lock_guard<std::mutex> lock(statusMutex);
  for (DeviceStatusWords &w : statusWords) {
    if (w.key != key || w.device != defaultDevice)
      continue;
    // Kernels queued before the clear finish first, so none of them writes
    // the mirror after it is zeroed.
    if (SK_CALL(scope, cuStreamSynchronize, s) &&
        SK_CALL(scope, cuMemsetD32Async, w.word, 0, 1, s) &&
        SK_CALL(scope, cuStreamSynchronize, s))
      *w.mirror = 0;
  }
}

sk_status sk_rt_init(void) {
  sk_status status = SK_OK;
  const char *message = nullptr;
  CUresult result;
  return primaryContext(defaultDevice, &status, &message, &result) ? SK_OK
                                                                   : status;
}

int sk_rt_has_device(void) { return sk_rt_init() == SK_OK ? 1 : 0; }

void *sk_rt_event_create_timed(void) {
  ScopedContext scope("sk_rt_event_create_timed");
  CUevent event = nullptr;
  if (scope.api())
    SK_CALL(scope, cuEventCreate, &event, CU_EVENT_DEFAULT);
  return event;
}

float sk_rt_event_elapsed_ms(void *start, void *end) {
  ScopedContext scope("sk_rt_event_elapsed_ms");
  float ms = -1.0f;
  if (!scope.api() ||
      !SK_CALL(scope, cuEventElapsedTime, &ms, static_cast<CUevent>(start),
               static_cast<CUevent>(end)))
    return -1.0f;
  return ms;
}

} // extern "C"
