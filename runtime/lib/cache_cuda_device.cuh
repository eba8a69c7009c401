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

// Threads of a block doing the heavy work (passes over score arrays). A
// compile-time knob so that the decode variants can be measured.
#ifndef SK_CACHE_THREADS
#define SK_CACHE_THREADS 128
#endif
constexpr int kThreads = SK_CACHE_THREADS;
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
  int poolCount;        // entries in the pool (mirrors the view's array)
  float weakScore;      // score of slot `weak`: saves a dependent load
  int pending;          // heavy work left by appendTokenLight (kPending*)
  float pendingScore;   // the candidate score the pending work is about
  int pad;
};

/// Work that needs a whole block and a pass over an array; the decode
/// kernel defers it to a second kernel so that the common path stays light.
enum : int {
  kPendingRescan = 1, // the pool lost its weakest entry: find the next one
  kPendingSolve = 2,  // tau crosses a breakpoint: walk with a band pass
  kPendingRoom = 4,   // score array full or mostly dead: compact first
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
  int *worklist; // rows with pending heavy work, filled by the decode kernel
  int *counters; // [0]: worklist length, [1]: finished heavy blocks
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
struct MaxOp {
  __device__ long long operator()(long long a, long long b) const {
    return a > b ? a : b;
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

/// Calls f(value, index) for values[0, count), each thread keeping 16
/// loads in flight (float4 when aligned): the scans of the cache are bound
/// by memory latency, not bandwidth. The visiting order is unspecified.
template <typename F>
__device__ inline void scanValues(const float *values, int count, F f) {
  constexpr int kVec = 4;
  if ((reinterpret_cast<uintptr_t>(values) & 15) == 0) {
    const float4 *quads = reinterpret_cast<const float4 *>(values);
    const int n4 = count / 4;
    for (int base = 0; base < n4; base += kThreads * kVec) {
      float4 r[kVec];
#pragma unroll
      for (int j = 0; j < kVec; ++j) {
        int i = base + j * kThreads + threadIdx.x;
        if (i < n4)
          r[j] = quads[i];
      }
#pragma unroll
      for (int j = 0; j < kVec; ++j) {
        int i = base + j * kThreads + threadIdx.x;
        if (i < n4) {
          f(r[j].x, 4 * i);
          f(r[j].y, 4 * i + 1);
          f(r[j].z, 4 * i + 2);
          f(r[j].w, 4 * i + 3);
        }
      }
    }
    for (int i = 4 * n4 + threadIdx.x; i < count; i += kThreads)
      f(values[i], i);
    return;
  }
  constexpr int kScalar = 16;
  for (int base = 0; base < count; base += kThreads * kScalar) {
    float r[kScalar];
#pragma unroll
    for (int j = 0; j < kScalar; ++j) {
      int i = base + j * kThreads + threadIdx.x;
      r[j] = i < count ? values[i] : 0.0f;
    }
#pragma unroll
    for (int j = 0; j < kScalar; ++j) {
      int i = base + j * kThreads + threadIdx.x;
      if (i < count)
        f(r[j], i);
    }
  }
}

/// Index of the weakest of `count` pool entries (valid in thread 0): the
/// minimum score first, then, among entries holding it, the largest
/// position (a second, cache-hot scan, since ties are rare).
__device__ inline int weakestPoolSlot(const float *scores,
                                      const long long *positions, int count) {
  __shared__ double lowest;
  double m = INFINITY;
  scanValues(scores, count,
             [&](float v, int) { m = fmin(m, static_cast<double>(v)); });
  m = blockReduce(m, MinOp(), static_cast<double>(INFINITY));
  if (threadIdx.x == 0)
    lowest = m;
  __syncthreads();
  const float target = static_cast<float>(lowest);
  long long bestPos = -1;
  int bestIndex = -1;
  scanValues(scores, count, [&](float v, int i) {
    if (v == target && positions[i] > bestPos) {
      bestPos = positions[i];
      bestIndex = i;
    }
  });
  // Positions in a pool are distinct, so the largest one names one slot.
  long long top = blockReduce(bestPos, MaxOp(), -1LL);
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

/// Exclusive prefix sum of one int per thread over the block, and the
/// block total (both valid in every thread).
__device__ inline int blockExclusiveScan(int value, int *total) {
  __shared__ int warpTotals[kWarps];
  int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  int inclusive = value;
  for (int offset = 1; offset < 32; offset *= 2) {
    int other = __shfl_up_sync(0xffffffffu, inclusive, offset);
    if (lane >= offset)
      inclusive += other;
  }
  __syncthreads(); // warpTotals may still be read by a previous scan
  if (lane == 31)
    warpTotals[warp] = inclusive;
  __syncthreads();
  int before = 0, sum = 0;
  for (int w = 0; w < kWarps; ++w) {
    if (w < warp)
      before += warpTotals[w];
    sum += warpTotals[w];
  }
  *total = sum;
  return before + inclusive - value;
}

/// Compacts the kept scores in place, dropping those <= st.x (p = 0 for
/// good), and recomputes the partition right of x and the next breakpoint.
/// `values` is 16-byte aligned with room up to a multiple of 4 (see
/// CacheLayout::supportStride), so it is read as float4.
__device__ inline void supportPass(HeadState &st, float *values) {
  constexpr int kVec = 4;
  const double x = st.x;
  const int count = st.count;
  const int quads = (count + 3) / 4;
  const float4 *in = reinterpret_cast<const float4 *>(values);
  int upper = 0, middle = 0, written = 0;
  double sum = 0.0, next = INFINITY;
  for (int base = 0; base < quads; base += kThreads * kVec) {
    float r[4 * kVec];
    int keep = 0;
#pragma unroll
    for (int j = 0; j < kVec; ++j) {
      int q = base + j * kThreads + threadIdx.x;
      float4 v = q < quads ? in[q] : make_float4(0, 0, 0, 0);
      r[4 * j] = v.x;
      r[4 * j + 1] = v.y;
      r[4 * j + 2] = v.z;
      r[4 * j + 3] = v.w;
#pragma unroll
      for (int c = 0; c < 4; ++c) {
        if (4 * q + c >= count)
          r[4 * j + c] = -INFINITY; // past the end: treat as dropped
        keep += static_cast<double>(r[4 * j + c]) > x;
      }
    }
    // The tile is read into registers before the scan's barrier, and every
    // write lands before the next tile: in-place compaction is safe. The
    // order of the scores does not matter.
    int tileTotal = 0;
    int offset = written + blockExclusiveScan(keep, &tileTotal);
#pragma unroll
    for (int j = 0; j < 4 * kVec; ++j) {
      double z = r[j];
      if (z <= x)
        continue;
      values[offset++] = r[j];
      if (z > x + 1.0) {
        ++upper;
        next = fmin(next, z - 1.0);
      } else {
        ++middle;
        sum += z;
        next = fmin(next, z);
      }
    }
    written += tileTotal;
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
    st.count = written;
  }
  __syncthreads();
}

constexpr int kBandCapacity = 1024;

/// Minimum (or sum) over the 32 lanes of a warp, returned to every lane.
__device__ inline double warpMinAll(double v) {
  for (int offset = 16; offset > 0; offset /= 2)
    v = fmin(v, __shfl_xor_sync(0xffffffffu, v, offset));
  return v;
}
__device__ inline int warpSumAll(int v) {
  for (int offset = 16; offset > 0; offset /= 2)
    v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

/// Crosses the breakpoint st.next (x := next) and keeps walking, exactly as
/// the CPU model does, until tau is found or the walk reaches a breakpoint
/// outside the band. One pass over the kept scores classifies them for the
/// whole interval (x, x + delta]: the partition sums include every score,
/// and only the few "band" scores whose class can change there (middle
/// scores <= x + delta, upper scores <= x + 1 + delta) are gathered in
/// shared memory, where warp 0 walks their breakpoints in order.
/// Returns kBandSolved, kBandStopped (the walk stopped at st.next, a
/// breakpoint outside the band) or kBandOverflow (state unchanged: the band
/// did not fit in shared memory).
enum BandResult { kBandOverflow = -1, kBandStopped = 0, kBandSolved = 1 };

__device__ inline int crossWithBand(HeadState &st, const float *values,
                                    int budget, double delta) {
  __shared__ float band[kBandCapacity];
  __shared__ int bandCount;
  __shared__ int solved;
  __shared__ int totals[2];
  __shared__ double totalSum, totalFarNext;
  const double x = st.next;
  if (threadIdx.x == 0)
    bandCount = 0;
  __syncthreads();
  int upper = 0, middle = 0;
  double sum = 0.0, farNext = INFINITY;
  scanValues(values, st.count, [&](float value, int) {
    double z = value;
    if (z <= x)
      return; // p = 0 for good (dead until the next compaction)
    bool inBand;
    if (z > x + 1.0) {
      ++upper;
      inBand = z <= x + 1.0 + delta;
      if (!inBand)
        farNext = fmin(farNext, z - 1.0);
    } else {
      ++middle;
      sum += z;
      inBand = z <= x + delta;
      if (!inBand)
        farNext = fmin(farNext, z);
    }
    if (inBand) {
      int slot = atomicAdd(&bandCount, 1);
      if (slot < kBandCapacity)
        band[slot] = value;
    }
  });
  upper = blockReduce(upper, SumOp(), 0);
  middle = blockReduce(middle, SumOp(), 0);
  sum = blockReduce(sum, SumOp(), 0.0);
  farNext = blockReduce(farNext, MinOp(), static_cast<double>(INFINITY));
  if (threadIdx.x == 0) {
    totals[0] = upper;
    totals[1] = middle;
    totalSum = sum;
    totalFarNext = farNext;
  }
  __syncthreads();
  const int n = bandCount;
  if (n > kBandCapacity) {
    __syncthreads(); // everyone has read bandCount before it is reused
    return kBandOverflow;
  }
  if (threadIdx.x < 32) {
    const int lane = threadIdx.x;
    int u = totals[0], m = totals[1];
    double s = totalSum, at = x;
    const double far = totalFarNext;
    bool done = false;
    for (;;) {
      // Next band breakpoint above `at`: z for a middle score, z - 1 for an
      // upper one (it then joins the middle, whose scores the walk never
      // reaches inside the band).
      double local = INFINITY;
      for (int i = lane; i < n; i += 32) {
        double z = band[i];
        double bp = z > x + 1.0 ? z - 1.0 : z;
        if (bp > at)
          local = fmin(local, bp);
      }
      const double bandNext = warpMinAll(local);
      const double next = fmin(bandNext, far);
      if (m > 0) {
        double t = (s + u - static_cast<double>(budget)) / m;
        if (t < next) {
          if (lane == 0)
            st.tau = fmax(t, at);
          done = true;
        }
      } else if (u <= budget) {
        if (lane == 0)
          st.tau = u == budget ? next : at; // hard top-k: largest tau
        done = true;
      }
      if (done || !(bandNext < far)) {
        if (lane == 0) {
          st.x = at;
          st.upper = u;
          st.middle = m;
          st.sum = s;
          st.next = next;
          solved = done;
        }
        break;
      }
      // Cross `next`: middle scores equal to it drop out, upper scores
      // equal to next + 1 (exact in double) join the middle.
      at = next;
      int dropped = 0, moved = 0;
      for (int i = lane; i < n; i += 32) {
        double z = band[i];
        if (z > x + 1.0)
          moved += z - 1.0 == at;
        else
          dropped += z == at;
      }
      dropped = warpSumAll(dropped);
      moved = warpSumAll(moved);
      s += moved * (at + 1.0) - dropped * at;
      m += moved - dropped;
      u -= moved;
    }
  }
  __syncthreads();
  return solved ? kBandSolved : kBandStopped;
}

/// Thread 0: solves tau if the root lies on the current linear piece of f;
/// false when a breakpoint must be crossed first.
__device__ inline bool solveOnPiece(HeadState &st, int k) {
  if (st.middle > 0) {
    double t = (st.sum + st.upper - static_cast<double>(k)) / st.middle;
    if (!(t < st.next))
      return false;
    st.tau = fmax(t, st.x);
    return true;
  }
  if (st.upper > k)
    return false;
  // Flat f = U up to `next`: the hard top-k case (largest tau). U < k only
  // after a capacity overflow; tau then stays put.
  st.tau = st.upper == k ? st.next : st.x;
  return true;
}

/// Thread 0: the O(1) part of adding one unmasked candidate score. Returns
/// the pending work (0, kPendingSolve or kPendingRoom) for supportFinish.
__device__ inline int supportStart(HeadState &st, float *values, float z, int k,
                                   int capacity) {
  ++st.candidates;
  if (k == 0)
    return 0; // tau = +inf: nothing is ever selected.
  if (st.candidates <= k) {
    values[st.count++] = z; // at most k candidates: all have p = 1
    classifyInsert(st, z, +1);
    st.tau = -INFINITY;
    return 0;
  }
  if (!(static_cast<double>(z) > st.tau))
    return 0; // p = 0 now, and tau never decreases.
  // Dead scores (<= x) are dropped lazily: compact when they are many or
  // when the array is full.
  int dead = st.count - st.upper - st.middle;
  if (st.count >= capacity || dead > st.count / 4 + 64)
    return kPendingRoom;
  values[st.count++] = z;
  classifyInsert(st, z, +1);
  return solveOnPiece(st, k) ? 0 : kPendingSolve;
}

/// The rest of adding score z after supportStart returned `work` (whole
/// block): compaction / overflow, then the exact walk over breakpoints (the
/// same walk as the CPU model, SupportState::solve), a band at a time.
__device__ inline void supportFinish(HeadState &st, float *values, float z,
                                     int k, int capacity, int work) {
  __shared__ int go;
  __shared__ double delta;
  if (work & kPendingRoom) {
    supportPass(st, values); // compaction; the partition is unchanged
    if (st.count >= capacity) {
      // Keep the highest scores; tau becomes a lower bound (SPEC 6).
      int lowest = lowestSupportIndex(values, st.count);
      if (threadIdx.x == 0) {
        st.approx = 1;
        float low = values[lowest];
        go = z > low;
        if (go) {
          classifyInsert(st, low, -1);
          values[lowest] = z;
          classifyInsert(st, z, +1);
        }
      }
    } else if (threadIdx.x == 0) {
      values[st.count++] = z;
      classifyInsert(st, z, +1);
      go = 1;
    }
    __syncthreads();
    if (!go)
      return;
    if (threadIdx.x == 0)
      go = !solveOnPiece(st, k);
    __syncthreads();
    if (!go)
      return;
  }
  for (;;) {
    if (threadIdx.x == 0) {
      // Band width: well past where this piece's root would move tau (so
      // one pass usually finishes the walk), at least 1/64, and at most 1/4
      // so that the two halves of the band stay apart.
      double estimate = st.next + 0.0625;
      if (st.middle > 0)
        estimate = (st.sum + st.upper - static_cast<double>(k)) / st.middle;
      delta = fmin(0.25, fmax(16.0 * (estimate - st.next), 1.0 / 64));
    }
    __syncthreads();
    int result;
    while ((result = crossWithBand(st, values, k, delta)) == kBandOverflow) {
      if (threadIdx.x == 0)
        delta /= 16.0; // too many scores in the band: narrow it
      __syncthreads();
    }
    if (result == kBandSolved)
      return;
    // Stopped at a breakpoint outside the band: check the new piece.
    if (threadIdx.x == 0)
      go = !solveOnPiece(st, k);
    __syncthreads();
    if (!go)
      return;
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

/// Does the work appendTokenLight left pending (a block of kThreads).
__device__ inline void finishPending(const LayerArgs &a, HeadState &st, int seq,
                                     int head) {
  const CacheLayout &l = a.layout;
  const int pending = st.pending;
  if (pending & kPendingRescan) {
    const size_t first = l.slot(seq, head, 0);
    int weakest = weakestPoolSlot(a.slotScores + first, a.slotPos + first, l.k);
    if (threadIdx.x == 0) {
      st.weak = weakest;
      st.weakScore = a.slotScores[first + weakest];
    }
  }
  if (pending & (kPendingSolve | kPendingRoom))
    supportFinish(st, a.support + l.row(seq, head) * l.supportStride(),
                  st.pendingScore, l.k, l.scoreCapacity,
                  pending & (kPendingSolve | kPendingRoom));
  if (threadIdx.x == 0) {
    st.pending = 0;
    a.tau[l.row(seq, head)] = static_cast<float>(st.tau);
  }
  __syncthreads();
}

} // namespace sparsek::rt::cuda

#endif // SPARSEK_RUNTIME_LIB_CACHE_CUDA_DEVICE_CUH
