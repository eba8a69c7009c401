//===- Status.h - Run-time error status of lowered sparsek code -*- C++ -*-===//
//
// Lowered code reports bad input (NaN scores, disagreeing dynamic sizes)
// through a status word in the module instead of aborting: the first error
// is kept, and the computation it guards is skipped. The codes are those of
// include/sparsek-c/Status.h.
//
//===----------------------------------------------------------------------===//
#ifndef SPARSEK_CONVERSION_SPARSEKTOLOOPS_STATUS_H
#define SPARSEK_CONVERSION_SPARSEKTOLOOPS_STATUS_H

#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinOps.h"
#include "sparsek-c/Status.h"

namespace mlir::sparsek {

/// Name of the module's status word (a memref.global of memref<i32>).
inline constexpr llvm::StringLiteral kStatusGlobal = "__sparsek_status";

/// Creates the status word and the C-callable `sparsek_status()` and
/// `sparsek_clear_status()` functions in `module` unless present.
void ensureStatusSymbols(ModuleOp module);

/// Records `code` in the status word unless an earlier error is recorded.
/// `anchor` locates the enclosing module (which must have the symbols).
void emitSetStatus(OpBuilder &b, Location loc, Operation *anchor,
                   int32_t code);

/// Records `code` when the i1 `ok` is false; returns `ok`, for guarding.
Value emitCheck(OpBuilder &b, Location loc, Operation *anchor, Value ok,
                int32_t code);

/// i1: dimension `ad` of shaped value `a` equals dimension `bd` of `b`
/// (a constant true when both are static, which the verifier checked).
Value emitDimsEqual(OpBuilder &b, Location loc, Value a, unsigned ad, Value c,
                    unsigned cd);

} // namespace mlir::sparsek

#endif // SPARSEK_CONVERSION_SPARSEKTOLOOPS_STATUS_H
