// One token appended to one (sequence, head) of the CUDA KV cache: window
// ring, selected pool and tau, with the heavy part deferred (SPEC 6).
// Functions are called by all threads of a block: thread 0 takes the
// scalar decisions, the block does the data-parallel work.
#ifndef SPARSEK_RUNTIME_LIB_CACHE_CUDA_TOKEN_CUH
#define SPARSEK_RUNTIME_LIB_CACHE_CUDA_TOKEN_CUH

#include "cache_cuda_support.cuh"
#include "pool_rule.h"

namespace sparsek::rt::cuda {

/// The weakest of `count` pool entries and its score (valid in every
/// thread), in one pass: every thread loads its scores and positions
/// together and keeps its weakest (score, position), then one block
/// reduction in the same order. A block of NT threads.
template <int NT>
__device__ inline int weakestSlot(const float *scores,
                                  const long long *positions, int count,
                                  float *lowestScore) {
  constexpr int kUnroll = 8;
  float bestScore = INFINITY;
  long long bestPos = -1;
  int bestIndex = -1;
#pragma unroll 1
  for (int base = 0; base < count; base += NT * kUnroll) {
    float v[kUnroll];
    long long q[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int i = base + u * NT + threadIdx.x;
      v[u] = i < count ? scores[i] : INFINITY;
      q[u] = i < count ? positions[i] : -1;
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int i = base + u * NT + threadIdx.x;
      if (i < count &&
          (bestIndex < 0 || weakerEntry(v[u], q[u], bestScore, bestPos))) {
        bestScore = v[u];
        bestPos = q[u];
        bestIndex = i;
      }
    }
  }
  // Weaker: lower score, then larger position (distinct within a pool).
#pragma unroll
  for (int offset = 16; offset > 0; offset /= 2) {
    const float s = __shfl_down_sync(0xffffffffu, bestScore, offset);
    const long long q = __shfl_down_sync(0xffffffffu, bestPos, offset);
    const int i = __shfl_down_sync(0xffffffffu, bestIndex, offset);
    if (i >= 0 && (bestIndex < 0 || weakerEntry(s, q, bestScore, bestPos))) {
      bestScore = s;
      bestPos = q;
      bestIndex = i;
    }
  }
  __shared__ float warpScore[NT / 32];
  __shared__ long long warpPos[NT / 32];
  __shared__ int warpIndex[NT / 32];
  __shared__ float topScore;
  __shared__ int topIndex;
  if constexpr (NT > 32) {
    __syncthreads(); // the arrays may still be read by a previous call
    if (threadIdx.x % 32 == 0) {
      warpScore[threadIdx.x / 32] = bestScore;
      warpPos[threadIdx.x / 32] = bestPos;
      warpIndex[threadIdx.x / 32] = bestIndex;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
#pragma unroll 1
      for (int w = 1; w < NT / 32; ++w) {
        const float s = warpScore[w];
        const long long q = warpPos[w];
        const int i = warpIndex[w];
        if (i >= 0 &&
            (bestIndex < 0 || weakerEntry(s, q, bestScore, bestPos))) {
          bestScore = s;
          bestPos = q;
          bestIndex = i;
        }
      }
    }
  }
  if (threadIdx.x == 0) {
    topScore = bestScore;
    topIndex = bestIndex;
  }
  __syncthreads();
  *lowestScore = topScore;
  return topIndex;
}

// --- One token -------------------------------------------------------------

/// Where the K/V rows of a window token come from when it is evicted: the
/// window slot, or (chunk appends) the input, for tokens of the same chunk
/// whose rows were never written to the window.
struct TokenSource {
  const uint8_t *keys = nullptr, *values = nullptr; // the head's first row
  long long firstPos = 0x7fffffffffffffffLL;        // first chunk position
  long long stride = 1; // rows between consecutive tokens (H when packed)
};

/// Appends position p with score z to (seq, head) of one layer: window,
/// pool and the O(1) part of tau. Any block size. Work that needs a pass
/// over an array is left in st.pending for finishPending. newKey/newValue
/// are the token's rows; writeRows = false skips copying them into the
/// window (a chunk token overwritten again within the same chunk).
__device__ inline void appendTokenLight(const LayerArgs &a, HeadState &st,
                                        int seq, int head, long long p, float z,
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
  __shared__ int target;
  const int windowSlot = l.w > 0 ? l.k + static_cast<int>(p % l.w) : -1;
  // Thread 0 publishes st.pending only after the first barrier below: the
  // other threads may still be reading the previous token's value (the
  // caller's test for finishPending).
  int pending = 0;
  if (threadIdx.x == 0) {
    candPos = -1;
    target = -1;
    if (l.w > 0) {
      // The token at p - w leaves the window and becomes a candidate.
      candPos = positions[windowSlot];
      candScore = scores[windowSlot];
      if (candPos >= chunk.firstPos) {
        candKey = chunk.keys + (candPos - chunk.firstPos) * chunk.stride * kb;
        candValue =
            chunk.values + (candPos - chunk.firstPos) * chunk.stride * vb;
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
      const PoolOffer offer =
          offerToPool(st.poolCount, l.k, st.weak, st.weakScore, candScore);
      target = offer.slot;
      if (offer.displaces)
        pending |= kPendingRescan;
      else if (offer.slot >= 0)
        a.poolCount[l.row(seq, head)] = st.poolCount;
    }
    if (candPos >= 0) {
      pending |=
          supportStart(st, a.support + l.row(seq, head) * l.supportStride(),
                       candScore, l.k, l.scoreCapacity);
      st.pendingScore = candScore;
    }
  }
  __syncthreads();
  if (target >= 0) {
    // Copy the candidate's rows before its window slot is overwritten.
    copyRow(a.keys + (first + target) * kb, candKey, kb);
    copyRow(a.values + (first + target) * vb, candValue, vb);
    if (threadIdx.x == 0) {
      scores[target] = candScore;
      positions[target] = candPos;
    }
    __syncthreads();
  }
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
    st.pending = pending;
    st.lastPos = p;
    if (!(pending & (kPendingSolve | kPendingRoom)))
      a.tau[l.row(seq, head)] = static_cast<float>(st.tau);
  }
  __syncthreads();
}

/// Does the work appendTokenLight left pending (a block of NT threads).
template <int NT>
__device__ inline void finishPending(const LayerArgs &a, HeadState &st, int seq,
                                     int head) {
  const CacheLayout &l = a.layout;
  const int pending = st.pending;
  if (pending & kPendingRescan) {
    const size_t first = l.slot(seq, head, 0);
    float lowest;
    int weakest =
        weakestSlot<NT>(a.slotScores + first, a.slotPos + first, l.k, &lowest);
    if (threadIdx.x == 0) {
      st.weak = weakest;
      st.weakScore = lowest;
    }
  }
  if (pending & (kPendingSolve | kPendingRoom))
    supportFinish<NT>(st, a.support + l.row(seq, head) * l.supportStride(),
                      st.pendingScore, l.k, l.scoreCapacity,
                      pending & (kPendingSolve | kPendingRoom));
  if (threadIdx.x == 0) {
    st.pending = 0;
    a.tau[l.row(seq, head)] = static_cast<float>(st.tau);
  }
  __syncthreads();
}

} // namespace sparsek::rt::cuda

#endif // SPARSEK_RUNTIME_LIB_CACHE_CUDA_TOKEN_CUH
