// Block- and warp-wide building blocks of the CUDA KV cache: reductions,
// scans, and a latency-hiding scan over float arrays.
#ifndef SPARSEK_RUNTIME_LIB_CACHE_CUDA_BLOCK_CUH
#define SPARSEK_RUNTIME_LIB_CACHE_CUDA_BLOCK_CUH

#include "cache_cuda_state.cuh"

namespace sparsek::rt::cuda {

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

/// A score with its position and array index, for arg-min reductions.
struct Ranked {
  float score;
  long long pos;
  int index;
};

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
