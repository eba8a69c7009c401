// Device-side building blocks of the CUDA KV cache: per-(sequence, head)
// state, block-wide reductions, and one token's update (window, pool, tau).
// Every function is called by all threads of a block; thread 0 takes the
// scalar decisions and the block does the data-parallel work.
#ifndef SPARSEK_RUNTIME_LIB_CACHE_CUDA_DEVICE_CUH
#define SPARSEK_RUNTIME_LIB_CACHE_CUDA_DEVICE_CUH

#include "cache_layout.h"

#include <cstdint>
#include <cuda_runtime.h>

namespace sparsek::rt::cuda {

constexpr int kThreads = 128;
constexpr int kWarps = kThreads / 32;

/// Incremental tau state of one (layer, sequence, head). The kept scores
/// (all > tau) live unsorted in a scalar array; (upper, middle, sum) is the
/// partition of f's linear piece just right of `x`, and `next` the first
/// breakpoint above x. Most appends touch only these scalars; crossing a
/// breakpoint costs one block-wide pass over the array (amortized O(1) per
/// candidate, since every score crosses at most twice).
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
  int pad;
};

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
};

__device__ inline bool invalidScore(float z) {
  return isnan(z) || (isinf(z) && z > 0.0f);
}

__device__ inline void reportScoreError(DeviceError *error, int code, int seq,
                                        int layer, int head,
                                        long long position, float value) {
  if (atomicCAS(&error->code, 0, code) == 0) {
    error->seq = seq;
    error->layer = layer;
    error->head = head;
    error->position = position;
    error->value = value;
  }
}

/// Copies one row with the widest aligned accesses available.
__device__ inline void copyRow(uint8_t *dst, const uint8_t *src,
                               size_t bytes) {
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

// --- Block reductions ------------------------------------------------------

template <typename T, typename Op>
__device__ inline T warpReduce(T value, Op op) {
  for (int offset = 16; offset > 0; offset /= 2)
    value = op(value, __shfl_down_sync(0xffffffffu, value, offset));
  return value;
}

/// Reduces one value per thread; the result is valid in thread 0.
template <typename T, typename Op>
__device__ inline T blockReduce(T value, Op op, T identity) {
  __shared__ T partial[kWarps];
  value = warpReduce(value, op);
  int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  __syncthreads(); // `partial` may still be read by a previous reduction
  if (lane == 0)
    partial[warp] = value;
  __syncthreads();
  value = identity;
  if (warp == 0) {
    value = lane < kWarps ? partial[lane] : identity;
    value = warpReduce(value, op);
  }
  return value;
}

struct MinOp {
  __device__ double operator()(double a, double b) const {
    return a < b ? a : b;
  }
};
struct SumOp {
  template <typename T> __device__ T operator()(T a, T b) const {
    return a + b;
  }
};

/// (score, index) of an entry; `weaker` orders pool entries as SPEC 4
/// evicts them: lower score first, then larger position.
struct Ranked {
  float score;
  long long pos;
  int index;
};

__device__ inline bool weaker(const Ranked &a, const Ranked &b) {
  return a.score < b.score || (a.score == b.score && a.pos > b.pos);
}

/// Index of the weakest of `count` pool entries (valid in thread 0).
__device__ inline int weakestPoolSlot(const float *scores,
                                      const long long *positions, int count) {
  Ranked best{INFINITY, -1, -1};
  for (int i = threadIdx.x; i < count; i += blockDim.x) {
    Ranked r{scores[i], positions[i], i};
    if (best.index < 0 || weaker(r, best))
      best = r;
  }
  for (int offset = 16; offset > 0; offset /= 2) {
    Ranked other{__shfl_down_sync(0xffffffffu, best.score, offset),
                 __shfl_down_sync(0xffffffffu, best.pos, offset),
                 __shfl_down_sync(0xffffffffu, best.index, offset)};
    if (other.index >= 0 && (best.index < 0 || weaker(other, best)))
      best = other;
  }
  __shared__ Ranked partial[kWarps];
  __syncthreads();
  if (threadIdx.x % 32 == 0)
    partial[threadIdx.x / 32] = best;
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int w = 1; w < kWarps; ++w)
      if (partial[w].index >= 0 &&
          (best.index < 0 || weaker(partial[w], best)))
        best = partial[w];
  }
  return best.index;
}

/// Index of the lowest kept score (valid in thread 0).
__device__ inline int lowestSupportIndex(const float *values, int count) {
  Ranked best{INFINITY, 0, -1};
  for (int i = threadIdx.x; i < count; i += blockDim.x)
    if (best.index < 0 || values[i] < best.score)
      best = Ranked{values[i], 0, i};
  for (int offset = 16; offset > 0; offset /= 2) {
    float s = __shfl_down_sync(0xffffffffu, best.score, offset);
    int i = __shfl_down_sync(0xffffffffu, best.index, offset);
    if (i >= 0 && (best.index < 0 || s < best.score))
      best = Ranked{s, 0, i};
  }
  __shared__ Ranked partial[kWarps];
  __syncthreads();
  if (threadIdx.x % 32 == 0)
    partial[threadIdx.x / 32] = best;
  __syncthreads();
  if (threadIdx.x == 0)
    for (int w = 1; w < kWarps; ++w)
      if (partial[w].index >= 0 &&
          (best.index < 0 || partial[w].score < best.score))
        best = partial[w];
  return best.index;
}

// --- Support (tau) ---------------------------------------------------------

/// Thread 0: files a kept score under the partition right of x.
__device__ inline void classifyInsert(HeadState &st, float z, int sign) {
  double v = z;
  if (v > st.x + 1.0) {
    st.upper += sign;
    if (sign > 0)
      st.next = fmin(st.next, v - 1.0);
  } else {
    st.middle += sign;
    st.sum += sign * v;
    if (sign > 0)
      st.next = fmin(st.next, v);
  }
}

/// Moves x to st.x: drops kept scores <= x (compacting the array in place)
/// and recomputes the partition and the next breakpoint.
__device__ inline void supportPass(HeadState &st, float *values) {
  __shared__ int warpKeep[kWarps];
  __shared__ int writeBase;
  const double x = st.x;
  const int count = st.count;
  int upper = 0, middle = 0;
  double sum = 0.0, next = INFINITY;
  if (threadIdx.x == 0)
    writeBase = 0;
  __syncthreads();
  for (int base = 0; base < count; base += blockDim.x) {
    int i = base + threadIdx.x;
    float z = i < count ? values[i] : 0.0f;
    bool keep = i < count && static_cast<double>(z) > x;
    if (keep) {
      double v = z;
      if (v > x + 1.0) {
        ++upper;
        next = fmin(next, v - 1.0);
      } else {
        ++middle;
        sum += v;
        next = fmin(next, v);
      }
    }
    // Order-free in-place compaction: a tile is read before it is written,
    // and writes never pass the tile being read.
    unsigned ballot = __ballot_sync(0xffffffffu, keep);
    int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    if (lane == 0)
      warpKeep[warp] = __popc(ballot);
    __syncthreads();
    int offset = writeBase;
    for (int w = 0; w < warp; ++w)
      offset += warpKeep[w];
    offset += __popc(ballot & ((1u << lane) - 1u));
    if (keep)
      values[offset] = z;
    __syncthreads();
    if (threadIdx.x == 0)
      for (int w = 0; w < kWarps; ++w)
        writeBase += warpKeep[w];
    __syncthreads();
  }
  upper = blockReduce(upper, SumOp(), 0);
  middle = blockReduce(middle, SumOp(), 0);
  sum = blockReduce(sum, SumOp(), 0.0);
  next = blockReduce(next, MinOp(), static_cast<double>(INFINITY));
  if (threadIdx.x == 0) {
    st.upper = upper;
    st.middle = middle;
    st.sum = sum;
    st.next = next;
    st.count = writeBase;
  }
  __syncthreads();
}

/// Adds one unmasked candidate score and re-solves tau exactly (the same
/// walk over breakpoints as the CPU model, SupportState::solve).
__device__ inline void supportAdd(HeadState &st, float *values, float z,
                                  int k, int capacity) {
  __shared__ int action; // 0: done, 1: solve, 2: overflow first
  if (threadIdx.x == 0) {
    ++st.candidates;
    action = 0;
    if (k == 0) {
      // tau = +inf: nothing is ever selected.
    } else if (st.candidates <= k) {
      values[st.count++] = z; // at most k candidates: all have p = 1
      classifyInsert(st, z, +1);
      st.tau = -INFINITY;
    } else if (static_cast<double>(z) > st.tau) {
      action = st.count >= capacity ? 2 : 1;
      if (action == 1) {
        values[st.count++] = z;
        classifyInsert(st, z, +1);
      }
    }
  }
  __syncthreads();
  if (action == 0)
    return;
  if (action == 2) {
    // Keep the highest scores; tau becomes a lower bound (SPEC 6).
    int lowest = lowestSupportIndex(values, st.count);
    if (threadIdx.x == 0) {
      st.approx = 1;
      float low = values[lowest];
      if (z <= low) {
        action = 0;
      } else {
        classifyInsert(st, low, -1);
        values[lowest] = z;
        classifyInsert(st, z, +1);
        action = 1;
      }
    }
    __syncthreads();
    if (action == 0)
      return;
  }
  __shared__ int done;
  const double budget = k;
  for (;;) {
    if (threadIdx.x == 0) {
      done = 1;
      if (st.middle > 0) {
        double t = (st.sum + st.upper - budget) / st.middle;
        if (t < st.next)
          st.tau = fmax(t, st.x);
        else
          done = 0;
      } else if (st.upper <= k) {
        // Flat f = U up to `next`: the hard top-k case (largest tau).
        st.tau = st.upper == k ? st.next : st.x;
      } else {
        done = 0;
      }
      if (!done)
        st.x = st.next;
    }
    __syncthreads();
    if (done)
      return;
    supportPass(st, values);
  }
}

// --- One token -------------------------------------------------------------

/// Where the K/V rows of a window token come from when it is evicted: the
/// window slot, or (chunk appends) the input, for tokens of the same chunk
/// whose rows were never written to the window.
struct TokenSource {
  const uint8_t *keys = nullptr, *values = nullptr; // input rows [T][row]
  long long firstPos = 0x7fffffffffffffffLL;        // first chunk position
};

/// Appends position p with score z to (seq, head) of one layer. newKey /
/// newValue are its rows; writeRows = false skips copying them into the
/// window (a chunk token overwritten again within the same chunk).
__device__ inline void appendToken(const LayerArgs &a, HeadState &st, int seq,
                                   int head, long long p, float z,
                                   const uint8_t *newKey,
                                   const uint8_t *newValue, bool writeRows,
                                   const TokenSource &chunk) {
  const CacheLayout &l = a.layout;
  const size_t first = l.slot(seq, head, 0);
  const size_t kb = l.keyRowBytes(), vb = l.valueRowBytes();
  float *scores = a.slotScores + first;
  long long *positions = a.slotPos + first;
  __shared__ long long candPos;
  __shared__ float candScore;
  __shared__ const uint8_t *candKey;
  __shared__ const uint8_t *candValue;
  __shared__ int target, rescan;
  const int windowSlot = l.w > 0 ? l.k + static_cast<int>(p % l.w) : -1;
  if (threadIdx.x == 0) {
    candPos = -1;
    target = -1;
    rescan = 0;
    if (l.w > 0) {
      // The token at p - w leaves the window and becomes a candidate.
      candPos = positions[windowSlot];
      candScore = scores[windowSlot];
      if (candPos >= chunk.firstPos) {
        candKey = chunk.keys + (candPos - chunk.firstPos) * kb;
        candValue = chunk.values + (candPos - chunk.firstPos) * vb;
      } else {
        candKey = a.keys + (first + windowSlot) * kb;
        candValue = a.values + (first + windowSlot) * vb;
      }
    } else {
      candPos = p;
      candScore = z;
      candKey = newKey;
      candValue = newValue;
    }
    if (candPos >= 0 && candScore == -INFINITY)
      candPos = -1; // masked keys are never candidates
    if (candPos >= 0 && l.k > 0) {
      int &count = a.poolCount[l.row(seq, head)];
      if (count < l.k) {
        // The newcomer has the largest position: on a tie it is weaker.
        if (count == 0 || candScore <= scores[st.weak])
          st.weak = count;
        target = count++;
      } else if (candScore > scores[st.weak]) {
        target = st.weak;
        rescan = 1;
      }
    }
  }
  __syncthreads();
  if (target >= 0) {
    copyRow(a.keys + (first + target) * kb, candKey, kb);
    copyRow(a.values + (first + target) * vb, candValue, vb);
    if (threadIdx.x == 0) {
      scores[target] = candScore;
      positions[target] = candPos;
    }
  }
  __syncthreads();
  if (rescan) {
    int weakest = weakestPoolSlot(scores, positions, l.k);
    if (threadIdx.x == 0)
      st.weak = weakest;
  }
  if (candPos >= 0)
    supportAdd(st, a.support + l.row(seq, head) * l.scoreCapacity, candScore,
               l.k, l.scoreCapacity);
  if (l.w > 0) {
    if (writeRows) {
      copyRow(a.keys + (first + windowSlot) * kb, newKey, kb);
      copyRow(a.values + (first + windowSlot) * vb, newValue, vb);
    }
    if (threadIdx.x == 0) {
      scores[windowSlot] = z;
      positions[windowSlot] = p;
    }
  }
  if (threadIdx.x == 0) {
    st.lastPos = p;
    a.tau[l.row(seq, head)] = static_cast<float>(st.tau);
  }
  __syncthreads();
}

} // namespace sparsek::rt::cuda

#endif // SPARSEK_RUNTIME_LIB_CACHE_CUDA_DEVICE_CUH
