//===- TileSelectAttentionGrad.cpp - The backward of the tiles, host side -===//
//
// select_attention_grad lowered on the forward's tile structure: the same
// run-time checks (plus the gradients' shapes), the same block key sets and
// per-query thresholds (BlockKeySets.h, recomputed from the scores as the
// op says), then
//   - dkey and dvalue zeroed (the tiles add into them);
//   - with selection, the parallel SPARSEK VJP (emitParallelSupportGrad over
//     the thresholds' tau): du zeroed, each key's support range of queries
//     and the support sizes, then the tiles (which add the selected
//     support's own terms into du and each query's support sum), then the
//     mean term from those sums;
//   - without selection (k = 0) no score gradient: du zeroed, the tiles.
// The tiles are the mma.sync kernel (MmaSyncGradKernel.cpp) or, for the
// CPU, the same walk as loops (ScalarGradTiles.cpp).
//
//===----------------------------------------------------------------------===//
#include "TileLowerings.h"

#include "../SparseKToLoops/LoopUtils.h"
#include "../SparseKToLoops/ParallelSelectGrad.h"
#include "../SparseKToLoops/Softmax.h"
#include "sparsek/Conversion/SparseKToLoops/Status.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"

using namespace mlir;
using namespace mlir::sparsek;

/// Items per outer parallel iteration of the host's kernels.
static constexpr int64_t kBlock = 256;

void sparsek::lowerSelectAttentionGradToTiles(RewriterBase &rewriter,
                                              SelectAttentionGradOp op,
                                              bool scalar, int64_t selectChunk,
                                              bool rowSelection, int64_t rows,
                                              bool vectorAtomics,
                                              ModuleOp module) {
  Location loc = op.getLoc();
  Value q = op.getQuery(), key = op.getKey(), value = op.getValue(),
        u = op.getScores(), gradOut = op.getGradOutput();
  Value dq = op.getGradQueryInit(), dkey = op.getGradKeyInit(),
        dvalue = op.getGradValueInit(), du = op.getGradScoresInit();
  FusedSizes z = FusedSizes::read(rewriter, loc, q, key, value);
  Value ok = emitFusedChecks(rewriter, loc, op, q, key, value, u, gradOut, z);
  Value gradsOk = emitDimsAllEqual(rewriter, loc,
                                   {{q, 0, dq, 0},
                                    {q, 1, dq, 1},
                                    {q, 2, dq, 2},
                                    {q, 3, dq, 3},
                                    {key, 0, dkey, 0},
                                    {key, 1, dkey, 1},
                                    {key, 2, dkey, 2},
                                    {key, 3, dkey, 3},
                                    {value, 0, dvalue, 0},
                                    {value, 1, dvalue, 1},
                                    {value, 2, dvalue, 2},
                                    {value, 3, dvalue, 3},
                                    {u, 0, du, 0},
                                    {u, 1, du, 1},
                                    {u, 2, du, 2}});
  ok = emitAnd(rewriter, loc,
               {ok, emitCheck(rewriter, loc, op, gradsOk,
                              SPARSEK_ERROR_SHAPE_MISMATCH)});
  if (!scalar) {
    // cp.async moves 16-byte row chunks, dq rows are stored in 8-byte
    // pairs, and vector atomics add 8-byte pairs of dkey and dvalue: the
    // rows must start aligned.
    bool aligned = false;
    SmallVector<Value> rowsAligned{q, key, value, gradOut, dq};
    if (vectorAtomics)
      rowsAligned.append({dkey, dvalue});
    ok = emitAnd(
        rewriter, loc,
        {ok, emitRowAlignmentCheck(rewriter, loc, op, rowsAligned, aligned)});
    assert(aligned && "mmaSyncGradUnsupportedReason admits static 64/128 rows");
  }
  int64_t k = op.getKAttr().getInt(), w = op.getWAttr().getInt();
  emitIf(rewriter, loc, ok, [&](OpBuilder &b, Location l) {
    GradTileProblem p{op,
                      z,
                      TileGeometry::emit(b, l, z.group, z.t, rows),
                      k,
                      w,
                      emitAttentionScale(b, l, op.getScale(), z.d),
                      std::nullopt,
                      Value(),
                      vectorAtomics};
    emitCheckWindowScores(b, l, op, u, z, w, /*inKernel=*/true);
    emitParallelZeroFill(b, l, dkey, kBlock);
    emitParallelZeroFill(b, l, dvalue, kBlock);
    auto tiles = [&](OpBuilder &tb, Location tl) {
      if (scalar)
        emitScalarGradTiles(tb, tl, p);
      else
        emitMmaSyncGradTiles(tb, tl, p, module);
    };
    if (k == 0) {
      emitParallelZeroFill(b, l, du, kBlock);
      tiles(b, l);
      return;
    }
    p.keys.emplace(op, q, u, k, w, selectChunk);
    if (rowSelection)
      p.keys->useRowSelection(scalar ? ModuleOp() : module);
    p.keys->emit(b, l, p.geo);
    p.supportSums = memref::AllocOp::create(
        b, l,
        MemRefType::get(
            {ShapedType::kDynamic, ShapedType::kDynamic, ShapedType::kDynamic},
            b.getF32Type()),
        ValueRange{z.batch, z.hkv, z.t});
    emitParallelZeroFill(b, l, p.supportSums, kBlock);
    Value tauBuf = p.keys->thresholds.tau;
    auto tauAt = [&](OpBuilder &nb, Location nl, Value bi, Value h, Value t) {
      Value r = arith::AddIOp::create(
          nb, nl, arith::MulIOp::create(nb, nl, bi, z.hkv), h);
      return memref::LoadOp::create(nb, nl, tauBuf, ValueRange{r, t})
          .getResult();
    };
    SupportGradProblem sp{
        op,     u,    du, w, {z.batch, z.hkv, z.s, z.t, emitIndex(b, l, k)},
        kBlock, tauAt};
    emitParallelSupportGrad(b, l, sp, tiles,
                            [&](OpBuilder &nb, Location nl, Value bi, Value h,
                                Value t, Value, Value) {
                              return memref::LoadOp::create(
                                         nb, nl, p.supportSums,
                                         ValueRange{bi, h, t})
                                  .getResult();
                            });
    memref::DeallocOp::create(b, l, p.supportSums);
    p.keys->emitDealloc(b, l);
  });
  rewriter.eraseOp(op);
}
