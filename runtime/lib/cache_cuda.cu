// CUDA backend of the KV cache: all state in device memory, a decode step in
// two launches (a warp per sequence and head, then the rows with heavy
// work), score errors reported through a sticky device-side record that the
// host reads on demand.
#include "cache_cuda_chunk.cuh"
#include "cache_cuda_token.cuh"
#include "cache_impl.h"
#include "pool_rule.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>
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
  __device__ int id(int i) const { return ids[i]; }
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

/// A decode step (sk_cache_append_tokens) is two launches:
/// decodeWarpKernel does the light part of every row, one warp per row, and
/// queues the rows left with heavy work (pool rescan, tau walk, compaction)
/// for finishPendingKernel, launched as a programmatic dependent launch so
/// that it is scheduled while the first one runs and only waits for its
/// results (griddepcontrol). The alternatives measured against this design
/// (one launch with the heavy work done by the warp or by its block, several
/// rows per block, plain launches) are recorded in
/// bench/results/runtime_decode_alternatives.md.

// --- The light part of a decode step, one warp per row ----------------------

/// Rows travel through registers: kRowQuads uint4 per lane, so rows up to
/// 32 * 2 * 16 = 1024 bytes (other shapes take copyRow).
constexpr int kRowQuads = 2;

struct RowRegs {
  uint4 k[kRowQuads], v[kRowQuads];
};

__device__ inline void loadRows(RowRegs &r, const uint8_t *k, const uint8_t *v,
                                int kq, int vq, int lane) {
  const uint4 *k4 = reinterpret_cast<const uint4 *>(k);
  const uint4 *v4 = reinterpret_cast<const uint4 *>(v);
#pragma unroll
  for (int j = 0; j < kRowQuads; ++j) {
    int q = lane + 32 * j;
    if (q < kq)
      r.k[j] = k4[q];
    if (q < vq)
      r.v[j] = v4[q];
  }
}

__device__ inline void storeRows(const RowRegs &r, uint8_t *k, uint8_t *v,
                                 int kq, int vq, int lane) {
  uint4 *k4 = reinterpret_cast<uint4 *>(k);
  uint4 *v4 = reinterpret_cast<uint4 *>(v);
#pragma unroll
  for (int j = 0; j < kRowQuads; ++j) {
    int q = lane + 32 * j;
    if (q < kq)
      k4[q] = r.k[j];
    if (q < vq)
      v4[q] = r.v[j];
  }
}

/// Copies one row with the lanes of one warp.
__device__ inline void warpCopyRow(uint8_t *dst, const uint8_t *src,
                                   size_t bytes, int lane) {
  uintptr_t align = reinterpret_cast<uintptr_t>(dst) |
                    reinterpret_cast<uintptr_t>(src) | bytes;
  if ((align & 3) == 0) {
#pragma unroll 1
    for (size_t i = lane; i < bytes / 4; i += 32)
      reinterpret_cast<uint32_t *>(dst)[i] =
          reinterpret_cast<const uint32_t *>(src)[i];
  } else {
#pragma unroll 1
    for (size_t i = lane; i < bytes; i += 32)
      dst[i] = src[i];
  }
}

/// A decode warp's decisions, shared by its lanes.
struct WarpScratch {
  int target; // pool slot the candidate takes, or -1
};

/// Where a warp's row is, for the heavy part and the final write-back.
struct WarpRow {
  int seq, head;
  size_t row;
  long long p;
};

/// The light part of one decode step for batch row `index` (sequence
/// index * heads + head), done by one warp (all its lanes call it): window,
/// pool, the O(1) part of tau; heavy work is left in st.pending. It issues
/// every load it can up front: the state, the scores and the new rows, then
/// the leaving window token's score, position and rows together, so it
/// waits for two memory round trips. Returns false when a score of the
/// sequence is invalid (reported; nothing changed, st must not be stored).
/// `st` and `scratch` are this warp's shared memory.
__device__ inline bool
warpAppendLight(const LayerArgs &a, const SeqBatch &batch, const uint8_t *keys,
                const uint8_t *values, const float *scores, int index,
                HeadState &st, WarpScratch &scratch, WarpRow &out) {
  const CacheLayout &l = a.layout;
  const int lane = threadIdx.x % 32;
  const int i = index / l.heads, head = index % l.heads;
  const int seq = batch.id(i);
  const size_t row = l.row(seq, head);
  const size_t first = l.slot(seq, head, 0);
  const size_t kb = l.keyRowBytes(), vb = l.valueRowBytes();
  const size_t input = static_cast<size_t>(index);
  const uint8_t *newKey = keys + input * kb;
  const uint8_t *newValue = values + input * vb;
  float *slotScores = a.slotScores + first;
  long long *slotPos = a.slotPos + first;
  // Rows go through registers when they are whole uint4s and fit; other
  // shapes are copied after the decisions (same result, more waiting).
  const bool fast = kb % 16 == 0 && vb % 16 == 0 && kb <= 32 * 16 * kRowQuads &&
                    vb <= 32 * 16 * kRowQuads &&
                    ((reinterpret_cast<uintptr_t>(newKey) |
                      reinterpret_cast<uintptr_t>(newValue) |
                      reinterpret_cast<uintptr_t>(a.keys) |
                      reinterpret_cast<uintptr_t>(a.values)) &
                     15) == 0;
  const int kq = static_cast<int>(kb / 16), vq = static_cast<int>(vb / 16);

  // Round 1: the state (one coalesced request), the scores of this sequence
  // (every head's warp validates them all), the new rows.
  static_assert(sizeof(HeadState) % 8 == 0, "HeadState is copied as words");
  constexpr int kStateWords = sizeof(HeadState) / 8;
  static_assert(kStateWords <= 32, "HeadState fits one warp load");
  long long word = 0;
  if (lane < kStateWords) {
    word = reinterpret_cast<const long long *>(a.states + row)[lane];
    reinterpret_cast<long long *>(&st)[lane] = word;
  }
  const float z = scores[input];
  const float *seqScores = scores + static_cast<size_t>(i) * l.heads;
  unsigned badHeads = 0;
#pragma unroll 1
  for (int h0 = 0; h0 < l.heads; h0 += 32) {
    const int h = h0 + lane;
    float zh = h < l.heads ? seqScores[h] : 0.0f;
    badHeads |= __ballot_sync(0xffffffffu, cuda::invalidScore(zh));
  }
  RowRegs incoming;
  if (fast)
    loadRows(incoming, newKey, newValue, kq, vq, lane);
  __syncwarp();
  // The lanes take lastPos from the lane that loaded it, not from st: lane 0
  // rewrites st.lastPos below, with no sync after the other lanes' reads.
  constexpr int kLastPosWord = offsetof(HeadState, lastPos) / 8;
  static_assert(offsetof(HeadState, lastPos) % 8 == 0, "a whole word");
  const long long p = __shfl_sync(0xffffffffu, word, kLastPosWord) + 1;
  out = WarpRow{seq, head, row, p};
  if (badHeads) {
    // Validate before mutating: a bad score leaves the sequence untouched.
    if (lane == 0)
#pragma unroll 1
      for (int h = 0; h < l.heads; ++h)
        if (cuda::invalidScore(seqScores[h]))
          cuda::reportScoreError(a.error, SK_ERR_INVALID_SCORE, seq, a.layer, h,
                                 p, seqScores[h]);
    return false;
  }

  // Round 2: the token leaving the window (score, position, rows).
  const int windowSlot = l.w > 0 ? l.k + static_cast<int>(p % l.w) : -1;
  RowRegs leaving;
  if (l.w > 0 && fast)
    loadRows(leaving, a.keys + (first + windowSlot) * kb,
             a.values + (first + windowSlot) * vb, kq, vq, lane);
  if (lane == 0) {
    long long candPos;
    float candScore;
    int t = -1;
    st.pending = 0;
    if (l.w > 0) {
      // The token at p - w leaves the window and becomes a candidate.
      candPos = slotPos[windowSlot];
      candScore = slotScores[windowSlot];
    } else {
      candPos = p;
      candScore = z;
    }
    if (candPos >= 0 && candScore == -INFINITY)
      candPos = -1; // masked keys are never candidates
    if (candPos >= 0 && l.k > 0) {
      const PoolOffer offer =
          offerToPool(st.poolCount, l.k, st.weak, st.weakScore, candScore);
      t = offer.slot;
      if (offer.displaces)
        st.pending |= cuda::kPendingRescan;
      else if (offer.slot >= 0)
        a.poolCount[row] = st.poolCount;
    }
    if (candPos >= 0) {
      st.pending |= cuda::supportStart(st, a.support + row * l.supportStride(),
                                       candScore, l.k, l.scoreCapacity);
      st.pendingScore = candScore;
    }
    if (t >= 0) {
      slotScores[t] = candScore;
      slotPos[t] = candPos;
    }
    if (l.w > 0) {
      slotScores[windowSlot] = z;
      slotPos[windowSlot] = p;
    }
    st.lastPos = p;
    if (!(st.pending & (cuda::kPendingSolve | cuda::kPendingRoom)))
      a.tau[row] = static_cast<float>(st.tau);
    scratch.target = t;
  }
  __syncwarp();
  const int t = scratch.target;
  if (fast) {
    if (t >= 0 && l.w > 0)
      storeRows(leaving, a.keys + (first + t) * kb, a.values + (first + t) * vb,
                kq, vq, lane);
    else if (t >= 0)
      storeRows(incoming, a.keys + (first + t) * kb,
                a.values + (first + t) * vb, kq, vq, lane);
    if (l.w > 0)
      storeRows(incoming, a.keys + (first + windowSlot) * kb,
                a.values + (first + windowSlot) * vb, kq, vq, lane);
  } else {
    if (t >= 0) {
      // Copy the candidate's rows before its window slot is overwritten.
      const uint8_t *ck = l.w > 0 ? a.keys + (first + windowSlot) * kb : newKey;
      const uint8_t *cv =
          l.w > 0 ? a.values + (first + windowSlot) * vb : newValue;
      warpCopyRow(a.keys + (first + t) * kb, ck, kb, lane);
      warpCopyRow(a.values + (first + t) * vb, cv, vb, lane);
      __syncwarp();
    }
    if (l.w > 0) {
      warpCopyRow(a.keys + (first + windowSlot) * kb, newKey, kb, lane);
      warpCopyRow(a.values + (first + windowSlot) * vb, newValue, vb, lane);
    }
  }
  __syncwarp();
  return true;
}

/// Stores a warp's row state back (all lanes call it).
__device__ inline void warpStoreState(const LayerArgs &a, const HeadState &st,
                                      const WarpRow &r) {
  constexpr int kStateWords = sizeof(HeadState) / 8;
  const int lane = threadIdx.x % 32;
  if (lane < kStateWords)
    reinterpret_cast<long long *>(a.states + r.row)[lane] =
        reinterpret_cast<const long long *>(&st)[lane];
  if (lane == 0 && r.head == 0)
    a.pos[r.seq] = r.p;
}

/// The first kernel of a decode step: one warp per row (no block-wide
/// synchronization), the light part, then the row is queued for
/// finishPendingKernel if it has heavy work; the block lets that kernel
/// launch right away. A queued row's state goes next to its worklist entry,
/// so that each block of finishPendingKernel loads the worklist length, its
/// first row and that row's state in one round trip.
///
/// The step's parity (which worklist counter it fills) lives on the device,
/// flipped by finishPendingKernel, so that the launches of a step have the
/// same arguments at every step and a captured CUDA graph can replay them.
__global__ void __launch_bounds__(32, 1)
    decodeWarpKernel(LayerArgs a, SeqBatch batch, const uint8_t *keys,
                     const uint8_t *values, const float *scores, int total) {
  asm volatile("griddepcontrol.launch_dependents;");
  __shared__ HeadState st;
  __shared__ WarpScratch scratch;
  const int index = blockIdx.x;
  if (index >= total)
    return;
  // Loaded now, used at the end: its latency hides behind the append.
  const int parity = a.counters[cuda::kNextParity];
  if (index == 0 && threadIdx.x == 0)
    a.counters[cuda::kStepParity] = parity; // for finishPendingKernel
  WarpRow r;
  if (!warpAppendLight(a, batch, keys, values, scores, index, st, scratch, r))
    return;
  if (st.pending) { // uniform: st is shared and stable since the syncwarp
    constexpr int kStateWords = sizeof(HeadState) / 8;
    const int lane = threadIdx.x % 32;
    int slot = 0;
    if (lane == 0) {
      slot = atomicAdd(&a.counters[parity], 1);
      a.worklist[slot] = static_cast<int>(r.row);
    }
    slot = __shfl_sync(0xffffffffu, slot, 0);
    if (lane < kStateWords)
      reinterpret_cast<long long *>(a.pendingStates + slot)[lane] =
          reinterpret_cast<const long long *>(&st)[lane];
  }
  warpStoreState(a, st, r);
}

/// Minimum blocks per SM of finishPendingKernel for __launch_bounds__:
/// without a bound ptxas caps it at 64 registers and spills; 2 does not.
constexpr int kHeavyMinBlocks = 2;

/// Second kernel of a decode step: the rows whose append left heavy work
/// (pool rescan, tau walk, compaction), a few blocks per SM looping over
/// them. Worklist lengths alternate between two counters by step parity,
/// so that no block has to count finished blocks to reset them: block 0
/// resets the other parity's length and flips the parity for the next step
/// (that step's decode kernel starts after this kernel has finished).
__global__ void __launch_bounds__(kThreads, kHeavyMinBlocks)
    finishPendingKernel(LayerArgs a) {
  const CacheLayout &l = a.layout;
  __shared__ HeadState st;
  __shared__ int count;
  __shared__ int row;
  // Launched as a programmatic dependent launch: wait until the decode
  // kernel has finished and its writes are visible. A no-op when launched
  // normally.
  asm volatile("griddepcontrol.wait;" ::: "memory");
  // The worklist length, this block's first entry and its state in one
  // round trip (the entry is stale, and unused, when the list is shorter).
  // The other parity's length is reset for the next step: its last reader,
  // the previous step's finishPendingKernel, has finished before this
  // step's decode kernel started.
  // Both lengths are loaded with the parity, so that picking one costs no
  // second round trip.
  constexpr int kStateWords = sizeof(HeadState) / 8;
  if (threadIdx.x == 0) {
    const int parity = a.counters[cuda::kStepParity];
    const int lengths[2] = {a.counters[0], a.counters[1]};
    count = lengths[parity];
    row = a.worklist[blockIdx.x];
    if (blockIdx.x == 0) {
      a.counters[parity ^ 1] = 0;
      a.counters[cuda::kNextParity] = parity ^ 1;
    }
  }
  if (threadIdx.x < kStateWords)
    reinterpret_cast<long long *>(&st)[threadIdx.x] =
        reinterpret_cast<const long long *>(a.pendingStates +
                                            blockIdx.x)[threadIdx.x];
  __syncthreads();
  for (int item = blockIdx.x; item < count; item += gridDim.x) {
    if (item != static_cast<int>(blockIdx.x)) {
      if (threadIdx.x == 0)
        row = a.worklist[item];
      if (threadIdx.x < kStateWords)
        reinterpret_cast<long long *>(&st)[threadIdx.x] =
            reinterpret_cast<const long long *>(a.pendingStates +
                                                item)[threadIdx.x];
      __syncthreads();
    }
    const int r = row;
    cuda::finishPending<kThreads>(a, st, r / l.heads, r % l.heads);
    if (threadIdx.x == 0)
      a.states[r] = st;
    __syncthreads();
  }
}

/// Appends `count` tokens to (seq, blockIdx.x's head): token t of head h has
/// its rows at h * headStride + t * tokenStride of keys/values/scores ([H][T]
/// for a chunk, [T][H] packed). The whole chunk (every head) is checked
/// before anything changes. One block per head.
__device__ void appendChunkHead(const LayerArgs &a, int seq, long long count,
                                const uint8_t *keys, const uint8_t *values,
                                const float *scores, long long headStride,
                                long long tokenStride) {
  const CacheLayout &l = a.layout;
  const int head = blockIdx.x;
  const size_t row = l.row(seq, head);
  __shared__ HeadState st;
  if (threadIdx.x == 0)
    st = a.states[row];
  __syncthreads();
  int bad = 0;
  for (long long i = threadIdx.x; i < count * l.heads; i += blockDim.x) {
    const long long h = i / count, t = i % count;
    float z = scores[h * headStride + t * tokenStride];
    if (cuda::invalidScore(z)) {
      bad = 1;
      cuda::reportScoreError(a.error, SK_ERR_INVALID_SCORE, seq, a.layer,
                             static_cast<int>(h), st.lastPos + 1 + t, z);
    }
  }
  if (__syncthreads_or(bad))
    return;
  const long long start = st.lastPos + 1;
  const size_t kb = l.keyRowBytes(), vb = l.valueRowBytes();
  cuda::TokenSource source;
  source.keys = keys + head * headStride * kb;
  source.values = values + head * headStride * vb;
  source.firstPos = start;
  source.stride = tokenStride;
  const float *z = scores + head * headStride;
  for (long long t = 0; t < count; ++t) {
    // Rows are written to the window only for the tokens still there at the
    // end; earlier ones are read from the input if they reach the pool.
    cuda::appendTokenLight(a, st, seq, head, start + t, z[t * tokenStride],
                           source.keys + t * tokenStride * kb,
                           source.values + t * tokenStride * vb,
                           t >= count - l.w, source);
    if (st.pending)
      cuda::finishPending<kThreads>(a, st, seq, head);
  }
  if (threadIdx.x == 0) {
    a.states[row] = st;
    if (head == 0)
      a.pos[seq] = start + count - 1;
  }
}

using cuda::ChunkBatch;

/// The token walk for a batch of chunks: block (head, i) appends
/// batch.count[i] tokens to sequence batch.ids[i], one at a time (short
/// chunks; see kLongChunk).
__global__ void __launch_bounds__(kThreads)
    appendChunkTokensKernel(LayerArgs a, ChunkBatch batch, const uint8_t *keys,
                            const uint8_t *values, const float *scores) {
  const CacheLayout &l = a.layout;
  const int i = blockIdx.y;
  const long long count = batch.count[i];
  if (count == 0)
    return;
  const size_t rows = static_cast<size_t>(batch.inputRow(i, 0, 0));
  appendChunkHead(a, batch.ids[i], count, keys + rows * l.keyRowBytes(),
                  values + rows * l.valueRowBytes(), scores + rows,
                  batch.headStride, batch.tokenStride);
}

// --- Long chunks: four launches, each using the whole GPU where it can -----
//
// chunkValidateKernel checks every score first and flags sequences with an
// invalid one (left unchanged by the rest); chunkSelectKernel computes the
// pool (scores, positions) and tau of each (sequence, head) from the batch
// of candidates (cache_cuda_chunk.cuh), one block for the pool and one for
// tau; chunkPoolRowsKernel copies the K/V rows of the pool's new entries
// (from the input or from the window ring, which still holds the rows of
// the tokens that left it), and only then chunkWindowKernel writes the
// window ring.

/// Chunks of at least this many tokens take the parallel path: below it the
/// token walk does less work than the four launches and a sort per head.
constexpr long long kLongChunk = 64;

__global__ void __launch_bounds__(kThreads)
    chunkValidateKernel(LayerArgs a, ChunkBatch batch, const float *scores) {
  const CacheLayout &l = a.layout;
  const int i = blockIdx.y;
  const long long n = static_cast<long long>(batch.count[i]) * l.heads;
  // The chunk's first position, for the next kernels: the select kernel
  // moves the sequence's position on.
  if (blockIdx.x == 0 && threadIdx.x == 0)
    a.chunkStart[i] = a.pos[batch.ids[i]] + 1;
  for (long long e =
           static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
       e < n; e += static_cast<long long>(gridDim.x) * blockDim.x) {
    const long long t = e / l.heads;
    const int h = static_cast<int>(e % l.heads);
    const float z = scores[batch.inputRow(i, h, t)];
    if (cuda::invalidScore(z)) {
      atomicOr(&a.chunkBad[i], 1);
      const int seq = batch.ids[i];
      cuda::reportScoreError(a.error, SK_ERR_INVALID_SCORE, seq, a.layer, h,
                             a.pos[seq] + 1 + t, z);
    }
  }
}

/// Block (head, i, part): part 0 merges the chunk's candidates into the pool
/// of (batch.ids[i], head), part 1 updates its tau. Each writes its own
/// fields of the head's state.
__global__ void __launch_bounds__(cuda::kChunkThreads)
    chunkSelectKernel(LayerArgs a, ChunkBatch batch, const float *scores) {
  constexpr int NT = cuda::kChunkThreads;
  extern __shared__ __align__(16) unsigned char chunkShared[];
  const CacheLayout &l = a.layout;
  const int head = blockIdx.x, i = blockIdx.y;
  if (a.chunkBad[i] || batch.count[i] == 0)
    return;
  const int seq = batch.ids[i];
  const size_t row = l.row(seq, head);
  const size_t first = l.slot(seq, head, 0);
  __shared__ HeadState st;
  if (threadIdx.x == 0)
    st = a.states[row];
  __syncthreads();
  cuda::ChunkHead c;
  // The start comes from chunkValidateKernel: st.lastPos may already have
  // been moved on by this row's other block.
  c.init(l, batch, i, head, a.chunkStart[i], scores, a.slotScores + first);
  HeadState &out = a.states[row];
  if (blockIdx.z == 0) {
    if (l.k > 0) {
      cuda::ChunkShared shared;
      shared.carve(chunkShared);
      cuda::chunkPool<NT>(l, st, c, a.slotScores + first, a.slotPos + first,
                          shared);
    }
    if (threadIdx.x == 0) {
      out.poolCount = st.poolCount;
      out.weak = st.weak;
      out.weakScore = st.weakScore;
      out.lastPos = c.start + c.tokens - 1;
      out.pending = 0;
      a.poolCount[row] = st.poolCount;
      if (head == 0)
        a.pos[seq] = c.start + c.tokens - 1;
    }
  } else {
    cuda::chunkTau<NT>(l, st, c, a.support + row * l.supportStride());
    if (threadIdx.x == 0) {
      out.x = st.x;
      out.sum = st.sum;
      out.next = st.next;
      out.tau = st.tau;
      out.candidates = st.candidates;
      out.upper = st.upper;
      out.middle = st.middle;
      out.count = st.count;
      out.approx = st.approx;
      a.tau[row] = static_cast<float>(st.tau);
    }
  }
}

/// Copies one row with the lanes of a warp, 16 bytes at a time when aligned.
__device__ inline void warpCopyRowWide(uint8_t *dst, const uint8_t *src,
                                       size_t bytes, int lane) {
  uintptr_t align = reinterpret_cast<uintptr_t>(dst) |
                    reinterpret_cast<uintptr_t>(src) | bytes;
  if ((align & 15) == 0) {
#pragma unroll 1
    for (size_t j = lane; j < bytes / 16; j += 32)
      reinterpret_cast<uint4 *>(dst)[j] =
          reinterpret_cast<const uint4 *>(src)[j];
  } else {
    warpCopyRow(dst, src, bytes, lane);
  }
}

/// Rows (warps) per block of the row-copy kernels.
constexpr int kRowsPerBlock = kThreads / 32;

/// Block (x, head, i): the pool slots x * kRowsPerBlock.. of (ids[i], head),
/// a warp each; slots whose entry came from this chunk get its K/V rows.
__global__ void __launch_bounds__(kThreads)
    chunkPoolRowsKernel(LayerArgs a, ChunkBatch batch, const uint8_t *keys,
                        const uint8_t *values) {
  const CacheLayout &l = a.layout;
  const int i = blockIdx.z, head = blockIdx.y;
  const int slot = blockIdx.x * kRowsPerBlock + threadIdx.x / 32;
  if (a.chunkBad[i] || batch.count[i] == 0 || slot >= l.k)
    return;
  const size_t first = l.slot(batch.ids[i], head, 0);
  const long long q = a.slotPos[first + slot];
  const long long start = a.chunkStart[i];
  if (q < 0 || q < start - l.w)
    return; // empty, or an entry from before the chunk: its rows are there
  const size_t kb = l.keyRowBytes(), vb = l.valueRowBytes();
  const uint8_t *k, *v;
  if (q < start) { // left the window during the chunk: still in the ring
    const size_t from = first + l.k + q % l.w;
    k = a.keys + from * kb;
    v = a.values + from * vb;
  } else {
    const size_t from = batch.inputRow(i, head, q - start);
    k = keys + from * kb;
    v = values + from * vb;
  }
  const int lane = threadIdx.x % 32;
  warpCopyRowWide(a.keys + (first + slot) * kb, k, kb, lane);
  warpCopyRowWide(a.values + (first + slot) * vb, v, vb, lane);
}

/// Block (x, head, i): the chunk's last min(T, w) tokens go to the window
/// ring of (ids[i], head), a warp per token (after chunkPoolRowsKernel has
/// read the rows they overwrite).
__global__ void __launch_bounds__(kThreads)
    chunkWindowKernel(LayerArgs a, ChunkBatch batch, const uint8_t *keys,
                      const uint8_t *values, const float *scores) {
  const CacheLayout &l = a.layout;
  const int i = blockIdx.z, head = blockIdx.y;
  const long long count = batch.count[i];
  const long long t = (count > l.w ? count - l.w : 0) +
                      static_cast<long long>(blockIdx.x) * kRowsPerBlock +
                      threadIdx.x / 32;
  if (a.chunkBad[i] || t >= count)
    return;
  const size_t first = l.slot(batch.ids[i], head, 0);
  const long long p = a.chunkStart[i] + t;
  const size_t slot = first + l.k + p % l.w;
  const size_t from = batch.inputRow(i, head, t);
  const size_t kb = l.keyRowBytes(), vb = l.valueRowBytes();
  const int lane = threadIdx.x % 32;
  warpCopyRowWide(a.keys + slot * kb, keys + from * kb, kb, lane);
  warpCopyRowWide(a.values + slot * vb, values + from * vb, vb, lane);
  if (lane == 0) {
    a.slotScores[slot] = scores[from];
    a.slotPos[slot] = p;
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
  sk_status appendVarlen(int32_t layer, int32_t numSeqs, const int32_t *seqIds,
                         const int32_t *cuSeqlens, const void *keys,
                         const void *values, const float *scores,
                         void *stream) override;
  void view(int32_t layer, sk_cache_view *out) const override;
  sk_status isApproximate(int32_t seq, int32_t *approx) override;
  sk_status checkDeviceError(void *stream) override;

private:
  template <typename T> sk_status alloc(T **ptr, size_t count);
  sk_status launched(const char *caller);
  sk_status resetSeqs(int32_t first, int32_t count);
  /// Launches the appends of a batch of chunks: the token walk for short
  /// ones, the parallel path for long ones (when the pool fits its sort).
  void launchChunks(const LayerArgs &a, const ChunkBatch &batch, int n,
                    bool parallel, const void *keys, const void *values,
                    const float *scores, cudaStream_t stream);
  bool longChunk(long long tokens) const {
    return parallelChunks_ && tokens >= kLongChunk;
  }

  std::vector<LayerArgs> layers_;
  std::vector<void *> allocations_;
  int finishBlocks_ = 1;
  int sms_ = 1;
  bool parallelChunks_ = false; // the pool fits the sort, and its memory
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
  sms_ = std::max(1, sms);
  // Long chunks take the parallel path when the pool plus a batch of
  // candidates fits the selection kernel's sort in shared memory.
  parallelChunks_ =
      config_.k <= cuda::kChunkSortCapacity - cuda::kChunkMinBatch &&
      cudaFuncSetAttribute(
          chunkSelectKernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
          static_cast<int>(cuda::kChunkSharedBytes)) == cudaSuccess;
  cudaGetLastError(); // a GPU with less shared memory: the token walk only
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
        (status = alloc(&a.pendingStates, l.rows())) ||
        (status = alloc(&a.counters, cuda::kCounters)) ||
        (status = alloc(&a.chunkBad, cuda::kMaxChunkBatch)) ||
        (status = alloc(&a.chunkStart, cuda::kMaxChunkBatch)))
      return status;
    cudaMemset(a.counters, 0, cuda::kCounters * sizeof(int));
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
    const float *z = scores + done * heads;
    const int rows = n * layout_.heads;
    decodeWarpKernel<<<rows, 32, 0, s>>>(a, batch, k, v, z, rows);
    // At most one pending row per (sequence, head) of this launch.
    cudaLaunchConfig_t launch = {};
    launch.gridDim = dim3(std::min(finishBlocks_, rows));
    launch.blockDim = dim3(kThreads);
    launch.stream = s;
    cudaLaunchAttribute attribute[1];
    attribute[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attribute[0].val.programmaticStreamSerializationAllowed = 1;
    launch.attrs = attribute;
    launch.numAttrs = 1;
    if (cudaLaunchKernelEx(&launch, finishPendingKernel, a) != cudaSuccess) {
      // No programmatic dependent launch here: a plain one is as correct.
      cudaGetLastError();
      launch.numAttrs = 0;
      cudaLaunchKernelEx(&launch, finishPendingKernel, a);
    }
  }
  return launched("sk_cache_append_tokens");
}

void CudaCache::launchChunks(const LayerArgs &a, const ChunkBatch &batch, int n,
                             bool parallel, const void *keys,
                             const void *values, const float *scores,
                             cudaStream_t stream) {
  auto *k = static_cast<const uint8_t *>(keys);
  auto *v = static_cast<const uint8_t *>(values);
  if (!parallel) {
    appendChunkTokensKernel<<<dim3(layout_.heads, n), kThreads, 0, stream>>>(
        a, batch, k, v, scores);
    return;
  }
  const CacheLayout &l = layout_;
  long long longest = 0;
  for (int i = 0; i < n; ++i)
    longest = std::max(longest, batch.count[i]);
  cudaMemsetAsync(a.chunkBad, 0, n * sizeof(int), stream);
  // A few blocks per SM over all scores of the batch.
  const long long scoreBlocks =
      (longest * l.heads + kThreads * 8 - 1) / (kThreads * 8);
  const int validateBlocks = static_cast<int>(
      std::max(1LL, std::min<long long>(scoreBlocks, 4LL * sms_ / n + 1)));
  chunkValidateKernel<<<dim3(validateBlocks, n), kThreads, 0, stream>>>(
      a, batch, scores);
  chunkSelectKernel<<<dim3(l.heads, n, 2), cuda::kChunkThreads,
                      cuda::kChunkSharedBytes, stream>>>(a, batch, scores);
  if (l.k > 0)
    chunkPoolRowsKernel<<<dim3((l.k + kRowsPerBlock - 1) / kRowsPerBlock,
                               l.heads, n),
                          kThreads, 0, stream>>>(a, batch, k, v);
  if (l.w > 0) {
    const long long rows = std::min<long long>(longest, l.w);
    chunkWindowKernel<<<dim3(static_cast<unsigned>((rows + kRowsPerBlock - 1) /
                                                   kRowsPerBlock),
                             l.heads, n),
                        kThreads, 0, stream>>>(a, batch, k, v, scores);
  }
}

sk_status CudaCache::appendChunk(int32_t layer, int32_t seq, int64_t numTokens,
                                 const void *keys, const void *values,
                                 const float *scores, void *stream) {
  DeviceGuard guard(config_.device);
  ChunkBatch batch;
  batch.ids[0] = seq;
  batch.first[0] = 0;
  batch.count[0] = numTokens;
  batch.headStride = numTokens; // [H][T]
  batch.tokenStride = 1;
  launchChunks(layers_[layer], batch, 1, longChunk(numTokens), keys, values,
               scores, static_cast<cudaStream_t>(stream));
  return launched("sk_cache_append_chunk");
}

sk_status CudaCache::appendVarlen(int32_t layer, int32_t numSeqs,
                                  const int32_t *seqIds,
                                  const int32_t *cuSeqlens, const void *keys,
                                  const void *values, const float *scores,
                                  void *stream) {
  DeviceGuard guard(config_.device);
  // Short and long prompts go to separate launches of up to kMaxChunkBatch
  // sequences each; rows stay absolute ([total][H]), so every launch reads
  // the same arrays.
  for (bool parallel : {false, true}) {
    ChunkBatch batch;
    batch.headStride = 1;
    batch.tokenStride = layout_.heads;
    int n = 0;
    for (int32_t i = 0; i < numSeqs; ++i) {
      const long long count = cuSeqlens[i + 1] - cuSeqlens[i];
      if (count == 0 || longChunk(count) != parallel)
        continue;
      batch.ids[n] = seqIds[i];
      batch.first[n] = cuSeqlens[i];
      batch.count[n] = count;
      if (++n == cuda::kMaxChunkBatch) {
        launchChunks(layers_[layer], batch, n, parallel, keys, values, scores,
                     static_cast<cudaStream_t>(stream));
        n = 0;
      }
    }
    if (n > 0)
      launchChunks(layers_[layer], batch, n, parallel, keys, values, scores,
                   static_cast<cudaStream_t>(stream));
  }
  return launched("sk_cache_append_varlen");
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
