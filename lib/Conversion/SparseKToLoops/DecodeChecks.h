//===- DecodeChecks.h - Sizes and shape checks of decode_attention -*- C++ -*-//
//
// Shared by the loop lowering (LowerDecodeAttention.cpp) and the tile-first
// lowering (lib/Conversion/SparseKToGPU/TileDecodeAttention.cpp), so both
// compare the same dynamic sizes before any slot is read.
//
//===----------------------------------------------------------------------===//
#ifndef SPARSEK_LIB_CONVERSION_SPARSEKTOLOOPS_DECODECHECKS_H
#define SPARSEK_LIB_CONVERSION_SPARSEKTOLOOPS_DECODECHECKS_H

#include "sparsek/Dialect/SparseK/IR/SparseKOps.h"

namespace mlir::sparsek {

/// Run-time sizes of one buffer-form sparsek.decode_attention.
struct DecodeSizes {
  Value batch, hq, hkv, d, dv;
  Value group; // G = Hq / Hkv, set by emitDecodeShapesOk

  DecodeSizes(OpBuilder &b, Location loc, DecodeAttentionOp op);
};

/// i1: the dynamic sizes agree (the verifier checked static ones) and Hq is
/// a multiple of Hkv; sets sizes.group. Records nothing: callers pass it to
/// emitCheck with SPARSEK_ERROR_SHAPE_MISMATCH.
Value emitDecodeShapesOk(OpBuilder &b, Location loc, DecodeAttentionOp op,
                         DecodeSizes &sizes);

/// i1: the f32 pool slot score `x` is neither NaN nor +inf (SPEC 3: invalid
/// input). The host scan of the CPU loops reports such a score; the GPU
/// forms, where the host cannot read the cache, report it through the
/// device status and skip its slot like a masked key (SPEC 3: kernels treat
/// NaN as -inf).
Value emitValidSlotScore(OpBuilder &b, Location loc, Value x);

} // namespace mlir::sparsek

#endif // SPARSEK_LIB_CONVERSION_SPARSEKTOLOOPS_DECODECHECKS_H
