//===- TileSelectAttention.cpp - The sparsek-tile-select-attention pass ---===//
//
// Lowers buffer-form select_attention tile first (TileLowerings.h): the
// run-time checks of the fused lowering, the block key sets and thresholds
// (BlockKeySets.h), then the tiles as an mma.sync or a wgmma (sm_90a) GPU
// kernel or as scalar loops. In the GPU forms, ops the kernels do not cover
// (f32 inputs, other head dims) are left for sparsek-lower-to-loops.
//
//===----------------------------------------------------------------------===//
#include "sparsek/Conversion/Passes.h"
#include "sparsek/Conversion/SparseKToLoops/Status.h"

#include "TileLowerings.h"

#include "../SparseKToLoops/LoopUtils.h"
#include "../SparseKToLoops/Softmax.h"

#include "mlir/Dialect/NVGPU/IR/NVGPUDialect.h"
#include "mlir/IR/PatternMatch.h"
#include "llvm/ADT/StringSwitch.h"

#include <optional>

namespace mlir::sparsek {
#define GEN_PASS_DEF_SPARSEKTILESELECTATTENTION
#include "sparsek/Conversion/Passes.h.inc"
} // namespace mlir::sparsek

using namespace mlir;
using namespace mlir::sparsek;

namespace {
enum class TileForm { MmaSync, Wgmma, Scalar };
} // namespace

static void lowerToTiles(RewriterBase &rewriter, SelectAttentionOp op,
                         TileForm form, int64_t selectChunk,
                         bool rowSelection, int64_t tileRows,
                         ModuleOp module) {
  Location loc = op.getLoc();
  FusedSizes z = FusedSizes::read(rewriter, loc, op);
  Value ok = emitFusedChecks(rewriter, loc, op, z);
  if (form != TileForm::Scalar) {
    // cp.async moves 16-byte row chunks: the rows must start aligned.
    bool aligned = false;
    ok = emitAnd(rewriter, loc,
                 {ok, emitRowAlignmentCheck(rewriter, loc, op,
                                            {op.getQuery(), op.getKey(),
                                             op.getValue(), op.getInit()},
                                            aligned)});
    assert(aligned && "mmaSyncUnsupportedReason admits static 64/128 rows");
  }
  emitIf(rewriter, loc, ok, [&](OpBuilder &b, Location l) {
    TileProblem p{op,
                  z,
                  TileGeometry::emit(b, l, z.group, z.t, tileRows),
                  op.getKAttr().getInt(),
                  op.getWAttr().getInt(),
                  emitAttentionScale(b, l, op.getScale(), z.d),
                  std::nullopt};
    // The selection's kernels report NaN and +inf candidates (device
    // status); the window-only positions get a kernel of their own.
    emitCheckWindowScores(b, l, op, z, p.w, /*inKernel=*/true);
    if (p.k > 0) {
      p.keys.emplace(op, selectChunk);
      if (rowSelection)
        p.keys->useRowSelection(form == TileForm::Scalar ? ModuleOp() : module);
      p.keys->emit(b, l, p.geo);
    }
    switch (form) {
    case TileForm::MmaSync:
      emitMmaSyncTiles(b, l, p, module);
      break;
    case TileForm::Wgmma:
      emitWgmmaTiles(b, l, p, module);
      break;
    case TileForm::Scalar:
      emitScalarTiles(b, l, p);
      break;
    }
    if (p.keys)
      p.keys->emitDealloc(b, l);
  });
  rewriter.eraseOp(op);
}

namespace {
struct SparseKTileSelectAttentionPass
    : mlir::sparsek::impl::SparseKTileSelectAttentionBase<
          SparseKTileSelectAttentionPass> {
  using Base::Base;

  void runOnOperation() override {
    ModuleOp module = getOperation();
    std::optional<TileForm> tileForm =
        llvm::StringSwitch<std::optional<TileForm>>(form)
            .Case("mma-sync", TileForm::MmaSync)
            .Case("wgmma", TileForm::Wgmma)
            .Case("scalar", TileForm::Scalar)
            .Default(std::nullopt);
    if (!tileForm) {
      mlir::emitError(module.getLoc())
          << "sparsek-tile-select-attention: form must be mma-sync, wgmma "
             "or scalar, got '"
          << form << "'";
      return signalPassFailure();
    }
    if (selectChunk < 0) {
      mlir::emitError(module.getLoc())
          << "sparsek-tile-select-attention: select-chunk must be 0 "
             "(automatic) or positive, got "
          << static_cast<int64_t>(selectChunk);
      return signalPassFailure();
    }
    // A row-count option's rows (`automatic` for 0), or an error when they
    // are neither 64 nor, where `wideOk`, 128.
    auto rowsOf = [&](StringRef name, int64_t value, int64_t automatic,
                      bool wideOk, StringRef wideForms) -> FailureOr<int64_t> {
      int64_t rows = value ? value : automatic;
      if (rows == kTileRows || (rows == kWideTileRows && wideOk))
        return rows;
      mlir::emitError(module.getLoc())
          << "sparsek-tile-select-attention: " << name
          << " must be 0 (automatic), 64, or 128" << wideForms << ", got "
          << value << " with form=" << form;
      return failure();
    };
    // 64 rows unless asked: with two warpgroups in step (128 rows), the
    // wgmma tiles took 12% longer at P1 32k on an H200 than two CTAs of
    // one warpgroup each per SM (bench/results/session11_3a30aab_6152438.md).
    FailureOr<int64_t> rows =
        rowsOf("tile-rows", tileRows, kTileRows, *tileForm != TileForm::MmaSync,
               " (wgmma and scalar forms)");
    // The backward's tiles are 128 rows unless asked: eight warps share each
    // gathered K/V tile and add dkey/dvalue half as often per row (G1 32k on
    // an H100: 42.4 ms against 54.3 ms on 64 rows,
    // bench/results/gpu_grad_tiles_h100_c5fa1b2.md).
    FailureOr<int64_t> gradRows = rowsOf("grad-tile-rows", gradTileRows,
                                         kWideTileRows, /*wideOk=*/true, "");
    if (failed(rows) || failed(gradRows))
      return signalPassFailure();
    SmallVector<SelectAttentionOp> ops;
    if (forward)
      module.walk([&](SelectAttentionOp op) { ops.push_back(op); });
    SmallVector<SelectAttentionGradOp> gradOps;
    if (grads)
      module.walk([&](SelectAttentionGradOp op) { gradOps.push_back(op); });
    if (ops.empty() && gradOps.empty())
      return;
    ensureStatusSymbols(module);
    IRRewriter rewriter(&getContext());
    auto requireBuffers = [](auto op) -> LogicalResult {
      if (op.hasPureBufferSemantics())
        return success();
      return op.emitOpError()
             << "is in tensor form; sparsek-tile-select-attention lowers the "
                "buffer form: run one-shot-bufferize first";
    };
    for (SelectAttentionOp op : ops) {
      if (failed(requireBuffers(op)))
        return signalPassFailure();
      if (*tileForm != TileForm::Scalar &&
          !mmaSyncUnsupportedReason(op).empty())
        continue;
      rewriter.setInsertionPoint(op);
      lowerToTiles(rewriter, op, *tileForm, selectChunk, rowSelection, *rows,
                   module);
    }
    // The backward takes mma.sync tiles in both GPU forms.
    bool scalar = *tileForm == TileForm::Scalar;
    for (SelectAttentionGradOp op : gradOps) {
      if (failed(requireBuffers(op)))
        return signalPassFailure();
      if (!scalar && !mmaSyncGradUnsupportedReason(op).empty())
        continue;
      rewriter.setInsertionPoint(op);
      lowerSelectAttentionGradToTiles(rewriter, op, scalar, selectChunk,
                                      rowSelection, *gradRows, vectorAtomics,
                                      module);
    }
  }
};
} // namespace
