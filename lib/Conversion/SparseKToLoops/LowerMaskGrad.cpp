//===- LowerMaskGrad.cpp - Loop lowering of sparsek.mask_grad -------------===//
//
// The SPARSEK vector-Jacobian product (SPEC 3) row by row, in two passes:
// the sum and count of dL/dp over the support {0 < p < 1}, then
// dz = [in support] (dL/dp - mean). p is recomputed from z and the forward
// op's tau exactly as sparsek.mask computes it (emitClipGate).
//
//===----------------------------------------------------------------------===//
#include "sparsek/Conversion/SparseKToLoops/SparseKToLoops.h"

#include "LoopUtils.h"
#include "TauSolver.h"
#include "TopKHeap.h"
#include "sparsek/Conversion/SparseKToLoops/Status.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"

using namespace mlir;
using namespace mlir::sparsek;

static SmallVector<Value> at(ValueRange row, Value j) {
  SmallVector<Value> idx(row);
  idx.push_back(j);
  return idx;
}

static void emitRowVJP(OpBuilder &b, Location loc, MaskGradOp op,
                       ValueRange row, Value n) {
  Value zero = emitIndex(b, loc, 0);
  Value tau32 = memref::LoadOp::create(b, loc, op.getTau(), row);
  Value tau = arith::ExtFOp::create(b, loc, b.getF64Type(), tau32);
  auto inSupport = [&](OpBuilder &nb, Location nl, Value j) {
    Value z = memref::LoadOp::create(nb, nl, op.getInput(), at(row, j));
    return emitInSupport(nb, nl, z, tau);
  };
  auto grad = [&](OpBuilder &nb, Location nl, Value j) -> Value {
    return memref::LoadOp::create(nb, nl, op.getGradMask(), at(row, j));
  };
  SmallVector<Value> sums = emitForCarrying(
      b, loc, zero, n, {emitF32(b, loc, 0.0), emitIndex(b, loc, 0)},
      [&](OpBuilder &nb, Location nl, Value j, ValueRange carried) {
        Value z = memref::LoadOp::create(nb, nl, op.getInput(), at(row, j));
        emitIsCandidateScore(nb, nl, op, z); // reports NaN and +inf
        return emitIfElse(
            nb, nl, emitInSupport(nb, nl, z, tau),
            [&](OpBuilder &sb, Location sl) -> SmallVector<Value> {
              return {
                  arith::AddFOp::create(sb, sl, carried[0], grad(sb, sl, j)),
                  arith::AddIOp::create(sb, sl, carried[1],
                                        emitIndex(sb, sl, 1))};
            },
            [&](OpBuilder &, Location) { return SmallVector<Value>(carried); });
      });
  // An empty support leaves count 0; the mean is then never used.
  Value count = arith::MaxUIOp::create(b, loc, sums[1], emitIndex(b, loc, 1));
  Value mean = arith::DivFOp::create(
      b, loc, sums[0],
      arith::UIToFPOp::create(
          b, loc, b.getF32Type(),
          arith::IndexCastOp::create(b, loc, b.getI64Type(), count)));
  emitFor(b, loc, zero, n, [&](OpBuilder &nb, Location nl, Value j) {
    Value centered = arith::SubFOp::create(nb, nl, grad(nb, nl, j), mean);
    Value dz = arith::SelectOp::create(nb, nl, inSupport(nb, nl, j), centered,
                                       emitF32(nb, nl, 0.0));
    memref::StoreOp::create(nb, nl, dz, op.getInit(), at(row, j));
  });
}

LogicalResult mlir::sparsek::lowerMaskGradToLoops(RewriterBase &rewriter,
                                                  MaskGradOp op) {
  Location loc = op.getLoc();
  Value z = op.getInput();
  unsigned rank = cast<ShapedType>(z.getType()).getRank();
  SmallVector<DimPair> pairs;
  for (unsigned d = 0; d < rank; ++d) {
    pairs.push_back({z, d, op.getGradMask(), d});
    pairs.push_back({z, d, op.getInit(), d});
    if (d + 1 < rank)
      pairs.push_back({z, d, op.getTau(), d});
  }
  Value ok =
      emitCheck(rewriter, loc, op, emitDimsAllEqual(rewriter, loc, pairs),
                SPARSEK_ERROR_SHAPE_MISMATCH);
  emitIf(rewriter, loc, ok, [&](OpBuilder &b, Location l) {
    Value n = emitDim(b, l, z, rank - 1);
    SmallVector<Value> lbs, ubs, steps;
    for (unsigned d = 0; d + 1 < rank; ++d) {
      lbs.push_back(emitIndex(b, l, 0));
      ubs.push_back(emitDim(b, l, z, d));
      steps.push_back(emitIndex(b, l, 1));
    }
    scf::buildLoopNest(b, l, lbs, ubs, steps,
                       [&](OpBuilder &nb, Location nl, ValueRange row) {
                         emitRowVJP(nb, nl, op, row, n);
                       });
  });
  rewriter.eraseOp(op);
  return success();
}
