// CUDA backend entry point of a runtime built without a CUDA toolkit.
#include "cache_impl.h"

sk_status sparsek::rt::createCudaCache(const sk_cache_config &,
                                       std::unique_ptr<CacheBackend> *) {
  return cacheError(SK_ERR_UNSUPPORTED,
                    "sk_cache_create: the runtime was built without CUDA");
}
