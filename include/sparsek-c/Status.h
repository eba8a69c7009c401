/* Status.h - error codes that compiled SparseK entry points report.
 *
 * Generated code never aborts: a check that fails records the first error in
 * the library's status word and skips the computation it guards. Callers read
 * it with `int32_t sparsek_status(void)` and reset it with
 * `void sparsek_clear_status(void)`, both emitted into every compiled module.
 * The status word is per loaded library and not thread-safe: serialize calls
 * into one library, or check the status after each call.
 *
 * GPU libraries (sparsek-gpu-pipeline) check sizes on the host as above, but
 * the data (scores, the decode cache state) only inside kernels, after the
 * entry point has returned. Kernels record those errors, with the same codes,
 * in the library's device status (first error wins; kept until cleared):
 *   int32_t sparsek_device_status(void);  reads it without synchronizing:
 *       errors of every kernel that has finished (synchronize the stream
 *       first to cover a given call);
 *   void sparsek_clear_device_status(void *stream);  synchronizes `stream`,
 *       then zeroes it.
 * So a C caller that wants what the CPU path returns synchronizes and reads
 * sparsek_device_status() after the entry point's own status. (Where one
 * call holds several kinds of invalid data, kernels racing to record them
 * may report any one of those codes; the CPU path reports in a fixed order.)
 */
#ifndef SPARSEK_C_STATUS_H
#define SPARSEK_C_STATUS_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum sparsek_status_code {
  SPARSEK_OK = 0,
  /* A score is NaN or +inf (SPEC 3: invalid input). */
  SPARSEK_ERROR_INVALID_SCORE = 1,
  /* An operand's size differs from the function type's, or dynamic sizes of
   * two operands that must agree do not. */
  SPARSEK_ERROR_SHAPE_MISMATCH = 2,
  /* More queries than keys (T > S). */
  SPARSEK_ERROR_QUERIES_EXCEED_KEYS = 3,
  /* A decode position or pool count is outside what the cache can hold. */
  SPARSEK_ERROR_INVALID_CACHE_STATE = 4,
  /* A CUDA call of the runtime failed (GPU entry points); the runtime's
   * sk_rt_get_last_error() has the message. */
  SPARSEK_ERROR_RUNTIME = 5,
  /* A GPU entry point got an operand whose rows are not 16-byte aligned: its
   * kernels read q, key and value rows as 16-byte vectors. */
  SPARSEK_ERROR_MISALIGNED = 6,
  /* A buffer the compiled code needs could not be allocated, or its size
   * overflows (sparsek-check-allocations); nothing after it ran. */
  SPARSEK_ERROR_OUT_OF_MEMORY = 7,
};

/* A message for a status code, for logs and exceptions. */
static inline const char *sparsek_status_message(int32_t code) {
  switch (code) {
  case SPARSEK_OK:
    return "ok";
  case SPARSEK_ERROR_INVALID_SCORE:
    return "invalid score: NaN or +inf in the scores (use -inf to mask a key)";
  case SPARSEK_ERROR_SHAPE_MISMATCH:
    return "shape mismatch: an operand's sizes disagree with the function type or with another operand";
  case SPARSEK_ERROR_QUERIES_EXCEED_KEYS:
    return "more queries than keys: T must not exceed S";
  case SPARSEK_ERROR_INVALID_CACHE_STATE:
    return "invalid cache state: a position or pool count is out of range";
  case SPARSEK_ERROR_RUNTIME:
    return "runtime error: a CUDA call failed (see sk_rt_get_last_error)";
  /* One literal per message: python/sparsek/status.py mirrors them. */
  case SPARSEK_ERROR_MISALIGNED:
    return "misaligned operand: the GPU kernels read rows as 16-byte vectors; pass tensors whose data starts 16-byte aligned (e.g. contiguous copies)";
  case SPARSEK_ERROR_OUT_OF_MEMORY:
    return "out of memory: a buffer the compiled code needs could not be allocated";
  default:
    return "unknown SparseK status code";
  }
}

#ifdef __cplusplus
}
#endif

#endif /* SPARSEK_C_STATUS_H */
