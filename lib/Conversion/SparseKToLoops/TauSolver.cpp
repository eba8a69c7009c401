//===- TauSolver.cpp - Exact SPARSEK threshold over scores fed one by one -===//
//
// Correctness notes (SPEC 3). f(x) = sum_i clip(z_i - x, 0, 1) is
// non-increasing; between consecutive breakpoints ({z_i}, {z_i - 1}) it is
// U + sum(MIDDLE) - M x. Adding a score only raises f, so the new root lies
// at or above the old tau, and the solver walks breakpoints upwards from it,
// always crossing the smallest next one (popping MIDDLE first when an UPPER
// entry leaves p = 1 earlier would drop scores that still count). SPEC 3 asks
// for the largest root: a piece of slope zero at height k (the hard case,
// M = 0 and U = k) resolves to its right end min(UPPER) - 1; a piece with
// M > 0 and U >= k cannot hold a root before its right end (its root would be
// the mean of MIDDLE, at or past min(MIDDLE)), so it is crossed without
// computing a root that rounding could place just inside.
//
//===----------------------------------------------------------------------===//
#include "TauSolver.h"
#include "LoopUtils.h"

#include "sparsek/Conversion/SparseKToLoops/Status.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"

#include <limits>

using namespace mlir;
using namespace mlir::sparsek;

static constexpr double kInf = std::numeric_limits<double>::infinity();

static Value f64Const(OpBuilder &b, Location loc, double v) {
  return arith::ConstantFloatOp::create(b, loc, b.getF64Type(),
                                        llvm::APFloat(v));
}

static Value cmpf(OpBuilder &b, Location loc, arith::CmpFPredicate pred,
                  Value x, Value y) {
  return arith::CmpFOp::create(b, loc, pred, x, y);
}

static Value cmpi(OpBuilder &b, Location loc, arith::CmpIPredicate pred,
                  Value x, Value y) {
  return arith::CmpIOp::create(b, loc, pred, x, y);
}

static Value toF64(OpBuilder &b, Location loc, Value v) {
  if (v.getType().isIndex())
    return arith::UIToFPOp::create(
        b, loc, b.getF64Type(),
        arith::IndexCastUIOp::create(b, loc, b.getI64Type(), v));
  return arith::ExtFOp::create(b, loc, b.getF64Type(), v);
}

/// Scores in the heaps stay f32 (the inputs, exactly); the order is "less".
static ScratchHeap scoreMinHeap(Value scores) {
  return ScratchHeap(
      {scores}, [](OpBuilder &b, Location loc, ValueRange x, ValueRange y) {
        return cmpf(b, loc, arith::CmpFPredicate::OLT, x[0], y[0]);
      });
}

static Value allocScores(OpBuilder &b, Location loc, Value capacity) {
  auto type = MemRefType::get({ShapedType::kDynamic}, b.getF32Type());
  return memref::AllocOp::create(b, loc, type, ValueRange{capacity});
}

SmallVector<Value> TauState::values() const {
  return {count, upperSize, middleSize, middleSum, tau};
}

TauState TauState::fromValues(ValueRange v) {
  assert(v.size() == kNumValues && "not a TauState");
  return {v[0], v[1], v[2], v[3], v[4]};
}

TauSolver::TauSolver(OpBuilder &b, Location loc, int64_t k, Value capacity)
    : TauSolver(k, std::array<Value, 2>{allocScores(b, loc, capacity),
                                        allocScores(b, loc, capacity)}) {}

TauSolver::TauSolver(int64_t k, Value upperScores, Value middleScores)
    : k(k), upperScores(upperScores), middleScores(middleScores),
      upper(scoreMinHeap(upperScores)), middle(scoreMinHeap(middleScores)) {
  assert(k >= 1 && "k = 0 has tau = +inf without a solver");
}

TauState TauSolver::emitEmpty(OpBuilder &b, Location loc) const {
  Value zero = emitIndex(b, loc, 0);
  Value sum = f64Const(b, loc, 0.0);
  Value tau = f64Const(b, loc, -kInf);
  return {zero, zero, zero, sum, tau};
}

void TauSolver::emitDealloc(OpBuilder &b, Location loc) const {
  memref::DeallocOp::create(b, loc, upperScores);
  memref::DeallocOp::create(b, loc, middleScores);
}

TauState TauSolver::emitAdd(OpBuilder &b, Location loc, const TauState &s,
                            Value score) const {
  Value one = emitIndex(b, loc, 1);
  Value count = arith::AddIOp::create(b, loc, s.count, one);
  Value z = toF64(b, loc, score);
  // While n <= k, tau = -inf (SPEC 3) and every score lands in UPPER.
  Value above = cmpf(b, loc, arith::CmpFPredicate::OGT, z, s.tau);
  SmallVector<Value> next = emitIfElse(
      b, loc, above,
      [&](OpBuilder &nb, Location nl) {
        // Classify for the piece of f just above the old tau.
        Value tauPlusOne =
            arith::AddFOp::create(nb, nl, s.tau, f64Const(nb, nl, 1.0));
        Value isUpper = cmpf(nb, nl, arith::CmpFPredicate::OGT, z, tauPlusOne);
        SmallVector<Value> sets = emitIfElse(
            nb, nl, isUpper,
            [&](OpBuilder &ub, Location ul) {
              Value upperSize = upper.emitPush(ub, ul, s.upperSize, score);
              return SmallVector<Value>{upperSize, s.middleSize, s.middleSum};
            },
            [&](OpBuilder &mb, Location ml) {
              Value middleSize = middle.emitPush(mb, ml, s.middleSize, score);
              Value sum = arith::AddFOp::create(mb, ml, s.middleSum, z);
              return SmallVector<Value>{s.upperSize, middleSize, sum};
            });
        TauState added{count, sets[0], sets[1], sets[2], s.tau};
        Value overBudget = cmpi(nb, nl, arith::CmpIPredicate::ugt, count,
                                emitIndex(nb, nl, k));
        return emitIfElse(
            nb, nl, overBudget,
            [&](OpBuilder &tb, Location tl) {
              return emitSolve(tb, tl, added).values();
            },
            [&](OpBuilder &, Location) { return added.values(); });
      },
      [&](OpBuilder &, Location) {
        // p = 0 now and forever: tau never decreases.
        return TauState{count, s.upperSize, s.middleSize, s.middleSum, s.tau}
            .values();
      });
  return TauState::fromValues(next);
}

/// The f64 root score of a heap of `size` entries, or +inf when empty.
static Value emitTopOrInf(OpBuilder &b, Location loc, const ScratchHeap &heap,
                          Value size) {
  Value nonEmpty =
      cmpi(b, loc, arith::CmpIPredicate::ugt, size, emitIndex(b, loc, 0));
  return emitIfElse(
      b, loc, nonEmpty,
      [&](OpBuilder &tb, Location tl) {
        return SmallVector<Value>{toF64(tb, tl, heap.emitTop(tb, tl)[0])};
      },
      [&](OpBuilder &eb, Location el) {
        return SmallVector<Value>{f64Const(eb, el, kInf)};
      })[0];
}

static Value emitNot(OpBuilder &b, Location loc, Value v) {
  return arith::XOrIOp::create(b, loc, v, emitBool(b, loc, true));
}

/// The exit test of the breakpoint walk at the piece (U, M, sum) just above
/// `floor`, whose right end is `next`. Returns (done, tau if done).
static std::pair<Value, Value> emitPieceRoot(OpBuilder &b, Location loc,
                                             int64_t k, Value u, Value m,
                                             Value sum, Value floor,
                                             Value next) {
  Value kIdx = emitIndex(b, loc, k);
  Value uF = toF64(b, loc, u);
  Value mF = toF64(b, loc, m);
  // Root of the linear piece U + sum - M x = k (meaningful when M > 0).
  Value kF = f64Const(b, loc, static_cast<double>(k));
  Value total = arith::AddFOp::create(b, loc, sum, uF);
  Value excess = arith::SubFOp::create(b, loc, total, kF);
  Value root = arith::DivFOp::create(b, loc, excess, mF);
  Value hasMiddle =
      cmpi(b, loc, arith::CmpIPredicate::ugt, m, emitIndex(b, loc, 0));
  Value belowBudget = cmpi(b, loc, arith::CmpIPredicate::ult, u, kIdx);
  Value rootInPiece = cmpf(b, loc, arith::CmpFPredicate::OLT, root, next);
  Value sloped = emitAnd(b, loc, {hasMiddle, belowBudget, rootInPiece});
  // M = 0: f is flat at U up to next. U = k is the hard case (the largest
  // root is next); U < k only happens by rounding, and tau stays.
  Value atBudget = cmpi(b, loc, arith::CmpIPredicate::eq, u, kIdx);
  Value atMostBudget = cmpi(b, loc, arith::CmpIPredicate::ule, u, kIdx);
  Value flat = emitAnd(b, loc, {emitNot(b, loc, hasMiddle), atMostBudget});
  Value flatTau = arith::SelectOp::create(b, loc, atBudget, next, floor);
  // Rounding must not move tau below where the walk already is.
  Value slopedTau = arith::MaximumFOp::create(b, loc, root, floor);
  Value tau = arith::SelectOp::create(b, loc, sloped, slopedTau, flatTau);
  Value done = arith::OrIOp::create(b, loc, sloped, flat);
  return {done, tau};
}

TauState TauSolver::emitSolve(OpBuilder &b, Location loc,
                              const TauState &s) const {
  Type indexType = b.getIndexType(), f64 = b.getF64Type();
  // Carried: (U, M, sumMid, floor); the condition adds tau for the exit.
  SmallVector<Type> exitTypes{indexType, indexType, f64, f64, f64};
  auto loop = scf::WhileOp::create(
      b, loc, exitTypes,
      ValueRange{s.upperSize, s.middleSize, s.middleSum, s.tau},
      [&](OpBuilder &nb, Location nl, ValueRange args) {
        Value u = args[0], m = args[1], sum = args[2], floor = args[3];
        // The next breakpoint above floor: a MIDDLE score reaching p = 0
        // or an UPPER score leaving p = 1.
        Value middleTop = emitTopOrInf(nb, nl, middle, m);
        Value upperTop = emitTopOrInf(nb, nl, upper, u);
        Value upperLeaves =
            arith::SubFOp::create(nb, nl, upperTop, f64Const(nb, nl, 1.0));
        Value next = arith::MinimumFOp::create(nb, nl, middleTop, upperLeaves);
        auto [done, tau] = emitPieceRoot(nb, nl, k, u, m, sum, floor, next);
        scf::ConditionOp::create(nb, nl, emitNot(nb, nl, done),
                                 ValueRange{u, m, sum, next, tau});
      },
      [&](OpBuilder &nb, Location nl, ValueRange args) {
        Value next = args[3];
        Value one = f64Const(nb, nl, 1.0);
        // Cross `next`: MIDDLE scores at or below it reach p = 0 for good,
        // UPPER scores at or below next + 1 join MIDDLE.
        SmallVector<Value> mid = middle.emitPopWhile(
            nb, nl, args[1], ValueRange{args[2]},
            [&](OpBuilder &tb, Location tl, ValueRange top) {
              Value z = toF64(tb, tl, top[0]);
              return cmpf(tb, tl, arith::CmpFPredicate::OLE, z, next);
            },
            [&](OpBuilder &fb, Location fl, ValueRange top,
                ValueRange carried) {
              Value z = toF64(fb, fl, top[0]);
              return SmallVector<Value>{
                  arith::SubFOp::create(fb, fl, carried[0], z)};
            });
        SmallVector<Value> up = upper.emitPopWhile(
            nb, nl, args[0], ValueRange{mid[0], mid[1]},
            [&](OpBuilder &tb, Location tl, ValueRange top) {
              Value z = toF64(tb, tl, top[0]);
              Value leaves = arith::SubFOp::create(tb, tl, z, one);
              return cmpf(tb, tl, arith::CmpFPredicate::OLE, leaves, next);
            },
            [&](OpBuilder &fb, Location fl, ValueRange top,
                ValueRange carried) {
              Value m = middle.emitPush(fb, fl, carried[0], top);
              Value z = toF64(fb, fl, top[0]);
              Value sum = arith::AddFOp::create(fb, fl, carried[1], z);
              return SmallVector<Value>{m, sum};
            });
        scf::YieldOp::create(nb, nl, ValueRange{up[0], up[1], up[2], next});
      });
  return {s.count, loop.getResult(0), loop.getResult(1), loop.getResult(2),
          loop.getResult(4)};
}

Value sparsek::emitIsCandidateScore(OpBuilder &b, Location loc,
                                    Operation *anchor, Value score,
                                    bool inKernel) {
  Value inf = emitF32(b, loc, kInf);
  Value negInf = emitF32(b, loc, -kInf);
  // Ordered compares are false for NaN.
  Value belowInf = cmpf(b, loc, arith::CmpFPredicate::OLT, score, inf);
  Value valid = inKernel ? emitDeviceCheck(b, loc, anchor, belowInf,
                                           SPARSEK_ERROR_INVALID_SCORE)
                         : emitCheck(b, loc, anchor, belowInf,
                                     SPARSEK_ERROR_INVALID_SCORE);
  Value unmasked = cmpf(b, loc, arith::CmpFPredicate::OGT, score, negInf);
  return arith::AndIOp::create(b, loc, valid, unmasked);
}

Value sparsek::emitIsFiniteScore(OpBuilder &b, Location loc, Value score) {
  // Ordered compares are false for NaN.
  Value belowInf =
      cmpf(b, loc, arith::CmpFPredicate::OLT, score, emitF32(b, loc, kInf));
  Value aboveNegInf =
      cmpf(b, loc, arith::CmpFPredicate::OGT, score, emitF32(b, loc, -kInf));
  return arith::AndIOp::create(b, loc, belowInf, aboveNegInf);
}

Value sparsek::emitClipGate(OpBuilder &b, Location loc, Value score,
                            Value tau) {
  // maxnumf ignores the NaN of -inf - (-inf) and of NaN scores: they get 0.
  if (tau.getType().isF32()) {
    // An f32 tau: the f32 difference is the f64 path's result exactly. Both
    // round the exact difference once (the f64 difference is exact when the
    // exponents differ by at most 29; beyond that the smaller operand is
    // under 2^-29 of the larger, too small to move the f32 rounding), and
    // the clips are exact.
    Value d = arith::SubFOp::create(b, loc, score, tau);
    Value atLeastZero =
        arith::MaxNumFOp::create(b, loc, d, emitF32(b, loc, 0.0));
    return arith::MinNumFOp::create(b, loc, atLeastZero, emitF32(b, loc, 1.0));
  }
  Value z = toF64(b, loc, score);
  Value d = arith::SubFOp::create(b, loc, z, tau);
  Value zero = f64Const(b, loc, 0.0);
  Value one = f64Const(b, loc, 1.0);
  Value atLeastZero = arith::MaxNumFOp::create(b, loc, d, zero);
  Value p = arith::MinNumFOp::create(b, loc, atLeastZero, one);
  return arith::TruncFOp::create(b, loc, b.getF32Type(), p);
}

Value sparsek::emitInSupport(OpBuilder &b, Location loc, Value score,
                             Value tau) {
  Value p = emitClipGate(b, loc, score, tau);
  Value aboveZero =
      cmpf(b, loc, arith::CmpFPredicate::OGT, p, emitF32(b, loc, 0.0));
  Value belowOne =
      cmpf(b, loc, arith::CmpFPredicate::OLT, p, emitF32(b, loc, 1.0));
  return arith::AndIOp::create(b, loc, aboveZero, belowOne);
}
