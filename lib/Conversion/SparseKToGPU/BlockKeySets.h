//===- BlockKeySets.h - What the tiles of select_attention read -*- C++ -*-===//
//
// The tile-first select_attention lowerings give one tile (one CTA on the
// GPU) M = 64 or 128 rows: BM queries [t0, t1] of one (batch, KV head) times
// the query heads of its group. Its key set is (SPEC 4, 7; c0 = pos(t0) - w):
//
//   Sel(ta) = TopK(candidates <= ca), ascending     (a key in the top k of a
//     set is in the top k of every subset holding it, so Sel(t) of every
//     query t >= ta lies in it plus the range below)
//   [max(0, ca + 1), pos(t1)]                       (the window span and the
//     candidates (ca, c1] of the later queries, contiguous)
//
// where ta <= t0 is the first query of the block's list: L consecutive
// blocks (64 queries) share one list, so the lists cost a quarter (G = 4,
// M = 64) of one per block, for at most 63 more range keys per tile.
//
// walked as one list of `count + length` slots in key tiles. Per element
// (t, j): window if pos(t) - w + 1 <= j <= pos(t); candidate if
// j <= pos(t) - w, u_j finite and (u_j, -j) >= theta(t) in SPEC 4's order,
// gate clip(u_j - tau(t), 0, 1); otherwise masked.
//
// This file holds the host side (the chunked selection's thresholds turned
// into per-block lists and per-query f32 thresholds, in parallel loops) and
// the device-side pieces both the mma.sync kernel and the scalar CPU form
// use, so the two walk the same keys with the same membership test.
//
//===----------------------------------------------------------------------===//
#ifndef SPARSEK_LIB_CONVERSION_SPARSEKTOGPU_BLOCKKEYSETS_H
#define SPARSEK_LIB_CONVERSION_SPARSEKTOGPU_BLOCKKEYSETS_H

#include "sparsek/Dialect/SparseK/IR/SparseKOps.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinOps.h"

namespace mlir::sparsek {

/// Rows per tile by default (4 warps x 16 rows of mma.m16n8k16), rows per
/// tile of two wgmma warpgroups, and keys per key tile.
constexpr int64_t kTileRows = 64;
constexpr int64_t kWideTileRows = 128;
constexpr int64_t kKeyTile = 64;
/// Queries one block list serves at least (consecutive blocks share it).
constexpr int64_t kListQueries = 64;

/// How a tile's M rows map to (query, query head); host values but `rows`.
struct TileGeometry {
  int64_t rows;       // M: kTileRows or kWideTileRows
  Value group;        // G = Hq / Hkv
  Value headsPerTile; // Gc = min(G, M): query heads of one tile
  Value headSplits;   // ceil(G / Gc): tiles per (query block, KV head)
  Value blockQueries; // BM = M / Gc
  Value numBlocks;    // ceil(T / BM)
  Value listBlocks;   // L = max(1, 64 / BM): consecutive blocks sharing a list
  Value numLists;     // ceil(numBlocks / L)

  static TileGeometry emit(OpBuilder &b, Location loc, Value group,
                           Value numQueries, int64_t rows);
  /// The list (of the list buffer) that block `blk` reads: blk / L.
  Value emitListOf(OpBuilder &b, Location loc, Value blk) const;
  /// The first query of list `list`, whose Sel it holds: list * L * BM.
  Value emitListQuery(OpBuilder &b, Location loc, Value list) const;
};

/// Row `row` of a tile: query t0 + row / Gc, query head
/// split * Gc + row % Gc (device values). Works for index or i32 `row`.
struct TileRow {
  Value query; // t (index)
  Value qhead; // hq within the KV head's group (index)
  Value valid; // i1: a real (query, head) pair
};
TileRow emitTileRow(OpBuilder &b, Location loc, Value row, Value t0,
                    Value split, Value headsPerTile, Value group,
                    Value blockQueries, Value numQueries);

/// Per query: what the membership test reads (device values). `pos` and
/// `thetaPos` have the integer type of the key positions they are compared
/// with (index, or i32 in the kernel, where registers are scarce).
struct QueryThresholds {
  Value valid;      // i1: the row is a real query
  Value pos;        // pos(t)
  Value tau;        // f32 tau(t)
  Value thetaScore; // f32
  Value thetaPos;

  /// The same thresholds with positions of integer type `type`.
  QueryThresholds castPositions(OpBuilder &b, Location loc, Type type) const;
};

/// i1: key j (-1 for padding; pos's type) with f32 score u is in the row's
/// window or selection.
Value emitIsMember(OpBuilder &b, Location loc, const QueryThresholds &row,
                   Value j, Value u, int64_t w, bool selects);

/// f32 gate of key j for the row: 1 in the window, else
/// clip(u - tau(t), 0, 1). Finite for every input (NaN clips to a bound), so
/// a masked entry's p = 0 times it stays 0.
Value emitGate(OpBuilder &b, Location loc, const QueryThresholds &row, Value j,
               Value u, int64_t w, bool selects);

/// emitIsMember for a key of the block's list Sel(t0): such a key has
/// 0 <= j <= pos(t0) - w <= pos(t) - w for every row t of the tile, so only
/// the score tests remain (finite, and (u, -j) >= theta(t)), as one signed
/// i64 comparison: emitListRank(u, j) >= emitListRowRank(row) (the kernels
/// compute the row's side once).
///
/// The rank of key (j, u) for that comparison: the score's order key (its
/// bits as a two's-complement integer, -0 as +0, so integer order is float
/// order) above 0x7fffffff - j (as u32, decreasing in j), so that ranks
/// order keys as (u, -j) in SPEC 4's order; non-finite scores get the
/// lowest order key, below every threshold's. Positions are taken as i32
/// (the list buffers' type).
Value emitListRank(OpBuilder &b, Location loc, Value u, Value j);
/// The row's side: the rank of (thetaScore, thetaPos), or the largest i64
/// (which no key reaches) for an invalid row or a NaN thetaScore.
Value emitListRowRank(OpBuilder &b, Location loc, const QueryThresholds &row);

/// emitGate for such a key: clip(u - tau(t), 0, 1).
Value emitListGate(OpBuilder &b, Location loc, const QueryThresholds &row,
                   Value u);

/// A row's positions for the test of any key by its list rank: the window
/// [lo, hi] with lo = max(pos - w + 1, 0) and hi = pos, or -1 for an
/// invalid row (no key in it); the candidate positions are then exactly
/// [0, lo). Of pos's type.
struct RowBounds {
  Value lo, hi;

  static RowBounds emit(OpBuilder &b, Location loc, const QueryThresholds &row,
                        int64_t w);
  /// i1: j in the window.
  Value emitInWindow(OpBuilder &b, Location loc, Value j) const;
  /// emitIsMember (selects) of key j (-1 for padding) of list rank `rank`
  /// (emitListRank) for the row of rank `rowRank` (emitListRowRank): in the
  /// window, or a candidate position that reaches theta. A few integer
  /// comparisons, where emitIsMember tests scores, ties and finiteness.
  Value emitIsMember(OpBuilder &b, Location loc, Value j, Value rank,
                     Value rowRank) const;
  /// emitGate (selects) for that key.
  Value emitGate(OpBuilder &b, Location loc, const QueryThresholds &row,
                 Value j, Value u) const;
};

/// A tile's key list (device values, index).
struct BlockKeys {
  Value count;  // |Sel(ta)| entries of the list buffer
  Value lo;     // first position of the contiguous range
  Value length; // count + range length: the slots to walk
  Value head;   // pos(t0), the block's first query
  Value tail;   // pos(t1), its last

  /// `count` is the length of the block's list (0 without selection),
  /// which holds Sel(ta) of the list's first query `ta` (<= t0).
  static BlockKeys emit(OpBuilder &b, Location loc, Value count, Value t0,
                        Value ta, Value blockQueries, Value numQueries,
                        Value numKeys, int64_t w);
  /// Position of slot i (index; -1 past the end). `list` is the block's
  /// row of the list buffer as (buffer, leading indices), null without
  /// selection.
  Value emitKeyAt(OpBuilder &b, Location loc, Value i, Value list,
                  ValueRange lead, int64_t k) const;
};

/// What every key of one key tile (slots [first, first + kKeyTile)) is for
/// every query t0..t1 of the block (device values, i1, alike for all rows):
/// `window`: a range position in [pos(t1) - w + 1, pos(t0)], so in every
/// query's window; `list`: an entry of Sel(t0). Such keys need fewer tests
/// (the rank comparison, emitListGate); neither: the full test.
struct KeyTileClass {
  Value window, list;

  static KeyTileClass emit(OpBuilder &b, Location loc, const BlockKeys &keys,
                           Value first, int64_t w);
  /// emitIsMember and emitGate with the class's shortcuts, as selects
  /// (keys of neither class through RowBounds when `selects`).
  Value emitIsMember(OpBuilder &b, Location loc, const QueryThresholds &row,
                     Value j, Value u, int64_t w, bool selects) const;
  Value emitGate(OpBuilder &b, Location loc, const QueryThresholds &row,
                 Value j, Value u, int64_t w, bool selects) const;
};

/// The per-query threshold buffers ([B * Hkv, T]: f32 tau, f32 theta
/// score, i32 theta position), as host allocations or kernel arguments.
struct ThresholdBuffers {
  Value tau, thetaScore, thetaPos;

  /// Device side: the thresholds of query t of row r = bi * Hkv + h.
  QueryThresholds emitLoad(OpBuilder &b, Location loc, Value r, Value t,
                           Value valid, Value pos) const;
};

/// Host side: selection thresholds and block lists (k >= 1).
class BlockKeySets {
public:
  /// Of a select_attention or select_attention_grad `op` (the anchor of
  /// its run-time errors) with those operands and attributes.
  BlockKeySets(Operation *op, Value query, Value scores, int64_t k, int64_t w,
               int64_t selectChunk)
      : op(op), query(query), scores(scores), k(k), w(w),
        selectChunk(selectChunk) {}
  explicit BlockKeySets(SelectAttentionOp op, int64_t selectChunk)
      : BlockKeySets(op, op.getQuery(), op.getScores(), op.getKAttr().getInt(),
                     op.getWAttr().getInt(), selectChunk) {}

  /// Rows of 1 to kRowSelectCandidates candidates take the row selection
  /// (RowSelection.h) when the chunk length is automatic (a fixed one asks
  /// for the chunked selection): a kernel built into `gpuModule`, or with a
  /// null one its CPU form.
  void useRowSelection(ModuleOp gpuModule) {
    rowSelection = true;
    rowModule = gpuModule;
  }

  /// Emits the selection and, per (batch, KV head, query block) Sel(t0)
  /// ascending and its length, and per query f32 tau(t) and theta(t): the
  /// chunked selection and parallel loops, or the row kernel.
  void emit(OpBuilder &b, Location loc, const TileGeometry &geo);
  void emitDealloc(OpBuilder &b, Location loc) const;

  /// [B * Hkv, NB, k] i32, ascending, -1 padded.
  Value lists;
  /// [B * Hkv, NB] i32.
  Value counts;
  ThresholdBuffers thresholds;

private:
  /// emit's chunked path, into the buffers emit allocated.
  void emitChunked(OpBuilder &b, Location loc, const TileGeometry &geo);

  Operation *op;
  Value query, scores;
  int64_t k, w;
  int64_t selectChunk;
  bool rowSelection = false;
  ModuleOp rowModule;
};

} // namespace mlir::sparsek

#endif // SPARSEK_LIB_CONVERSION_SPARSEKTOGPU_BLOCKKEYSETS_H
