//===- TauSolver.h - Exact SPARSEK threshold over scores fed one by one ---===//
//
// Emits the incremental exact tau of SPEC 3 / SPEC 6: scores arrive one at a
// time (the candidates of a selection row in position order, or the entries
// of a mask row) and after each the threshold of everything seen so far is
// exact. tau never decreases as scores are added, so every kept score moves
// UPPER (p = 1) -> MIDDLE (0 < p < 1) -> dropped at most once: two min-heaps
// and an f64 sum of MIDDLE give amortized O(log n) per score.
//
//===----------------------------------------------------------------------===//
#ifndef SPARSEK_LIB_CONVERSION_SPARSEKTOLOOPS_TAUSOLVER_H
#define SPARSEK_LIB_CONVERSION_SPARSEKTOLOOPS_TAUSOLVER_H

#include "TopKHeap.h"

#include <array>

namespace mlir::sparsek {

/// The solver's scalar state as SSA values, threaded through loops.
struct TauState {
  Value count;      // index: scores added so far
  Value upperSize;  // index: |UPPER|, scores with p = 1
  Value middleSize; // index: |MIDDLE|, scores with 0 < p < 1
  Value middleSum;  // f64: sum of MIDDLE
  Value tau;        // f64: the exact threshold of the scores added so far

  static constexpr unsigned kNumValues = 5;
  SmallVector<Value> values() const;
  static TauState fromValues(ValueRange values);
};

/// Emits the solver for budget k >= 1 over scratch heaps for up to
/// `capacity` scores. Scores may come in any order: f only grows.
class TauSolver {
public:
  /// Allocates the heaps at the builder's insertion point (emitDealloc
  /// frees them).
  TauSolver(OpBuilder &b, Location loc, int64_t k, Value capacity);
  /// Uses the caller's 1-D f32 buffers of `capacity` entries each (e.g.
  /// one row of scratch allocated for many rows); the caller frees them.
  TauSolver(int64_t k, Value upperScores, Value middleScores);

  /// No scores: tau = -inf (n = 0 <= k).
  TauState emitEmpty(OpBuilder &b, Location loc) const;
  /// Adds the finite f32 `score` and re-solves tau.
  TauState emitAdd(OpBuilder &b, Location loc, const TauState &state,
                   Value score) const;
  void emitDealloc(OpBuilder &b, Location loc) const;

private:
  /// Braced lists evaluate in order, so the allocations keep theirs.
  TauSolver(int64_t k, std::array<Value, 2> heaps)
      : TauSolver(k, heaps[0], heaps[1]) {}

  /// Walks the breakpoints of f up from `floor` (where f >= k) to the
  /// largest root of f = k; returns the updated heaps' state and tau.
  TauState emitSolve(OpBuilder &b, Location loc, const TauState &state) const;

  int64_t k;
  Value upperScores, middleScores;
  ScratchHeap upper, middle;
};

/// i1: the f32 `score` is a candidate (finite). NaN and +inf are invalid
/// input: they record SPARSEK_ERROR_INVALID_SCORE and are not candidates;
/// -inf is masked (not a candidate, no error). In kernel code (`inKernel`)
/// the error goes to the device status (Status.h) instead of the host's.
Value emitIsCandidateScore(OpBuilder &b, Location loc, Operation *anchor,
                           Value score, bool inKernel = false);

/// i1: the f32 `score` is finite, reporting nothing: for kernel code that
/// reads a score whose validity another thread reports (the invalid one is
/// then skipped like -inf: SPEC 3, "kernels treat NaN as -inf").
Value emitIsFiniteScore(OpBuilder &b, Location loc, Value score);

/// f32 clip(score - tau, 0, 1) for an f32 score and an f64 tau (or an f32
/// one, computed in f32 with the same result); 0 for masked (-inf) and
/// invalid (NaN) scores, also when tau = -inf.
Value emitClipGate(OpBuilder &b, Location loc, Value score, Value tau);

/// i1: the f32 `score` is in the SPARSEK support of threshold `tau` (f64),
/// 0 < clip(score - tau, 0, 1) < 1, with the gate computed as
/// emitClipGate does. Only support entries carry a gradient (SPEC 3).
Value emitInSupport(OpBuilder &b, Location loc, Value score, Value tau);

} // namespace mlir::sparsek

#endif // SPARSEK_LIB_CONVERSION_SPARSEKTOLOOPS_TAUSOLVER_H
