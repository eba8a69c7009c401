//===- Passes.h - Transformations on sparsek ops ----------------*- C++ -*-===//
//
// Declares the sparsek transformation passes and their registration.
//
//===----------------------------------------------------------------------===//
#ifndef SPARSEK_DIALECT_SPARSEK_TRANSFORMS_PASSES_H
#define SPARSEK_DIALECT_SPARSEK_TRANSFORMS_PASSES_H

#include "mlir/Pass/Pass.h"

namespace mlir {
class RewritePatternSet;
namespace sparsek {

#define GEN_PASS_DECL
#include "sparsek/Dialect/SparseK/Transforms/Passes.h.inc"

/// Adds the pattern rewriting sparsek.select_attention into sparsek.select
/// followed by sparsek.attention, with indices of `indexBitwidth` bits.
void populateDecomposeSelectAttentionPatterns(RewritePatternSet &patterns,
                                              unsigned indexBitwidth = 32);

#define GEN_PASS_REGISTRATION
#include "sparsek/Dialect/SparseK/Transforms/Passes.h.inc"

} // namespace sparsek
} // namespace mlir

#endif // SPARSEK_DIALECT_SPARSEK_TRANSFORMS_PASSES_H
