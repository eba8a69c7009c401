// An upstream crash (MLIR's linalg.transpose parser segfaults after this
// parse error) ends the compiler process, not sparsek-compile: it reports
// how the process died and the diagnostics it printed first, and exits 1.
// RUN: not sparsek-compile %s -o %t.so 2>&1 | FileCheck %s
// RUN: not sparsek-compile %s --emit-llvm %t.ll 2>&1 | FileCheck %s

// CHECK: sparsek-compile: the compiler process was killed by signal 11 (Segmentation fault)
// CHECK: diagnostics before that:
// CHECK: input:[[@LINE+3]]:{{[0-9]+}}: error: expected ']'
func.func @t(%a: tensor<2x3xf32>, %b: tensor<3x2xf32>) -> tensor<3x2xf32> {
  %r = linalg.transpose ins(%a : tensor<2x3xf32>) outs(%b : tensor<3x2xf32>)
      permutation = [1, 0
  return %r : tensor<3x2xf32>
}
