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
                                      const long long *positions, int count,
                                      float *lowestScore = nullptr) {
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
  if (lowestScore)
    *lowestScore = target; // the slot's score (== compares alike)
  return topIndex;
}

/// weakestPoolSlot in one pass (SK_RESCAN_ONEPASS=1, default): every
/// thread loads its scores and positions together and keeps its weakest
/// (score, position), then one block reduction in the same order: no
/// second scan, no second reduction, no dependent loads of positions
/// (D1: 19.5 us against 19.7-19.8 us with the two scans).
#ifndef SK_RESCAN_ONEPASS
#define SK_RESCAN_ONEPASS 1
#endif

template <int NT>
__device__ inline int weakestPoolSlotOnePass(const float *scores,
                                             const long long *positions,
                                             int count, float *lowestScore) {
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
      if (i < count && (bestIndex < 0 || v[u] < bestScore ||
                        (v[u] == bestScore && q[u] > bestPos))) {
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
    if (i >= 0 &&
        (bestIndex < 0 || s < bestScore || (s == bestScore && q > bestPos))) {
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
        if (i >= 0 && (bestIndex < 0 || s < bestScore ||
                       (s == bestScore && q > bestPos))) {
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

/// The weakest pool slot and its score (valid in every thread).
template <int NT>
__device__ inline int weakestSlot(const float *scores,
                                  const long long *positions, int count,
                                  float *lowestScore) {
  if (SK_RESCAN_ONEPASS)
    return weakestPoolSlotOnePass<NT>(scores, positions, count, lowestScore);
  return weakestPoolSlot<NT>(scores, positions, count, lowestScore);
}

/// Refills the weak list of a full pool (SK_WEAK_LIST) after an eviction
/// emptied it, and sets st.weak / st.weakScore. One pass gathers the pool
/// entries scoring at most a cut into shared memory (those form a prefix of
/// the weakness order); the cut starts at the evicted score (a lower bound
/// of the pool) plus the width that gathered about 48 entries last time.
/// The gathered entries are ranked (score, then larger position first) and
/// the first kWeakList stored. When more than kWeakGather entries tie at
/// the minimum, the plain arg-min is used and the list left empty. A block
/// of NT threads.
constexpr int kWeakGather = 256;

template <int NT>
__device__ inline void refillWeakList(HeadState &st, const float *scores,
                                      const long long *positions, int count,
                                      uint2 *list) {
  __shared__ float gScore[kWeakGather];
  __shared__ int gIndex[kWeakGather];
  __shared__ long long gPos[kWeakGather];
  __shared__ int gCount;
  __shared__ float cut, span;
  __shared__ int verdict; // 0: gather again, 1: gathered, 2: fall back
  if (threadIdx.x == 0) {
    span = st.weakSpan > 0.0f ? st.weakSpan
                              : fmaxf(fabsf(st.weakScore), 1.0f) / 1024.0f;
    cut = st.weakScore + span;
  }
#pragma unroll 1
  for (int attempt = 0;; ++attempt) {
    if (threadIdx.x == 0)
      gCount = 0;
    __syncthreads();
    const float c = cut;
    float m = INFINITY;
    scanValues<NT>(scores, count, [&](float v, int i) {
      m = fminf(m, v);
      if (v <= c) {
        int slot = atomicAdd(&gCount, 1);
        if (slot < kWeakGather) {
          gScore[slot] = v;
          gIndex[slot] = i;
        }
      }
    });
    m = blockReduce<NT>(m, FloatMinOp(), INFINITY);
    __syncthreads(); // gCount is final
    if (threadIdx.x == 0) {
      const int g = gCount;
      if (g >= 1 && g <= kWeakGather) {
        verdict = 1;
        // Aim at about 48 entries next time.
        const float width = c - m;
        if (width > 0.0f)
          span = width * fminf(8.0f, fmaxf(0.125f, 48.0f / g));
      } else if (g == 0) {
        cut = m + span;
        verdict = 0;
      } else if (c > m) {
        const float narrower = m + (c - m) * 0.125f;
        cut = narrower < c ? narrower : m;
        span = cut - m;
        verdict = 0;
      } else {
        verdict = 2; // too many ties at the minimum
      }
      if (verdict == 0 && attempt >= 8)
        verdict = 2;
    }
    __syncthreads();
    if (verdict)
      break;
  }
  if (verdict == 2) {
    float lowest;
    const int weakest = weakestSlot<NT>(scores, positions, count, &lowest);
    if (threadIdx.x == 0) {
      st.weak = weakest;
      st.weakScore = lowest;
      st.weakListed = 0;
    }
    __syncthreads();
    return;
  }
  const int g = gCount;
  for (int j = threadIdx.x; j < g; j += NT)
    gPos[j] = positions[gIndex[j]];
  __syncthreads();
  for (int j = threadIdx.x; j < g; j += NT) {
    const float v = gScore[j];
    const long long p = gPos[j];
    int rank = 0;
#pragma unroll 4
    for (int o = 0; o < g; ++o) {
      const float vo = gScore[o];
      rank += vo < v || (vo == v && gPos[o] > p);
    }
    if (rank < kWeakList)
      list[rank] = make_uint2(__float_as_uint(v), gIndex[j]);
    if (rank == 0) {
      st.weak = gIndex[j];
      st.weakScore = v;
    }
  }
  if (threadIdx.x == 0) {
    st.weakListed = g < kWeakList ? g : kWeakList;
    st.weakSpan = span;
  }
  __syncthreads();
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
        st.weakListed = 0; // this path does not keep the weak list
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
    if (SK_WEAK_LIST) {
      refillWeakList<NT>(st, a.slotScores + first, a.slotPos + first, l.k,
                         a.weakList + l.row(seq, head) * kWeakList);
    } else {
      float lowest;
      int weakest = weakestSlot<NT>(a.slotScores + first, a.slotPos + first,
                                    l.k, &lowest);
      if (threadIdx.x == 0) {
        st.weak = weakest;
        st.weakScore = lowest;
      }
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
