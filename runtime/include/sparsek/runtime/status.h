// Status codes shared by every SparseK runtime C API (mgpu helpers, KV cache).
#ifndef SPARSEK_RUNTIME_STATUS_H
#define SPARSEK_RUNTIME_STATUS_H

#if defined(_WIN32)
#define SK_RT_API __declspec(dllexport)
#else
#define SK_RT_API __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
extern "C" {
#endif

/// Every runtime entry point that can fail returns one of these; a readable
/// message for the last failure is kept next to it (see the per-API getters).
typedef enum sk_status {
  SK_OK = 0,
  SK_ERR_INVALID_ARGUMENT = 1, ///< null pointer, wrong size, bad config
  SK_ERR_BAD_HANDLE = 2,       ///< unknown / freed sequence, bad cache
  SK_ERR_OUT_OF_SLOTS = 3,     ///< every sequence slot is in use
  SK_ERR_INVALID_SCORE = 4,    ///< NaN or +inf score (SPEC 3)
  SK_ERR_OUT_OF_MEMORY = 5,    ///< host or device allocation failed
  SK_ERR_CUDA = 6,             ///< a CUDA driver/runtime call failed
  SK_ERR_NO_DEVICE = 7,        ///< no driver or no GPU on this machine
  SK_ERR_UNSUPPORTED = 8,      ///< built without CUDA, or feature missing
} sk_status;

/// Human-readable name of a status code (static storage, never null).
SK_RT_API const char *sk_status_name(sk_status status);

#ifdef __cplusplus
}
#endif

#endif // SPARSEK_RUNTIME_STATUS_H
