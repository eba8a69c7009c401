// Parallel append of long chunks (prompts) to the CUDA KV cache: the state
// after the chunk equals that of token-by-token appends (SPEC 6), computed
// from the batch of candidates instead of one token at a time.
//
// Pool. While the pool is full, every candidate offered to it makes exactly
// one entry drop out for good (the weakest of pool + candidate, possibly the
// candidate itself), and after candidate t the pool is the top k of old pool
// + candidates 1..t. So the entry dropped at step t is the (k+1)-th strongest
// of that prefix, which only grows stronger: sorted from the weakest, the
// entries that drop out over a batch are the drops of its steps in time
// order. A candidate that enters takes the slot of the entry dropped at its
// step, which is an old pool entry (its slot is known) or an earlier
// candidate (whose slot is found the same way): pointer jumping over these
// links gives every slot at once. Candidates weaker than the pool's weakest
// entry at the start of a batch drop out at their own step and change
// nothing, so they are filtered out before the sort.
//
// tau. tau after the chunk is the SPARSEK threshold of all candidates, which
// depends on the set only: the kept scores and the batch's candidates go into
// the score array together, a bisection over floats finds a walk position x
// just below the root (f(x) >= k), and the exact walk of the token path
// (supportFinish) finishes from there. Batches never hold more candidates
// than the array has room for, so the token path could not have overflowed
// its capacity within them (it keeps fewer scores than the array plus the
// batch); close to the capacity, and once a sequence's tau is approximate,
// candidates take the token path one at a time, exactly as single appends.
#ifndef SPARSEK_RUNTIME_LIB_CACHE_CUDA_CHUNK_CUH
#define SPARSEK_RUNTIME_LIB_CACHE_CUDA_CHUNK_CUH

#include "cache_cuda_support.cuh"
#include "pool_rule.h"

#include <climits>

namespace sparsek::rt::cuda {

/// Threads of a block of the chunk's selection kernel (pool or tau of one
/// sequence and head).
constexpr int kChunkThreads = 512;
/// Pool entries plus batch candidates sorted at once, in shared memory.
constexpr int kChunkSortCapacity = 8192;
/// Candidates a batch must have room for: the parallel path needs k <=
/// kChunkSortCapacity - kChunkMinBatch (other pools take the token path).
constexpr int kChunkMinBatch = 1024;
/// Dynamic shared memory of the selection kernel.
constexpr size_t kChunkSharedBytes =
    kChunkSortCapacity *
    (sizeof(float) + sizeof(int) + sizeof(long long) + sizeof(int));
/// tau takes the token path when the score array has room for fewer new
/// scores than this (a bisection costs about as much as that many steps).
constexpr int kTauMinBatch = 256;
/// Sequences of one chunk launch (sk_cache_append_varlen batches): the
/// batch travels as a kernel argument, within the classic 4 KiB.
constexpr int kMaxChunkBatch = 128;

/// Sequences of one launch: sequence ids[i] gets tokens 0 .. count[i] - 1,
/// token t of head h at row (first[i] + t) * tokenStride + h * headStride of
/// the inputs ([H][T] for a chunk, [T][H] packed).
struct ChunkBatch {
  int ids[kMaxChunkBatch];
  long long first[kMaxChunkBatch];
  long long count[kMaxChunkBatch];
  long long headStride, tokenStride;
  __device__ long long inputRow(int i, int head, long long t) const {
    return (first[i] + t) * tokenStride + head * headStride;
  }
};

/// Where a chunk's candidates come from for one (sequence, head): the token
/// at position q leaves the window (or, with w = 0, arrives) at step
/// q + w - start of the chunk. Positions before `start` are still in the
/// window ring; later ones are rows of the input.
struct ChunkHead {
  long long start, tokens;  // first position of the chunk, its length
  long long qBegin, qEnd;   // candidate positions [qBegin, qEnd)
  const float *inputScores; // score of token t at inputScores[t * stride]
  long long stride;
  const float *windowScores; // slot scores from slot k on

  __device__ void init(const CacheLayout &l, const ChunkBatch &b, int i,
                       int head, long long lastPos, const float *scores,
                       const float *slotScores) {
    start = lastPos + 1;
    tokens = b.count[i];
    qBegin = start - l.w > 0 ? start - l.w : 0;
    qEnd = start + tokens - l.w;
    inputScores = scores + b.inputRow(i, head, 0);
    stride = b.tokenStride;
    windowScores = slotScores + l.k;
  }
  __device__ float score(const CacheLayout &l, long long q) const {
    if (q < start)
      return windowScores[q % l.w];
    return inputScores[(q - start) * stride];
  }
};

/// A pool entry or candidate in the sort: `id` is the pool slot (old
/// entries) or k + its index among the batch's candidates.
struct ChunkEntries {
  float *score;
  long long *pos;
  int *id;
  int *link; // per batch candidate: its slot as -(slot + 1), or a candidate
};

__device__ inline bool strongerEntry(float s, long long p, float os,
                                     long long op) {
  return weakerEntry(os, op, s, p);
}

/// Sorts entries [0, n) strongest first (SPEC 4 order), with padding up to
/// a power of two that sorts last. A block of NT threads.
template <int NT>
__device__ inline void sortStrongestFirst(ChunkEntries e, int n) {
  int size = 1;
  while (size < n)
    size *= 2;
  for (int i = n + threadIdx.x; i < size; i += NT) {
    e.score[i] = -INFINITY;
    e.pos[i] = LLONG_MAX;
    e.id[i] = -1;
  }
  __syncthreads();
  for (int span = 2; span <= size; span *= 2) {
    for (int stride = span / 2; stride > 0; stride /= 2) {
      for (int j = threadIdx.x; j < size / 2; j += NT) {
        const int lo = 2 * j - (j & (stride - 1)), hi = lo + stride;
        const float sa = e.score[lo], sb = e.score[hi];
        const long long pa = e.pos[lo], pb = e.pos[hi];
        // Blocks with bit `span` clear sort strongest first, the others
        // weakest first; the last merge (span = size) sorts all strongest
        // first.
        const bool strongFirst = (lo & span) == 0;
        if (strongFirst ? strongerEntry(sb, pb, sa, pa)
                        : strongerEntry(sa, pa, sb, pb)) {
          e.score[lo] = sb;
          e.score[hi] = sa;
          e.pos[lo] = pb;
          e.pos[hi] = pa;
          const int ia = e.id[lo];
          e.id[lo] = e.id[hi];
          e.id[hi] = ia;
        }
      }
      __syncthreads();
    }
  }
}

/// Merges `added` batch candidates (entries [count, count + added), ids
/// k + 0 .. k + added - 1 in time order) into the pool (entries [0, count),
/// ids = their slots) exactly as offering them one by one would. Afterwards
/// entries [0, count) are the new pool, strongest first, with ids = slots,
/// and count is updated. A block of NT threads; count is block-uniform.
template <int NT>
__device__ inline void mergeBatch(ChunkEntries e, int k, int &count,
                                  int added) {
  constexpr int kItems = kChunkSortCapacity / NT;
  const int total = count + added;
  sortStrongestFirst<NT>(e, total);
  // The first `fill` candidates take free slots in order; each later one
  // takes the slot of the entry dropped at its step: the (i - fill)-th
  // weakest of all, which may be itself (it stays out).
  const int fill = min(added, k - count);
  for (int i = threadIdx.x; i < added; i += NT) {
    int link;
    if (i < fill) {
      link = -(count + i) - 1;
    } else {
      const int dropped = e.id[total - 1 - (i - fill)];
      if (dropped == k + i)
        link = INT_MIN; // never entered
      else
        link = dropped < k ? -dropped - 1 : dropped - k;
    }
    e.link[i] = link;
  }
  __syncthreads();
  // Pointer jumping: a link to an earlier candidate becomes that one's link
  // until every link is a slot (chains go back in time, so they end).
  for (;;) {
    int next[kItems];
    int open = 0;
#pragma unroll
    for (int j = 0; j < kItems; ++j) {
      const int i = threadIdx.x + j * NT;
      next[j] = 0;
      if (i < added) {
        next[j] = e.link[i];
        if (next[j] >= 0) {
          next[j] = e.link[next[j]];
          open |= next[j] >= 0;
        }
      }
    }
    __syncthreads();
#pragma unroll
    for (int j = 0; j < kItems; ++j) {
      const int i = threadIdx.x + j * NT;
      if (i < added)
        e.link[i] = next[j];
    }
    if (!__syncthreads_or(open))
      break;
  }
  const int kept = min(total, k);
  for (int j = threadIdx.x; j < kept; j += NT) {
    const int id = e.id[j];
    if (id >= k)
      e.id[j] = -e.link[id - k] - 1;
  }
  __syncthreads();
  count = kept;
}

/// The pool part of a chunk for one (sequence, head): every candidate in
/// time order, in batches that fit the sort. Writes the pool's scores and
/// positions (not the K/V rows: chunkPoolRowsKernel copies those) and the
/// pool fields of st (count, weakest). A block of NT threads; `e` points to
/// kChunkSortCapacity entries of shared memory.
template <int NT>
__device__ inline void chunkPool(const CacheLayout &l, HeadState &st,
                                 const ChunkHead &c, float *slotScores,
                                 long long *slotPos, ChunkEntries e) {
  const int k = l.k;
  int count = st.poolCount;
  for (int j = threadIdx.x; j < count; j += NT) {
    e.score[j] = slotScores[j];
    e.pos[j] = slotPos[j];
    e.id[j] = j;
  }
  // Candidates weaker than the weakest entry of a full pool stay out and
  // change nothing; they need not be sorted.
  bool full = count == k;
  float weakest = st.weakScore;
  bool merged = false;
  int added = 0;
  long long q0 = c.qBegin;
  while (q0 < c.qEnd) {
    const long long q = q0 + threadIdx.x;
    float z = -INFINITY;
    if (q < c.qEnd)
      z = c.score(l, q);
    const int offered = z != -INFINITY && (!full || z > weakest);
    int tileTotal = 0;
    const int offset = blockExclusiveScan<NT>(offered, &tileTotal);
    if (count + added + tileTotal > kChunkSortCapacity) {
      mergeBatch<NT>(e, k, count, added);
      merged = true;
      added = 0;
      full = count == k;
      weakest = e.score[count - 1];
      continue; // the same tile again, filtered by the new weakest
    }
    if (offered) {
      const int at = count + added + offset;
      e.score[at] = z;
      e.pos[at] = q;
      e.id[at] = k + added + offset;
    }
    added += tileTotal;
    q0 += NT;
  }
  __syncthreads();
  if (added > 0) {
    mergeBatch<NT>(e, k, count, added);
    merged = true;
  }
  if (!merged)
    return; // nothing entered: scores, positions and st are unchanged
  for (int j = threadIdx.x; j < count; j += NT) {
    slotScores[e.id[j]] = e.score[j];
    slotPos[e.id[j]] = e.pos[j];
  }
  if (threadIdx.x == 0) {
    st.poolCount = count;
    st.weak = e.id[count - 1];
    st.weakScore = e.score[count - 1];
  }
  __syncthreads();
}

// --- tau ---------------------------------------------------------------------

/// f(x) = sum clip(z - x, 0, 1) over the kept scores, in double (valid in
/// every thread). A block of NT threads.
template <int NT>
__device__ inline double supportF(const float *values, int count, double x) {
  __shared__ double result;
  double sum = 0.0;
  scanValues<NT>(values, count, [&](float z, int) {
    const double d = static_cast<double>(z) - x;
    if (d > 0.0)
      sum += d < 1.0 ? d : 1.0;
  });
  sum = blockReduce<NT>(sum, SumOp{}, 0.0);
  if (threadIdx.x == 0)
    result = sum;
  __syncthreads();
  const double f = result;
  __syncthreads(); // `result` is reused by the next call
  return f;
}

/// Orders floats as unsigned integers (and back), for a bisection over the
/// floats between two bounds.
__device__ inline unsigned orderedBits(float v) {
  const unsigned b = __float_as_uint(v);
  return b & 0x80000000u ? ~b : b | 0x80000000u;
}
__device__ inline float fromOrderedBits(unsigned u) {
  return __uint_as_float(u & 0x80000000u ? u & 0x7fffffffu : ~u);
}

/// Solves tau over the kept scores after a batch added some (st.candidates
/// > k, and f(st.x) >= k): a bisection over floats moves x up to the
/// largest float with f >= k (no breakpoint left to walk but those within
/// one float step of the root), then the token path's walk finishes. A
/// block of NT threads.
template <int NT>
__device__ inline void supportSolveBatch(HeadState &st, float *values, int k,
                                         int capacity) {
  __shared__ float lowHigh[2];
  float low = INFINITY, high = -INFINITY;
  for (int i = threadIdx.x; i < st.count; i += NT) {
    low = fminf(low, values[i]);
    high = fmaxf(high, values[i]);
  }
  low = blockReduce<NT>(low, FloatMinOp{}, INFINITY);
  high = -blockReduce<NT>(-high, FloatMinOp{}, INFINITY);
  if (threadIdx.x == 0) {
    // f(lowest - 1) = count > k and f(x) >= k; f(highest) = 0 < k.
    const float below = __double2float_rd(static_cast<double>(low) - 1.0);
    lowHigh[0] =
        st.x > static_cast<double>(below) ? __double2float_rd(st.x) : below;
    lowHigh[1] = high;
  }
  __syncthreads();
  unsigned lo = orderedBits(lowHigh[0]), hi = orderedBits(lowHigh[1]);
  __syncthreads();
  while (hi - lo > 1) {
    const unsigned mid = lo + (hi - lo) / 2;
    if (supportF<NT>(values, st.count, fromOrderedBits(mid)) >=
        static_cast<double>(k))
      lo = mid;
    else
      hi = mid;
  }
  if (threadIdx.x == 0)
    st.x = fmax(st.x, static_cast<double>(fromOrderedBits(lo)));
  __syncthreads();
  supportPass<NT>(st, values); // drops <= x, partition right of x
  __shared__ int walk;
  if (threadIdx.x == 0)
    walk = !solveOnPiece(st, k);
  __syncthreads();
  if (walk)
    supportFinish<NT>(st, values, 0.0f, k, capacity, kPendingSolve);
}

/// The tau part of a chunk for one (sequence, head): the candidates' scores
/// in batches as large as the score array has room for, or one at a time
/// through the token path (near the capacity, or once tau is approximate).
/// Updates the support fields of st. A block of NT threads.
template <int NT>
__device__ inline void chunkTau(const CacheLayout &l, HeadState &st,
                                const ChunkHead &c, float *values) {
  const int k = l.k, capacity = l.scoreCapacity;
  __shared__ int mode; // 0: done, 1: a batch, 2: one token
  __shared__ long long batchEnd;
  long long q0 = c.qBegin;
  if (k == 0) {
    // tau stays +inf: only the candidates are counted.
    int n = 0;
    for (long long q = q0 + threadIdx.x; q < c.qEnd; q += NT)
      n += c.score(l, q) != -INFINITY;
    n = blockReduce<NT>(n, SumOp{}, 0);
    if (threadIdx.x == 0)
      st.candidates += n;
    __syncthreads();
    return;
  }
  while (q0 < c.qEnd) {
    if (threadIdx.x == 0) {
      const int live = st.upper + st.middle;
      mode = 2;
      if (!st.approx) {
        if (capacity - st.count < kTauMinBatch && st.count > live)
          mode = 3; // compact first
        else if (capacity - st.count >= kTauMinBatch ||
                 capacity - st.count >= c.qEnd - q0)
          mode = 1;
      }
      batchEnd = min(c.qEnd, q0 + (capacity - st.count));
    }
    __syncthreads();
    if (mode == 3) {
      supportPass<NT>(st, values);
      continue;
    }
    if (mode == 2) {
      const float z = c.score(l, q0);
      __shared__ int work;
      if (threadIdx.x == 0)
        work = z != -INFINITY ? supportStart(st, values, z, k, capacity) : 0;
      __syncthreads();
      if (work)
        supportFinish<NT>(st, values, z, k, capacity, work);
      ++q0;
      continue;
    }
    // A batch: every unmasked score above x joins the array (all of them
    // while tau is -inf, where x is -inf too).
    const long long end = batchEnd;
    const double x = st.x;
    const int base = st.count;
    int unmasked = 0, appended = 0;
    for (long long q = q0; q < end; q += NT) {
      float z = -INFINITY;
      if (q + threadIdx.x < end)
        z = c.score(l, q + threadIdx.x);
      unmasked += z != -INFINITY;
      const int keep = z != -INFINITY && static_cast<double>(z) > x;
      int tileTotal = 0;
      const int offset = blockExclusiveScan<NT>(keep, &tileTotal);
      if (keep)
        values[base + appended + offset] = z;
      appended += tileTotal;
    }
    unmasked = blockReduce<NT>(unmasked, SumOp{}, 0);
    if (threadIdx.x == 0) {
      st.candidates += unmasked;
      st.count = base + appended;
    }
    __syncthreads();
    q0 = end;
    if (st.candidates <= k) {
      // At most k candidates: all have p = 1, tau = -inf (x is -inf).
      supportPass<NT>(st, values);
      if (threadIdx.x == 0)
        st.tau = -INFINITY;
      __syncthreads();
    } else if (appended > 0) {
      supportSolveBatch<NT>(st, values, k, capacity);
    }
  }
}

} // namespace sparsek::rt::cuda

#endif // SPARSEK_RUNTIME_LIB_CACHE_CUDA_CHUNK_CUH
