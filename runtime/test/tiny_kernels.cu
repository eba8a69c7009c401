// Kernels for the mgpu wrapper test, compiled to PTX and cubin at build time.
extern "C" __global__ void sk_test_add_one(float *data, int count) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < count)
    data[i] += 1.0f;
}

// Fills `count` floats from dynamic shared memory, so that a launch with more
// than 48 KiB of it only works if the wrapper opted the kernel in.
extern "C" __global__ void sk_test_big_smem(float *out, int count) {
  extern __shared__ float buffer[];
  for (int i = threadIdx.x; i < count; i += blockDim.x)
    buffer[i] = static_cast<float>(i);
  __syncthreads();
  for (int i = threadIdx.x; i < count; i += blockDim.x)
    out[i] = buffer[count - 1 - i];
}
