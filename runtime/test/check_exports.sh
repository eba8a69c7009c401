#!/usr/bin/env bash
# Checks that the runtime library exports every mgpu* function that MLIR 22's
# gpu-to-llvm host code can call (nm -D), so generated code links against it.
set -euo pipefail
lib="$1"
required=(
  mgpuModuleLoad mgpuModuleLoadJIT mgpuModuleUnload mgpuModuleGetFunction
  mgpuLaunchKernel mgpuLaunchClusterKernel
  mgpuStreamCreate mgpuStreamDestroy mgpuStreamSynchronize mgpuStreamWaitEvent
  mgpuEventCreate mgpuEventDestroy mgpuEventSynchronize mgpuEventRecord
  mgpuMemAlloc mgpuMemFree mgpuMemcpy mgpuMemset32 mgpuMemset16
  mgpuMemHostRegister mgpuMemHostRegisterMemRef
  mgpuMemHostUnregister mgpuMemHostUnregisterMemRef
  mgpuSetDefaultDevice mgpuTensorMapEncodeTiledMemref
  sk_rt_get_last_error sk_rt_clear_error sk_cache_create sk_cache_append_tokens
  sk_cache_append_chunk sk_cache_append_varlen
  _mlir_ciface_sk_rt_device_status_word _mlir_ciface_sk_rt_device_status_mirror
  sk_rt_device_status_read sk_rt_device_status_clear
)
exported=$(nm -D --defined-only "$lib" | awk '$2 == "T" {print $3}')
missing=0
for sym in "${required[@]}"; do
  if ! grep -qx "$sym" <<<"$exported"; then
    echo "missing export: $sym"
    missing=1
  fi
done
# Hidden visibility keeps internals out of the dynamic symbol table.
if grep -q '^_ZN7sparsek' <<<"$exported"; then
  echo "internal C++ symbols are exported:"
  grep '^_ZN7sparsek' <<<"$exported" | head
  missing=1
fi
# No DT_NEEDED on libcuda: the driver is dlopen'ed so the library loads
# where no driver is installed.
if readelf -d "$lib" | grep -q 'libcuda\.so'; then
  echo "library links libcuda directly"
  missing=1
fi
[ "$missing" = 0 ] && echo "all ${#required[@]} required symbols exported"
exit "$missing"
