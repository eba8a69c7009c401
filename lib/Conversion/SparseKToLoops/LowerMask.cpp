//===- LowerMask.cpp - Loop lowering of sparsek.mask ----------------------===//
//
// Each row (the last axis) is fed score by score to the incremental exact
// tau solver (O(n log n) per row, scratch O(n) allocated once per op), then
// written as p = clip(z - tau, 0, 1).
//
//===----------------------------------------------------------------------===//
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
  Value ok = boolConst(b, loc, true);
  for (unsigned d = 0; d < rank; ++d) {
    ok = arith::AndIOp::create(
        b, loc, ok, emitDimsEqual(b, loc, z, d, op.getMaskInit(), d));
    if (d + 1 < rank)
      ok = arith::AndIOp::create(
          b, loc, ok, emitDimsEqual(b, loc, z, d, op.getTauInit(), d));
  }
  return ok;
}

/// tau of the row at `rowIndices` (f64); checks every score. Without a
/// solver (k = 0) tau is +inf.
static Value emitRowTau(OpBuilder &b, Location loc, MaskOp op,
                        const TauSolver *solver, ValueRange rowIndices,
                        Value n) {
  auto loadScore = [&](OpBuilder &nb, Location nl, Value j) {
    SmallVector<Value> idx(rowIndices);
    idx.push_back(j);
    return memref::LoadOp::create(nb, nl, op.getInput(), idx).getResult();
  };
  Value zero = indexConst(b, loc, 0), one = indexConst(b, loc, 1);
  if (!solver) {
    scf::ForOp::create(b, loc, zero, n, one, ValueRange{},
                       [&](OpBuilder &nb, Location nl, Value j, ValueRange) {
                         emitIsCandidateScore(nb, nl, op, loadScore(nb, nl, j));
                         scf::YieldOp::create(nb, nl);
                       });
    return arith::ConstantFloatOp::create(
        b, loc, b.getF64Type(),
        llvm::APFloat(std::numeric_limits<double>::infinity()));
  }
  auto feed = scf::ForOp::create(
      b, loc, zero, n, one, solver->emitEmpty(b, loc).values(),
      [&](OpBuilder &nb, Location nl, Value j, ValueRange state) {
        Value z = loadScore(nb, nl, j);
        Value candidate = emitIsCandidateScore(nb, nl, op, z);
        SmallVector<Value> next = emitIfElse(
            nb, nl, candidate,
            [&](OpBuilder &tb, Location tl) {
              return solver->emitAdd(tb, tl, TauState::fromValues(state), z)
                  .values();
            },
            [&](OpBuilder &, Location) { return SmallVector<Value>(state); });
        scf::YieldOp::create(nb, nl, next);
      });
  return TauState::fromValues(feed.getResults()).tau;
}

static void emitRow(OpBuilder &b, Location loc, MaskOp op,
                    const TauSolver *solver, ValueRange rowIndices, Value n) {
  Value tau = emitRowTau(b, loc, op, solver, rowIndices, n);
  scf::ForOp::create(
      b, loc, indexConst(b, loc, 0), n, indexConst(b, loc, 1), ValueRange{},
      [&](OpBuilder &nb, Location nl, Value j, ValueRange) {
        SmallVector<Value> idx(rowIndices);
        idx.push_back(j);
        Value z = memref::LoadOp::create(nb, nl, op.getInput(), idx);
        memref::StoreOp::create(nb, nl, emitClipGate(nb, nl, z, tau),
                                op.getMaskInit(), idx);
        scf::YieldOp::create(nb, nl);
      });
  memref::StoreOp::create(b, loc,
                          arith::TruncFOp::create(b, loc, b.getF32Type(), tau),
                          op.getTauInit(), rowIndices);
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
  scf::IfOp::create(rewriter, loc, ok, [&](OpBuilder &b, Location l) {
    Value n = memref::DimOp::create(b, l, z, rank - 1);
    std::optional<TauSolver> solver;
    if (k > 0)
      solver.emplace(b, l, k, n);
    SmallVector<Value> lbs, ubs, steps;
    for (unsigned d = 0; d + 1 < rank; ++d) {
      lbs.push_back(indexConst(b, l, 0));
      ubs.push_back(memref::DimOp::create(b, l, z, d));
      steps.push_back(indexConst(b, l, 1));
    }
    scf::buildLoopNest(
        b, l, lbs, ubs, steps, [&](OpBuilder &nb, Location nl, ValueRange row) {
          emitRow(nb, nl, op, solver ? &*solver : nullptr, row, n);
        });
    if (solver)
      solver->emitDealloc(b, l);
    scf::YieldOp::create(b, l);
  });
  rewriter.eraseOp(op);
  return success();
}
