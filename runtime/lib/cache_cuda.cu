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
  __device__ int id(int i) const { return ids[i]; }
};

/// A batch of consecutive sequence ids (SK_SEQ_RANGE): a 4-byte kernel
/// argument instead of 2 KiB.
struct SeqRange {
  int first;
  __device__ int id(int i) const { return first + i; }
};

/// SK_SEQ_RANGE=1: the mode-2 decode kernel takes a SeqRange when the ids
/// of a launch are consecutive (D1: 19.2 us against 19.5 us, not combined
/// with SK_SCAN_UNROLL yet).
#ifndef SK_SEQ_RANGE
#define SK_SEQ_RANGE 0
#endif

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

/// Decode-step strategy (a compile-time knob so that variants can be
/// measured; D1 medians on the H200, bench/results/
/// runtime_decode_append_D1.json; the figures of modes 0, 1 and 3 are
/// from before the heavy-path changes of SK_FLOAT_SCAN etc.):
///  0: two launches, appendTokensKernel (a block of 32 threads per row,
///     thread 0 deciding) queues the rows with heavy work, and
///     finishPendingKernel (blocks of kThreads) does that work (27.2 us
///     with SK_BLOCK_SCAN_VEC=4);
///  1: one launch, decodeWarpKernel<true>: one warp per row doing the light
///     part and, for the rows that need it, the heavy part itself (80.7 us:
///     one warp is far too slow for the heavy scans);
///  2 (default, 18.9 us; 21.8 us before the heavy-path changes): two
///     launches, decodeWarpKernel<false> (the warp light part, queueing
///     the heavy rows) and finishPendingKernel launched as a
///     programmatic dependent launch, so that it is scheduled
///     while the first one runs and only waits for its results
///     (griddepcontrol; 25.5 us as two plain launches with
///     SK_BLOCK_SCAN_VEC=4 against 24.0 us with PDL);
///  3: one launch, decodeBlockKernel: SK_DECODE_BLOCK / 32 rows per block,
///     a warp each for the light part, then the whole block for the heavy
///     work of each of its rows in turn (29.2 us; a block with several
///     heavy rows does them one after another).
#ifndef SK_DECODE_MODE
#define SK_DECODE_MODE 2
#endif
#ifndef SK_DECODE_BLOCK
#define SK_DECODE_BLOCK 256
#endif
/// Rows (warps) per block of the mode-2 decode kernel (D1: 2, 4 and 8
/// measured alike or slower than 1).
#ifndef SK_LIGHT_ROWS
#define SK_LIGHT_ROWS 1
#endif
/// Minimum blocks per SM of the mode-2 decode kernel for __launch_bounds__
/// (fewer registers leave room for finishPendingKernel's blocks; D1 with
/// 24: 19.0 us against 19.5 us for 1, not combined with SK_SCAN_UNROLL yet;
/// 32 spills: 21.8 us).
#ifndef SK_LIGHT_MIN_BLOCKS
#define SK_LIGHT_MIN_BLOCKS 1
#endif
/// Mode 2 without the programmatic dependent launch (SK_DECODE_PDL=0): two
/// plain launches, to measure what the overlap buys.
#ifndef SK_DECODE_PDL
#define SK_DECODE_PDL 1
#endif

/// Threads of a decode-step block in mode 0: enough to copy a K/V row.
constexpr int kLightThreads = 32;

__global__ void __launch_bounds__(kLightThreads)
    appendTokensKernel(LayerArgs a, SeqBatch batch, const uint8_t *keys,
                       const uint8_t *values, const float *scores, int parity) {
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
    if (st.pending) {
      if (SK_HEAVY_PREFETCH) {
        const int slot = atomicAdd(&a.counters[parity], 1);
        a.worklist[slot] = static_cast<int>(row);
        a.pendingStates[slot] = st;
      } else {
        a.worklist[atomicAdd(&a.counters[0], 1)] = static_cast<int>(row);
      }
    }
  }
}

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
  int target;      // pool slot the candidate takes, or -1
  int evict;       // the candidate evicts the weakest (SK_WEAK_LIST)
  float candScore; // the candidate's score
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
/// `st` and `scratch` are this warp's shared memory. With SK_WEAK_LIST it
/// also loads the row's weak list in the first round and, after an
/// eviction, pops its entry 0 and inserts the newcomer (see HeadState).
template <typename Batch>
__device__ inline bool
warpAppendLight(const LayerArgs &a, const Batch &batch, const uint8_t *keys,
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
  if (lane < kStateWords)
    reinterpret_cast<long long *>(&st)[lane] =
        reinterpret_cast<const long long *>(a.states + row)[lane];
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
#if SK_WEAK_LIST
  const uint2 weakEntry = a.weakList[row * cuda::kWeakList + lane];
#endif
  __syncwarp();
  const long long p = st.lastPos + 1;
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
    int t = -1, evict = 0;
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
      if (st.poolCount < l.k) {
        // The newcomer has the largest position: on a tie it is weaker.
        if (st.poolCount == 0 || candScore <= st.weakScore) {
          st.weak = st.poolCount;
          st.weakScore = candScore;
        }
        t = st.poolCount++;
        a.poolCount[row] = st.poolCount;
      } else if (candScore > st.weakScore) {
        t = st.weak;
        if (SK_WEAK_LIST)
          evict = 1; // the weak list names the next weakest (below)
        else
          st.pending |= cuda::kPendingRescan;
      }
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
    scratch.evict = evict;
    scratch.candScore = candScore;
  }
  __syncwarp();
  const int t = scratch.target;
#if SK_WEAK_LIST
  if (scratch.evict) { // uniform: shared, read after the syncwarp
    // Entry 0 (slot t) leaves; the newcomer (slot t, the largest position:
    // weaker than any entry of equal score) enters before the first entry
    // it is weaker than, if the list has one; otherwise the list shrinks.
    const int listed = st.weakListed;
    const float newScore = scratch.candScore;
    uint2 shifted;
    shifted.x = __shfl_down_sync(0xffffffffu, weakEntry.x, 1);
    shifted.y = __shfl_down_sync(0xffffffffu, weakEntry.y, 1);
    const int rest = listed - 1; // entries left after the pop
    const unsigned weaker = __ballot_sync(
        0xffffffffu, lane < rest && __uint_as_float(shifted.x) < newScore);
    const int before = __popc(weaker);
    int newListed;
    uint2 entry;
    if (before < rest) {
      newListed = listed;
      entry = lane < before    ? shifted
              : lane == before ? make_uint2(__float_as_uint(newScore),
                                            static_cast<unsigned>(t))
                               : weakEntry;
    } else {
      newListed = rest > 0 ? rest : 0;
      entry = shifted;
    }
    if (lane < newListed)
      a.weakList[row * cuda::kWeakList + lane] = entry;
    const unsigned headScore = __shfl_sync(0xffffffffu, entry.x, 0);
    const unsigned headSlot = __shfl_sync(0xffffffffu, entry.y, 0);
    if (lane == 0) {
      st.weakListed = newListed;
      if (newListed > 0) {
        st.weak = static_cast<int>(headSlot);
        st.weakScore = __uint_as_float(headScore);
      } else {
        st.pending |= cuda::kPendingRescan; // refill the list
      }
    }
    __syncwarp();
  }
#endif
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

/// Modes 1 and 2: one warp per row. kInlineHeavy (mode 1): the warp does
/// its row's heavy work itself (16 blocks per SM so that the 2048 rows of
/// D1 all fit at once); otherwise (mode 2) the row is queued for
/// finishPendingKernel and the block lets it launch right away.
/// kRows rows per block (SK_LIGHT_ROWS in mode 2), a warp each, with no
/// block-wide synchronization: fewer, larger blocks to dispatch.
template <bool kInlineHeavy, int kRows, typename Batch = SeqBatch>
__global__ void __launch_bounds__(32 * kRows,
                                  kInlineHeavy ? 16 : SK_LIGHT_MIN_BLOCKS)
    decodeWarpKernel(LayerArgs a, Batch batch, const uint8_t *keys,
                     const uint8_t *values, const float *scores, int parity,
                     int total) {
  static_assert(!kInlineHeavy || kRows == 1, "mode 1 runs a warp per block");
  if (!kInlineHeavy)
    asm volatile("griddepcontrol.launch_dependents;");
  __shared__ HeadState states[kRows];
  __shared__ WarpScratch scratches[kRows];
  const int warp = threadIdx.x / 32;
  const int index = blockIdx.x * kRows + warp;
  if (index >= total)
    return; // the whole warp
  HeadState &st = states[warp];
  WarpRow r;
  if (!warpAppendLight(a, batch, keys, values, scores, index, st,
                       scratches[warp], r))
    return;
  if constexpr (kInlineHeavy) {
    if (st.pending) // uniform: st is shared and stable since the syncwarp
      cuda::finishPending<32>(a, st, r.seq, r.head);
    __syncwarp();
  } else if (SK_HEAVY_PREFETCH) {
    if (st.pending) { // uniform
      // The row's state goes next to its worklist entry (see
      // finishPendingKernel).
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
  } else {
    if (threadIdx.x % 32 == 0 && st.pending)
      a.worklist[atomicAdd(&a.counters[0], 1)] = static_cast<int>(r.row);
  }
  warpStoreState(a, st, r);
}

/// Mode 3: kRows = NT / 32 rows per block, a warp each for the light part,
/// then the whole block for the heavy work of each of its rows in turn.
template <int NT>
__global__ void __launch_bounds__(NT, 512 / NT)
    decodeBlockKernel(LayerArgs a, SeqBatch batch, const uint8_t *keys,
                      const uint8_t *values, const float *scores, int total) {
  constexpr int kRows = NT / 32;
  __shared__ HeadState st[kRows];
  __shared__ WarpScratch scratch[kRows];
  __shared__ int heavy[kRows]; // pending work of a valid row, else 0
  __shared__ WarpRow rows[kRows];
  const int warp = threadIdx.x / 32;
  const int index = blockIdx.x * kRows + warp;
  if (index < total) {
    WarpRow r;
    bool ok = warpAppendLight(a, batch, keys, values, scores, index, st[warp],
                              scratch[warp], r);
    if (threadIdx.x % 32 == 0) {
      heavy[warp] = ok ? st[warp].pending | 0x100 : 0; // 0x100: store state
      rows[warp] = r;
    }
  } else if (threadIdx.x % 32 == 0) {
    heavy[warp] = 0;
  }
  __syncthreads();
  for (int w = 0; w < kRows; ++w)
    if (heavy[w] & 0xff) // uniform: shared, read after a barrier
      cuda::finishPending<NT>(a, st[w], rows[w].seq, rows[w].head);
  if (heavy[warp])
    warpStoreState(a, st[warp], rows[warp]);
}

/// Second kernel of a decode step: the rows whose append left heavy work
/// (pool rescan, tau walk, compaction), a few blocks per SM looping over
/// them. With SK_HEAVY_PREFETCH, block 0 resets the other parity's
/// worklist length for the next step; otherwise the last block to finish
/// resets the worklist.
/// SK_HEAVY_MIN_BLOCKS: minimum blocks per SM of finishPendingKernel for
/// __launch_bounds__ (0: none; then ptxas caps it at 64 registers and
/// spills; 2: no spills. D1: 19.5 us against 19.9 us with 0).
#ifndef SK_HEAVY_MIN_BLOCKS
#define SK_HEAVY_MIN_BLOCKS 2
#endif
__global__ void __launch_bounds__(kThreads, SK_HEAVY_MIN_BLOCKS)
    finishPendingKernel(LayerArgs a, int parity) {
  const CacheLayout &l = a.layout;
  __shared__ HeadState st;
  __shared__ int count;
  __shared__ int last;
  // Launched as a programmatic dependent launch (mode 2): wait until the
  // decode kernel has finished and its writes are visible. A no-op when
  // launched normally.
  asm volatile("griddepcontrol.wait;" ::: "memory");
  if (SK_HEAVY_PREFETCH) {
    // The worklist length, this block's first entry and its state in one
    // round trip (the entry is stale, and unused, when the list is
    // shorter). The other parity's length is reset for the next step: its
    // last reader, the previous step's finishPendingKernel, has finished
    // before this step's decode kernel started.
    constexpr int kStateWords = sizeof(HeadState) / 8;
    __shared__ int row;
    if (threadIdx.x == 0) {
      count = a.counters[parity];
      row = a.worklist[blockIdx.x];
      if (blockIdx.x == 0)
        a.counters[parity ^ 1] = 0;
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
    return;
  }
  if (threadIdx.x == 0)
    count = a.counters[0];
  __syncthreads();
  for (int item = blockIdx.x; item < count; item += gridDim.x) {
    const int row = a.worklist[item];
    if (threadIdx.x == 0)
      st = a.states[row];
    __syncthreads();
    cuda::finishPending<kThreads>(a, st, row / l.heads, row % l.heads);
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
      cuda::finishPending<kThreads>(a, st, seq, head);
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
  std::vector<int> parity_; // per layer: worklist counter of the next step
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
  parity_.assign(config_.num_layers, 0);
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
        (status = alloc(&a.weakList, l.rows() * cuda::kWeakList)) ||
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
    bool consecutive = true;
    for (int32_t i = 0; i < n; ++i) {
      batch.ids[i] = seqIds[done + i];
      consecutive = consecutive && batch.ids[i] == batch.ids[0] + i;
    }
    const uint8_t *k = static_cast<const uint8_t *>(keys) + done * heads * kb;
    const uint8_t *v = static_cast<const uint8_t *>(values) + done * heads * vb;
    cudaStream_t s = static_cast<cudaStream_t>(stream);
    const float *z = scores + done * heads;
    const int rows = n * layout_.heads;
    if (SK_DECODE_MODE == 1) {
      decodeWarpKernel<true, 1><<<rows, 32, 0, s>>>(a, batch, k, v, z, 0, rows);
    } else if (SK_DECODE_MODE == 3) {
      constexpr int kRows = SK_DECODE_BLOCK / 32;
      decodeBlockKernel<SK_DECODE_BLOCK>
          <<<(rows + kRows - 1) / kRows, SK_DECODE_BLOCK, 0, s>>>(a, batch, k,
                                                                  v, z, rows);
    } else {
      const int parity = parity_[layer];
      parity_[layer] = SK_HEAVY_PREFETCH ? parity ^ 1 : 0;
      const int lightBlocks = (rows + SK_LIGHT_ROWS - 1) / SK_LIGHT_ROWS;
      if (SK_DECODE_MODE == 2 && SK_SEQ_RANGE && consecutive)
        decodeWarpKernel<false, SK_LIGHT_ROWS, SeqRange>
            <<<lightBlocks, 32 * SK_LIGHT_ROWS, 0, s>>>(
                a, SeqRange{batch.ids[0]}, k, v, z, parity, rows);
      else if (SK_DECODE_MODE == 2)
        decodeWarpKernel<false, SK_LIGHT_ROWS>
            <<<lightBlocks, 32 * SK_LIGHT_ROWS, 0, s>>>(a, batch, k, v, z,
                                                        parity, rows);
      else
        appendTokensKernel<<<rows, kLightThreads, 0, s>>>(a, batch, k, v, z,
                                                          parity);
      // At most one pending row per (sequence, head) of this launch.
      cudaLaunchConfig_t launch = {};
      launch.gridDim = dim3(std::min(finishBlocks_, rows));
      launch.blockDim = dim3(kThreads);
      launch.stream = s;
      cudaLaunchAttribute attribute[1];
      attribute[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
      attribute[0].val.programmaticStreamSerializationAllowed = 1;
      launch.attrs = attribute;
      launch.numAttrs = SK_DECODE_MODE == 2 && SK_DECODE_PDL ? 1 : 0;
      if (cudaLaunchKernelEx(&launch, finishPendingKernel, a, parity) !=
              cudaSuccess &&
          launch.numAttrs > 0) {
        // No programmatic dependent launch here: a plain one is as correct.
        cudaGetLastError();
        launch.numAttrs = 0;
        cudaLaunchKernelEx(&launch, finishPendingKernel, a, parity);
      }
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
