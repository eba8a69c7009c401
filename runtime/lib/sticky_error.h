// Process-wide sticky error of the mgpu wrappers: the first failure is kept
// (generated code never checks results) until a caller reads and clears it.
#ifndef SPARSEK_RUNTIME_LIB_STICKY_ERROR_H
#define SPARSEK_RUNTIME_LIB_STICKY_ERROR_H

#include "sparsek/runtime/status.h"

namespace sparsek::rt {

/// Records `status` with a printf-style message unless an error is already
/// recorded (the first failure is the informative one).
void recordError(sk_status status, const char *format, ...)
    __attribute__((format(printf, 2, 3)));

} // namespace sparsek::rt

#endif // SPARSEK_RUNTIME_LIB_STICKY_ERROR_H
