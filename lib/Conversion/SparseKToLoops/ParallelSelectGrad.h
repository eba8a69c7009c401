//===- ParallelSelectGrad.h - Parallel form of select_grad --*- C++ -*-===//
//
// The parallel (GPU) loop form of sparsek.select_grad, next to the serial
// reference in LowerSelectGrad.cpp. Private to lib/Conversion/SparseKToLoops.
//
//===----------------------------------------------------------------------===//
#ifndef SPARSEK_LIB_CONVERSION_SPARSEKTOLOOPS_PARALLELSELECTGRAD_H
#define SPARSEK_LIB_CONVERSION_SPARSEKTOLOOPS_PARALLELSELECTGRAD_H

#include "sparsek/Dialect/SparseK/IR/SparseKOps.h"

#include "mlir/IR/Builders.h"

namespace mlir::sparsek {

/// Run-time sizes of one sparsek.select_grad (SPEC 1 names).
struct SelectGradShape {
  Value batch, hkv, s, t, k;
};

/// Emits the kernels of the parallel select_grad (ParallelSelectGrad.cpp)
/// at the builder's point, once the operands' sizes were checked; `block`
/// items per outer parallel iteration (GPU threads per block).
void emitParallelSelectGrad(OpBuilder &b, Location loc, SelectGradOp op,
                            const SelectGradShape &z, int64_t block);

} // namespace mlir::sparsek

#endif // SPARSEK_LIB_CONVERSION_SPARSEKTOLOOPS_PARALLELSELECTGRAD_H
