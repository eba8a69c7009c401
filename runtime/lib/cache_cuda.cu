// CUDA backend of the KV cache: all state in device memory, one launch per
// append (one block per sequence and head), score errors reported through a
// sticky device-side record that the host reads on demand.
#include "cache_cuda_token.cuh"
#include "cache_impl.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <vector>

namespace sparsek::rt {
namespace {

using cuda::DeviceError;
using cuda::HeadState;
using cuda::kThreads;
using cuda::LayerArgs;

/// Sequence ids travel as a kernel argument (no host-to-device copy, nothing
/// to keep alive); larger batches are split into several launches.
constexpr int kMaxBatch = 512;
struct SeqBatch {
  int ids[kMaxBatch];
};

__global__ void resetSeqsKernel(LayerArgs a, int firstSeq) {
  const CacheLayout &l = a.layout;
  const int head = blockIdx.x, seq = firstSeq + blockIdx.y;
  const size_t first = l.slot(seq, head, 0);
  // K/V rows are zeroed by the caller (cudaMemsetAsync).
  for (int s = threadIdx.x; s < l.slots(); s += blockDim.x) {
    a.slotScores[first + s] = -INFINITY;
    a.slotPos[first + s] = -1;
  }
  if (threadIdx.x == 0) {
    const size_t row = l.row(seq, head);
    HeadState st{};
    st.x = -INFINITY;
    st.next = INFINITY;
    st.tau = l.k == 0 ? INFINITY : -INFINITY;
    st.lastPos = -1;
    a.states[row] = st;
    a.tau[row] = static_cast<float>(st.tau);
    a.poolCount[row] = 0;
    if (head == 0)
      a.pos[seq] = -1;
  }
}

/// Threads of a decode-step block: enough to copy a K/V row; the heavy work
/// goes to finishPendingKernel, so this kernel stays small and all
/// (sequence, head) blocks of a step fit on the GPU at once.
constexpr int kLightThreads = 32;

/// SK_DECODE_FUSED=1 does the heavy work in the decode block itself (one
/// launch per step, blocks of kThreads limited to the registers that let
/// 2048 of them run at once) instead of in a second kernel.
#ifndef SK_DECODE_FUSED
#define SK_DECODE_FUSED 0
#endif
constexpr int kFusedMinBlocks = 1024 / kThreads;

__global__ void __launch_bounds__(kLightThreads)
    appendTokensKernel(LayerArgs a, SeqBatch batch, const uint8_t *keys,
                       const uint8_t *values, const float *scores) {
  const CacheLayout &l = a.layout;
  const int i = blockIdx.x / l.heads, head = blockIdx.x % l.heads;
  const int seq = batch.ids[i];
  const size_t row = l.row(seq, head);
  __shared__ HeadState st;
  __shared__ int bad;
  if (threadIdx.x == 0) {
    st = a.states[row];
    // Every block checks all heads of its sequence, so a bad score leaves
    // the whole sequence untouched (validate before mutating).
    bad = 0;
    for (int h = 0; h < l.heads; ++h) {
      float z = scores[static_cast<size_t>(i) * l.heads + h];
      if (cuda::invalidScore(z)) {
        bad = 1;
        cuda::reportScoreError(a.error, SK_ERR_INVALID_SCORE, seq, a.layer, h,
                               st.lastPos + 1, z);
      }
    }
  }
  __syncthreads();
  if (bad)
    return;
  const long long p = st.lastPos + 1;
  const size_t input = static_cast<size_t>(i) * l.heads + head;
  cuda::appendTokenLight(
      a, st, seq, head, p, scores[input], keys + input * l.keyRowBytes(),
      values + input * l.valueRowBytes(), true, cuda::TokenSource{});
  if (threadIdx.x == 0) {
    a.states[row] = st;
    if (head == 0)
      a.pos[seq] = p;
    if (st.pending)
      a.worklist[atomicAdd(&a.counters[0], 1)] = static_cast<int>(row);
  }
}

__global__ void __launch_bounds__(kThreads, kFusedMinBlocks)
    appendTokensFusedKernel(LayerArgs a, SeqBatch batch, const uint8_t *keys,
                            const uint8_t *values, const float *scores) {
  const CacheLayout &l = a.layout;
  const int i = blockIdx.x / l.heads, head = blockIdx.x % l.heads;
  const int seq = batch.ids[i];
  const size_t row = l.row(seq, head);
  __shared__ HeadState st;
  __shared__ int bad;
  if (threadIdx.x == 0) {
    st = a.states[row];
    bad = 0;
    for (int h = 0; h < l.heads; ++h) {
      float z = scores[static_cast<size_t>(i) * l.heads + h];
      if (cuda::invalidScore(z)) {
        bad = 1;
        cuda::reportScoreError(a.error, SK_ERR_INVALID_SCORE, seq, a.layer, h,
                               st.lastPos + 1, z);
      }
    }
  }
  __syncthreads();
  if (bad)
    return;
  const long long p = st.lastPos + 1;
  const size_t input = static_cast<size_t>(i) * l.heads + head;
  cuda::appendTokenLight(
      a, st, seq, head, p, scores[input], keys + input * l.keyRowBytes(),
      values + input * l.valueRowBytes(), true, cuda::TokenSource{});
  if (st.pending)
    cuda::finishPending(a, st, seq, head);
  if (threadIdx.x == 0) {
    a.states[row] = st;
    if (head == 0)
      a.pos[seq] = p;
  }
}

/// Second kernel of a decode step: the rows whose append left heavy work
/// (pool rescan, tau walk, compaction), a few blocks per SM looping over
/// them. The last block to finish resets the worklist for the next step.
__global__ void __launch_bounds__(kThreads) finishPendingKernel(LayerArgs a) {
  const CacheLayout &l = a.layout;
  __shared__ HeadState st;
  __shared__ int count;
  __shared__ int last;
  if (threadIdx.x == 0)
    count = a.counters[0];
  __syncthreads();
  for (int item = blockIdx.x; item < count; item += gridDim.x) {
    const int row = a.worklist[item];
    if (threadIdx.x == 0)
      st = a.states[row];
    __syncthreads();
    cuda::finishPending(a, st, row / l.heads, row % l.heads);
    if (threadIdx.x == 0)
      a.states[row] = st;
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    __threadfence();
    last = atomicAdd(&a.counters[1], 1) == static_cast<int>(gridDim.x) - 1;
    if (last) {
      a.counters[0] = 0;
      a.counters[1] = 0;
    }
  }
}

__global__ void __launch_bounds__(kThreads)
    appendChunkKernel(LayerArgs a, int seq, long long count,
                      const uint8_t *keys, const uint8_t *values,
                      const float *scores) {
  const CacheLayout &l = a.layout;
  const int head = blockIdx.x;
  const size_t row = l.row(seq, head);
  __shared__ HeadState st;
  if (threadIdx.x == 0)
    st = a.states[row];
  __syncthreads();
  // The whole chunk (every head) is checked before anything changes.
  int bad = 0;
  for (long long i = threadIdx.x; i < count * l.heads; i += blockDim.x) {
    float z = scores[i];
    if (cuda::invalidScore(z)) {
      bad = 1;
      cuda::reportScoreError(a.error, SK_ERR_INVALID_SCORE, seq, a.layer,
                             static_cast<int>(i / count),
                             st.lastPos + 1 + i % count, z);
    }
  }
  if (__syncthreads_or(bad))
    return;
  const long long start = st.lastPos + 1;
  const size_t kb = l.keyRowBytes(), vb = l.valueRowBytes();
  cuda::TokenSource source;
  source.keys = keys + head * count * kb;
  source.values = values + head * count * vb;
  source.firstPos = start;
  for (long long t = 0; t < count; ++t) {
    // Rows are written to the window only for the tokens still there at the
    // end; earlier ones are read from the input if they reach the pool.
    cuda::appendTokenLight(a, st, seq, head, start + t,
                           scores[head * count + t], source.keys + t * kb,
                           source.values + t * vb, t >= count - l.w, source);
    if (st.pending)
      cuda::finishPending(a, st, seq, head);
  }
  if (threadIdx.x == 0) {
    a.states[row] = st;
    if (head == 0)
      a.pos[seq] = start + count - 1;
  }
}

/// Makes the cache's device current for one call, restoring the caller's.
class DeviceGuard {
public:
  explicit DeviceGuard(int device) {
    if (cudaGetDevice(&previous) == cudaSuccess && previous != device)
      cudaSetDevice(device);
    else
      previous = -1;
  }
  ~DeviceGuard() {
    if (previous >= 0)
      cudaSetDevice(previous);
  }

private:
  int previous = -1;
};

class CudaCache final : public CacheBackend {
public:
  explicit CudaCache(const sk_cache_config &config) : CacheBackend(config) {}
  ~CudaCache() override;

  sk_status allocate();
  sk_status clearSeq(int32_t seq) override;
  sk_status appendTokens(int32_t layer, int32_t numSeqs, const int32_t *seqIds,
                         const void *keys, const void *values,
                         const float *scores, void *stream) override;
  sk_status appendChunk(int32_t layer, int32_t seq, int64_t numTokens,
                        const void *keys, const void *values,
                        const float *scores, void *stream) override;
  void view(int32_t layer, sk_cache_view *out) const override;
  sk_status isApproximate(int32_t seq, int32_t *approx) override;
  sk_status checkDeviceError(void *stream) override;

private:
  template <typename T> sk_status alloc(T **ptr, size_t count);
  sk_status launched(const char *caller);
  sk_status resetSeqs(int32_t first, int32_t count);

  std::vector<LayerArgs> layers_;
  std::vector<void *> allocations_;
  int finishBlocks_ = 1;
  DeviceError *error_ = nullptr;
};

CudaCache::~CudaCache() {
  DeviceGuard guard(config_.device);
  for (void *ptr : allocations_)
    cudaFree(ptr);
}

template <typename T> sk_status CudaCache::alloc(T **ptr, size_t count) {
  void *raw = nullptr;
  cudaError_t err = cudaMalloc(&raw, count * sizeof(T));
  if (err != cudaSuccess) {
    cudaGetLastError(); // not sticky: the context is still usable
    return cacheError(err == cudaErrorMemoryAllocation ? SK_ERR_OUT_OF_MEMORY
                                                       : SK_ERR_CUDA,
                      "sk_cache_create: cudaMalloc of %zu bytes failed with %s",
                      count * sizeof(T), cudaGetErrorName(err));
  }
  allocations_.push_back(raw);
  *ptr = static_cast<T *>(raw);
  return SK_OK;
}

sk_status CudaCache::launched(const char *caller) {
  cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess)
    return cacheError(SK_ERR_CUDA, "%s: kernel launch failed with %s: %s",
                      caller, cudaGetErrorName(err), cudaGetErrorString(err));
  return SK_OK;
}

sk_status CudaCache::allocate() {
  int devices = 0;
  cudaError_t err = cudaGetDeviceCount(&devices);
  if (err != cudaSuccess || devices == 0) {
    cudaGetLastError();
    return cacheError(SK_ERR_NO_DEVICE, "sk_cache_create: no CUDA device (%s)",
                      err != cudaSuccess ? cudaGetErrorName(err) : "0 devices");
  }
  if (config_.device >= devices)
    return cacheError(SK_ERR_INVALID_ARGUMENT,
                      "sk_cache_create: device %d of %d", config_.device,
                      devices);
  DeviceGuard guard(config_.device);
  int sms = 0;
  cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, config_.device);
  finishBlocks_ = std::max(1, 4 * sms * 128 / kThreads);
  if (sk_status status = alloc(&error_, 1))
    return status;
  cudaMemset(error_, 0, sizeof(DeviceError));
  const CacheLayout &l = layout_;
  layers_.resize(config_.num_layers);
  for (int32_t i = 0; i < config_.num_layers; ++i) {
    LayerArgs &a = layers_[i];
    a.layout = l;
    a.layer = i;
    a.error = error_;
    sk_status status = SK_OK;
    if ((status = alloc(&a.keys, l.keyBytes())) ||
        (status = alloc(&a.values, l.valueBytes())) ||
        (status = alloc(&a.slotScores, l.slotCount())) ||
        (status = alloc(&a.slotPos, l.slotCount())) ||
        (status = alloc(&a.tau, l.rows())) ||
        (status = alloc(&a.poolCount, l.rows())) ||
        (status = alloc(&a.pos, static_cast<size_t>(l.maxSeqs))) ||
        (status = alloc(&a.states, l.rows())) ||
        (status = alloc(&a.support, l.rows() * l.supportStride())) ||
        (status = alloc(&a.worklist, l.rows())) ||
        (status = alloc(&a.counters, 2)))
      return status;
    cudaMemset(a.counters, 0, 2 * sizeof(int));
  }
  if (sk_status status = resetSeqs(0, config_.max_seqs))
    return status;
  err = cudaDeviceSynchronize();
  if (err != cudaSuccess)
    return cacheError(SK_ERR_CUDA,
                      "sk_cache_create: initialization failed "
                      "with %s",
                      cudaGetErrorName(err));
  return SK_OK;
}

sk_status CudaCache::resetSeqs(int32_t first, int32_t count) {
  // Legacy default stream: ordered with the blocking streams callers use.
  const CacheLayout &l = layout_;
  for (const LayerArgs &a : layers_) {
    // The rows of consecutive sequences are contiguous.
    size_t firstSlot = l.slot(first, 0, 0);
    cudaMemsetAsync(a.keys + firstSlot * l.keyRowBytes(), 0,
                    count * l.heads * l.slots() * l.keyRowBytes());
    cudaMemsetAsync(a.values + firstSlot * l.valueRowBytes(), 0,
                    count * l.heads * l.slots() * l.valueRowBytes());
    for (int32_t done = 0; done < count; done += 65535) {
      dim3 grid(layout_.heads, std::min(count - done, 65535));
      resetSeqsKernel<<<grid, kThreads>>>(a, first + done);
    }
  }
  return launched("sk_cache_reset_seq");
}

sk_status CudaCache::clearSeq(int32_t seq) {
  DeviceGuard guard(config_.device);
  // Slots are recycled per request, not per token, so a device-wide sync is
  // affordable: it orders the reset after in-flight appends and before later
  // ones, whatever (possibly non-blocking) streams the caller uses.
  cudaError_t err = cudaDeviceSynchronize();
  if (err == cudaSuccess) {
    if (sk_status status = resetSeqs(seq, 1))
      return status;
    err = cudaDeviceSynchronize();
  }
  if (err != cudaSuccess)
    return cacheError(SK_ERR_CUDA, "sk_cache_alloc/reset_seq: %s: %s",
                      cudaGetErrorName(err), cudaGetErrorString(err));
  return SK_OK;
}

sk_status CudaCache::appendTokens(int32_t layer, int32_t numSeqs,
                                  const int32_t *seqIds, const void *keys,
                                  const void *values, const float *scores,
                                  void *stream) {
  DeviceGuard guard(config_.device);
  const LayerArgs &a = layers_[layer];
  const size_t kb = layout_.keyRowBytes(), vb = layout_.valueRowBytes();
  const size_t heads = layout_.heads;
  for (int32_t done = 0; done < numSeqs; done += kMaxBatch) {
    int32_t n = std::min(numSeqs - done, kMaxBatch);
    SeqBatch batch;
    for (int32_t i = 0; i < n; ++i)
      batch.ids[i] = seqIds[done + i];
    const uint8_t *k = static_cast<const uint8_t *>(keys) + done * heads * kb;
    const uint8_t *v = static_cast<const uint8_t *>(values) + done * heads * vb;
    cudaStream_t s = static_cast<cudaStream_t>(stream);
    if (SK_DECODE_FUSED) {
      appendTokensFusedKernel<<<n * layout_.heads, kThreads, 0, s>>>(
          a, batch, k, v, scores + done * heads);
    } else {
      appendTokensKernel<<<n * layout_.heads, kLightThreads, 0, s>>>(
          a, batch, k, v, scores + done * heads);
      // At most one pending row per (sequence, head) of this launch.
      int blocks = std::min(finishBlocks_, n * layout_.heads);
      finishPendingKernel<<<blocks, kThreads, 0, s>>>(a);
    }
  }
  return launched("sk_cache_append_tokens");
}

sk_status CudaCache::appendChunk(int32_t layer, int32_t seq, int64_t numTokens,
                                 const void *keys, const void *values,
                                 const float *scores, void *stream) {
  DeviceGuard guard(config_.device);
  appendChunkKernel<<<layout_.heads, kThreads, 0,
                      static_cast<cudaStream_t>(stream)>>>(
      layers_[layer], seq, numTokens, static_cast<const uint8_t *>(keys),
      static_cast<const uint8_t *>(values), scores);
  return launched("sk_cache_append_chunk");
}

void CudaCache::view(int32_t layer, sk_cache_view *out) const {
  const LayerArgs &a = layers_[layer];
  out->k_slots = a.keys;
  out->v_slots = a.values;
  out->slot_scores = a.slotScores;
  out->slot_pos = reinterpret_cast<int64_t *>(a.slotPos);
  out->tau = a.tau;
  out->pool_count = a.poolCount;
  out->pos = reinterpret_cast<int64_t *>(a.pos);
}

sk_status CudaCache::isApproximate(int32_t seq, int32_t *approx) {
  DeviceGuard guard(config_.device);
  *approx = 0;
  std::vector<HeadState> states(layout_.heads);
  for (const LayerArgs &a : layers_) {
    cudaError_t err =
        cudaMemcpy(states.data(), a.states + layout_.row(seq, 0),
                   states.size() * sizeof(HeadState), cudaMemcpyDeviceToHost);
    if (err != cudaSuccess)
      return cacheError(SK_ERR_CUDA,
                        "sk_cache_seq_is_approximate: cudaMemcpy failed "
                        "with %s",
                        cudaGetErrorName(err));
    for (const HeadState &st : states)
      if (st.approx)
        *approx = 1;
  }
  return SK_OK;
}

sk_status CudaCache::checkDeviceError(void *stream) {
  DeviceGuard guard(config_.device);
  const char *caller = "sk_cache_check_device_error";
  cudaError_t err = cudaStreamSynchronize(static_cast<cudaStream_t>(stream));
  DeviceError record{};
  if (err == cudaSuccess)
    err = cudaMemcpy(&record, error_, sizeof(record), cudaMemcpyDeviceToHost);
  if (err != cudaSuccess)
    return cacheError(SK_ERR_CUDA, "%s: %s", caller, cudaGetErrorName(err));
  if (record.code == 0)
    return SK_OK;
  cudaMemset(error_, 0, sizeof(DeviceError));
  return cacheError(static_cast<sk_status>(record.code),
                    "score of sequence %d (layer %d, head %d, position %lld) "
                    "is %s; scores must be finite or -inf. That sequence was "
                    "left unchanged by the failing append",
                    record.seq, record.layer, record.head, record.position,
                    record.value != record.value ? "NaN" : "+inf");
}

} // namespace

sk_status createCudaCache(const sk_cache_config &config,
                          std::unique_ptr<CacheBackend> *out) {
  auto cache = std::make_unique<CudaCache>(config);
  if (sk_status status = cache->allocate())
    return status;
  *out = std::move(cache);
  return SK_OK;
}

} // namespace sparsek::rt
