// The stream a caller lends to generated code (sk_rt_set_current_stream),
// shared by the CUDA and the CUDA-less mgpu wrappers.
#ifndef SPARSEK_RUNTIME_LIB_CALLER_STREAM_H
#define SPARSEK_RUNTIME_LIB_CALLER_STREAM_H

namespace sparsek::rt {

/// Whether a caller lent a stream on this thread (sk_rt_lend_stream, or a
/// non-null sk_rt_set_current_stream); the lent stream may be null, the
/// legacy default stream.
bool hasCallerStream();
/// The stream mgpuStreamCreate returns on this thread instead of a new one
/// when hasCallerStream().
void *callerStream();

} // namespace sparsek::rt

#endif // SPARSEK_RUNTIME_LIB_CALLER_STREAM_H
