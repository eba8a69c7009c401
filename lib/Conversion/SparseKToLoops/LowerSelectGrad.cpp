//===- LowerSelectGrad.cpp - Loop lowering of sparsek.select_grad ---------===//
//
// The SPARSEK vector-Jacobian product of each query's candidate row (SPEC 3,
// SPEC 5): per (b, h, t), with p_j = clip(u_j - tau(t), 0, 1) and
// Supp(t) = {candidates j <= pos(t) - w : 0 < p_j < 1},
//   1. the selected support entries add their gate gradient to du[j] and
//      to the row's sum;
//   2. when that sum is not zero, every support entry of the row, the ones
//      truncated out of Sel(t) included, gets -sum / |Supp(t)|.
// Step 2 walks the candidates: O(S) per query, O(T S) per head. Its mean
// term reaches support entries that the selection never listed, which is
// what makes the gradient of the truncated top-k exact; this is the CPU
// reference, and the truncated entries are what the test matrix checks.
// The parallel (GPU) form is in ParallelSelectGrad.cpp.
//
//===----------------------------------------------------------------------===//
#include "sparsek/Conversion/SparseKToLoops/SparseKToLoops.h"

#include "LoopUtils.h"
#include "ParallelSelectGrad.h"
#include "TauSolver.h"
#include "TopKHeap.h"
#include "sparsek/Conversion/SparseKToLoops/Status.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"

using namespace mlir;
using namespace mlir::sparsek;

using SelectGradSizes = SelectGradShape;

static Value emitSelectGradChecks(OpBuilder &b, Location loc, SelectGradOp op,
                                  const SelectGradSizes &z) {
  Value u = op.getScores(), idx = op.getIndices(), tau = op.getTau(),
        dg = op.getGradGates(), du = op.getInit();
  Value shapesOk = emitDimsAllEqual(b, loc,
                                    {{u, 0, idx, 0},
                                     {u, 1, idx, 1},
                                     {idx, 0, dg, 0},
                                     {idx, 1, dg, 1},
                                     {idx, 2, dg, 2},
                                     {idx, 3, dg, 3},
                                     {u, 0, tau, 0},
                                     {u, 1, tau, 1},
                                     {idx, 2, tau, 2},
                                     {u, 0, du, 0},
                                     {u, 1, du, 1},
                                     {u, 2, du, 2}});
  Value ok = emitCheck(b, loc, op, shapesOk, SPARSEK_ERROR_SHAPE_MISMATCH);
  return emitAnd(b, loc, {ok, emitQueriesFitKeys(b, loc, op, z.t, z.s)});
}

/// One query t of row (bi, h): the two steps of the file comment.
static void emitQueryVJP(OpBuilder &b, Location loc, SelectGradOp op,
                         const SelectGradSizes &z, Value bi, Value h, Value t,
                         Value pos) {
  Value u = op.getScores(), du = op.getInit();
  Value zero = emitIndex(b, loc, 0);
  Value lastCandidate = arith::SubIOp::create(
      b, loc, pos, emitIndex(b, loc, op.getWAttr().getInt()));
  Value tau32 =
      memref::LoadOp::create(b, loc, op.getTau(), ValueRange{bi, h, t});
  Value tau = arith::ExtFOp::create(b, loc, b.getF64Type(), tau32);
  auto inSupport = [&](OpBuilder &nb, Location nl, Value j) {
    Value score = memref::LoadOp::create(nb, nl, u, ValueRange{bi, h, j});
    return emitInSupport(nb, nl, score, tau);
  };

  // 1. Selected support entries: their own gate gradient.
  Value sum = emitSupportGateGradSum(b, loc, op, z.k, bi, h, t, lastCandidate,
                                     tau, emitAccumulate);

  // 2. The mean over the whole support, truncated entries included.
  Value nonZero = arith::CmpFOp::create(b, loc, arith::CmpFPredicate::UNE, sum,
                                        emitF32(b, loc, 0.0));
  emitIf(b, loc, nonZero, [&](OpBuilder &nb, Location nl) {
    Value end =
        arith::AddIOp::create(nb, nl, lastCandidate, emitIndex(nb, nl, 1));
    Value count =
        emitForCarrying(nb, nl, zero, end, emitIndex(nb, nl, 0),
                        [&](OpBuilder &cb, Location cl, Value j,
                            ValueRange n) -> SmallVector<Value> {
                          Value add = arith::IndexCastOp::create(
                              cb, cl, cb.getIndexType(),
                              arith::ExtUIOp::create(cb, cl, cb.getI64Type(),
                                                     inSupport(cb, cl, j)));
                          return {arith::AddIOp::create(cb, cl, n[0], add)};
                        })[0];
    Value countF32 = arith::UIToFPOp::create(
        nb, nl, nb.getF32Type(),
        arith::IndexCastOp::create(nb, nl, nb.getI64Type(), count));
    Value negMean = arith::NegFOp::create(
        nb, nl, arith::DivFOp::create(nb, nl, sum, countF32));
    emitFor(nb, nl, zero, end, [&](OpBuilder &cb, Location cl, Value j) {
      emitIf(cb, cl, inSupport(cb, cl, j), [&](OpBuilder &sb, Location sl) {
        emitAccumulate(sb, sl, du, {bi, h, j}, negMean);
      });
    });
  });
}

Value mlir::sparsek::emitSupportGateGradSum(
    OpBuilder &b, Location loc, SelectGradOp op, Value k, Value bi, Value h,
    Value t, Value lastCandidate, Value tau,
    function_ref<void(OpBuilder &, Location, Value, ValueRange, Value)> add) {
  return emitForListedCandidates(
      b, loc, op.getIndices(), bi, h, t, k, lastCandidate,
      ValueRange{emitF32(b, loc, 0.0)},
      [&](OpBuilder &nb, Location nl, Value j, Value i, ValueRange carried) {
        Value score = memref::LoadOp::create(nb, nl, op.getScores(),
                                             ValueRange{bi, h, j});
        return emitIfElse(
            nb, nl, emitInSupport(nb, nl, score, tau),
            [&](OpBuilder &sb, Location sl) -> SmallVector<Value> {
              Value g = memref::LoadOp::create(sb, sl, op.getGradGates(),
                                               ValueRange{bi, h, t, i});
              add(sb, sl, op.getInit(), {bi, h, j}, g);
              return {arith::AddFOp::create(sb, sl, carried[0], g)};
            },
            [&](OpBuilder &, Location) { return SmallVector<Value>(carried); });
      })[0];
}

LogicalResult
mlir::sparsek::lowerSelectGradToLoops(RewriterBase &rewriter, SelectGradOp op,
                                      const LoopLoweringOptions &options) {
  Location loc = op.getLoc();
  Value u = op.getScores();
  SelectGradSizes z{emitDim(rewriter, loc, u, 0), emitDim(rewriter, loc, u, 1),
                    emitDim(rewriter, loc, u, 2),
                    emitDim(rewriter, loc, op.getTau(), 2),
                    emitDim(rewriter, loc, op.getIndices(), 3)};
  Value ok = emitSelectGradChecks(rewriter, loc, op, z);
  emitIf(rewriter, loc, ok, [&](OpBuilder &b, Location l) {
    if (options.parallelLoops)
      return emitParallelSelectGrad(b, l, op, z, options.queryBlock);
    emitZeroFill(b, l, op.getInit());
    Value zero = emitIndex(b, l, 0);
    Value firstPos = arith::SubIOp::create(b, l, z.s, z.t);
    emitFor(b, l, zero, z.batch, [&](OpBuilder &b1, Location l1, Value bi) {
      emitFor(b1, l1, zero, z.hkv, [&](OpBuilder &b2, Location l2, Value h) {
        // NaN and +inf scores are invalid input (SPEC 3), as in select.
        emitFor(b2, l2, zero, z.s, [&](OpBuilder &b3, Location l3, Value j) {
          emitIsCandidateScore(
              b3, l3, op,
              memref::LoadOp::create(b3, l3, u, ValueRange{bi, h, j}));
        });
        emitFor(b2, l2, zero, z.t, [&](OpBuilder &b3, Location l3, Value t) {
          Value pos = arith::AddIOp::create(b3, l3, firstPos, t);
          emitQueryVJP(b3, l3, op, z, bi, h, t, pos);
        });
      });
    });
  });
  rewriter.eraseOp(op);
  return success();
}
