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

/// Shared by the serial and the parallel form: over the k listed entries i of
/// query t of row (bi, h), those whose position j is a candidate
/// (j <= lastCandidate) in the support of `tau` (f64): their gate gradients
/// summed (f32, returned), each also added into du[bi, h, j] by `add`
/// (plain or atomic).
Value emitSupportGateGradSum(
    OpBuilder &b, Location loc, SelectGradOp op, Value k, Value bi, Value h,
    Value t, Value lastCandidate, Value tau,
    function_ref<void(OpBuilder &, Location, Value, ValueRange, Value)> add);

/// What the parallel SPARSEK VJP reads besides the gate gradients.
struct SupportGradProblem {
  Operation *anchor; // reports NaN and +inf scores
  Value scores, du;  // [B, Hkv, S] f32; du is overwritten
  int64_t w;
  SelectGradShape z;
  int64_t block; // items per outer parallel iteration
  /// f32 tau(t) of (bi, h).
  function_ref<Value(OpBuilder &, Location, Value bi, Value h, Value t)> tauAt;
};

/// Per query t of (bi, h): the f32 sum of dg(t, j) over its selected
/// support (j in Sel(t), j <= lastCandidate, 0 < gate < 1 under the f64
/// `tau`).
using SupportSumFn =
    function_ref<Value(OpBuilder &, Location, Value bi, Value h, Value t,
                       Value lastCandidate, Value tau)>;

/// The parallel SPARSEK VJP (ParallelSelectGrad.cpp) at the builder's
/// point: du zeroed, the support ranges and counts, then `own` (host code
/// whose kernels add each selected support entry's own gradient into du),
/// then c(t) from `sumAt` and the mean term. select_grad's parallel form,
/// and the tile-first composite backward (whose tiles add the own
/// gradients), share it.
void emitParallelSupportGrad(OpBuilder &b, Location loc,
                             const SupportGradProblem &p,
                             function_ref<void(OpBuilder &, Location)> own,
                             SupportSumFn sumAt);

/// Emits the kernels of the parallel select_grad (ParallelSelectGrad.cpp)
/// at the builder's point, once the operands' sizes were checked; `block`
/// items per outer parallel iteration (GPU threads per block).
void emitParallelSelectGrad(OpBuilder &b, Location loc, SelectGradOp op,
                            const SelectGradShape &z, int64_t block);

} // namespace mlir::sparsek

#endif // SPARSEK_LIB_CONVERSION_SPARSEKTOLOOPS_PARALLELSELECTGRAD_H
