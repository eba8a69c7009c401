// Launch-overhead baseline for the decode benchmark: an empty kernel with
// the grid of a D1 decode step, timed by the same harness as the step.
#include <cuda_runtime.h>

namespace {
__global__ void emptyKernel() {}
} // namespace

/// Queues `launches` empty kernels of `blocks` x `threads` on `stream` (a
/// CUstream / cudaStream_t); returns the cudaError_t of the launches.
extern "C" int skBenchLaunchEmpty(void *stream, int blocks, int threads,
                                  int launches) {
  for (int i = 0; i < launches; ++i)
    emptyKernel<<<blocks, threads, 0, static_cast<cudaStream_t>(stream)>>>();
  return static_cast<int>(cudaGetLastError());
}
