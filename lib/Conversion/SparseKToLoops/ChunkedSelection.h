//===- ChunkedSelection.h - SPEC 4 selection, parallel over query chunks --===//
//
// The parallel (GPU) form of causal selection, shared by sparsek.select and
// the fused sparsek.select_attention. Per (batch, KV head) row the candidate
// positions [0, C), C = S - w, are cut into chunks of Lc; query t's
// candidates end at e(t) - 1 = t + lag (lag = S - T - w), so every query
// belongs to the chunk of its last candidate. Host code emits, as separate
// scf.parallel nests (separate kernels once mapped):
//
//   1. per candidate: its rank inside its chunk; the strongest k + 1 of each
//      chunk land, sorted, in that chunk's list (SPEC 4 order: higher score,
//      then smaller position), and all of them in the chunk's sorted scores;
//   2. ceil(log2 N) rounds of an inclusive scan over the chunk lists, each
//      output entry placed by a binary search in the other list (top-k of a
//      union = merge of top-k lists): list c becomes the top k + 1 of
//      chunks 0..c;
//   3. per chunk boundary: the exact tau of the prefix before it (a
//      bracketed search over the pieces of f from [z(k) - 1, z(k)]; every
//      boundary searches at once, each step's pass split over the prefix's
//      chunks, each chunk's share found by binary search in its sorted
//      scores);
//   4. per query, tau(t) and theta(t), each computed alone: theta ranks the
//      chunk's candidates up to the query's last (each carrying the count
//      of prefix-list entries stronger than it) against the prefix list;
//      tau is the step-3 search between a lower bound of the chunk's taus
//      and its upper boundary tau, over the prefix scores whose breakpoints
//      fall between them (the band,
//      found as runs of each prefix chunk's sorted scores in parallel; the
//      others only counted) and the chunk's candidates up to the query's
//      (classified the same way once per chunk, in segments: a query sums
//      its segments' counts and visits only its band candidates);
//   5. per chunk: its first query's selected positions, written out in
//      order by segments of the prefix (counted, then written at the sum of
//      the counts before them).
//
// Then per query, in any kernel: Sel(t) = the first query's list filtered by
// theta(t), plus the chunk's candidates up to e(t) - 1 that reach theta(t)
// (DESIGN.md: Sel(t) lies in the first query's top k plus the range after
// it). The decomposed select writes that out; the fused attention visits it.
// No step is a sequential pass over a whole row.
//
//===----------------------------------------------------------------------===//
#ifndef SPARSEK_LIB_CONVERSION_SPARSEKTOLOOPS_CHUNKEDSELECTION_H
#define SPARSEK_LIB_CONVERSION_SPARSEKTOLOOPS_CHUNKEDSELECTION_H

#include "mlir/IR/Builders.h"

#include <functional>

namespace mlir::sparsek {

/// Where the selected positions of each chunk's first query go, ascending
/// and padded with -1: rows of `buf` (last dimension k, i32 or i64 or
/// index), addressed by `lead(b, loc, batch, head, chunk, query)`.
struct FirstLists {
  Value buf;
  std::function<SmallVector<Value>(OpBuilder &, Location, Value, Value, Value,
                                   Value)>
      lead;
};

/// Where query t's candidates sit relative to its chunk (device values).
struct QueryPlace {
  Value hasCandidates; // i1: e(t) >= 1
  Value last;          // e(t) - 1, its last candidate (when it has any)
  Value chunk;         // the chunk of `last`
  Value firstLast;     // the last candidate of the chunk's first query
  Value firstQuery;    // that query
};

class ChunkedSelection {
public:
  /// `scores` is the [B, Hkv, S] f32 memref; with `inKernel` (the parallel
  /// form) the kernels report NaN and +inf candidates through `anchor`'s
  /// device status (Status.h), otherwise through its host status word;
  /// either way they are then skipped like -inf. Window-only positions
  /// [C, S) are never read here: see emitParallelScoreCheck. `chunk` > 0
  /// fixes the chunk length (tests use small ones); 0 picks one.
  ChunkedSelection(Operation *anchor, int64_t k, int64_t w, Value scores,
                   Value numQueries, bool inKernel, int64_t chunk);

  /// Host code: the sizes (chunk length and count); emitThresholds calls
  /// it when the caller has not.
  void emitSizes(OpBuilder &b, Location loc);
  /// Host code: allocates the scratch and emits steps 1-4. Needs k >= 1.
  void emitThresholds(OpBuilder &b, Location loc, const FirstLists &firsts);
  /// Host code: frees the scratch.
  void emitDealloc(OpBuilder &b, Location loc) const;

  /// Device code for query t of row (bi, h), after emitThresholds.
  QueryPlace emitPlace(OpBuilder &b, Location loc, Value t) const;
  /// f64 tau(t) (when the query has candidates).
  Value emitTau(OpBuilder &b, Location loc, Value bi, Value h, Value t) const;
  /// theta(t) as (f32 score, index position) (when the query has
  /// candidates): (-inf, 0) when it has at most k, so every candidate
  /// reaches it.
  std::pair<Value, Value> emitTheta(OpBuilder &b, Location loc, Value bi,
                                    Value h, Value t) const;

  /// Called for every selected position (index) with its f32 score and the
  /// carried values; returns the next carried values.
  using Visitor = llvm::function_ref<SmallVector<Value>(
      OpBuilder &, Location, Value pos, Value score, ValueRange carried)>;
  /// Visits Sel(t) in ascending position order (nothing when the query has
  /// no candidates); returns the final carried values.
  SmallVector<Value> emitVisitSelected(OpBuilder &b, Location loc, Value bi,
                                       Value h, Value t,
                                       const QueryPlace &place, ValueRange init,
                                       Visitor visit) const;

  /// Host size after emitSizes: chunks per row (to size FirstLists).
  Value numChunks() const { return chunks; }
  /// Host size after emitSizes: max(1, min(k, candidates)). No list or pool
  /// holds more positions (they are distinct candidates), so scratch is
  /// sized by it rather than by k (which may exceed S by far).
  Value listCapacity() const { return listCap; }
  /// Host size after emitSizes: candidates per chunk.
  Value chunkLength() const { return chunkLen; }
  /// i1: score `z` is a candidate (finite); with `report`, NaN and +inf
  /// are reported (device status in kernels). Step 1 reports each
  /// candidate's own score once; the other reads only mask.
  Value emitIsCandidate(OpBuilder &b, Location loc, Value z, bool report) const;

private:
  Value emitRowIndex(OpBuilder &b, Location loc, Value bi, Value h) const;
  /// Entries per first-query list (k, or listCapacity() for the fused
  /// lowering's own lists).
  Value firstListWidth(OpBuilder &b, Location loc) const;
  Value emitScore(OpBuilder &b, Location loc, Value bi, Value h, Value j) const;
  /// i1: (z, j) is at least as strong as theta (thetaScore, thetaPos).
  Value emitReaches(OpBuilder &b, Location loc, Value z, Value j,
                    Value thetaScore, Value thetaPos) const;

  void emitChunkLists(OpBuilder &b, Location loc);
  void emitScan(OpBuilder &b, Location loc);
  void emitBoundaryTaus(OpBuilder &b, Location loc);
  void emitQueryThresholds(OpBuilder &b, Location loc);
  /// Length of the scanned list of chunks [0, c) of row r (at most k + 1;
  /// 0 for c = 0).
  Value emitPrefixListLen(OpBuilder &b, Location loc, Value r, Value c) const;
  /// i1: chunk c holds the last candidate of some query.
  Value emitHasQueries(OpBuilder &b, Location loc, Value c) const;
  /// theta (f32 score, index position) of the prefix ending at candidate j
  /// of chunk c (row index r): `before` candidates precede the chunk and
  /// `seen` of its candidates are at most j.
  SmallVector<Value> emitChunkTheta(OpBuilder &b, Location loc, Value r,
                                    Value c, Value j, Value before,
                                    Value seen) const;
  /// Per chunk of searched queries, its candidates classified against the
  /// chunk's band limits, in segments of kOwnSegment (see ownCounts).
  void emitOwnCandidates(OpBuilder &b, Location loc);
  /// For the query whose last candidate is j (chunk c from `start`, row
  /// index r): the ownCounts of [start, j], summed over its segments.
  SmallVector<Value> emitOwnTotals(OpBuilder &b, Location loc, Value r, Value c,
                                   Value start, Value j) const;
  /// i1: chunk c has a band (a finite lower bound of its queries' taus).
  Value emitHasBand(OpBuilder &b, Location loc, Value r, Value c) const;
  /// tau and theta of the query whose last candidate is j (row (bi, h)).
  void emitQueryThreshold(OpBuilder &b, Location loc, Value bi, Value h,
                          Value j) const;
  /// The piece of f just right of `at` over the prefix of the query whose
  /// last candidate is j (chunk c from `start`, row index r), for `at`
  /// inside the chunk's band limits: the counts and sum `seed` (UPPER and
  /// MIDDLE counts and the MIDDLE sum of the prefix scores and the query's
  /// own candidates that keep their class), the chunk's band, and the own
  /// candidates in it. As emitSortedPiece returns it.
  SmallVector<Value> emitQueryPiece(OpBuilder &b, Location loc, Value r,
                                    Value c, Value start, Value j,
                                    ValueRange seed, Value at) const;
  void emitFirstLists(OpBuilder &b, Location loc);
  /// What classifies a prefix score for chunk c's band: `lo`, below the
  /// tau of every query of the chunk that has more than k candidates (see
  /// chunkLo), lo + 1, and `bound`, just past its upper boundary tau, which
  /// no query's tau of the chunk passes.
  struct BandLimits {
    Value lo, loPlusOne, bound;
  };
  BandLimits emitBandLimits(OpBuilder &b, Location loc, Value r, Value c) const;
  /// Prefix chunk p's sorted scores as chunk c's band sees them
  /// (limits `lim`), as runs of entries: the finite count n; above lo is
  /// [0, aboveEnd), UPPER [0, upperEnd), of which [0, upperFixedEnd) is
  /// fixed (its breakpoint is past the bound: only counted, never in the band);
  /// MIDDLE is [upperEnd, aboveEnd), of which [middleBandStart, aboveEnd)
  /// is in the band.
  struct BandRuns {
    Value n, aboveEnd, upperEnd, upperFixedEnd, middleBandStart;
  };
  BandRuns emitBandRuns(OpBuilder &b, Location loc, Value r, Value p,
                        const BandLimits &lim) const;
  /// The piece of f just right of `at` over chunk c of row r, from its
  /// sorted scores (two binary searches and a sum over the MIDDLE run):
  /// UPPER count, MIDDLE count (index), MIDDLE sum, smallest breakpoint
  /// right of `at` (f64).
  SmallVector<Value> emitSortedPiece(OpBuilder &b, Location loc, Value r,
                                     Value c, Value at) const;
  /// Runs the boundary search over the candidates of chunks [0, c) of row
  /// r from its carried values `init` until it is found or out of steps;
  /// returns them.
  SmallVector<Value> emitFinishSearch(OpBuilder &b, Location loc, Value r,
                                      Value c, ValueRange init) const;

  Operation *anchor;
  int64_t k, w;
  Value scores, numQueries;
  bool inKernel;
  int64_t chunkOption;
  // Host sizes.
  Value batch, heads, numKeys, candidates, lag, chunkLen, chunks, listCap;
  // Scratch: chunk lists (two for the scan's ping-pong; `final*` after it),
  // boundary taus, per-query thresholds, per-chunk heaps.
  Value listScores[2], listPos[2], listLen[2];
  Value finalScores, finalPos, finalLen;
  // Every finite candidate of each chunk, strongest first, with its
  // position and its count of stronger prefix-list entries, and their
  // number: what the boundary search's passes and theta's ranks read.
  Value sortedScores, sortedPos, sortedAbove, sortedLen;
  Value boundaryTau, queryTau, thetaScore, thetaPos;
  // Per chunk: its band's UPPER and MIDDLE scores (at its lower boundary
  // tau), and its counts (kBandCounts) and unheaped MIDDLE sum.
  Value bandUpper, bandMiddle, seedCounts, seedSums;
  // Per chunk: the lower bound of its searched queries' taus (its lower
  // boundary tau, or z(k) - 1 of its first prefix past k candidates).
  Value chunkLo;
  // The band's per-segment counts and MIDDLE sums, while step 4 is
  // emitted.
  Value bandSegs, bandCounts, bandSums;
  // Per chunk candidate (offset i from the chunk's start), counted from the
  // start of its segment of kOwnSegment through i: finite candidates,
  // those that stay UPPER and stay MIDDLE over the chunk's band limits,
  // and those in the band (kOwnCounts); the MIDDLE ones' sum; and the band
  // ones' scores, packed from their segment's start. While step 4 is
  // emitted.
  Value ownCounts, ownSums, ownBand;
  FirstLists firstLists;
};

/// Host code: one kernel (the parallel form) that reports, through the
/// device status of `anchor`'s module, every NaN or +inf score at positions
/// [from, S) of every row of the [B, Hkv, S] f32 `scores`: the window-only
/// positions, which the selection never reads but the CPU path still checks
/// (SPEC 3). Nothing runs when the range is empty.
void emitParallelScoreCheck(OpBuilder &b, Location loc, Operation *anchor,
                            Value scores, Value from);

} // namespace mlir::sparsek

#endif // SPARSEK_LIB_CONVERSION_SPARSEKTOLOOPS_CHUNKEDSELECTION_H
