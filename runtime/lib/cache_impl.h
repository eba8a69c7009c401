// Backend interface of the KV-cache manager: the C API (cache_api.cpp) checks
// handles and shapes, then calls one of these (CPU model or CUDA).
#ifndef SPARSEK_RUNTIME_LIB_CACHE_IMPL_H
#define SPARSEK_RUNTIME_LIB_CACHE_IMPL_H

#include "cache_layout.h"

#include "sparsek/runtime/kv_cache.h"

#include <memory>

namespace sparsek::rt {

/// Records the message of a failing sk_cache_* call (thread-local) and
/// returns `status`, so that error paths read `return cacheError(...)`.
sk_status cacheError(sk_status status, const char *format, ...)
    __attribute__((format(printf, 2, 3)));

class CacheBackend {
public:
  explicit CacheBackend(const sk_cache_config &config)
      : config_(config), layout_(makeLayout(config)) {}
  virtual ~CacheBackend() = default;

  const sk_cache_config &config() const { return config_; }
  const CacheLayout &layout() const { return layout_; }

  /// Clears one sequence slot in every layer (pos -1, empty slots).
  virtual sk_status clearSeq(int32_t seq) = 0;
  /// Inputs are validated by the caller except the score values.
  virtual sk_status appendTokens(int32_t layer, int32_t numSeqs,
                                 const int32_t *seqIds, const void *keys,
                                 const void *values, const float *scores,
                                 void *stream) = 0;
  virtual sk_status appendChunk(int32_t layer, int32_t seq, int64_t numTokens,
                                const void *keys, const void *values,
                                const float *scores, void *stream) = 0;
  /// Packed prompts (sk_cache_append_varlen): sequence seqIds[i] gets the
  /// token-major rows cuSeqlens[i] .. cuSeqlens[i + 1] - 1.
  virtual sk_status appendVarlen(int32_t layer, int32_t numSeqs,
                                 const int32_t *seqIds,
                                 const int32_t *cuSeqlens, const void *keys,
                                 const void *values, const float *scores,
                                 void *stream) = 0;
  virtual void view(int32_t layer, sk_cache_view *out) const = 0;
  virtual sk_status isApproximate(int32_t seq, int32_t *approx) = 0;
  virtual sk_status checkDeviceError(void *stream) = 0;

protected:
  sk_cache_config config_;
  CacheLayout layout_;
};

/// Creates the CPU backend (allocates everything up front).
sk_status createCpuCache(const sk_cache_config &config,
                         std::unique_ptr<CacheBackend> *out);
/// Creates the CUDA backend; SK_ERR_UNSUPPORTED when built without CUDA.
sk_status createCudaCache(const sk_cache_config &config,
                          std::unique_ptr<CacheBackend> *out);

} // namespace sparsek::rt

#endif // SPARSEK_RUNTIME_LIB_CACHE_IMPL_H
