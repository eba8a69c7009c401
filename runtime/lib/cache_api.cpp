// The sk_cache_* C API: validates handles, sequence ids and shapes before any
// state changes, then dispatches to the CPU or CUDA backend.
#include "cache_impl.h"

#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <unordered_set>
#include <vector>

using namespace sparsek::rt;

struct sk_cache {
  std::unique_ptr<CacheBackend> backend;
  std::vector<uint8_t> allocated; // per sequence slot
};

namespace {

thread_local char lastError[512] = "";

/// The integer a C caller stored in an enum field. Reading an enum object
/// that holds a value outside its enumerators is undefined in C++, and
/// callers such as ctypes can store anything, so the bytes are read as int.
template <typename Enum> int32_t rawEnum(const Enum &value) {
  static_assert(sizeof(Enum) == sizeof(int32_t), "C enums are int-sized");
  int32_t raw;
  std::memcpy(&raw, &value, sizeof(raw));
  return raw;
}

/// Live caches, so that a stale or foreign pointer is reported instead of
/// being dereferenced.
std::mutex registryMutex;
std::unordered_set<const sk_cache *> &registry() {
  static auto *caches = new std::unordered_set<const sk_cache *>();
  return *caches;
}

bool isLive(const sk_cache *cache) {
  std::lock_guard<std::mutex> lock(registryMutex);
  return cache && registry().count(cache) != 0;
}

sk_status checkCache(const sk_cache *cache, const char *caller) {
  if (!isLive(cache))
    return cacheError(SK_ERR_BAD_HANDLE, "%s: not a live cache handle", caller);
  return SK_OK;
}

sk_status checkSeq(const sk_cache *cache, int32_t seq, const char *caller) {
  if (seq < 0 || seq >= cache->backend->config().max_seqs ||
      !cache->allocated[seq])
    return cacheError(SK_ERR_BAD_HANDLE, "%s: sequence %d is not allocated",
                      caller, seq);
  return SK_OK;
}

sk_status checkLayer(const sk_cache *cache, int32_t layer, const char *caller) {
  int32_t layers = cache->backend->config().num_layers;
  if (layer < 0 || layer >= layers)
    return cacheError(SK_ERR_INVALID_ARGUMENT,
                      "%s: layer %d out of range [0, %d)", caller, layer,
                      layers);
  return SK_OK;
}

sk_status checkShape(const sk_cache *cache, const sk_kv_shape *shape,
                     const char *caller) {
  const sk_cache_config &c = cache->backend->config();
  if (!shape)
    return cacheError(SK_ERR_INVALID_ARGUMENT, "%s: null shape", caller);
  if (shape->num_kv_heads != c.num_kv_heads || shape->head_dim != c.head_dim ||
      shape->value_dim != c.value_dim || rawEnum(shape->dtype) != c.dtype)
    return cacheError(
        SK_ERR_INVALID_ARGUMENT,
        "%s: input has heads=%d D=%d Dv=%d dtype=%d but the cache has "
        "heads=%d D=%d Dv=%d dtype=%d",
        caller, shape->num_kv_heads, shape->head_dim, shape->value_dim,
        rawEnum(shape->dtype), c.num_kv_heads, c.head_dim, c.value_dim,
        static_cast<int>(c.dtype));
  return SK_OK;
}

/// The checks every append starts with: a live cache, a layer in range and
/// an input of the cache's shape.
sk_status checkAppendTarget(const sk_cache *cache, int32_t layer,
                            const sk_kv_shape *shape, const char *caller) {
  if (sk_status status = checkCache(cache, caller))
    return status;
  if (sk_status status = checkLayer(cache, layer, caller))
    return status;
  return checkShape(cache, shape, caller);
}

/// The checks a batch append starts with: those of every append, then its
/// sequence count in [0, max_seqs].
sk_status checkBatchAppend(const sk_cache *cache, int32_t layer,
                           const sk_kv_shape *shape, int32_t numSeqs,
                           const char *caller) {
  if (sk_status status = checkAppendTarget(cache, layer, shape, caller))
    return status;
  if (numSeqs < 0 || numSeqs > cache->backend->config().max_seqs)
    return cacheError(SK_ERR_INVALID_ARGUMENT,
                      "%s: num_seqs %d out of range [0, %d]", caller, numSeqs,
                      cache->backend->config().max_seqs);
  return SK_OK;
}

/// One sequence of a batch: allocated and not yet in the batch (`seen`,
/// indexed by sequence, marks those checked so far).
sk_status checkBatchSeq(const sk_cache *cache, int32_t seq,
                        std::vector<uint8_t> &seen, const char *caller) {
  if (sk_status status = checkSeq(cache, seq, caller))
    return status;
  if (seen[seq]++)
    return cacheError(SK_ERR_INVALID_ARGUMENT,
                      "%s: sequence %d appears twice in one batch", caller,
                      seq);
  return SK_OK;
}

sk_status checkConfig(const sk_cache_config *c) {
  const char *caller = "sk_cache_create";
  if (!c)
    return cacheError(SK_ERR_INVALID_ARGUMENT, "%s: null config", caller);
  const int32_t backend = rawEnum(c->backend), dtype = rawEnum(c->dtype);
  if (backend != SK_BACKEND_CPU && backend != SK_BACKEND_CUDA)
    return cacheError(SK_ERR_INVALID_ARGUMENT, "%s: unknown backend %d", caller,
                      backend);
  if (dtype != SK_DTYPE_F32 && dtype != SK_DTYPE_F16 && dtype != SK_DTYPE_BF16)
    return cacheError(SK_ERR_INVALID_ARGUMENT, "%s: unknown dtype %d", caller,
                      dtype);
  if (c->num_layers < 1 || c->num_kv_heads < 1 || c->head_dim < 1 ||
      c->value_dim < 1 || c->max_seqs < 1)
    return cacheError(SK_ERR_INVALID_ARGUMENT,
                      "%s: num_layers, num_kv_heads, head_dim, value_dim and "
                      "max_seqs must be >= 1",
                      caller);
  if (c->k < 0 || c->w < 0 || static_cast<int64_t>(c->k) + c->w < 1 ||
      static_cast<int64_t>(c->k) + c->w > (1 << 24))
    return cacheError(SK_ERR_INVALID_ARGUMENT,
                      "%s: need k >= 0, w >= 0 and 1 <= k + w <= 2^24 (k = 0 "
                      "with w = 0 leaves nothing to attend to)",
                      caller);
  if (c->k > 0 && c->score_capacity <= c->k)
    return cacheError(SK_ERR_INVALID_ARGUMENT,
                      "%s: score_capacity (%d) must be at least k + 1 (%lld)",
                      caller, c->score_capacity,
                      static_cast<long long>(c->k) + 1);
  if (c->score_capacity < 0 || c->device < 0)
    return cacheError(SK_ERR_INVALID_ARGUMENT,
                      "%s: negative score_capacity or device", caller);
  // Beyond 2^48 bytes (more than any machine has) is surely a mistake, and
  // the limit keeps every size_t product below overflow. Every factor is
  // widened to double before it meets another: a sum or product of two
  // int32 fields can overflow int (head_dim + value_dim did, and wrapped
  // past this guard).
  auto d = [](int32_t v) { return static_cast<double>(v); };
  double rows = d(c->max_seqs) * d(c->num_kv_heads);
  double slots = rows * (d(c->k) + d(c->w));
  double bytes =
      slots * (d(c->head_dim) + d(c->value_dim)) * dtypeBytes(c->dtype) +
      rows * d(c->score_capacity) * 4.0;
  if (bytes * d(c->num_layers) > 281474976710656.0)
    return cacheError(SK_ERR_INVALID_ARGUMENT, "%s: cache too large", caller);
  return SK_OK;
}

} // namespace

sk_status sparsek::rt::cacheError(sk_status status, const char *format, ...) {
  va_list args;
  va_start(args, format);
  std::vsnprintf(lastError, sizeof(lastError), format, args);
  va_end(args);
  return status;
}

extern "C" {

const char *sk_cache_last_error(void) { return lastError; }

sk_status sk_cache_create(const sk_cache_config *config, sk_cache **out) {
  if (!out)
    return cacheError(SK_ERR_INVALID_ARGUMENT, "sk_cache_create: null out");
  *out = nullptr;
  if (sk_status status = checkConfig(config))
    return status;
  auto cache = std::make_unique<sk_cache>();
  sk_status status = config->backend == SK_BACKEND_CPU
                         ? createCpuCache(*config, &cache->backend)
                         : createCudaCache(*config, &cache->backend);
  if (status != SK_OK)
    return status;
  cache->allocated.assign(config->max_seqs, 0);
  std::lock_guard<std::mutex> lock(registryMutex);
  registry().insert(cache.get());
  *out = cache.release();
  return SK_OK;
}

sk_status sk_cache_destroy(sk_cache *cache) {
  {
    std::lock_guard<std::mutex> lock(registryMutex);
    if (!cache || registry().erase(cache) == 0)
      return cacheError(SK_ERR_BAD_HANDLE,
                        "sk_cache_destroy: not a live cache handle");
  }
  delete cache;
  return SK_OK;
}

sk_status sk_cache_alloc_seq(sk_cache *cache, int32_t *seqOut) {
  const char *caller = "sk_cache_alloc_seq";
  if (sk_status status = checkCache(cache, caller))
    return status;
  if (!seqOut)
    return cacheError(SK_ERR_INVALID_ARGUMENT, "%s: null output", caller);
  for (size_t seq = 0; seq < cache->allocated.size(); ++seq) {
    if (cache->allocated[seq])
      continue;
    if (sk_status status = cache->backend->clearSeq(static_cast<int32_t>(seq)))
      return status;
    cache->allocated[seq] = 1;
    *seqOut = static_cast<int32_t>(seq);
    return SK_OK;
  }
  return cacheError(SK_ERR_OUT_OF_SLOTS, "%s: all %zu sequence slots in use",
                    caller, cache->allocated.size());
}

sk_status sk_cache_free_seq(sk_cache *cache, int32_t seq) {
  const char *caller = "sk_cache_free_seq";
  if (sk_status status = checkCache(cache, caller))
    return status;
  if (sk_status status = checkSeq(cache, seq, caller))
    return status;
  cache->allocated[seq] = 0;
  return SK_OK;
}

sk_status sk_cache_reset_seq(sk_cache *cache, int32_t seq) {
  const char *caller = "sk_cache_reset_seq";
  if (sk_status status = checkCache(cache, caller))
    return status;
  if (sk_status status = checkSeq(cache, seq, caller))
    return status;
  return cache->backend->clearSeq(seq);
}

sk_status sk_cache_append_tokens(sk_cache *cache, int32_t layer,
                                 const sk_kv_shape *shape, int32_t numSeqs,
                                 const int32_t *seqIds, const void *keys,
                                 const void *values, const float *scores,
                                 void *stream) {
  const char *caller = "sk_cache_append_tokens";
  if (sk_status status = checkBatchAppend(cache, layer, shape, numSeqs, caller))
    return status;
  if (numSeqs == 0)
    return SK_OK;
  if (!seqIds || !keys || !values || !scores)
    return cacheError(SK_ERR_INVALID_ARGUMENT, "%s: null input", caller);
  // One token per sequence per call: a repeated id would append twice.
  std::vector<uint8_t> seen(cache->allocated.size(), 0);
  for (int32_t i = 0; i < numSeqs; ++i)
    if (sk_status status = checkBatchSeq(cache, seqIds[i], seen, caller))
      return status;
  return cache->backend->appendTokens(layer, numSeqs, seqIds, keys, values,
                                      scores, stream);
}

sk_status sk_cache_append_chunk(sk_cache *cache, int32_t layer,
                                const sk_kv_shape *shape, int32_t seq,
                                int64_t numTokens, const void *keys,
                                const void *values, const float *scores,
                                void *stream) {
  const char *caller = "sk_cache_append_chunk";
  if (sk_status status = checkAppendTarget(cache, layer, shape, caller))
    return status;
  if (sk_status status = checkSeq(cache, seq, caller))
    return status;
  if (numTokens < 0 || numTokens > (int64_t(1) << 40))
    return cacheError(SK_ERR_INVALID_ARGUMENT, "%s: bad num_tokens %lld",
                      caller, static_cast<long long>(numTokens));
  if (numTokens == 0)
    return SK_OK;
  if (!keys || !values || !scores)
    return cacheError(SK_ERR_INVALID_ARGUMENT, "%s: null input", caller);
  return cache->backend->appendChunk(layer, seq, numTokens, keys, values,
                                     scores, stream);
}

sk_status sk_cache_append_varlen(sk_cache *cache, int32_t layer,
                                 const sk_kv_shape *shape, int32_t numSeqs,
                                 const int32_t *seqIds,
                                 const int32_t *cuSeqlens, const void *keys,
                                 const void *values, const float *scores,
                                 void *stream) {
  const char *caller = "sk_cache_append_varlen";
  if (sk_status status = checkBatchAppend(cache, layer, shape, numSeqs, caller))
    return status;
  if (numSeqs == 0)
    return SK_OK;
  if (!seqIds || !cuSeqlens)
    return cacheError(SK_ERR_INVALID_ARGUMENT, "%s: null input", caller);
  if (cuSeqlens[0] != 0)
    return cacheError(SK_ERR_INVALID_ARGUMENT,
                      "%s: cu_seqlens[0] is %d; offsets start at 0", caller,
                      cuSeqlens[0]);
  std::vector<uint8_t> seen(cache->allocated.size(), 0);
  for (int32_t i = 0; i < numSeqs; ++i) {
    if (cuSeqlens[i + 1] < cuSeqlens[i])
      return cacheError(SK_ERR_INVALID_ARGUMENT,
                        "%s: cu_seqlens decreases at %d (%d after %d)", caller,
                        i + 1, cuSeqlens[i + 1], cuSeqlens[i]);
    // Each sequence's tokens must be consecutive: one range per sequence.
    if (sk_status status = checkBatchSeq(cache, seqIds[i], seen, caller))
      return status;
  }
  if (cuSeqlens[numSeqs] == 0)
    return SK_OK;
  if (!keys || !values || !scores)
    return cacheError(SK_ERR_INVALID_ARGUMENT, "%s: null input", caller);
  return cache->backend->appendVarlen(layer, numSeqs, seqIds, cuSeqlens, keys,
                                      values, scores, stream);
}

sk_status sk_cache_get_view(const sk_cache *cache, int32_t layer,
                            sk_cache_view *out) {
  const char *caller = "sk_cache_get_view";
  if (sk_status status = checkCache(cache, caller))
    return status;
  if (sk_status status = checkLayer(cache, layer, caller))
    return status;
  if (!out)
    return cacheError(SK_ERR_INVALID_ARGUMENT, "%s: null output", caller);
  const sk_cache_config &c = cache->backend->config();
  cache->backend->view(layer, out);
  out->max_seqs = c.max_seqs;
  out->num_kv_heads = c.num_kv_heads;
  out->k = c.k;
  out->w = c.w;
  out->head_dim = c.head_dim;
  out->value_dim = c.value_dim;
  out->dtype = c.dtype;
  out->backend = c.backend;
  return SK_OK;
}

sk_status sk_cache_seq_is_approximate(sk_cache *cache, int32_t seq,
                                      int32_t *approx) {
  const char *caller = "sk_cache_seq_is_approximate";
  if (sk_status status = checkCache(cache, caller))
    return status;
  if (sk_status status = checkSeq(cache, seq, caller))
    return status;
  if (!approx)
    return cacheError(SK_ERR_INVALID_ARGUMENT, "%s: null output", caller);
  return cache->backend->isApproximate(seq, approx);
}

sk_status sk_cache_check_device_error(sk_cache *cache, void *stream) {
  if (sk_status status = checkCache(cache, "sk_cache_check_device_error"))
    return status;
  return cache->backend->checkDeviceError(stream);
}

sk_status sk_cache_kv_bytes(const sk_cache *cache, uint64_t *bytes) {
  if (sk_status status = checkCache(cache, "sk_cache_kv_bytes"))
    return status;
  if (!bytes)
    return cacheError(SK_ERR_INVALID_ARGUMENT,
                      "sk_cache_kv_bytes: null output");
  const CacheLayout &l = cache->backend->layout();
  *bytes = static_cast<uint64_t>(l.keyBytes() + l.valueBytes()) *
           cache->backend->config().num_layers;
  return SK_OK;
}

} // extern "C"
