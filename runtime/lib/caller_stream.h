// The stream a caller lends to generated code (sk_rt_set_current_stream),
// shared by the CUDA and the CUDA-less mgpu wrappers.
#ifndef SPARSEK_RUNTIME_LIB_CALLER_STREAM_H
#define SPARSEK_RUNTIME_LIB_CALLER_STREAM_H

namespace sparsek::rt {

/// The stream mgpuStreamCreate returns on this thread instead of a new one
/// (null: create streams as usual).
void *callerStream();

} // namespace sparsek::rt

#endif // SPARSEK_RUNTIME_LIB_CALLER_STREAM_H
