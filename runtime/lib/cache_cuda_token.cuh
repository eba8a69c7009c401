// One token appended to one (sequence, head) of the CUDA KV cache: window
// ring, selected pool and tau, with the heavy part deferred (SPEC 6).
// Functions are called by all threads of a block: thread 0 takes the
// scalar decisions, the block does the data-parallel work.
#ifndef SPARSEK_RUNTIME_LIB_CACHE_CUDA_TOKEN_CUH
#define SPARSEK_RUNTIME_LIB_CACHE_CUDA_TOKEN_CUH

#include "cache_cuda_support.cuh"

namespace sparsek::rt::cuda {

/// Index of the weakest of `count` pool entries (valid in thread 0): the
/// minimum score first, then, among entries holding it, the largest
/// position (a second, cache-hot scan, since ties are rare). A block of NT
/// threads.
template <int NT>
__device__ inline int weakestPoolSlot(const float *scores,
                                      const long long *positions, int count) {
  __shared__ float lowest;
  float m = INFINITY; // pool scores are finite or -inf: fminf is exact
  scanValues<NT>(scores, count, [&](float v, int) { m = fminf(m, v); });
  m = blockReduce<NT>(m, FloatMinOp(), INFINITY);
  if (threadIdx.x == 0)
    lowest = m;
  __syncthreads();
  const float target = lowest;
  long long bestPos = -1;
  int bestIndex = -1;
  scanValues<NT>(scores, count, [&](float v, int i) {
    if (v == target && positions[i] > bestPos) {
      bestPos = positions[i];
      bestIndex = i;
    }
  });
  // Positions in a pool are distinct, so the largest one names one slot.
  long long top = blockReduce<NT>(bestPos, MaxOp(), -1LL);
  __shared__ long long topPos;
  __shared__ int topIndex;
  if (threadIdx.x == 0)
    topPos = top;
  __syncthreads();
  if (bestPos == topPos && bestIndex >= 0)
    topIndex = bestIndex;
  __syncthreads();
  return topIndex;
}

// --- One token -------------------------------------------------------------

/// Where the K/V rows of a window token come from when it is evicted: the
/// window slot, or (chunk appends) the input, for tokens of the same chunk
/// whose rows were never written to the window.
struct TokenSource {
  const uint8_t *keys = nullptr, *values = nullptr; // input rows [T][row]
  long long firstPos = 0x7fffffffffffffffLL;        // first chunk position
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
  if (threadIdx.x == 0) {
    candPos = -1;
    target = -1;
    st.pending = 0;
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
      if (st.poolCount < l.k) {
        // The newcomer has the largest position: on a tie it is weaker.
        if (st.poolCount == 0 || candScore <= st.weakScore) {
          st.weak = st.poolCount;
          st.weakScore = candScore;
        }
        target = st.poolCount++;
        a.poolCount[l.row(seq, head)] = st.poolCount;
      } else if (candScore > st.weakScore) {
        target = st.weak;
        st.pending |= kPendingRescan;
      }
    }
    if (candPos >= 0) {
      st.pending |=
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
    st.lastPos = p;
    if (!(st.pending & (kPendingSolve | kPendingRoom)))
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
    int weakest =
        weakestPoolSlot<NT>(a.slotScores + first, a.slotPos + first, l.k);
    if (threadIdx.x == 0) {
      st.weak = weakest;
      st.weakScore = a.slotScores[first + weakest];
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
