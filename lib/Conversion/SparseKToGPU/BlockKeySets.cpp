//===- BlockKeySets.cpp - What the tiles of select_attention read ---------===//
//
// See BlockKeySets.h. The block lists reuse the chunked selection
// (ChunkedSelection.h): Sel(t0) is the chunk's first list filtered by
// theta(t0) plus the chunk's candidates up to t0's last, visited in
// ascending order, so the lists come out sorted (monotone gathers).
//
//===----------------------------------------------------------------------===//
#include "BlockKeySets.h"
#include "KernelMath.h"
#include "RowSelection.h"

#include "../SparseKToLoops/ChunkedSelection.h"
#include "../SparseKToLoops/LoopUtils.h"
#include "../SparseKToLoops/TauSolver.h"
#include "../SparseKToLoops/TopKHeap.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"

#include <cassert>
#include <limits>

using namespace mlir;
using namespace mlir::sparsek;

/// Threads per block of the host-side parallel loops (once mapped).
static constexpr int64_t kListBlock = 64;
static constexpr int64_t kQueryBlock = 128;
/// Entries of a block's candidate walk per thread of the list step: short
/// chains of loads, and enough threads to fill the GPU at P1 32k (256 was 3%
/// slower end to end at P1 8k on an H100).
static constexpr int64_t kListSegment = 64;
/// Copies of the walk's body per loop iteration (emitForCarryingUnrolled):
/// each entry's two dependent loads (list entry, then its score) overlap
/// with the next entries'.
static constexpr int64_t kWalkUnroll = 4;
/// Copies per iteration of the loops that only sum counts or store padding.
static constexpr int64_t kScanUnroll = 8;

TileGeometry TileGeometry::emit(OpBuilder &b, Location loc, Value group,
                                Value numQueries, int64_t rows) {
  assert((rows == kTileRows || rows == kWideTileRows) && "a tile's rows");
  KernelMath x{b, loc};
  // At least 1: Hq = 0 leaves nothing to compute but must not divide by 0.
  Value gc = x.max(x.min(group, x.c(rows)), x.c(1));
  Value bm = x.div(x.c(rows), gc);
  Value numBlocks = x.ceilDiv(numQueries, bm);
  Value listBlocks = x.max(x.div(x.c(kListQueries), bm), x.c(1));
  return {rows, group,     gc,         x.ceilDiv(group, gc),
          bm,   numBlocks, listBlocks, x.ceilDiv(numBlocks, listBlocks)};
}

Value TileGeometry::emitListOf(OpBuilder &b, Location loc, Value blk) const {
  return KernelMath{b, loc}.div(blk, listBlocks);
}

Value TileGeometry::emitListQuery(OpBuilder &b, Location loc,
                                  Value list) const {
  KernelMath x{b, loc};
  return x.mul(x.mul(list, listBlocks), blockQueries);
}

TileRow sparsek::emitTileRow(OpBuilder &b, Location loc, Value row, Value t0,
                             Value split, Value headsPerTile, Value group,
                             Value blockQueries, Value numQueries) {
  KernelMath x{b, loc};
  Value qi = x.div(row, headsPerTile);
  Value t = x.add(t0, qi);
  Value hq = x.add(x.mul(split, headsPerTile), x.rem(row, headsPerTile));
  Value valid = x.andI(x.andI(x.lt(qi, blockQueries), x.lt(t, numQueries)),
                       x.lt(hq, group));
  return {t, hq, valid};
}

/// An integer constant of `type` (index or a fixed width).
static Value intConst(OpBuilder &b, Location loc, Type type, int64_t v) {
  if (type.isIndex())
    return emitIndex(b, loc, v);
  return arith::ConstantIntOp::create(b, loc, type, v);
}

QueryThresholds QueryThresholds::castPositions(OpBuilder &b, Location loc,
                                               Type type) const {
  auto cast = [&](Value v) -> Value {
    if (!v || v.getType() == type)
      return v;
    return arith::IndexCastOp::create(b, loc, type, v);
  };
  return {valid, cast(pos), tau, thetaScore, cast(thetaPos)};
}

/// i1: j is in the row's window [pos - w + 1, pos] (j >= 0).
static Value emitInWindow(OpBuilder &b, Location loc,
                          const QueryThresholds &row, Value j, int64_t w) {
  KernelMath x{b, loc};
  Type type = j.getType();
  Value firstWindow =
      arith::SubIOp::create(b, loc, row.pos, intConst(b, loc, type, w - 1));
  return x.andI(
      x.andI(x.le(intConst(b, loc, type, 0), j), x.le(firstWindow, j)),
      x.le(j, row.pos));
}

/// i1: (u, -j) >= (thetaScore, -thetaPos) in SPEC 4's order: theta itself
/// or stronger (higher score, or the same score at a smaller position).
static Value emitReachesTheta(OpBuilder &b, Location loc, Value u, Value j,
                              Value thetaScore, Value thetaPos) {
  KernelMath x{b, loc};
  Value above =
      arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OGT, u, thetaScore);
  Value tied = x.andI(
      arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OEQ, u, thetaScore),
      x.le(j, thetaPos));
  return x.orI(above, tied);
}

Value sparsek::emitIsMember(OpBuilder &b, Location loc,
                            const QueryThresholds &row, Value j, Value u,
                            int64_t w, bool selects) {
  KernelMath x{b, loc};
  Value window = emitInWindow(b, loc, row, j, w);
  if (!selects)
    return x.andI(row.valid, window);
  Type type = j.getType();
  Value lastCandidate =
      arith::SubIOp::create(b, loc, row.pos, intConst(b, loc, type, w));
  Value candidate =
      x.andI(x.andI(x.le(intConst(b, loc, type, 0), j), x.le(j, lastCandidate)),
             emitIsFiniteScore(b, loc, u));
  Value selected = x.andI(
      candidate, emitReachesTheta(b, loc, u, j, row.thetaScore, row.thetaPos));
  return x.andI(row.valid, x.orI(window, selected));
}

/// The i32 order key of an f32: its bits as sign and magnitude turned into
/// two's complement (-0 and +0 both 0), so that integer order is float order
/// on non-NaN values; sets `finite` (i1: finite) or `ordered` (i1: not
/// NaN) where asked.
static Value emitOrderKey(OpBuilder &b, Location loc, Value x, Value *finite,
                          Value *ordered) {
  KernelMath k{b, loc};
  Type i32 = b.getI32Type();
  Value bits = arith::BitcastOp::create(b, loc, i32, x);
  Value mag = k.andI(bits, k.ci32(0x7fffffff));
  Value inf = k.ci32(0x7f800000);
  if (finite)
    *finite = k.lt(mag, inf);
  if (ordered)
    *ordered = k.le(mag, inf);
  return k.sel(k.lt(bits, k.ci32(0)), k.sub(k.ci32(0), mag), bits);
}

/// (order key << 32) | (0x7fffffff - j as u32): j decreasing, as unsigned,
/// over all of i32, so equal order keys compare by -j.
static Value emitRank(OpBuilder &b, Location loc, Value key, Value j) {
  KernelMath k{b, loc};
  Type i64 = b.getI64Type();
  if (!j.getType().isInteger(32))
    j = j.getType().isIndex()
            ? arith::IndexCastOp::create(b, loc, b.getI32Type(), j).getResult()
            : arith::TruncIOp::create(b, loc, b.getI32Type(), j).getResult();
  Value low = arith::ExtUIOp::create(b, loc, i64, k.sub(k.ci32(0x7fffffff), j));
  Value high =
      arith::ShLIOp::create(b, loc, arith::ExtSIOp::create(b, loc, i64, key),
                            arith::ConstantIntOp::create(b, loc, i64, 32));
  return arith::OrIOp::create(b, loc, high, low);
}

Value sparsek::emitListRank(OpBuilder &b, Location loc, Value u, Value j) {
  KernelMath k{b, loc};
  Value finite;
  Value key = emitOrderKey(b, loc, u, &finite, nullptr);
  // Below the key of every threshold, -inf included.
  key = k.sel(finite, key, k.ci32(std::numeric_limits<int32_t>::min()));
  return emitRank(b, loc, key, j);
}

Value sparsek::emitListRowRank(OpBuilder &b, Location loc,
                               const QueryThresholds &row) {
  KernelMath k{b, loc};
  Value ordered;
  Value key = emitOrderKey(b, loc, row.thetaScore, nullptr, &ordered);
  Value rank = emitRank(b, loc, key, row.thetaPos);
  Value none = arith::ConstantIntOp::create(
      b, loc, b.getI64Type(), std::numeric_limits<int64_t>::max());
  Value usable = k.andI(row.valid, ordered);
  return k.sel(usable, rank, none);
}

Value sparsek::emitListGate(OpBuilder &b, Location loc,
                            const QueryThresholds &row, Value u) {
  return arith::MaxNumFOp::create(
      b, loc,
      arith::MinNumFOp::create(b, loc,
                               arith::SubFOp::create(b, loc, u, row.tau),
                               emitF32(b, loc, 1.0)),
      emitF32(b, loc, 0.0));
}

Value sparsek::emitGate(OpBuilder &b, Location loc, const QueryThresholds &row,
                        Value j, Value u, int64_t w, bool selects) {
  Value one = emitF32(b, loc, 1.0);
  if (!selects)
    return one;
  return arith::SelectOp::create(b, loc, emitInWindow(b, loc, row, j, w), one,
                                 emitListGate(b, loc, row, u));
}

BlockKeys BlockKeys::emit(OpBuilder &b, Location loc, Value count, Value t0,
                          Value ta, Value blockQueries, Value numQueries,
                          Value numKeys, int64_t w) {
  KernelMath x{b, loc};
  Value firstPos = x.sub(numKeys, numQueries);
  // From ta's window on: ta's candidates are in the list, so the range and
  // the list never share a key.
  Value lo = x.max(x.c(0), x.add(firstPos, x.sub(ta, x.c(w - 1))));
  Value t1 = x.sub(x.min(x.add(t0, blockQueries), numQueries), x.c(1));
  Value hi = x.add(firstPos, t1);
  Value range = x.max(x.c(0), x.add(x.sub(hi, lo), x.c(1)));
  return {count, lo, x.add(count, range), x.add(firstPos, t0), hi};
}

KeyTileClass KeyTileClass::emit(OpBuilder &b, Location loc,
                                const BlockKeys &keys, Value first, int64_t w) {
  KernelMath x{b, loc};
  Value last = x.add(first, x.c(kKeyTile - 1));
  // Range slots hold consecutive positions from lo on.
  Value firstKey = x.add(keys.lo, x.sub(first, keys.count));
  Value inRange = x.andI(x.le(keys.count, first), x.lt(last, keys.length));
  Value inAllWindows =
      x.andI(x.le(x.sub(keys.tail, x.c(w - 1)), firstKey),
             x.le(x.add(firstKey, x.c(kKeyTile - 1)), keys.head));
  return {x.andI(inRange, inAllWindows), x.lt(last, keys.count)};
}

RowBounds RowBounds::emit(OpBuilder &b, Location loc,
                          const QueryThresholds &row, int64_t w) {
  KernelMath x{b, loc};
  Type type = row.pos.getType();
  Value lo = arith::MaxSIOp::create(
      b, loc,
      arith::SubIOp::create(b, loc, row.pos, intConst(b, loc, type, w - 1)),
      intConst(b, loc, type, 0));
  return {lo, x.sel(row.valid, row.pos, intConst(b, loc, type, -1))};
}

Value RowBounds::emitInWindow(OpBuilder &b, Location loc, Value j) const {
  KernelMath x{b, loc};
  return x.andI(x.le(lo, j), x.le(j, hi));
}

Value RowBounds::emitIsMember(OpBuilder &b, Location loc, Value j, Value rank,
                              Value rowRank) const {
  KernelMath x{b, loc};
  // Unsigned, padding (-1) is above every lo.
  Value candidate =
      arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult, j, lo);
  Value reaches =
      arith::CmpIOp::create(b, loc, arith::CmpIPredicate::sge, rank, rowRank);
  return x.orI(x.andI(candidate, reaches), emitInWindow(b, loc, j));
}

Value RowBounds::emitGate(OpBuilder &b, Location loc,
                          const QueryThresholds &row, Value j, Value u) const {
  return arith::SelectOp::create(b, loc, emitInWindow(b, loc, j),
                                 emitF32(b, loc, 1.0),
                                 emitListGate(b, loc, row, u));
}

Value KeyTileClass::emitIsMember(OpBuilder &b, Location loc,
                                 const QueryThresholds &row, Value j, Value u,
                                 int64_t w, bool selects) const {
  KernelMath x{b, loc};
  if (!selects)
    return x.sel(window, row.valid,
                 sparsek::emitIsMember(b, loc, row, j, u, w, false));
  Value rank = emitListRank(b, loc, u, j);
  Value rowRank = emitListRowRank(b, loc, row);
  Value full =
      RowBounds::emit(b, loc, row, w).emitIsMember(b, loc, j, rank, rowRank);
  Value reaches =
      arith::CmpIOp::create(b, loc, arith::CmpIPredicate::sge, rank, rowRank);
  full = x.sel(list, reaches, full);
  return x.sel(window, row.valid, full);
}

Value KeyTileClass::emitGate(OpBuilder &b, Location loc,
                             const QueryThresholds &row, Value j, Value u,
                             int64_t w, bool selects) const {
  if (!selects)
    return sparsek::emitGate(b, loc, row, j, u, w, false);
  Value full = RowBounds::emit(b, loc, row, w).emitGate(b, loc, row, j, u);
  full =
      arith::SelectOp::create(b, loc, list, emitListGate(b, loc, row, u), full);
  return arith::SelectOp::create(b, loc, window, emitF32(b, loc, 1.0), full);
}

Value BlockKeys::emitKeyAt(OpBuilder &b, Location loc, Value i, Value list,
                           ValueRange lead, int64_t k) const {
  KernelMath x{b, loc};
  Value j = x.add(lo, x.sub(i, count));
  if (list) {
    // Clamped, so the load stays inside the row; the select drops it.
    SmallVector<Value> at(lead);
    at.push_back(x.min(i, x.c(k - 1)));
    j = x.sel(x.lt(i, count), emitLoadIndex(b, loc, list, at), j);
  }
  return x.sel(x.lt(i, length), j, x.c(-1));
}

QueryThresholds ThresholdBuffers::emitLoad(OpBuilder &b, Location loc, Value r,
                                           Value t, Value valid,
                                           Value pos) const {
  // Invalid rows (past T) read query 0's entries, which exist when T > 0.
  KernelMath x{b, loc};
  Value at = x.sel(valid, t, x.c(0));
  auto load = [&](Value buf) {
    return memref::LoadOp::create(b, loc, buf, ValueRange{r, at}).getResult();
  };
  return {valid, pos, load(tau), load(thetaScore),
          emitLoadIndex(b, loc, thetaPos, ValueRange{r, at})};
}

static Value alloc(OpBuilder &b, Location loc, Type elem,
                   ArrayRef<Value> sizes) {
  SmallVector<int64_t> shape(sizes.size(), ShapedType::kDynamic);
  return memref::AllocOp::create(b, loc, MemRefType::get(shape, elem), sizes);
}

void BlockKeySets::emit(OpBuilder &b, Location loc, const TileGeometry &geo) {
  assert(k >= 1 && "k = 0 selects nothing");
  KernelMath x{b, loc};
  Value batch = emitDim(b, loc, scores, 0), heads = emitDim(b, loc, scores, 1);
  Value numQueries = emitDim(b, loc, query, 2);
  Value rows = x.mul(batch, heads);
  Type f32 = b.getF32Type(), i32 = b.getI32Type();
  lists = alloc(b, loc, i32, {rows, geo.numLists, x.c(k)});
  counts = alloc(b, loc, i32, {rows, geo.numLists});
  thresholds = {alloc(b, loc, f32, {rows, numQueries}),
                alloc(b, loc, f32, {rows, numQueries}),
                alloc(b, loc, i32, {rows, numQueries})};
  if (!rowSelection || selectChunk != 0)
    return emitChunked(b, loc, geo);
  // Rows that fit the row kernel's workgroup memory take one launch; longer
  // ones (and rows without candidates) the chunked selection.
  Value candidates = x.sub(emitDim(b, loc, scores, 2), x.c(w));
  Value fits = x.andI(x.le(x.c(1), candidates),
                      x.le(candidates, x.c(kRowSelectCandidates)));
  Value listQueries = x.mul(geo.listBlocks, geo.blockQueries);
  auto ifOp = scf::IfOp::create(b, loc, fits, /*withElseRegion=*/true);
  OpBuilder tb = ifOp.getThenBodyBuilder();
  emitRowSelection(tb, loc, rowModule, op, scores, k, w, thresholds, lists,
                   counts, listQueries);
  OpBuilder eb = ifOp.getElseBodyBuilder();
  emitChunked(eb, loc, geo);
}

void BlockKeySets::emitChunked(OpBuilder &b, Location loc,
                               const TileGeometry &geo) {
  KernelMath x{b, loc};
  Value batch = emitDim(b, loc, scores, 0), heads = emitDim(b, loc, scores, 1);
  Value numQueries = emitDim(b, loc, query, 2);
  ChunkedSelection sel(op, k, w, scores, numQueries, /*inKernel=*/true,
                       selectChunk);
  sel.emitSizes(b, loc);
  // Each chunk's first query's positions: O(k) per chunk.
  Value firsts = memref::AllocOp::create(
      b, loc,
      MemRefType::get(
          {ShapedType::kDynamic, ShapedType::kDynamic, ShapedType::kDynamic, k},
          b.getIndexType()),
      ValueRange{batch, heads, sel.numChunks()});
  sel.emitThresholds(b, loc,
                     FirstLists{firsts, [](OpBuilder &, Location, Value bi,
                                           Value h, Value chunk, Value) {
                                  return SmallVector<Value>{bi, h, chunk};
                                }});
  Value rows = x.mul(batch, heads);

  // Per list (L blocks, first query t0): Sel(t0), ascending. Its
  // candidates, in order, are t0's chunk's first list (k entries, -1
  // padded) then the chunk's candidates after the first query's last one up
  // to t0's last (fewer than Lc): a walk of k + Lc entries in segments of
  // kListSegment. Pass 1, one thread per segment, tests each entry once and
  // keeps the segment's members as a bit mask (their count is its
  // population count). Pass 2, one thread per list, turns the counts into
  // offsets. Pass 3, one thread per entry, writes a
  // member at its segment's offset plus the members before it in its mask
  // (a population count): consecutive threads write consecutive slots,
  // where a thread per segment wrote runs 64 slots apart and a warp's
  // stores touched 32 sectors each (at P1 32k on an H100 that write pass
  // took 0.23 ms against 0.08 for the count).
  static_assert(kListSegment == 64, "a segment's members are one i64 mask");
  Value entries = x.add(x.c(k), sel.chunkLength());
  Value segments = x.ceilDiv(entries, x.c(kListSegment));
  Type index = b.getIndexType(), i64 = b.getI64Type();
  Value segmentCounts = alloc(b, loc, index, {rows, geo.numLists, segments});
  Value segmentMasks = alloc(b, loc, i64, {rows, geo.numLists, segments});
  // Entry i of list `list`'s walk (t0's place): its position j (valid only
  // where it exists).
  struct Entry {
    Value j, exists;
  };
  auto entryAt = [&](OpBuilder &nb, Location nl, Value bi, Value h,
                     const QueryPlace &place, Value i) -> Entry {
    KernelMath z{nb, nl};
    Value inList = z.lt(i, z.c(k));
    Value listed = emitLoadIndex(
        nb, nl, firsts, ValueRange{bi, h, place.chunk, z.min(i, z.c(k - 1))});
    Value after = z.add(place.firstLast, z.add(z.sub(i, z.c(k)), z.c(1)));
    return {z.sel(inList, listed, after),
            z.sel(inList, z.le(z.c(0), listed), z.le(after, place.last))};
  };
  Value blockSegments = x.mul(geo.numLists, segments);
  emitParallelQueryBlocks(
      b, loc, batch, heads, blockSegments, kListBlock,
      [&](OpBuilder &nb, Location nl, Value bi, Value h, Value bs) {
        KernelMath y{nb, nl};
        Value r = y.add(y.mul(bi, heads), h);
        Value list = y.div(bs, segments), seg = y.rem(bs, segments);
        Value t0 = geo.emitListQuery(nb, nl, list);
        QueryPlace place = sel.emitPlace(nb, nl, t0);
        Value zero64 = arith::ConstantIntOp::create(nb, nl, i64, 0);
        // Without candidates the block has no selected key, and its chunk,
        // its theta and the first lists (empty when no query has a
        // candidate) must not be read.
        SmallVector<Value> found = emitIfElse(
            nb, nl, place.hasCandidates,
            [&](OpBuilder &cb, Location cl) -> SmallVector<Value> {
              KernelMath c{cb, cl};
              auto [ts, tp] = sel.emitTheta(cb, cl, bi, h, t0);
              Value from = c.mul(seg, c.c(kListSegment));
              Value to = c.min(c.add(from, c.c(kListSegment)), entries);
              return emitForCarryingUnrolled(
                  cb, cl, kWalkUnroll, from, to, ValueRange{zero64},
                  [&](OpBuilder &fb, Location fl, Value i,
                      ValueRange carried) -> SmallVector<Value> {
                    KernelMath z{fb, fl};
                    Entry en = entryAt(fb, fl, bi, h, place, i);
                    Value jc = z.max(z.min(en.j, place.last), z.c(0));
                    Value u = memref::LoadOp::create(fb, fl, scores,
                                                     ValueRange{bi, h, jc});
                    // A candidate of t0 (j <= last(t0), finite) reaching
                    // theta(t0).
                    Value member =
                        z.andI(z.andI(en.exists, emitIsFiniteScore(fb, fl, u)),
                               emitReachesTheta(fb, fl, u, en.j, ts, tp));
                    Value bit = arith::ShLIOp::create(
                        fb, fl, arith::ExtUIOp::create(fb, fl, i64, member),
                        arith::IndexCastOp::create(fb, fl, i64,
                                                   z.sub(i, from)));
                    return {arith::OrIOp::create(fb, fl, carried[0], bit)};
                  });
            },
            [&](OpBuilder &cb, Location cl) -> SmallVector<Value> {
              return {zero64};
            });
        Value count = arith::IndexCastUIOp::create(
            nb, nl, nb.getIndexType(), math::CtPopOp::create(nb, nl, found[0]));
        memref::StoreOp::create(nb, nl, count, segmentCounts,
                                ValueRange{r, list, seg});
        memref::StoreOp::create(nb, nl, found[0], segmentMasks,
                                ValueRange{r, list, seg});
      });
  // Per list: each segment's first slot (the members before it, in place
  // of its count) and the list's count; a short loop per list, so that the
  // write pass's threads read one offset each.
  emitParallelQueryBlocks(
      b, loc, batch, heads, geo.numLists, kListBlock,
      [&](OpBuilder &nb, Location nl, Value bi, Value h, Value list) {
        KernelMath y{nb, nl};
        Value r = y.add(y.mul(bi, heads), h);
        Value total = emitForCarryingUnrolled(
            nb, nl, kScanUnroll, y.c(0), segments, ValueRange{y.c(0)},
            [&](OpBuilder &fb, Location fl, Value s2,
                ValueRange c) -> SmallVector<Value> {
              KernelMath z{fb, fl};
              Value n = memref::LoadOp::create(fb, fl, segmentCounts,
                                               ValueRange{r, list, s2});
              memref::StoreOp::create(fb, fl, c[0], segmentCounts,
                                      ValueRange{r, list, s2});
              return {z.add(c[0], n)};
            })[0];
        memref::StoreOp::create(nb, nl, y.i32(total), counts,
                                ValueRange{r, list});
      });
  emitParallelQueryBlocks(
      b, loc, batch, heads, x.mul(blockSegments, x.c(kListSegment)), kListBlock,
      [&](OpBuilder &nb, Location nl, Value bi, Value h, Value item) {
        KernelMath y{nb, nl};
        Value r = y.add(y.mul(bi, heads), h);
        Value perList = y.mul(segments, y.c(kListSegment));
        Value list = y.div(item, perList), i = y.rem(item, perList);
        Value seg = y.div(i, y.c(kListSegment));
        Value bitAt = arith::IndexCastOp::create(nb, nl, i64,
                                                 y.rem(i, y.c(kListSegment)));
        Value offset = memref::LoadOp::create(nb, nl, segmentCounts,
                                              ValueRange{r, list, seg});
        Value total = arith::IndexCastOp::create(
            nb, nl, nb.getIndexType(),
            memref::LoadOp::create(nb, nl, counts, ValueRange{r, list}));
        Value mask = memref::LoadOp::create(nb, nl, segmentMasks,
                                            ValueRange{r, list, seg});
        Value one64 = arith::ConstantIntOp::create(nb, nl, i64, 1);
        Value member = arith::TruncIOp::create(
            nb, nl, b.getI1Type(), arith::ShRUIOp::create(nb, nl, mask, bitAt));
        emitIf(nb, nl, member, [&](OpBuilder &mb, Location ml) {
          KernelMath z{mb, ml};
          Value below = arith::SubIOp::create(
              mb, ml, arith::ShLIOp::create(mb, ml, one64, bitAt), one64);
          Value before = math::CtPopOp::create(
              mb, ml, arith::AndIOp::create(mb, ml, mask, below));
          Value slot = z.add(offset, arith::IndexCastOp::create(
                                         mb, ml, mb.getIndexType(), before));
          // A member exists, so t0 has candidates and its place is valid.
          Value t0 = geo.emitListQuery(mb, ml, list);
          Entry en = entryAt(mb, ml, bi, h, sel.emitPlace(mb, ml, t0), i);
          memref::StoreOp::create(mb, ml, z.i32(en.j), lists,
                                  ValueRange{r, list, slot});
        });
        // Slots past the members: -1 (read by no tile, written so no read
        // is uninitialized).
        emitIf(nb, nl, y.andI(y.le(total, i), y.lt(i, y.c(k))),
               [&](OpBuilder &pb, Location pl) {
                 KernelMath z{pb, pl};
                 memref::StoreOp::create(pb, pl, z.i32(z.c(-1)), lists,
                                         ValueRange{r, list, i});
               });
      });
  // Per query: f32 tau and theta; queries without candidates never test
  // one (no j <= pos - w), they get (+inf, +inf, -1).
  constexpr double inf = std::numeric_limits<double>::infinity();
  emitParallelQueryBlocks(
      b, loc, batch, heads, numQueries, kQueryBlock,
      [&](OpBuilder &nb, Location nl, Value bi, Value h, Value t) {
        KernelMath y{nb, nl};
        Value r = y.add(y.mul(bi, heads), h);
        QueryPlace place = sel.emitPlace(nb, nl, t);
        SmallVector<Value> v = emitIfElse(
            nb, nl, place.hasCandidates,
            [&](OpBuilder &tb, Location tl) -> SmallVector<Value> {
              Value tau = arith::TruncFOp::create(
                  tb, tl, tb.getF32Type(), sel.emitTau(tb, tl, bi, h, t));
              auto [ts, tp] = sel.emitTheta(tb, tl, bi, h, t);
              return {tau, ts, KernelMath{tb, tl}.i32(tp)};
            },
            [&](OpBuilder &eb, Location el) -> SmallVector<Value> {
              return {emitF32(eb, el, inf), emitF32(eb, el, inf),
                      KernelMath{eb, el}.i32(KernelMath{eb, el}.c(-1))};
            });
        memref::StoreOp::create(nb, nl, v[0], thresholds.tau, ValueRange{r, t});
        memref::StoreOp::create(nb, nl, v[1], thresholds.thetaScore,
                                ValueRange{r, t});
        memref::StoreOp::create(nb, nl, v[2], thresholds.thetaPos,
                                ValueRange{r, t});
      });
  // Launches on one stream run in order: the chunked selection's scratch
  // can go now.
  memref::DeallocOp::create(b, loc, segmentCounts);
  memref::DeallocOp::create(b, loc, segmentMasks);
  sel.emitDealloc(b, loc);
  memref::DeallocOp::create(b, loc, firsts);
}

void BlockKeySets::emitDealloc(OpBuilder &b, Location loc) const {
  for (Value v : {lists, counts, thresholds.tau, thresholds.thetaScore,
                  thresholds.thetaPos})
    memref::DeallocOp::create(b, loc, v);
}
