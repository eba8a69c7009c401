// C API of the SparseK KV-cache manager (SPEC 6): constant-size caches for
// many sequences, appended token by token or by chunks, CPU or CUDA backend.
#ifndef SPARSEK_RUNTIME_KV_CACHE_H
#define SPARSEK_RUNTIME_KV_CACHE_H

#include <stdint.h>

#include "sparsek/runtime/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum sk_backend { SK_BACKEND_CPU = 0, SK_BACKEND_CUDA = 1 } sk_backend;

typedef enum sk_dtype {
  SK_DTYPE_F32 = 0,
  SK_DTYPE_F16 = 1,
  SK_DTYPE_BF16 = 2
} sk_dtype;

typedef struct sk_cache_config {
  sk_backend backend;
  int32_t num_layers;
  int32_t num_kv_heads; ///< Hkv
  int32_t k;            ///< selection budget (>= 0)
  int32_t w;            ///< sliding window (>= 0); k + w >= 1
  int32_t head_dim;     ///< D
  int32_t value_dim;    ///< Dv
  sk_dtype dtype;       ///< element type of the K/V slots
  int32_t max_seqs;     ///< sequence slots
  /// Scalar scores kept per (sequence, layer, head) for the exact tau
  /// (SPEC 6); must be >= k + 1 when k > 0. Overflow makes tau approximate.
  int32_t score_capacity;
  int32_t device; ///< CUDA device ordinal (CUDA backend only)
} sk_cache_config;

/// Per-layer arrays over all sequence slots (the layout contract the decode
/// attention op reads; host pointers for the CPU backend, device pointers for
/// CUDA). S = max_seqs, H = num_kv_heads, N = k + w:
///   k_slots     [S][H][N][D]  dtype     slots [0,k): selected pool, compact
///   v_slots     [S][H][N][Dv] dtype     in [0, pool_count); slots [k, k+w):
///   slot_scores [S][H][N]     f32       window ring, token p in k + p % w
///   slot_pos    [S][H][N]     int64     (-1 for an empty slot)
///   tau         [S][H]        f32       (+inf if k = 0, -inf while <= k
///                                        candidates); pool gate is
///                                        clip(score - tau, 0, 1)
///   pool_count  [S][H]        int32
///   pos         [S]           int64     last appended position (-1 empty)
typedef struct sk_cache_view {
  void *k_slots;
  void *v_slots;
  float *slot_scores;
  int64_t *slot_pos;
  float *tau;
  int32_t *pool_count;
  int64_t *pos;
  int32_t max_seqs, num_kv_heads, k, w, head_dim, value_dim;
  sk_dtype dtype;
  sk_backend backend;
} sk_cache_view;

typedef struct sk_cache sk_cache;

/// What an append call passes, stated by the caller (e.g. from tensor
/// shapes) so that the cache rejects inputs of the wrong size or type.
typedef struct sk_kv_shape {
  int32_t num_kv_heads;
  int32_t head_dim;
  int32_t value_dim;
  sk_dtype dtype;
} sk_kv_shape;

/// Message of the last failing sk_cache_* call on this thread ("" if none).
SK_RT_API const char *sk_cache_last_error(void);

SK_RT_API sk_status sk_cache_create(const sk_cache_config *config,
                                    sk_cache **out);
SK_RT_API sk_status sk_cache_destroy(sk_cache *cache);

/// Takes a free sequence slot (cleared: pos -1, empty pool and window).
SK_RT_API sk_status sk_cache_alloc_seq(sk_cache *cache, int32_t *seq_out);
SK_RT_API sk_status sk_cache_free_seq(sk_cache *cache, int32_t seq);
/// Clears an allocated sequence (every layer) without freeing its slot.
SK_RT_API sk_status sk_cache_reset_seq(sk_cache *cache, int32_t seq);

/// Appends one token to each of `num_seqs` distinct allocated sequences in
/// one layer. seq_ids is a host array; keys [num_seqs][H][D], values
/// [num_seqs][H][Dv] (cache dtype) and scores [num_seqs][H] (f32) live on the
/// backend's side (host for CPU, device for CUDA). `stream` (CUstream, may be
/// null) orders the CUDA work; it is ignored by the CPU backend. Arguments
/// are validated before anything changes; the CUDA backend checks scores on
/// the device and reports NaN/+inf through sk_cache_check_device_error (the
/// offending sequence is then left unchanged).
SK_RT_API sk_status sk_cache_append_tokens(sk_cache *cache, int32_t layer,
                                           const sk_kv_shape *shape,
                                           int32_t num_seqs,
                                           const int32_t *seq_ids,
                                           const void *keys, const void *values,
                                           const float *scores, void *stream);

/// Appends `num_tokens` consecutive tokens (a prompt) to one sequence in one
/// layer: keys [H][T][D], values [H][T][Dv], scores [H][T] (SPEC's [B,H,T,D]
/// order for one batch element). Same result as T single appends.
SK_RT_API sk_status sk_cache_append_chunk(sk_cache *cache, int32_t layer,
                                          const sk_kv_shape *shape, int32_t seq,
                                          int64_t num_tokens, const void *keys,
                                          const void *values,
                                          const float *scores, void *stream);

/// Appends a batch of prompts of different lengths in one call, packed as in
/// FlashAttention's varlen layout: sequence seq_ids[i] gets the tokens
/// cu_seqlens[i] .. cu_seqlens[i + 1] - 1 of keys [total][H][D], values
/// [total][H][Dv] (cache dtype) and scores [total][H] (f32), token-major
/// (total = cu_seqlens[num_seqs]). seq_ids and cu_seqlens (int32, num_seqs + 1
/// offsets rising from 0) are host arrays; the sequences are distinct and
/// allocated; a sequence may get 0 tokens. Same result as append_chunk per
/// sequence. Bad scores: the CPU backend rejects the whole call before
/// changing anything; the CUDA one reports them through
/// sk_cache_check_device_error and leaves that sequence unchanged.
SK_RT_API sk_status sk_cache_append_varlen(
    sk_cache *cache, int32_t layer, const sk_kv_shape *shape, int32_t num_seqs,
    const int32_t *seq_ids, const int32_t *cu_seqlens, const void *keys,
    const void *values, const float *scores, void *stream);

SK_RT_API sk_status sk_cache_get_view(const sk_cache *cache, int32_t layer,
                                      sk_cache_view *out);

/// *approx = 1 when some (layer, head) of the sequence overflowed its score
/// capacity, so its tau is a lower bound (SPEC 6). Synchronizes for CUDA.
SK_RT_API sk_status sk_cache_seq_is_approximate(sk_cache *cache, int32_t seq,
                                                int32_t *approx);

/// Waits for `stream` and returns the first error recorded by CUDA kernels
/// since the last check (SK_OK if none), then clears it. CPU: always SK_OK.
SK_RT_API sk_status sk_cache_check_device_error(sk_cache *cache, void *stream);

/// Bytes of K/V slot storage (constant for the life of the cache).
SK_RT_API sk_status sk_cache_kv_bytes(const sk_cache *cache, uint64_t *bytes);

#ifdef __cplusplus
}
#endif

#endif // SPARSEK_RUNTIME_KV_CACHE_H
