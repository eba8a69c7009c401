// Parallel append of long chunks (prompts) to the CUDA KV cache: the state
// after the chunk equals that of token-by-token appends (SPEC 6), computed
// from the batch of candidates instead of one token at a time.
//
// Pool. After each candidate the pool is the top k (SPEC 4 order) of the
// old pool and the candidates so far, so a candidate enters iff fewer than
// k earlier entries are stronger. Once the pool is full, each entrant
// evicts the pool's weakest entry, which only grows stronger: the entries
// that drop out over a batch (old entries and entrants that are not in the
// final top k), sorted weakest first, are the evictions of the entrants in
// time order. An entrant takes the slot of the entry it evicts, an old
// entry (its slot is known) or an earlier entrant (whose slot is found the
// same way): pointer jumping over these links gives every slot at once.
// One merge sort of pool + batch yields the final order and, for each
// candidate, the number of stronger entries before it. Candidates weaker
// than the weakest entry of a full pool at the start of a batch never enter
// and are filtered out first. runtime/test/chunk_merge_test.cpp checks this
// algorithm on the host against offering candidates one at a time.
//
// tau. tau after the chunk is the SPARSEK threshold of all candidates, which
// depends on the set only: the kept scores and the batch's candidates go into
// the score array together, a bisection over floats finds a walk position x
// just below the root (f(x) >= k), and the exact walk of the token path
// (supportFinish) finishes from there. Batches never hold more candidates
// than the array has room for (a batch runs over as many tokens as it takes
// to fill it: only scores above x join), so the token path could not have
// overflowed its capacity within them (it keeps fewer scores than the array
// plus the batch, since its x only rises); close to the capacity, and once a
// sequence's tau is approximate, candidates take the token path one at a
// time, exactly as single appends.
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
constexpr int kChunkSortCapacity = 4096;
/// Candidates a batch must have room for: the parallel path needs k <=
/// kChunkSortCapacity - kChunkMinBatch (other pools take the token path).
constexpr int kChunkMinBatch = 1024;
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
                       int head, long long first, const float *scores,
                       const float *slotScores) {
    start = first;
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

/// Shared memory of the pool block (kChunkSortCapacity entries each): the
/// pool by slot, the batch's candidates in time order, two buffers of the
/// merge sort, and per-candidate and per-admission scratch.
struct ChunkShared {
  long long *poolPos, *candPos;
  float *poolScore;
  float *key0, *key1; // the merge sort's two buffers
  int *id0, *id1;     // slot (pool entries) or k + candidate index
  int *rank;          // per candidate: stronger entries before it, then its
                      // admission index (or -1)
  int *link;          // per admission: its slot as -(slot + 1), or an admission
  int *dropped;       // ids of the entries that drop out, strongest first

  // Buffers are picked by select, not by index: indexing would put the
  // pointers in local memory and lose their address space.
  __device__ float *key(int b) const { return b ? key1 : key0; }
  __device__ int *id(int b) const { return b ? id1 : id0; }

  __device__ void carve(unsigned char *base) {
    constexpr int N = kChunkSortCapacity;
    poolPos = reinterpret_cast<long long *>(base);
    candPos = poolPos + N;
    poolScore = reinterpret_cast<float *>(candPos + N);
    key0 = poolScore + N;
    key1 = key0 + N;
    id0 = reinterpret_cast<int *>(key1 + N);
    id1 = id0 + N;
    rank = id1 + N;
    link = rank + N;
    dropped = link + N;
  }
};

/// Bytes of ChunkShared.
constexpr size_t kChunkSharedBytes =
    kChunkSortCapacity *
    (2 * sizeof(long long) + 3 * sizeof(float) + 5 * sizeof(int));

/// True if entry (za, a) is stronger than (zb, b) in the order of SPEC 4;
/// ids below k are pool slots (compared by position), the others
/// candidates in time order, after every pool entry.
__device__ inline bool strongerId(float za, int a, float zb, int b, int k,
                                  const long long *poolPos) {
  if (za != zb)
    return za > zb;
  if (a < k && b < k)
    return poolPos[a] < poolPos[b];
  return a < b;
}

/// Sorts entries [0, n) of key/id[*buf] strongest first, bottom-up: each
/// entry finds its place in the merged run by a binary search in the other
/// run, which also counts, for a candidate in the later run, the stronger
/// entries of the earlier one; summed over the levels, rank[i] becomes the
/// number of stronger entries before candidate i (pool entries come first).
/// *buf names the buffer holding the result. A block of NT threads.
template <int NT>
__device__ inline void sortCountingStronger(ChunkShared &s, int n, int k,
                                            int *buf) {
  int from = *buf;
  for (int width = 1; width < n; width *= 2) {
    const float *key = s.key(from);
    const int *id = s.id(from);
    float *outKey = s.key(from ^ 1);
    int *outId = s.id(from ^ 1);
    for (int p = threadIdx.x; p < n; p += NT) {
      const int run = p / width, runStart = run * width;
      const int other = (run ^ 1) * width;
      const int otherLen = max(0, min(width, n - other));
      const float z = key[p];
      const int x = id[p];
      int lo = 0, hi = otherLen;
      while (lo < hi) {
        const int mid = (lo + hi) / 2;
        if (strongerId(key[other + mid], id[other + mid], z, x, k, s.poolPos))
          lo = mid + 1;
        else
          hi = mid;
      }
      const int out = min(runStart, other) + (p - runStart) + lo;
      outKey[out] = z;
      outId[out] = x;
      if ((run & 1) && x >= k)
        s.rank[x - k] += lo;
    }
    __syncthreads();
    from ^= 1;
  }
  *buf = from;
}

/// Merges `added` batch candidates (their scores at key[buf][count ..] with
/// ids k + i, positions candPos[i], rank[i] = 0, in time order) into the
/// pool (count entries, compact in slots [0, count) of poolScore/poolPos)
/// exactly as offering them one at a time would:
/// - a candidate enters iff fewer than k earlier entries are stronger (the
///   pool is always the top k of what came before);
/// - the first k - count that enter take the free slots in order; each later
///   one evicts the pool's weakest entry, which only grows stronger, so the
///   entries that drop out (pool entries and entrants past the top k),
///   weakest first, are those evicted by the later entrants in time order;
/// - an entrant takes the slot of the entry it evicts: a pool slot or the
///   slot of an earlier entrant, resolved by pointer jumping.
/// Updates count and the weakest entry (weakSlot, weakScore in every
/// thread). A block of NT threads.
template <int NT>
__device__ inline void mergeBatch(ChunkShared &s, int k, int &count, int added,
                                  int &weakSlot, float &weakScore) {
  constexpr int kItems = kChunkSortCapacity / NT;
  __shared__ int weakest;
  const int n = count + added;
  int buf = 0;
  sortCountingStronger<NT>(s, n, k, &buf);
  const float *key = s.key(buf);
  const int *id = s.id(buf);
  // Admissions in time order.
  int base = 0;
  for (int i0 = 0; i0 < added; i0 += NT) {
    const int i = i0 + threadIdx.x;
    const int enters = i < added && s.rank[i] < k;
    int total = 0;
    const int at = base + blockExclusiveScan<NT>(enters, &total);
    if (i < added)
      s.rank[i] = enters ? at : -1;
    base += total;
  }
  __syncthreads(); // the admission indices are read below
  const int admitted = base;
  const int kept = min(count + admitted, k);
  const int fill = min(admitted, k - count);
  // Entries that drop out, strongest first.
  base = 0;
  for (int j0 = kept; j0 < n; j0 += NT) {
    const int j = j0 + threadIdx.x;
    int x = -1;
    if (j < n)
      x = id[j];
    const int drops = x >= 0 && (x < k || s.rank[x - k] >= 0);
    int total = 0;
    const int at = base + blockExclusiveScan<NT>(drops, &total);
    if (drops)
      s.dropped[at] = x;
    base += total;
  }
  const int numDropped = base;
  __syncthreads();
  for (int j = threadIdx.x; j < admitted; j += NT) {
    int link;
    if (j < fill) {
      link = -(count + j) - 1;
    } else {
      const int x = s.dropped[numDropped - 1 - (j - fill)];
      link = x < k ? -x - 1 : s.rank[x - k];
    }
    s.link[j] = link;
  }
  __syncthreads();
  // Pointer jumping: links to earlier entrants become their links until
  // every link is a slot (links go back in time, so chains end).
  for (;;) {
    int next[kItems];
    int open = 0;
#pragma unroll
    for (int u = 0; u < kItems; ++u) {
      const int j = threadIdx.x + u * NT;
      next[u] = 0;
      if (j < admitted) {
        next[u] = s.link[j];
        if (next[u] >= 0) {
          next[u] = s.link[next[u]];
          open |= next[u] >= 0;
        }
      }
    }
    __syncthreads();
#pragma unroll
    for (int u = 0; u < kItems; ++u) {
      const int j = threadIdx.x + u * NT;
      if (j < admitted)
        s.link[j] = next[u];
    }
    if (!__syncthreads_or(open))
      break;
  }
  // The new pool: the top `kept`, each in its slot. A slot written here
  // belonged to an entry that dropped out, so no entry read here is
  // overwritten.
  for (int j = threadIdx.x; j < kept; j += NT) {
    const int x = id[j];
    const int slot = x < k ? x : -s.link[s.rank[x - k]] - 1;
    const long long pos = x < k ? s.poolPos[x] : s.candPos[x - k];
    s.poolScore[slot] = key[j];
    s.poolPos[slot] = pos;
    if (j == kept - 1)
      weakest = slot;
  }
  __syncthreads();
  count = kept;
  weakSlot = weakest;
  weakScore = s.poolScore[weakSlot];
  __syncthreads(); // s is refilled by the caller
}

/// The pool part of a chunk for one (sequence, head): every candidate in
/// time order, in batches that fit the shared memory. Writes the pool's
/// scores and positions (not the K/V rows: chunkPoolRowsKernel copies those)
/// and the pool fields of st (count, weakest). A block of NT threads.
template <int NT>
__device__ inline void chunkPool(const CacheLayout &l, HeadState &st,
                                 const ChunkHead &c, float *slotScores,
                                 long long *slotPos, ChunkShared &s) {
  const int k = l.k;
  int count = st.poolCount;
  for (int j = threadIdx.x; j < count; j += NT) {
    s.poolScore[j] = slotScores[j];
    s.poolPos[j] = slotPos[j];
  }
  // Candidates weaker than the weakest entry of a full pool stay out and
  // change nothing; they need not be sorted.
  int weakSlot = st.weak;
  float weakScore = st.weakScore;
  bool merged = false;
  int added = 0;
  long long q0 = c.qBegin;
  for (;;) {
    const bool done = q0 >= c.qEnd;
    int tileTotal = 0, offset = 0, offered = 0;
    float z = -INFINITY;
    const long long q = q0 + threadIdx.x;
    if (!done) {
      if (q < c.qEnd)
        z = c.score(l, q);
      offered = z != -INFINITY && (count < k || z > weakScore);
      offset = blockExclusiveScan<NT>(offered, &tileTotal);
    }
    if (added > 0 && (done || count + added + tileTotal > kChunkSortCapacity)) {
      // The batch: the pool entries, then the candidates.
      for (int j = threadIdx.x; j < count; j += NT) {
        s.key0[j] = s.poolScore[j];
        s.id0[j] = j;
      }
      __syncthreads();
      mergeBatch<NT>(s, k, count, added, weakSlot, weakScore);
      merged = true;
      added = 0;
      continue; // the same tile again, filtered by the new weakest
    }
    if (done)
      break;
    if (offered) {
      const int i = added + offset;
      s.key0[count + i] = z;
      s.id0[count + i] = k + i;
      s.candPos[i] = q;
      s.rank[i] = 0;
    }
    added += tileTotal;
    q0 += NT;
  }
  if (!merged)
    return; // nothing was offered: the pool and st are unchanged
  for (int j = threadIdx.x; j < count; j += NT) {
    slotScores[j] = s.poolScore[j];
    slotPos[j] = s.poolPos[j];
  }
  if (threadIdx.x == 0) {
    st.poolCount = count;
    st.weak = weakSlot;
    st.weakScore = weakScore;
  }
  __syncthreads();
}

// --- tau ---------------------------------------------------------------------

/// Points at which f is evaluated per pass of a tau bisection: each pass
/// narrows the bracket 13-fold, so 9 passes cover the 2^32 floats (more
/// probes no longer fit the registers of a 512-thread block).
constexpr int kProbes = 12;

/// f(x) = sum clip(z - x, 0, 1) over the kept scores, in double, at
/// x = probe[0 .. kProbes) in one pass; the results land in f[] (shared,
/// valid in every thread on return). A block of NT threads.
template <int NT>
__device__ inline void supportFProbes(const float *values, int count,
                                      const double *probe, double *f) {
  constexpr int kWarps = NT / 32;
  __shared__ double partial[kProbes][kWarps];
  double x[kProbes], sum[kProbes];
#pragma unroll
  for (int j = 0; j < kProbes; ++j) {
    x[j] = probe[j];
    sum[j] = 0.0;
  }
  scanValues<NT>(values, count, [&](float zf, int) {
    const double z = zf;
#pragma unroll
    for (int j = 0; j < kProbes; ++j)
      sum[j] += fmin(fmax(z - x[j], 0.0), 1.0);
  });
#pragma unroll
  for (int j = 0; j < kProbes; ++j)
    for (int offset = 16; offset > 0; offset /= 2)
      sum[j] += __shfl_xor_sync(0xffffffffu, sum[j], offset);
  if (threadIdx.x % 32 == 0)
#pragma unroll
    for (int j = 0; j < kProbes; ++j)
      partial[j][threadIdx.x / 32] = sum[j];
  __syncthreads();
  if (threadIdx.x < kProbes) {
    double total = 0.0;
    for (int w = 0; w < kWarps; ++w)
      total += partial[threadIdx.x][w];
    f[threadIdx.x] = total;
  }
  __syncthreads();
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
  // Invariant: f(lo) >= k > f(hi). Each pass evaluates kProbes floats
  // spread over (lo, hi) and keeps the bracket between two neighbours.
  __shared__ double probe[kProbes], f[kProbes];
  while (hi - lo > 1) {
    const unsigned long long span = hi - lo;
    if (threadIdx.x < kProbes) {
      const unsigned at =
          lo + static_cast<unsigned>(span * (threadIdx.x + 1) / (kProbes + 1));
      probe[threadIdx.x] = fromOrderedBits(at);
    }
    __syncthreads();
    supportFProbes<NT>(values, st.count, probe, f);
    unsigned newLo = lo, newHi = hi;
    for (int j = 0; j < kProbes; ++j) {
      const unsigned at =
          lo + static_cast<unsigned>(span * (j + 1) / (kProbes + 1));
      if (f[j] >= static_cast<double>(k))
        newLo = max(newLo, at);
      else
        newHi = min(newHi, at);
    }
    // f is monotone; should rounding make two probes disagree, the bracket
    // collapses rather than inverting.
    lo = newLo;
    hi = max(newHi, newLo + 1);
    __syncthreads(); // probe and f are rewritten by the next pass
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
  __shared__ int mode; // 1: a batch, 2: one token, 3: compact first
  long long q0 = c.qBegin;
  if (k == 0) {
    // tau stays +inf: only the candidates are counted.
    long long n = 0;
    for (long long q = q0 + threadIdx.x; q < c.qEnd; q += NT)
      n += c.score(l, q) != -INFINITY;
    n = blockReduce<NT>(n, SumOp{}, 0LL);
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
    // while tau is -inf, where x is -inf too). It runs over tiles of tokens
    // while the array has room for a whole tile, so once x is above most
    // scores a batch (and its solve) covers many times its room in tokens;
    // a first tile larger than the room is cut to it.
    const double x = st.x;
    const int base = st.count;
    int unmasked = 0, appended = 0;
    long long q = q0;
    while (q < c.qEnd) {
      const int room = capacity - base - appended;
      if (room < NT && q != q0)
        break; // the next tile might not fit: solve first
      const long long end = min(c.qEnd, q + min(NT, room));
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
      q = end;
    }
    unmasked = blockReduce<NT>(unmasked, SumOp{}, 0);
    if (threadIdx.x == 0) {
      st.candidates += unmasked;
      st.count = base + appended;
    }
    __syncthreads();
    q0 = q;
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
