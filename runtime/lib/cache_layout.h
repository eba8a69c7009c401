// Sizes and offsets of the per-layer KV-cache arrays (the layout contract of
// kv_cache.h), shared by the CPU and CUDA backends so both index alike.
#ifndef SPARSEK_RUNTIME_LIB_CACHE_LAYOUT_H
#define SPARSEK_RUNTIME_LIB_CACHE_LAYOUT_H

#include "sparsek/runtime/kv_cache.h"

#include <cstddef>
#include <cstdint>

#ifdef __CUDACC__
#define SK_HOST_DEVICE __host__ __device__
#else
#define SK_HOST_DEVICE
#endif

namespace sparsek::rt {

/// Shapes of one layer; every index is computed here.
struct CacheLayout {
  int32_t maxSeqs = 0, heads = 0, k = 0, w = 0, headDim = 0, valueDim = 0;
  int32_t elementBytes = 0;
  int32_t scoreCapacity = 0;

  SK_HOST_DEVICE int32_t slots() const { return k + w; }
  /// Index of (seq, head) in the [S][H] arrays.
  SK_HOST_DEVICE size_t row(int32_t seq, int32_t head) const {
    return static_cast<size_t>(seq) * heads + head;
  }
  /// Index of (seq, head, slot) in the [S][H][N] arrays.
  SK_HOST_DEVICE size_t slot(int32_t seq, int32_t head, int32_t s) const {
    return row(seq, head) * slots() + s;
  }
  SK_HOST_DEVICE size_t keyRowBytes() const {
    return static_cast<size_t>(headDim) * elementBytes;
  }
  SK_HOST_DEVICE size_t valueRowBytes() const {
    return static_cast<size_t>(valueDim) * elementBytes;
  }
  /// Floats per (sequence, head) of the scalar score array: the capacity
  /// rounded up to a multiple of 4, so that every row can be read as float4.
  SK_HOST_DEVICE size_t supportStride() const {
    return (static_cast<size_t>(scoreCapacity) + 3) / 4 * 4;
  }
  SK_HOST_DEVICE size_t rows() const {
    return static_cast<size_t>(maxSeqs) * heads;
  }
  SK_HOST_DEVICE size_t slotCount() const { return rows() * slots(); }
  SK_HOST_DEVICE size_t keyBytes() const { return slotCount() * keyRowBytes(); }
  SK_HOST_DEVICE size_t valueBytes() const {
    return slotCount() * valueRowBytes();
  }
};

/// Bytes per element of a cache dtype, 0 for an unknown one.
inline int32_t dtypeBytes(sk_dtype dtype) {
  switch (dtype) {
  case SK_DTYPE_F32:
    return 4;
  case SK_DTYPE_F16:
  case SK_DTYPE_BF16:
    return 2;
  }
  return 0;
}

inline CacheLayout makeLayout(const sk_cache_config &config) {
  CacheLayout layout;
  layout.maxSeqs = config.max_seqs;
  layout.heads = config.num_kv_heads;
  layout.k = config.k;
  layout.w = config.w;
  layout.headDim = config.head_dim;
  layout.valueDim = config.value_dim;
  layout.elementBytes = dtypeBytes(config.dtype);
  layout.scoreCapacity = config.score_capacity;
  return layout;
}

} // namespace sparsek::rt

#endif // SPARSEK_RUNTIME_LIB_CACHE_LAYOUT_H
