// Device-side state of the CUDA KV cache: per-(layer, sequence, head) tau
// state, launch arguments, the sticky error record, and small helpers.
#ifndef SPARSEK_RUNTIME_LIB_CACHE_CUDA_STATE_CUH
#define SPARSEK_RUNTIME_LIB_CACHE_CUDA_STATE_CUH

#include "cache_layout.h"

#include <cstdint>
#include <cuda_runtime.h>

namespace sparsek::rt::cuda {

/// Threads of a block doing the heavy work (passes over score arrays): the
/// fastest of the sizes measured on the H200
/// (bench/results/runtime_decode_append_D1.json).
constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;

/// Incremental tau state of one (layer, sequence, head). The scores with
/// p > 0 live unsorted in a scalar array (dropped ones, <= x, stay until the
/// next compaction); (upper, middle, sum) is the partition of f's linear
/// piece just right of `x`, and `next` the first breakpoint above x. Most
/// appends touch only these scalars; crossing breakpoints costs a block-wide
/// pass over the array, which is rare since tau rises slowly and every
/// score is crossed at most twice.
struct HeadState {
  double x;    // walk position: tau never goes below it
  double sum;  // sum of the middle scores (0 < p < 1)
  double next; // next breakpoint above x: min(middle z, upper z - 1)
  double tau;
  long long candidates; // unmasked candidates seen (the n of SPEC 3)
  long long lastPos;    // last appended position of this head
  int upper, middle;    // entries with p = 1, 0 < p < 1 (relative to x)
  int count;            // kept scores in the array
  int weak;             // pool slot evicted first
  int approx;           // capacity overflowed: tau is a lower bound
  int poolCount;        // entries in the pool (mirrors the view's array)
  float weakScore;      // score of slot `weak`: saves a dependent load
  int pending;          // heavy work left by appendTokenLight (kPending*)
  float pendingScore;   // the candidate score the pending work is about
  int pad;              // whole 8-byte words: warps copy the state as such
};

/// Work that needs a whole block and a pass over an array; the decode
/// kernel defers it to a second kernel so that the common path stays light.
enum : int {
  kPendingRescan = 1, // the pool lost its weakest entry: find the next one
  kPendingSolve = 2,  // tau crosses a breakpoint: walk with a band pass
  kPendingRoom = 4,   // score array full or mostly dead: compact first
};

/// The decode step's device-side counters: [0], [1] the worklist lengths of
/// the steps of parity 0 and 1, then the parity of the next step (flipped by
/// finishPendingKernel) and that of the step in flight (published by the
/// decode kernel).
enum : int { kNextParity = 2, kStepParity = 3, kCounters = 4 };

/// First NaN/+inf score seen by a kernel (code 0: none).
struct DeviceError {
  int code;
  int seq;
  int layer;
  int head;
  long long position;
  float value;
};

/// Per-launch constants of one layer.
struct LayerArgs {
  CacheLayout layout;
  int layer;
  uint8_t *keys, *values;
  float *slotScores, *tau;
  long long *slotPos, *pos;
  int *poolCount;
  HeadState *states;
  float *support; // [S][H][capacity]
  DeviceError *error;
  int *worklist; // rows with pending heavy work, filled by the decode kernel
  int *counters; // [kCounters]: see kNextParity
  HeadState *pendingStates; // [rows]: state of worklist entry i
  // A long-chunk launch (cache_cuda_chunk.cuh), per sequence i of its batch:
  int *chunkBad;         // an invalid score was seen: leave it unchanged
  long long *chunkStart; // first position of its chunk
};

__device__ inline bool invalidScore(float z) {
  return isnan(z) || (isinf(z) && z > 0.0f);
}

__device__ inline void reportScoreError(DeviceError *error, int code, int seq,
                                        int layer, int head, long long position,
                                        float value) {
  if (atomicCAS(&error->code, 0, code) == 0) {
    error->seq = seq;
    error->layer = layer;
    error->head = head;
    error->position = position;
    error->value = value;
  }
}

/// Copies one row with the widest aligned accesses available.
__device__ inline void copyRow(uint8_t *dst, const uint8_t *src, size_t bytes) {
  uintptr_t align = reinterpret_cast<uintptr_t>(dst) |
                    reinterpret_cast<uintptr_t>(src) | bytes;
  if ((align & 15) == 0) {
    for (size_t i = threadIdx.x; i < bytes / 16; i += blockDim.x)
      reinterpret_cast<uint4 *>(dst)[i] =
          reinterpret_cast<const uint4 *>(src)[i];
  } else if ((align & 3) == 0) {
    for (size_t i = threadIdx.x; i < bytes / 4; i += blockDim.x)
      reinterpret_cast<uint32_t *>(dst)[i] =
          reinterpret_cast<const uint32_t *>(src)[i];
  } else {
    for (size_t i = threadIdx.x; i < bytes; i += blockDim.x)
      dst[i] = src[i];
  }
}

} // namespace sparsek::rt::cuda

#endif // SPARSEK_RUNTIME_LIB_CACHE_CUDA_STATE_CUH
