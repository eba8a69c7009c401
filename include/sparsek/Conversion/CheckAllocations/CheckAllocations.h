//===- CheckAllocations.h - Guards for run-time sized buffers ---*- C++ -*-===//
//
// The pieces of sparsek-check-allocations that other host-code passes reuse
// for their own allocations (sparsek-gpu-scratch-arena's device arena): the
// checked byte size of a buffer, and the guard that skips the rest of the
// allocation's block and records SPARSEK_ERROR_OUT_OF_MEMORY when the size
// overflows or the allocation returns null.
//
//===----------------------------------------------------------------------===//
#ifndef SPARSEK_CONVERSION_CHECKALLOCATIONS_CHECKALLOCATIONS_H
#define SPARSEK_CONVERSION_CHECKALLOCATIONS_CHECKALLOCATIONS_H

#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinTypes.h"

namespace mlir::sparsek {

/// The byte size of a buffer (index) and two i1: it fits in int64, and the
/// buffer is empty. `bytes` is meaningful only where it fits.
struct CheckedBytes {
  Value bytes, fits, empty;
};

/// The byte size of a `type` buffer with `dynamicSizes` (its `?` dims in
/// order), elements of `elementBytes` bytes each; every multiplication is
/// checked against int64 before it is made.
CheckedBytes emitCheckedBytes(OpBuilder &b, Location loc, MemRefType type,
                              ValueRange dynamicSizes, int64_t elementBytes);

/// Whether the ops from `alloc` to the end of its block (terminator
/// excluded) can move into a region: the terminator uses none of them.
bool restIsSelfContained(Operation *alloc);

/// Guards `alloc`, whose result `buffer` is a memref: the ops from `alloc`
/// to the end of its block run only if `fits` (computed before `alloc`), and
/// those after `ready` (`alloc` itself if null, else an op of the same block
/// after which the allocation is complete) only if the buffer is not null
/// or `empty`; otherwise the module's status records
/// SPARSEK_ERROR_OUT_OF_MEMORY. `alloc` must satisfy restIsSelfContained,
/// and the module must have the status symbols (ensureStatusSymbols).
void guardAllocation(Operation *alloc, Value buffer, Value fits, Value empty,
                     Operation *ready = nullptr);

} // namespace mlir::sparsek

#endif // SPARSEK_CONVERSION_CHECKALLOCATIONS_CHECKALLOCATIONS_H
