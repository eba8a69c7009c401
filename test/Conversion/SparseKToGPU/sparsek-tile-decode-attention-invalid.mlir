// Bad uses of sparsek-tile-decode-attention fail with a message.
// RUN: not sparsek-opt %s "-sparsek-tile-decode-attention=form=wgmma" 2>&1 | FileCheck %s --check-prefix=CHECK-FORM
// RUN: not sparsek-opt %s "-sparsek-tile-decode-attention=target-blocks=0" 2>&1 | FileCheck %s --check-prefix=CHECK-BLOCKS
// RUN: not sparsek-opt %s "-sparsek-tile-decode-attention=target-blocks=2000000" 2>&1 | FileCheck %s --check-prefix=CHECK-MANY
// RUN: not sparsek-opt %s -sparsek-tile-decode-attention 2>&1 | FileCheck %s --check-prefix=CHECK-TENSOR
// RUN: not sparsek-opt %s "-sparsek-tile-decode-attention=math=wmma" 2>&1 | FileCheck %s --check-prefix=CHECK-MATH

// CHECK-FORM: form must be kernel or scalar, got 'wgmma'
// CHECK-BLOCKS: target-blocks must be in [1, 1048576], got 0
// CHECK-MANY: target-blocks must be in [1, 1048576], got 2000000
// CHECK-MATH: math must be simt or mma, got 'wmma'
// CHECK-TENSOR: error: 'sparsek.decode_attention' op is in tensor form; sparsek-tile-decode-attention lowers the buffer form
func.func @tensor_form(%q: tensor<1x4x64xbf16>, %kc: tensor<1x2x12x64xbf16>, %vc: tensor<1x2x12x64xbf16>,
                       %sc: tensor<1x2x12xf32>, %tau: tensor<1x2xf32>, %cnt: tensor<1x2xi32>,
                       %pos: tensor<1xi64>, %o: tensor<1x4x64xbf16>) -> tensor<1x4x64xbf16> {
  %r = sparsek.decode_attention ins(%q, %kc, %vc, %sc, %tau, %cnt, %pos : tensor<1x4x64xbf16>,
      tensor<1x2x12x64xbf16>, tensor<1x2x12x64xbf16>, tensor<1x2x12xf32>, tensor<1x2xf32>,
      tensor<1x2xi32>, tensor<1xi64>) k = 8 w = 4 outs(%o : tensor<1x4x64xbf16>) -> tensor<1x4x64xbf16>
  return %r : tensor<1x4x64xbf16>
}
