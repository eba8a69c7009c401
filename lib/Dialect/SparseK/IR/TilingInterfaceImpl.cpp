//===- TilingInterfaceImpl.cpp - Tiling sparsek ops -----------------------===//
//
// TilingInterface for the sparsek ops whose iterations are independent:
//   attention          (B, Hq, T)   every dimension parallel
//   decode_attention   (B, Hq)
//   score              (B, Hkv, T)
// A tile of queries [t0, t0 + ts) of attention keeps SPEC 5's convention
// that queries are the last positions of the keys they see: its keys are the
// prefix [0, S - T + t0 + ts), so a tiled op is an ordinary attention op.
// Query-head tiles must keep GQA groups whole (tile size 1, or a multiple
// of G = Hq / Hkv at an aligned offset), so that each tile's KV heads are a
// contiguous range; other head tile sizes are rejected.
//
//===----------------------------------------------------------------------===//
#include "sparsek/Dialect/SparseK/IR/TilingInterfaceImpl.h"

#include "mlir/Dialect/Affine/IR/AffineOps.h"
#include "mlir/Dialect/Arith/Utils/Utils.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/Interfaces/TilingInterface.h"
#include "sparsek/Dialect/SparseK/IR/SparseKOps.h"

using namespace mlir;
using namespace mlir::sparsek;

namespace {
/// Slices `v` (a tensor) at `offsets`/`sizes`, taking whole trailing dims.
Value slice(OpBuilder &b, Location loc, Value v, ArrayRef<OpFoldResult> offsets,
            ArrayRef<OpFoldResult> sizes, SmallVectorImpl<Operation *> &made) {
  auto type = cast<RankedTensorType>(v.getType());
  SmallVector<OpFoldResult> offs(offsets), szs(sizes);
  for (int64_t d = offsets.size(); d < type.getRank(); ++d) {
    offs.push_back(b.getIndexAttr(0));
    szs.push_back(tensor::getMixedSize(b, loc, v, d));
  }
  SmallVector<OpFoldResult> strides(type.getRank(), b.getIndexAttr(1));
  auto op = tensor::ExtractSliceOp::create(b, loc, v, offs, szs, strides);
  made.push_back(op);
  return op;
}

OpFoldResult apply(OpBuilder &b, Location loc, AffineExpr e,
                   ArrayRef<OpFoldResult> operands) {
  return affine::makeComposedFoldedAffineApply(
      b, loc, AffineMap::get(0, operands.size(), e), operands);
}

/// The KV-head range of the query-head tile [hq0, hq0 + hs), or failure when
/// the tile splits a GQA group.
FailureOr<std::pair<OpFoldResult, OpFoldResult>>
kvHeadRange(OpBuilder &b, Location loc, Operation *op, Value q, Value kv,
            OpFoldResult hq0, OpFoldResult hs) {
  OpFoldResult hq = tensor::getMixedSize(b, loc, q, 1);
  OpFoldResult hkv = tensor::getMixedSize(b, loc, kv, 1);
  std::optional<int64_t> size = getConstantIntValue(hs);
  if (size && getConstantIntValue(hq) == size)
    return std::make_pair(OpFoldResult(b.getIndexAttr(0)), hkv); // all heads
  std::optional<int64_t> sq = getConstantIntValue(hq),
                         skv = getConstantIntValue(hkv);
  AffineExpr s0, s1;
  bindSymbols(b.getContext(), s0, s1);
  if (size == 1) {
    // One query head: its KV head hq0 / G, G = Hq / Hkv.
    OpFoldResult g = apply(b, loc, s0.floorDiv(s1), {hq, hkv});
    return std::make_pair(apply(b, loc, s0.floorDiv(s1), {hq0, g}),
                          OpFoldResult(b.getIndexAttr(1)));
  }
  if (size && sq && skv && *skv > 0 && *sq % *skv == 0) {
    int64_t g = *sq / *skv;
    if (*size % g == 0)
      return std::make_pair(apply(b, loc, s0.floorDiv(g), {hq0}),
                            OpFoldResult(b.getIndexAttr(*size / g)));
  }
  auto diag = op->emitOpError() << "cannot tile query heads by ";
  if (size)
    diag << *size;
  else
    diag << "a dynamic size";
  return diag << ": a head tile must be 1 or a multiple of the (static) group size "
            "Hq / Hkv, so that it covers whole GQA groups";
}

/// The result tile of a loop tile: the loops' offsets and sizes, then the
/// whole of the trailing result dimensions (Dv) that no loop covers.
LogicalResult resultTile(Operation *op, OpBuilder &b,
                         ArrayRef<OpFoldResult> offsets,
                         ArrayRef<OpFoldResult> sizes,
                         SmallVector<OpFoldResult> &resultOffsets,
                         SmallVector<OpFoldResult> &resultSizes) {
  Value init = cast<DestinationStyleOpInterface>(op).getDpsInits()[0];
  resultOffsets.assign(offsets.begin(), offsets.end());
  resultSizes.assign(sizes.begin(), sizes.end());
  int64_t rank = cast<ShapedType>(init.getType()).getRank();
  for (int64_t d = offsets.size(); d < rank; ++d) {
    resultOffsets.push_back(b.getIndexAttr(0));
    resultSizes.push_back(tensor::getMixedSize(b, op->getLoc(), init, d));
  }
  return success();
}

struct AttentionTiling
    : TilingInterface::ExternalModel<AttentionTiling, AttentionOp> {
  SmallVector<utils::IteratorType> getLoopIteratorTypes(Operation *) const {
    return SmallVector<utils::IteratorType>(3, utils::IteratorType::parallel);
  }

  SmallVector<Range> getIterationDomain(Operation *op, OpBuilder &b) const {
    auto a = cast<AttentionOp>(op);
    Location loc = op->getLoc();
    SmallVector<Range> domain;
    for (int64_t d = 0; d < 3; ++d)
      domain.push_back({b.getIndexAttr(0),
                        tensor::getMixedSize(b, loc, a.getQuery(), d),
                        b.getIndexAttr(1)});
    return domain;
  }

  FailureOr<TilingResult>
  getTiledImplementation(Operation *op, OpBuilder &b,
                         ArrayRef<OpFoldResult> offsets,
                         ArrayRef<OpFoldResult> sizes) const {
    auto a = cast<AttentionOp>(op);
    if (!a.hasPureTensorSemantics())
      return op->emitOpError() << "is tiled in tensor form only";
    Location loc = op->getLoc();
    auto heads = kvHeadRange(b, loc, op, a.getQuery(), a.getKey(), offsets[1],
                             sizes[1]);
    if (failed(heads))
      return failure();
    auto [kv0, kvs] = *heads;
    // Keys [0, S - T + t0 + ts): the tile's queries are their last ts.
    AffineExpr s0, s1, s2, s3;
    bindSymbols(b.getContext(), s0, s1, s2, s3);
    OpFoldResult keys =
        apply(b, loc, s0 - s1 + s2 + s3,
              {tensor::getMixedSize(b, loc, a.getKey(), 2),
               tensor::getMixedSize(b, loc, a.getQuery(), 2), offsets[2],
               sizes[2]});
    OpFoldResult zero = b.getIndexAttr(0);
    SmallVector<Operation *> made;
    Value q = slice(b, loc, a.getQuery(), offsets, sizes, made);
    Value key = slice(b, loc, a.getKey(), {offsets[0], kv0, zero},
                      {sizes[0], kvs, keys}, made);
    Value value = slice(b, loc, a.getValue(), {offsets[0], kv0, zero},
                        {sizes[0], kvs, keys}, made);
    Value idx = slice(b, loc, a.getIndices(), {offsets[0], kv0, offsets[2]},
                      {sizes[0], kvs, sizes[2]}, made);
    Value gates = slice(b, loc, a.getGates(), {offsets[0], kv0, offsets[2]},
                        {sizes[0], kvs, sizes[2]}, made);
    Value init = slice(b, loc, a.getInit(), offsets, sizes, made);
    auto tiled = AttentionOp::create(b, loc, TypeRange{init.getType()}, q, key,
                                     value, idx, gates, a.getWAttr(),
                                     a.getScaleAttr(), init);
    return TilingResult{{tiled}, SmallVector<Value>(tiled->getResults()), made};
  }

  LogicalResult getResultTilePosition(Operation *op, OpBuilder &b, unsigned,
                                      ArrayRef<OpFoldResult> offsets,
                                      ArrayRef<OpFoldResult> sizes,
                                      SmallVector<OpFoldResult> &resultOffsets,
                                      SmallVector<OpFoldResult> &resultSizes)
      const {
    return resultTile(op, b, offsets, sizes, resultOffsets, resultSizes);
  }
};

struct ScoreTiling : TilingInterface::ExternalModel<ScoreTiling, ScoreOp> {
  SmallVector<utils::IteratorType> getLoopIteratorTypes(Operation *) const {
    return SmallVector<utils::IteratorType>(3, utils::IteratorType::parallel);
  }

  SmallVector<Range> getIterationDomain(Operation *op, OpBuilder &b) const {
    auto s = cast<ScoreOp>(op);
    SmallVector<Range> domain;
    for (int64_t d = 0; d < 3; ++d)
      domain.push_back({b.getIndexAttr(0),
                        tensor::getMixedSize(b, op->getLoc(), s.getInit(), d),
                        b.getIndexAttr(1)});
    return domain;
  }

  FailureOr<TilingResult>
  getTiledImplementation(Operation *op, OpBuilder &b,
                         ArrayRef<OpFoldResult> offsets,
                         ArrayRef<OpFoldResult> sizes) const {
    auto s = cast<ScoreOp>(op);
    if (!s.hasPureTensorSemantics())
      return op->emitOpError() << "is tiled in tensor form only";
    Location loc = op->getLoc();
    SmallVector<Operation *> made;
    // Loops (b, h, t): x[b, t, :], weight[h, :], bias/slope[h], u[b, h, t].
    Value x = slice(b, loc, s.getInput(), {offsets[0], offsets[2]},
                    {sizes[0], sizes[2]}, made);
    Value w = slice(b, loc, s.getWeight(), {offsets[1]}, {sizes[1]}, made);
    Value bias = s.getBias() ? slice(b, loc, s.getBias(), {offsets[1]},
                                     {sizes[1]}, made)
                             : Value();
    Value slope = s.getSlope() ? slice(b, loc, s.getSlope(), {offsets[1]},
                                       {sizes[1]}, made)
                               : Value();
    // The tile's first token sits at offset + t0.
    OpFoldResult base = s.getOffset() ? OpFoldResult(s.getOffset())
                                      : OpFoldResult(b.getIndexAttr(0));
    AffineExpr s0, s1;
    bindSymbols(b.getContext(), s0, s1);
    Value offset = getValueOrCreateConstantIndexOp(
        b, loc, apply(b, loc, s0 + s1, {base, offsets[2]}));
    Value init = slice(b, loc, s.getInit(), offsets, sizes, made);
    auto tiled = ScoreOp::create(b, loc, TypeRange{init.getType()}, x, w, bias,
                                 slope, offset, init);
    return TilingResult{{tiled}, SmallVector<Value>(tiled->getResults()), made};
  }

  LogicalResult getResultTilePosition(Operation *op, OpBuilder &b, unsigned,
                                      ArrayRef<OpFoldResult> offsets,
                                      ArrayRef<OpFoldResult> sizes,
                                      SmallVector<OpFoldResult> &resultOffsets,
                                      SmallVector<OpFoldResult> &resultSizes)
      const {
    return resultTile(op, b, offsets, sizes, resultOffsets, resultSizes);
  }
};

struct DecodeAttentionTiling
    : TilingInterface::ExternalModel<DecodeAttentionTiling, DecodeAttentionOp> {
  SmallVector<utils::IteratorType> getLoopIteratorTypes(Operation *) const {
    return SmallVector<utils::IteratorType>(2, utils::IteratorType::parallel);
  }

  SmallVector<Range> getIterationDomain(Operation *op, OpBuilder &b) const {
    auto d = cast<DecodeAttentionOp>(op);
    SmallVector<Range> domain;
    for (int64_t i = 0; i < 2; ++i)
      domain.push_back({b.getIndexAttr(0),
                        tensor::getMixedSize(b, op->getLoc(), d.getQuery(), i),
                        b.getIndexAttr(1)});
    return domain;
  }

  FailureOr<TilingResult>
  getTiledImplementation(Operation *op, OpBuilder &b,
                         ArrayRef<OpFoldResult> offsets,
                         ArrayRef<OpFoldResult> sizes) const {
    auto d = cast<DecodeAttentionOp>(op);
    if (!d.hasPureTensorSemantics())
      return op->emitOpError() << "is tiled in tensor form only";
    Location loc = op->getLoc();
    auto heads = kvHeadRange(b, loc, op, d.getQuery(), d.getKeySlots(),
                             offsets[1], sizes[1]);
    if (failed(heads))
      return failure();
    auto [kv0, kvs] = *heads;
    SmallVector<Operation *> made;
    SmallVector<OpFoldResult> kvOff{offsets[0], kv0}, kvSize{sizes[0], kvs};
    Value q = slice(b, loc, d.getQuery(), offsets, sizes, made);
    Value ks = slice(b, loc, d.getKeySlots(), kvOff, kvSize, made);
    Value vs = slice(b, loc, d.getValueSlots(), kvOff, kvSize, made);
    Value sc = slice(b, loc, d.getSlotScores(), kvOff, kvSize, made);
    Value tau = slice(b, loc, d.getTau(), kvOff, kvSize, made);
    Value cnt = slice(b, loc, d.getPoolCount(), kvOff, kvSize, made);
    Value pos = slice(b, loc, d.getPositions(), {offsets[0]}, {sizes[0]}, made);
    Value init = slice(b, loc, d.getInit(), offsets, sizes, made);
    auto tiled = DecodeAttentionOp::create(
        b, loc, TypeRange{init.getType()}, q, ks, vs, sc, tau, cnt, pos,
        d.getKAttr(), d.getWAttr(), d.getScaleAttr(), init);
    return TilingResult{{tiled}, SmallVector<Value>(tiled->getResults()), made};
  }

  LogicalResult getResultTilePosition(Operation *op, OpBuilder &b, unsigned,
                                      ArrayRef<OpFoldResult> offsets,
                                      ArrayRef<OpFoldResult> sizes,
                                      SmallVector<OpFoldResult> &resultOffsets,
                                      SmallVector<OpFoldResult> &resultSizes)
      const {
    return resultTile(op, b, offsets, sizes, resultOffsets, resultSizes);
  }
};
} // namespace

void mlir::sparsek::registerTilingInterfaceExternalModels(
    DialectRegistry &registry) {
  registry.addExtension(+[](MLIRContext *ctx, SparseKDialect *) {
    AttentionOp::attachInterface<AttentionTiling>(*ctx);
    ScoreOp::attachInterface<ScoreTiling>(*ctx);
    DecodeAttentionOp::attachInterface<DecodeAttentionTiling>(*ctx);
  });
}
