//===- FusedChecks.h - Sizes and run-time checks of select_attention -*- C++
//-*-===//
//
// Shared by the fused loop lowering (LowerSelectAttention.cpp) and the
// tile-first lowerings (lib/Conversion/SparseKToGPU): the op's sizes, read
// once, and the checks the verifier could not make on dynamic ones.
//
//===----------------------------------------------------------------------===//
#ifndef SPARSEK_LIB_CONVERSION_SPARSEKTOLOOPS_FUSEDCHECKS_H
#define SPARSEK_LIB_CONVERSION_SPARSEKTOLOOPS_FUSEDCHECKS_H

#include "sparsek/Dialect/SparseK/IR/SparseKOps.h"

namespace mlir::sparsek {

/// The sizes of a buffer-form select_attention (host values).
struct FusedSizes {
  Value batch, hq, hkv, t, s, d, dv;
  /// G = Hq / Hkv, set by emitFusedChecks.
  Value group;

  static FusedSizes read(OpBuilder &b, Location loc, SelectAttentionOp op);
  static FusedSizes read(OpBuilder &b, Location loc, Value q, Value key,
                         Value value);
};

/// Checks the sizes the verifier could not (dynamic ones) and records
/// failures in the status word; sets z.group and returns the i1 that guards
/// the computation.
Value emitFusedChecks(OpBuilder &b, Location loc, SelectAttentionOp op,
                      FusedSizes &z);
/// The same checks of any op `op` with those operands (`out`: [B, Hq, T,
/// Dv], as the output).
Value emitFusedChecks(OpBuilder &b, Location loc, Operation *op, Value q,
                      Value key, Value value, Value u, Value out,
                      FusedSizes &z);

/// Reports NaN and +inf scores at the window-only positions [S - min(S, w),
/// S), which no selection reads: host loops, or with `inKernel` one kernel
/// reporting through the device status (Status.h).
void emitCheckWindowScores(OpBuilder &b, Location loc, SelectAttentionOp op,
                           const FusedSizes &z, int64_t w, bool inKernel);
/// The same for scores `u` of any op `op`.
void emitCheckWindowScores(OpBuilder &b, Location loc, Operation *op, Value u,
                           const FusedSizes &z, int64_t w, bool inKernel);

} // namespace mlir::sparsek

#endif // SPARSEK_LIB_CONVERSION_SPARSEKTOLOOPS_FUSEDCHECKS_H
