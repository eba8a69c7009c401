//===- Tile.cpp - The sparsek-tile pass -----------------------------------===//
//
// Tiles sparsek ops with scf.forall through their TilingInterface (see
// lib/Dialect/SparseK/IR/TilingInterfaceImpl.cpp for what a tile means).
//
//===----------------------------------------------------------------------===//
#include "sparsek/Dialect/SparseK/IR/SparseKOps.h"
#include "sparsek/Dialect/SparseK/Transforms/Passes.h"

#include "mlir/Dialect/Affine/IR/AffineOps.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/SCF/Transforms/TileUsingInterface.h"
#include "mlir/Interfaces/TilingInterface.h"

namespace mlir::sparsek {
#define GEN_PASS_DEF_SPARSEKTILE
#include "sparsek/Dialect/SparseK/Transforms/Passes.h.inc"
} // namespace mlir::sparsek

using namespace mlir;
using namespace mlir::sparsek;

namespace {
struct SparseKTilePass
    : mlir::sparsek::impl::SparseKTileBase<SparseKTilePass> {
  using Base::Base;

  /// Tiles every op of type OpTy by `sizes`; no sizes: leaves them alone.
  template <typename OpTy>
  LogicalResult tileAll(ArrayRef<int64_t> sizes, unsigned numLoops,
                        StringRef flag) {
    if (sizes.empty())
      return success();
    if (sizes.size() != numLoops) {
      mlir::emitError(getOperation()->getLoc())
          << "sparsek-tile: " << flag << " needs " << numLoops
          << " sizes, got " << sizes.size();
      return failure();
    }
    if (llvm::any_of(sizes, [](int64_t s) { return s < 0; })) {
      mlir::emitError(getOperation()->getLoc())
          << "sparsek-tile: " << flag << " sizes must be >= 0";
      return failure();
    }
    SmallVector<OpTy> ops;
    getOperation()->walk([&](OpTy op) {
      if (op.hasPureTensorSemantics())
        ops.push_back(op);
    });
    MLIRContext *ctx = &getContext();
    scf::SCFTilingOptions options;
    options.setLoopType(scf::SCFTilingOptions::LoopType::ForallOp);
    SmallVector<OpFoldResult> tileSizes;
    for (int64_t s : sizes)
      tileSizes.push_back(IntegerAttr::get(IndexType::get(ctx), s));
    options.setTileSizes(tileSizes);
    if (mapToBlocks) {
      // One mapping per tiled (non-zero) loop, innermost dims first in x.
      SmallVector<Attribute> mapping;
      unsigned tiled = llvm::count_if(sizes, [](int64_t s) { return s; });
      for (unsigned i = 0; i < tiled; ++i)
        mapping.push_back(gpu::GPUBlockMappingAttr::get(
            ctx, static_cast<gpu::MappingId>(tiled - 1 - i)));
      options.setMapping(mapping);
    }
    IRRewriter rewriter(ctx);
    for (OpTy op : ops) {
      rewriter.setInsertionPoint(op);
      FailureOr<scf::SCFTilingResult> result = scf::tileUsingSCF(
          rewriter, cast<TilingInterface>(op.getOperation()), options);
      if (failed(result))
        return failure();
      rewriter.replaceOp(op, result->replacements);
    }
    return success();
  }

  void runOnOperation() override {
    if (failed(tileAll<AttentionOp>(attentionTileSizes, 3,
                                    "attention-tile-sizes")) ||
        failed(tileAll<ScoreOp>(scoreTileSizes, 3, "score-tile-sizes")) ||
        failed(tileAll<DecodeAttentionOp>(decodeTileSizes, 2,
                                          "decode-tile-sizes")))
      signalPassFailure();
  }
};
} // namespace
