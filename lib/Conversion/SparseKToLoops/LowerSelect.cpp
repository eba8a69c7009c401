//===- LowerSelect.cpp - Loop lowering of sparsek.select ------------------===//
//
// Linear in T: per (b, h) row the candidates are walked once in position
// order, and query t is emitted right after its last candidate pos(t) - w
// joined. Two pieces of state follow the prefix: the running top-k pool of
// SPEC 6 (a heap with the weakest entry at the root, plus its positions in
// ascending order so that emitting a query is a copy) and the incremental
// exact tau (TauSolver.h). Scratch memory is O(S + k), allocated once per op
// and reused by every row.
//
// The parallel (GPU) form is parallel over query chunks instead
// (ChunkedSelection.h). Sizes are checked on the host; NaN and +inf scores
// are found by the kernels, which report them through the device status
// (Status.h: the same code as here, asynchronously on the GPU) and skip
// them like -inf, as this form does after reporting.
//
//===----------------------------------------------------------------------===//
#include "ChunkedSelection.h"
#include "LoopUtils.h"
#include "TauSolver.h"
#include "TopKHeap.h"

#include "sparsek/Conversion/SparseKToLoops/SparseKToLoops.h"
#include "sparsek/Conversion/SparseKToLoops/Status.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"

#include <array>
#include <limits>

using namespace mlir;
using namespace mlir::sparsek;

namespace {

/// The selected set of a growing prefix (SPEC 6): at most k (score,
/// position) entries in a heap whose root is the weakest in the order of
/// SPEC 4, and the same positions sorted ascending.
class TopKPool {
public:
  /// Allocates its three buffers of `capacity` entries (emitDealloc frees
  /// them).
  TopKPool(OpBuilder &b, Location loc, int64_t k, Value capacity);
  /// Uses the caller's 1-D buffers of equal capacity (f32 scores, index
  /// positions, index sorted positions); the caller frees them.
  TopKPool(int64_t k, Value scores, Value positions, Value sorted);

private:
  /// Braced lists evaluate in order, so the allocations keep theirs.
  TopKPool(int64_t k, std::array<Value, 3> buffers)
      : TopKPool(k, buffers[0], buffers[1], buffers[2]) {}

public:
  /// Offers a candidate to a pool of `size` entries; returns the new size.
  /// Candidates come in increasing position, so a newcomer with the score of
  /// the weakest entry loses the tie and the sorted positions only ever
  /// grow at the end.
  Value emitOffer(OpBuilder &b, Location loc, Value size, Value score,
                  Value pos) const;
  /// The i-th smallest selected position.
  Value emitSortedPosition(OpBuilder &b, Location loc, Value i) const;
  void emitDealloc(OpBuilder &b, Location loc) const;

private:
  /// Removes `victim` from the sorted positions [0, size) (binary search,
  /// then the tail moves left: O(k), like emitting one query).
  void emitRemoveSorted(OpBuilder &b, Location loc, Value size,
                        Value victim) const;

  int64_t k;
  Value scores, positions, sorted;
  ScratchHeap heap;
};

/// The operands and sizes of one select op, and the per-row code.
struct SelectLowering {
  SelectOp op;
  int64_t k, w;
  Value scores, indices, gates, tau;
  /// Emitting kernel code (parallel form): errors go to the device status.
  bool inKernel;

  /// Writes query t of row (bi, h): the pool's positions ascending, gates
  /// from the f64 `rowTau`, padding after `size` entries.
  void emitQuery(OpBuilder &b, Location loc, ValueRange row, Value t,
                 const TopKPool *pool, Value size, Value rowTau) const;
  /// Adds position j of the row to the pool and the tau state (if it is a
  /// candidate) and returns the carried values (TauState, pool size).
  SmallVector<Value> emitCandidate(OpBuilder &b, Location loc, ValueRange row,
                                   Value j, const TopKPool &pool,
                                   const TauSolver &solver,
                                   ValueRange carried) const;
  /// One (b, h) row with k >= 1.
  void emitRow(OpBuilder &b, Location loc, ValueRange row, Value numKeys,
               Value numQueries, const TopKPool &pool,
               const TauSolver &solver) const;
  /// One (b, h) row with k = 0: only checks and tau = +inf.
  void emitWindowOnlyRow(OpBuilder &b, Location loc, ValueRange row,
                         Value numKeys, Value numQueries) const;
  Value emitLoadScore(OpBuilder &b, Location loc, ValueRange row,
                      Value j) const;
  /// i1: score `z` is a candidate (finite; see inKernel for NaN, +inf).
  Value emitIsCandidate(OpBuilder &b, Location loc, Value z) const;
  /// Reports NaN and +inf scores of window-only positions (never
  /// candidates); nothing in kernels.
  void emitCheckScores(OpBuilder &b, Location loc, ValueRange row, Value from,
                       Value to) const;
};

} // namespace

static Value cmpi(OpBuilder &b, Location loc, arith::CmpIPredicate pred,
                  Value x, Value y) {
  return arith::CmpIOp::create(b, loc, pred, x, y);
}

static Value allocVector(OpBuilder &b, Location loc, Type elementType,
                         Value size) {
  auto type = MemRefType::get({ShapedType::kDynamic}, elementType);
  return memref::AllocOp::create(b, loc, type, ValueRange{size});
}

TopKPool::TopKPool(OpBuilder &b, Location loc, int64_t k, Value capacity)
    : TopKPool(k, std::array<Value, 3>{
                      allocVector(b, loc, b.getF32Type(), capacity),
                      allocVector(b, loc, b.getIndexType(), capacity),
                      allocVector(b, loc, b.getIndexType(), capacity)}) {}

TopKPool::TopKPool(int64_t k, Value scores, Value positions, Value sorted)
    : k(k), scores(scores), positions(positions), sorted(sorted),
      heap(makePoolHeap(scores, positions)) {}

void TopKPool::emitDealloc(OpBuilder &b, Location loc) const {
  for (Value v : {scores, positions, sorted})
    memref::DeallocOp::create(b, loc, v);
}

Value TopKPool::emitSortedPosition(OpBuilder &b, Location loc, Value i) const {
  return memref::LoadOp::create(b, loc, sorted, i);
}

Value TopKPool::emitOffer(OpBuilder &b, Location loc, Value size, Value score,
                          Value pos) const {
  return emitPoolOffer(
      b, loc, heap, k, size, score, pos,
      [&](OpBuilder &nb, Location nl, Value n) {
        memref::StoreOp::create(nb, nl, pos, sorted, n);
      },
      [&](OpBuilder &nb, Location nl, Value n, ValueRange weakest) {
        // Positions only grow: the newcomer goes last.
        emitRemoveSorted(nb, nl, n, weakest[1]);
        Value last = arith::SubIOp::create(nb, nl, n, emitIndex(nb, nl, 1));
        memref::StoreOp::create(nb, nl, pos, sorted, last);
      });
}

void TopKPool::emitRemoveSorted(OpBuilder &b, Location loc, Value size,
                                Value victim) const {
  Type indexType = b.getIndexType();
  // Lower bound of victim in sorted[0, size): positions are distinct.
  auto search = scf::WhileOp::create(
      b, loc, TypeRange{indexType, indexType},
      ValueRange{emitIndex(b, loc, 0), size},
      [&](OpBuilder &nb, Location nl, ValueRange args) {
        scf::ConditionOp::create(
            nb, nl, cmpi(nb, nl, arith::CmpIPredicate::ult, args[0], args[1]),
            args);
      },
      [&](OpBuilder &nb, Location nl, ValueRange args) {
        Value lo = args[0], hi = args[1];
        Value one = emitIndex(nb, nl, 1);
        Value mid = arith::ShRUIOp::create(
            nb, nl, arith::AddIOp::create(nb, nl, lo, hi), one);
        Value atMid = memref::LoadOp::create(nb, nl, sorted, mid);
        Value below = cmpi(nb, nl, arith::CmpIPredicate::ult, atMid, victim);
        Value afterMid = arith::AddIOp::create(nb, nl, mid, one);
        Value nextLo = arith::SelectOp::create(nb, nl, below, afterMid, lo);
        Value nextHi = arith::SelectOp::create(nb, nl, below, hi, mid);
        scf::YieldOp::create(nb, nl, ValueRange{nextLo, nextHi});
      });
  Value last = arith::SubIOp::create(b, loc, size, emitIndex(b, loc, 1));
  emitFor(b, loc, search.getResult(0), last,
          [&](OpBuilder &nb, Location nl, Value q) {
            Value next = arith::AddIOp::create(nb, nl, q, emitIndex(nb, nl, 1));
            memref::StoreOp::create(
                nb, nl, memref::LoadOp::create(nb, nl, sorted, next), sorted,
                q);
          });
}

Value SelectLowering::emitLoadScore(OpBuilder &b, Location loc, ValueRange row,
                                    Value j) const {
  return memref::LoadOp::create(b, loc, scores, ValueRange{row[0], row[1], j});
}

Value SelectLowering::emitIsCandidate(OpBuilder &b, Location loc,
                                      Value z) const {
  return inKernel ? emitIsFiniteScore(b, loc, z)
                  : emitIsCandidateScore(b, loc, op, z);
}

void SelectLowering::emitCheckScores(OpBuilder &b, Location loc, ValueRange row,
                                     Value from, Value to) const {
  if (inKernel)
    return;
  emitFor(b, loc, from, to, [&](OpBuilder &nb, Location nl, Value j) {
    emitIsCandidateScore(nb, nl, op, emitLoadScore(nb, nl, row, j));
  });
}

void SelectLowering::emitQuery(OpBuilder &b, Location loc, ValueRange row,
                               Value t, const TopKPool *pool, Value size,
                               Value rowTau) const {
  Type indexType = cast<MemRefType>(indices.getType()).getElementType();
  auto at = [&](Value i) { return SmallVector<Value>{row[0], row[1], t, i}; };
  if (pool)
    emitFor(b, loc, emitIndex(b, loc, 0), size,
            [&](OpBuilder &nb, Location nl, Value i) {
              Value pos = pool->emitSortedPosition(nb, nl, i);
              Value gate =
                  emitClipGate(nb, nl, emitLoadScore(nb, nl, row, pos), rowTau);
              memref::StoreOp::create(
                  nb, nl, arith::IndexCastOp::create(nb, nl, indexType, pos),
                  indices, at(i));
              memref::StoreOp::create(nb, nl, gate, gates, at(i));
            });
  emitFor(b, loc, size, emitDim(b, loc, indices, 3),
          [&](OpBuilder &nb, Location nl, Value i) {
            memref::StoreOp::create(
                nb, nl, arith::ConstantIntOp::create(nb, nl, indexType, -1),
                indices, at(i));
            memref::StoreOp::create(nb, nl, emitF32(nb, nl, 0.0), gates, at(i));
          });
  memref::StoreOp::create(
      b, loc, arith::TruncFOp::create(b, loc, b.getF32Type(), rowTau), tau,
      ValueRange{row[0], row[1], t});
}

SmallVector<Value> SelectLowering::emitCandidate(OpBuilder &b, Location loc,
                                                 ValueRange row, Value j,
                                                 const TopKPool &pool,
                                                 const TauSolver &solver,
                                                 ValueRange carried) const {
  Value z = emitLoadScore(b, loc, row, j);
  return emitIfElse(
      b, loc, emitIsCandidate(b, loc, z),
      [&](OpBuilder &nb, Location nl) {
        auto state = TauState::fromValues(carried.drop_back());
        SmallVector<Value> next = solver.emitAdd(nb, nl, state, z).values();
        next.push_back(pool.emitOffer(nb, nl, carried.back(), z, j));
        return next;
      },
      [&](OpBuilder &, Location) { return SmallVector<Value>(carried); });
}

/// max(lo, min(v, hi)) on signed index values.
static Value clampSigned(OpBuilder &b, Location loc, Value v, Value lo,
                         Value hi) {
  return arith::MaxSIOp::create(b, loc, lo,
                                arith::MinSIOp::create(b, loc, v, hi));
}

void SelectLowering::emitRow(OpBuilder &b, Location loc, ValueRange row,
                             Value numKeys, Value numQueries,
                             const TopKPool &pool,
                             const TauSolver &solver) const {
  Value zero = emitIndex(b, loc, 0);
  Value wIdx = emitIndex(b, loc, w);
  TauState empty = solver.emitEmpty(b, loc);
  // Query q's candidates are j <= pos(q) - w = q + lag, lag = S - T - w
  // (signed). Queries q < -lag have none: all padding, tau = -inf.
  Value lag = arith::SubIOp::create(
      b, loc, arith::SubIOp::create(b, loc, numKeys, numQueries), wIdx);
  Value numEmpty = clampSigned(b, loc, arith::SubIOp::create(b, loc, zero, lag),
                               zero, numQueries);
  emitFor(b, loc, zero, numEmpty, [&](OpBuilder &nb, Location nl, Value q) {
    emitQuery(nb, nl, row, q, /*pool=*/nullptr, zero, empty.tau);
  });
  // Candidates j < S - w; query j - lag is complete once j has joined.
  Value numCand = arith::MaxSIOp::create(
      b, loc, zero, arith::SubIOp::create(b, loc, numKeys, wIdx));
  SmallVector<Value> init = empty.values();
  init.push_back(zero);
  emitForCarrying(
      b, loc, zero, numCand, init,
      [&](OpBuilder &nb, Location nl, Value j, ValueRange carried) {
        SmallVector<Value> next =
            emitCandidate(nb, nl, row, j, pool, solver, carried);
        Value completes = cmpi(nb, nl, arith::CmpIPredicate::sge, j, lag);
        emitIf(nb, nl, completes, [&](OpBuilder &qb, Location ql) {
          emitQuery(qb, ql, row, arith::SubIOp::create(qb, ql, j, lag), &pool,
                    next.back(),
                    TauState::fromValues(ArrayRef(next).drop_back()).tau);
        });
        return next;
      });
  // Window-only positions are never candidates, but bad scores there are
  // still bad input.
  emitCheckScores(b, loc, row, numCand, numKeys);
}

void SelectLowering::emitWindowOnlyRow(OpBuilder &b, Location loc,
                                       ValueRange row, Value numKeys,
                                       Value numQueries) const {
  Value zero = emitIndex(b, loc, 0);
  emitCheckScores(b, loc, row, zero, numKeys);
  Value inf = emitF32(b, loc, std::numeric_limits<double>::infinity());
  emitFor(b, loc, zero, numQueries, [&](OpBuilder &nb, Location nl, Value q) {
    memref::StoreOp::create(nb, nl, inf, tau, ValueRange{row[0], row[1], q});
  });
}

/// The parallel (GPU) form (ChunkedSelection.h): the thresholds in chunk
/// kernels, then one thread per query writes its positions (the chunk's
/// first query's are already in place), gates and tau.
static void emitParallelSelect(OpBuilder &b, Location loc,
                               const SelectLowering &s, Value batch,
                               Value heads, Value numKeys, Value numQueries,
                               int64_t queryBlock, int64_t chunk) {
  // Window-only positions are never candidates, but bad scores there are
  // still bad input: every position for k = 0, [C, S) otherwise.
  Value zero = emitIndex(b, loc, 0);
  emitParallelScoreCheck(
      b, loc, s.op, s.scores,
      s.k == 0 ? zero
               : arith::MaxSIOp::create(
                     b, loc, zero,
                     arith::SubIOp::create(b, loc, numKeys,
                                           emitIndex(b, loc, s.w))));
  if (s.k == 0) {
    // Window only: tau = +inf for every query, one thread each.
    emitParallelQueryBlocks(
        b, loc, batch, heads, numQueries, queryBlock,
        [&](OpBuilder &nb, Location nl, Value bi, Value h, Value t) {
          memref::StoreOp::create(
              nb, nl, emitF32(nb, nl, std::numeric_limits<double>::infinity()),
              s.tau, ValueRange{bi, h, t});
        });
    return;
  }
  ChunkedSelection sel(s.op, s.k, s.w, s.scores, numQueries,
                       /*inKernel=*/true, chunk);
  FirstLists firsts{
      s.indices, [](OpBuilder &, Location, Value bi, Value h, Value, Value q0) {
        return SmallVector<Value>{bi, h, q0};
      }};
  sel.emitThresholds(b, loc, firsts);
  Type indexType = cast<MemRefType>(s.indices.getType()).getElementType();
  emitParallelQueryBlocks(
      b, loc, batch, heads, numQueries, queryBlock,
      [&](OpBuilder &nb, Location nl, Value bi, Value h, Value t) {
        QueryPlace place = sel.emitPlace(nb, nl, t);
        Value negInf = arith::ConstantFloatOp::create(
            nb, nl, nb.getF64Type(),
            llvm::APFloat(-std::numeric_limits<double>::infinity()));
        Value rowTau = arith::SelectOp::create(
            nb, nl, place.hasCandidates, sel.emitTau(nb, nl, bi, h, t), negInf);
        // The first query's positions were written by the chunk walk.
        Value isFirst = arith::AndIOp::create(
            nb, nl, place.hasCandidates,
            cmpi(nb, nl, arith::CmpIPredicate::eq, t, place.firstQuery));
        Value rewrite =
            arith::XOrIOp::create(nb, nl, isFirst, emitBool(nb, nl, true));
        auto at = [&](Value i) { return SmallVector<Value>{bi, h, t, i}; };
        Value count = sel.emitVisitSelected(
            nb, nl, bi, h, t, place, ValueRange{emitIndex(nb, nl, 0)},
            [&](OpBuilder &vb, Location vl, Value pos, Value z,
                ValueRange carried) -> SmallVector<Value> {
              Value i = carried[0];
              emitIf(vb, vl, rewrite, [&](OpBuilder &wb, Location wl) {
                memref::StoreOp::create(
                    wb, wl, arith::IndexCastOp::create(wb, wl, indexType, pos),
                    s.indices, at(i));
              });
              memref::StoreOp::create(vb, vl, emitClipGate(vb, vl, z, rowTau),
                                      s.gates, at(i));
              return {arith::AddIOp::create(vb, vl, i, emitIndex(vb, vl, 1))};
            })[0];
        emitFor(nb, nl, count, emitDim(nb, nl, s.indices, 3),
                [&](OpBuilder &fb, Location fl, Value i) {
                  emitIf(fb, fl, rewrite, [&](OpBuilder &wb, Location wl) {
                    memref::StoreOp::create(
                        wb, wl,
                        arith::ConstantIntOp::create(wb, wl, indexType, -1),
                        s.indices, at(i));
                  });
                  memref::StoreOp::create(fb, fl, emitF32(fb, fl, 0.0), s.gates,
                                          at(i));
                });
        memref::StoreOp::create(
            nb, nl, arith::TruncFOp::create(nb, nl, nb.getF32Type(), rowTau),
            s.tau, ValueRange{bi, h, t});
      });
  sel.emitDealloc(b, loc);
}

/// i1: the sizes the verifier could not compare agree (B, Hkv and T across
/// operands, K between indices and gates) and a dynamic list length K
/// holds every selection without exceeding k: min(k, S) <= K <= k (the
/// verifier pins a static K to k).
static Value emitSelectShapesAgree(OpBuilder &b, Location loc,
                                   const SelectLowering &s) {
  Value same = emitDimsAllEqual(b, loc,
                                {{s.scores, 0, s.indices, 0},
                                 {s.scores, 1, s.indices, 1},
                                 {s.indices, 0, s.gates, 0},
                                 {s.indices, 1, s.gates, 1},
                                 {s.indices, 2, s.gates, 2},
                                 {s.indices, 3, s.gates, 3},
                                 {s.scores, 0, s.tau, 0},
                                 {s.scores, 1, s.tau, 1},
                                 {s.indices, 2, s.tau, 2}});
  if (!cast<MemRefType>(s.indices.getType()).isDynamicDim(3))
    return same;
  Value len = emitDim(b, loc, s.indices, 3);
  Value k = emitIndex(b, loc, s.k);
  Value least = arith::MinUIOp::create(b, loc, k, emitDim(b, loc, s.scores, 2));
  return emitAnd(b, loc,
                 {same, cmpi(b, loc, arith::CmpIPredicate::ule, len, k),
                  cmpi(b, loc, arith::CmpIPredicate::uge, len, least)});
}

LogicalResult
mlir::sparsek::lowerSelectToLoops(RewriterBase &rewriter, SelectOp op,
                                  const LoopLoweringOptions &options) {
  Location loc = op.getLoc();
  SelectLowering s{op,
                   op.getKAttr().getInt(),
                   op.getWAttr().getInt(),
                   op.getScores(),
                   op.getIndicesInit(),
                   op.getGatesInit(),
                   op.getTauInit(),
                   options.parallelLoops};
  Value shapesOk =
      emitCheck(rewriter, loc, op, emitSelectShapesAgree(rewriter, loc, s),
                SPARSEK_ERROR_SHAPE_MISMATCH);
  Value numKeys = emitDim(rewriter, loc, s.scores, 2);
  Value numQueries = emitDim(rewriter, loc, s.tau, 2);
  Value fits = emitQueriesFitKeys(rewriter, loc, op, numQueries, numKeys);
  emitIf(rewriter, loc, emitAnd(rewriter, loc, {shapesOk, fits}),
         [&](OpBuilder &b, Location l) {
           SmallVector<Value> lbs(2, emitIndex(b, l, 0));
           SmallVector<Value> steps(2, emitIndex(b, l, 1));
           SmallVector<Value> ubs{emitDim(b, l, s.scores, 0),
                                  emitDim(b, l, s.scores, 1)};
           if (options.parallelLoops) {
             emitParallelSelect(b, l, s, ubs[0], ubs[1], numKeys, numQueries,
                                options.queryBlock, options.selectChunk);
             return;
           }
           if (s.k == 0) {
             scf::buildLoopNest(
                 b, l, lbs, ubs, steps,
                 [&](OpBuilder &nb, Location nl, ValueRange row) {
                   s.emitWindowOnlyRow(nb, nl, row, numKeys, numQueries);
                 });
             return;
           }
           // The pool never holds more than min(k, S) entries.
           Value poolCapacity =
               arith::MinUIOp::create(b, l, numKeys, emitIndex(b, l, s.k));
           TopKPool pool(b, l, s.k, poolCapacity);
           TauSolver solver(b, l, s.k, numKeys);
           scf::buildLoopNest(b, l, lbs, ubs, steps,
                              [&](OpBuilder &nb, Location nl, ValueRange row) {
                                s.emitRow(nb, nl, row, numKeys, numQueries,
                                          pool, solver);
                              });
           pool.emitDealloc(b, l);
           solver.emitDealloc(b, l);
         });
  rewriter.eraseOp(op);
  return success();
}
