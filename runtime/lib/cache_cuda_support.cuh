// Exact incremental tau on the GPU (the CPU model is SupportState): an O(1)
// step per candidate, and block-wide passes when a breakpoint is crossed.
// Functions taking a block are called by all its threads: thread 0 takes
// the scalar decisions, the block does the data-parallel work.
#ifndef SPARSEK_RUNTIME_LIB_CACHE_CUDA_SUPPORT_CUH
#define SPARSEK_RUNTIME_LIB_CACHE_CUDA_SUPPORT_CUH

#include "cache_cuda_block.cuh"

namespace sparsek::rt::cuda {

/// Index of the lowest kept score (valid in thread 0); a block of NT threads.
template <int NT>
__device__ inline int lowestSupportIndex(const float *values, int count) {
  constexpr int kWarps = NT / 32;
  Ranked best{INFINITY, 0, -1};
  for (int i = threadIdx.x; i < count; i += NT)
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

/// Compacts the kept scores in place, dropping those <= st.x (p = 0 for
/// good), and recomputes the partition right of x and the next breakpoint.
/// `values` is 16-byte aligned with room up to a multiple of 4 (see
/// CacheLayout::supportStride), so it is read as float4. Returns the new
/// count in every thread: a caller that branches on it must not read
/// st.count, which thread 0 may rewrite before every thread has read it.
/// A block of NT threads.
template <int NT>
__device__ inline int supportPass(HeadState &st, float *values) {
  constexpr int kThreads = NT;
  constexpr int kVec = kScanVec;
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
    int offset = written + blockExclusiveScan<NT>(keep, &tileTotal);
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
  const Partition total =
      blockReducePartition<NT>(Partition{upper, middle, sum, next});
  if (threadIdx.x == 0) {
    st.upper = total.upper;
    st.middle = total.middle;
    st.sum = total.sum;
    st.next = total.next;
    st.count = written;
  }
  __syncthreads();
  return written;
}

constexpr int kBandCapacity = 1024;
/// Widest band of a tau pass: at most 1/4, so that the two halves of the
/// band stay apart (see supportFinish).
constexpr double kBandMaxDelta = 0.25;

enum BandResult { kBandOverflow = -1, kBandStopped = 0, kBandSolved = 1 };

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
///
/// The scan compares floats with float thresholds, each the largest float
/// <= the double bound (for a float z and a double d, z <= d iff z <= that
/// float), takes minima in float (z - 1.0 is exact in double, so min(z) - 1
/// = min(z - 1)), and converts to double only to sum the middle scores.
/// Band scores are stored as their double breakpoints (middle ones from the
/// front of the band, upper ones from the back), and the walk counts the
/// scores it crosses in the same pass that finds the next breakpoint.
template <int NT>
__device__ inline int crossWithBand(HeadState &st, const float *values,
                                    int budget, double delta) {
  __shared__ double bandBp[kBandCapacity];
  __shared__ int bandCounts[2]; // middle (front), upper (back)
  __shared__ int solved;
  __shared__ int totals[2];
  __shared__ double totalSum, totalFarNext;
  const double x = st.next;
  const float deadAt = __double2float_rd(x);
  const float upperAbove = __double2float_rd(x + 1.0);
  const float upperBand = __double2float_rd(x + 1.0 + delta);
  const float middleBand = __double2float_rd(x + delta);
  if (threadIdx.x < 2)
    bandCounts[threadIdx.x] = 0;
  __syncthreads();
  int upper = 0, middle = 0;
  double sum = 0.0;
  float farUpper = INFINITY, farMiddle = INFINITY;
  scanValues<NT>(values, st.count, [&](float z, int) {
    if (z <= deadAt)
      return; // p = 0 for good (dead until the next compaction)
    if (z > upperAbove) {
      ++upper;
      if (z <= upperBand) {
        int slot = atomicAdd(&bandCounts[1], 1);
        if (slot < kBandCapacity)
          bandBp[kBandCapacity - 1 - slot] = static_cast<double>(z) - 1.0;
      } else {
        farUpper = fminf(farUpper, z);
      }
    } else {
      ++middle;
      sum += static_cast<double>(z);
      if (z <= middleBand) {
        int slot = atomicAdd(&bandCounts[0], 1);
        if (slot < kBandCapacity)
          bandBp[slot] = static_cast<double>(z);
      } else {
        farMiddle = fminf(farMiddle, z);
      }
    }
  });
  const double farNext =
      fmin(static_cast<double>(farUpper) - 1.0, static_cast<double>(farMiddle));
  const Partition total =
      blockReducePartition<NT>(Partition{upper, middle, sum, farNext});
  if (threadIdx.x == 0) {
    totals[0] = total.upper;
    totals[1] = total.middle;
    totalSum = total.sum;
    totalFarNext = total.next;
  }
  __syncthreads();
  const int nMiddle = bandCounts[0], nUpper = bandCounts[1];
  if (nMiddle + nUpper > kBandCapacity) {
    __syncthreads(); // everyone has read bandCounts before they are reused
    return kBandOverflow;
  }
  if (threadIdx.x < 32) {
    const int lane = threadIdx.x;
    int u = totals[0], m = totals[1];
    double s = totalSum, at = x;
    const double far = totalFarNext;
    bool crossing = false;
    for (;;) {
      // Crossing `at` (not on the first round): middle scores equal to it
      // drop out, upper scores with z - 1 equal to it join the middle. And
      // the next band breakpoint above `at`.
      double local = INFINITY;
      int dropped = 0, moved = 0;
#pragma unroll 1
      for (int i = lane; i < nMiddle; i += 32) {
        const double bp = bandBp[i];
        if (crossing && bp == at)
          ++dropped;
        else if (bp > at)
          local = fmin(local, bp);
      }
#pragma unroll 1
      for (int i = kBandCapacity - nUpper + lane; i < kBandCapacity; i += 32) {
        const double bp = bandBp[i];
        if (crossing && bp == at)
          ++moved;
        else if (bp > at)
          local = fmin(local, bp);
      }
      int packed = dropped | moved << 16; // at most kBandCapacity each
#pragma unroll
      for (int offset = 16; offset > 0; offset /= 2) {
        local = fmin(local, __shfl_xor_sync(0xffffffffu, local, offset));
        packed += __shfl_xor_sync(0xffffffffu, packed, offset);
      }
      if (crossing) {
        dropped = packed & 0xffff;
        moved = packed >> 16;
        s += moved * (at + 1.0) - dropped * at;
        m += moved - dropped;
        u -= moved;
      }
      const double bandNext = local;
      const double next = fmin(bandNext, far);
      bool done = false;
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
      at = next;
      crossing = true;
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
/// same walk as the CPU model, SupportState::solve), a band at a time. A
/// block of NT threads.
template <int NT>
__device__ inline void supportFinish(HeadState &st, float *values, float z,
                                     int k, int capacity, int work) {
  __shared__ int go;
  __shared__ double delta;
  if (work & kPendingRoom) {
    // Compaction; the partition is unchanged. The branch below contains
    // barriers, so it tests the count every thread got from the pass, not
    // st.count, which thread 0 increments in the other branch.
    const int count = supportPass<NT>(st, values);
    if (count >= capacity) {
      // Keep the highest scores; tau becomes a lower bound (SPEC 6).
      int lowest = lowestSupportIndex<NT>(values, count);
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
    __syncthreads(); // everyone has read go before thread 0 rewrites it
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
      delta = fmin(kBandMaxDelta, fmax(16.0 * (estimate - st.next), 1.0 / 64));
    }
    __syncthreads();
    int result;
    while ((result = crossWithBand<NT>(st, values, k, delta)) ==
           kBandOverflow) {
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

} // namespace sparsek::rt::cuda

#endif // SPARSEK_RUNTIME_LIB_CACHE_CUDA_SUPPORT_CUH
