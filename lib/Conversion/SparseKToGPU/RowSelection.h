//===- RowSelection.h - One-launch selection for short rows -----*- C++ -*-===//
//
// For rows of at most kRowSelectCandidates candidates (C = S - w), the
// thresholds and block lists that BlockKeySets hands the tiles come from a
// single kernel, one CTA per (batch, KV head) row, instead of the chunked
// selection's launches (about 38 at P3, each a chain of dependent global
// loads). bench/selection_row_model.py models the algorithm and checks it
// against sparsek.reference; bench/selection_row_model.md records why it is
// shaped so.
//
//===----------------------------------------------------------------------===//
#ifndef SPARSEK_LIB_CONVERSION_SPARSEKTOGPU_ROWSELECTION_H
#define SPARSEK_LIB_CONVERSION_SPARSEKTOGPU_ROWSELECTION_H

#include "BlockKeySets.h"

#include "mlir/IR/BuiltinOps.h"

namespace mlir::sparsek {

/// The most candidates per row the row kernel takes: its sorted keys (i64)
/// and ranks (i16) fill 40 KiB of static workgroup memory.
constexpr int64_t kRowSelectCandidates = 4096;

/// Host code: launches the row kernel (built into `gpuModule`) over the
/// B x Hkv rows of the [B, Hkv, S] f32 `scores`, which must have
/// 1 <= S - w <= kRowSelectCandidates; with a null `gpuModule`, its CPU form
/// (the same steps for warps of one lane, one row after the other). It writes
/// what BlockKeySets::emit writes: per query tau(t) and theta(t) into
/// `thresholds` ([B * Hkv, T]), and per list l (first query l * listQueries)
/// Sel of that query, ascending and -1 padded, into `lists` ([B * Hkv, NL, k]
/// i32) with its length in `counts`
/// ([B * Hkv, NL] i32). NaN and +inf candidate scores are reported through
/// the device status of `anchor`'s module and then skipped as masked.
void emitRowSelection(OpBuilder &b, Location loc, ModuleOp gpuModule,
                      Operation *anchor, Value scores, int64_t k, int64_t w,
                      const ThresholdBuffers &thresholds, Value lists,
                      Value counts, Value listQueries);

} // namespace mlir::sparsek

#endif // SPARSEK_LIB_CONVERSION_SPARSEKTOGPU_ROWSELECTION_H
