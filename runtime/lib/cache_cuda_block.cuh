// Block- and warp-wide building blocks of the CUDA KV cache: reductions,
// scans, and a latency-hiding scan over float arrays.
#ifndef SPARSEK_RUNTIME_LIB_CACHE_CUDA_BLOCK_CUH
#define SPARSEK_RUNTIME_LIB_CACHE_CUDA_BLOCK_CUH

#include "cache_cuda_state.cuh"

namespace sparsek::rt::cuda {

// --- Block reductions ------------------------------------------------------

template <typename T, typename Op>
__device__ inline T warpReduce(T value, Op op) {
#pragma unroll 1
  for (int offset = 16; offset > 0; offset /= 2)
    value = op(value, __shfl_down_sync(0xffffffffu, value, offset));
  return value;
}

/// Reduces one value per thread of a block of NT threads; the result is
/// valid in thread 0. A one-warp block needs no shared memory or barrier.
template <int NT, typename T, typename Op>
__device__ inline T blockReduce(T value, Op op, T identity) {
  constexpr int kWarps = NT / 32;
  if constexpr (NT == 32) {
    return warpReduce(value, op);
  }
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
struct FloatMinOp {
  __device__ float operator()(float a, float b) const { return fminf(a, b); }
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

/// Counts, sum and next breakpoint of a partition of kept scores, reduced
/// over a block in one go (four separate reductions cost four times the
/// code, and the heavy paths are bound by instruction fetch).
struct Partition {
  int upper, middle;
  double sum, next;
};

__device__ inline Partition combine(Partition a, const Partition &b) {
  a.upper += b.upper;
  a.middle += b.middle;
  a.sum += b.sum;
  a.next = fmin(a.next, b.next);
  return a;
}

/// Reduces one Partition per thread of a block of NT threads; the result is
/// valid in thread 0.
template <int NT>
__device__ inline Partition blockReducePartition(Partition p) {
#pragma unroll 1
  for (int offset = 16; offset > 0; offset /= 2) {
    Partition o;
    o.upper = __shfl_down_sync(0xffffffffu, p.upper, offset);
    o.middle = __shfl_down_sync(0xffffffffu, p.middle, offset);
    o.sum = __shfl_down_sync(0xffffffffu, p.sum, offset);
    o.next = __shfl_down_sync(0xffffffffu, p.next, offset);
    p = combine(p, o);
  }
  if constexpr (NT > 32) {
    __shared__ Partition partial[NT / 32];
    __syncthreads(); // `partial` may still be read by a previous reduction
    if (threadIdx.x % 32 == 0)
      partial[threadIdx.x / 32] = p;
    __syncthreads();
    if (threadIdx.x == 0) {
#pragma unroll 1
      for (int w = 1; w < NT / 32; ++w)
        p = combine(p, partial[w]);
    }
  }
  return p;
}

/// A score with its position and array index, for arg-min reductions.
struct Ranked {
  float score;
  long long pos;
  int index;
};

/// float4 loads in flight per thread of a heavy-work block: the heavy scans
/// are bound by instructions per value more than by memory latency, and 2
/// measured fastest on the H200 (bench/results/runtime_decode_append_D1.json).
constexpr int kScanVec = 2;

/// Calls f(value, index) for values[0, count) with a block of NT threads
/// (several warps), each keeping 4 * kScanVec loads in flight (float4 when
/// aligned): the scans of the cache are bound by memory latency, not
/// bandwidth. The next tile is loaded before the current one is consumed,
/// so that a scan of several tiles waits for memory once, and f is expanded
/// once per loaded value (independent work for the scheduler). The
/// visiting order is unspecified.
template <int NT, typename F>
__device__ inline void scanValues(const float *values, int count, F f) {
  static_assert(NT > 32, "a one-warp block would spill the prefetched tile");
  constexpr int kLoads = 4 * kScanVec;
  float r[kLoads];
  const bool quads = (reinterpret_cast<uintptr_t>(values) & 15) == 0;
  // Aligned: tiles of NT * kLoads floats, thread t reading float4 number
  // base + j * NT + t of the tile; otherwise single floats.
  const int n = quads ? count / 4 * 4 : 0;
  float ahead[kLoads];
  auto loadTile = [&](int base) {
#pragma unroll
    for (int j = 0; j < kScanVec; ++j) {
      int i = base + 4 * (j * NT + threadIdx.x);
      float4 v = i < n ? *reinterpret_cast<const float4 *>(values + i)
                       : make_float4(0, 0, 0, 0);
      ahead[4 * j] = v.x;
      ahead[4 * j + 1] = v.y;
      ahead[4 * j + 2] = v.z;
      ahead[4 * j + 3] = v.w;
    }
  };
  if (n > 0)
    loadTile(0);
#pragma unroll 1
  for (int base = 0; base < n; base += NT * kLoads) {
#pragma unroll
    for (int j = 0; j < kLoads; ++j)
      r[j] = ahead[j];
    if (base + NT * kLoads < n)
      loadTile(base + NT * kLoads);
#pragma unroll
    for (int e = 0; e < kLoads; ++e) {
      int i = base + 4 * ((e / 4) * NT + threadIdx.x) + e % 4;
      if (i < n)
        f(r[e], i);
    }
  }
  // The unaligned rest: f is expanded once, consuming the loaded values from
  // the front of a register array that shifts by one after each call
  // (constant indices only, so it stays in registers).
#pragma unroll 1
  for (int base = n; base < count; base += NT * kLoads) {
#pragma unroll
    for (int j = 0; j < kLoads; ++j) {
      int i = base + j * NT + threadIdx.x;
      r[j] = i < count ? values[i] : 0.0f;
    }
#pragma unroll 1
    for (int e = 0; e < kLoads; ++e) {
      int i = base + e * NT + threadIdx.x;
      if (i < count)
        f(r[0], i);
#pragma unroll
      for (int j = 0; j + 1 < kLoads; ++j)
        r[j] = r[j + 1];
    }
  }
}

/// Exclusive prefix sum of one int per thread over a block of NT threads,
/// and the block total (both valid in every thread).
template <int NT>
__device__ inline int blockExclusiveScan(int value, int *total) {
  constexpr int kWarps = NT / 32;
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

} // namespace sparsek::rt::cuda

#endif // SPARSEK_RUNTIME_LIB_CACHE_CUDA_BLOCK_CUH
