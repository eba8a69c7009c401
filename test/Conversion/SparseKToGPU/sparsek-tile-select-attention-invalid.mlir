// Bad uses of sparsek-tile-select-attention fail with a message.
// RUN: not sparsek-opt %s "-sparsek-tile-select-attention=form=wmma" 2>&1 | FileCheck %s --check-prefix=CHECK-FORM
// RUN: not sparsek-opt %s "-sparsek-tile-select-attention=select-chunk=-1" 2>&1 | FileCheck %s --check-prefix=CHECK-CHUNK
// RUN: not sparsek-opt %s -sparsek-tile-select-attention 2>&1 | FileCheck %s --check-prefix=CHECK-TENSOR
// RUN: not sparsek-opt %s "-sparsek-tile-select-attention=form=mma-sync tile-rows=128" 2>&1 | FileCheck %s --check-prefix=CHECK-ROWS
// RUN: not sparsek-opt %s "-sparsek-tile-select-attention=form=scalar tile-rows=96" 2>&1 | FileCheck %s --check-prefix=CHECK-ROWS96
// RUN: not sparsek-opt %s "-sparsek-tile-select-attention=grads=true grad-tile-rows=32" 2>&1 | FileCheck %s --check-prefix=CHECK-GRAD-ROWS

// CHECK-FORM: form must be mma-sync, wgmma or scalar, got 'wmma'
// CHECK-CHUNK: select-chunk must be 0 (automatic) or positive, got -1
// CHECK-ROWS: tile-rows must be 0 (automatic), 64, or 128 (wgmma and scalar forms), got 128 with form=mma-sync
// CHECK-ROWS96: tile-rows must be 0 (automatic), 64, or 128 (wgmma and scalar forms), got 96 with form=scalar
// CHECK-GRAD-ROWS: grad-tile-rows must be 0 (automatic), 64, or 128, got 32 with form=
// CHECK-TENSOR: error: 'sparsek.select_attention' op is in tensor form; sparsek-tile-select-attention lowers the buffer form
func.func @tensor_form(%q: tensor<1x4x8x64xbf16>, %k: tensor<1x2x8x64xbf16>, %v: tensor<1x2x8x64xbf16>,
                       %u: tensor<1x2x8xf32>, %o: tensor<1x4x8x64xbf16>) -> tensor<1x4x8x64xbf16> {
  %r = sparsek.select_attention ins(%q, %k, %v, %u : tensor<1x4x8x64xbf16>, tensor<1x2x8x64xbf16>,
                                    tensor<1x2x8x64xbf16>, tensor<1x2x8xf32>)
      k = 8 w = 4 outs(%o : tensor<1x4x8x64xbf16>) -> tensor<1x4x8x64xbf16>
  return %r : tensor<1x4x8x64xbf16>
}
