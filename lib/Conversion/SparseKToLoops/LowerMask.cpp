//===- LowerMask.cpp - Loop lowering of sparsek.mask ----------------------===//
//
// Each row (the last axis) is fed score by score to the incremental exact
// tau solver (O(n log n) per row, scratch O(n) allocated once per op), then
// written as p = clip(z - tau, 0, 1).
//
//===----------------------------------------------------------------------===//
#include "LoopUtils.h"
#include "TauSolver.h"

#include "sparsek/Conversion/SparseKToLoops/SparseKToLoops.h"
#include "sparsek/Conversion/SparseKToLoops/Status.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"

#include <limits>
#include <optional>

using namespace mlir;
using namespace mlir::sparsek;

/// i1: every dimension the verifier could not compare statically agrees.
static Value emitMaskShapesAgree(OpBuilder &b, Location loc, MaskOp op) {
  Value z = op.getInput();
  unsigned rank = cast<ShapedType>(z.getType()).getRank();
  SmallVector<DimPair> pairs;
  for (unsigned d = 0; d < rank; ++d) {
    pairs.push_back({z, d, op.getMaskInit(), d});
    if (d + 1 < rank)
      pairs.push_back({z, d, op.getTauInit(), d});
  }
  return emitDimsAllEqual(b, loc, pairs);
}

/// The score z[row, j], where `row` fixes every index but the last.
static Value emitLoadScore(OpBuilder &b, Location loc, MaskOp op,
                           ValueRange row, Value j) {
  SmallVector<Value> idx(row);
  idx.push_back(j);
  return memref::LoadOp::create(b, loc, op.getInput(), idx);
}

/// f64 tau of one row; checks every score. Without a solver (k = 0) tau is
/// +inf.
static Value emitRowTau(OpBuilder &b, Location loc, MaskOp op,
                        const TauSolver *solver, ValueRange row, Value n) {
  Value zero = emitIndex(b, loc, 0);
  if (!solver) {
    emitFor(b, loc, zero, n, [&](OpBuilder &nb, Location nl, Value j) {
      emitIsCandidateScore(nb, nl, op, emitLoadScore(nb, nl, op, row, j));
    });
    return arith::ConstantFloatOp::create(
        b, loc, b.getF64Type(),
        llvm::APFloat(std::numeric_limits<double>::infinity()));
  }
  SmallVector<Value> state = emitForCarrying(
      b, loc, zero, n, solver->emitEmpty(b, loc).values(),
      [&](OpBuilder &nb, Location nl, Value j, ValueRange carried) {
        Value z = emitLoadScore(nb, nl, op, row, j);
        return emitIfElse(
            nb, nl, emitIsCandidateScore(nb, nl, op, z),
            [&](OpBuilder &tb, Location tl) {
              return solver->emitAdd(tb, tl, TauState::fromValues(carried), z)
                  .values();
            },
            [&](OpBuilder &, Location) { return SmallVector<Value>(carried); });
      });
  return TauState::fromValues(state).tau;
}

static void emitRow(OpBuilder &b, Location loc, MaskOp op,
                    const TauSolver *solver, ValueRange row, Value n) {
  Value tau = emitRowTau(b, loc, op, solver, row, n);
  emitFor(b, loc, emitIndex(b, loc, 0), n,
          [&](OpBuilder &nb, Location nl, Value j) {
            SmallVector<Value> idx(row);
            idx.push_back(j);
            Value z = memref::LoadOp::create(nb, nl, op.getInput(), idx);
            memref::StoreOp::create(nb, nl, emitClipGate(nb, nl, z, tau),
                                    op.getMaskInit(), idx);
          });
  memref::StoreOp::create(b, loc,
                          arith::TruncFOp::create(b, loc, b.getF32Type(), tau),
                          op.getTauInit(), row);
}

LogicalResult mlir::sparsek::lowerMaskToLoops(RewriterBase &rewriter,
                                              MaskOp op) {
  Location loc = op.getLoc();
  Value z = op.getInput();
  unsigned rank = cast<ShapedType>(z.getType()).getRank();
  int64_t k = op.getKAttr().getInt();

  Value ok =
      emitCheck(rewriter, loc, op, emitMaskShapesAgree(rewriter, loc, op),
                SPARSEK_ERROR_SHAPE_MISMATCH);
  emitIf(rewriter, loc, ok, [&](OpBuilder &b, Location l) {
    Value n = emitDim(b, l, z, rank - 1);
    std::optional<TauSolver> solver;
    if (k > 0)
      solver.emplace(b, l, k, n);
    SmallVector<Value> lbs, ubs, steps;
    for (unsigned d = 0; d + 1 < rank; ++d) {
      lbs.push_back(emitIndex(b, l, 0));
      ubs.push_back(emitDim(b, l, z, d));
      steps.push_back(emitIndex(b, l, 1));
    }
    scf::buildLoopNest(
        b, l, lbs, ubs, steps, [&](OpBuilder &nb, Location nl, ValueRange row) {
          emitRow(nb, nl, op, solver ? &*solver : nullptr, row, n);
        });
    if (solver)
      solver->emitDealloc(b, l);
  });
  rewriter.eraseOp(op);
  return success();
}
