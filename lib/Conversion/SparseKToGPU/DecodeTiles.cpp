//===- DecodeTiles.cpp - The split walk of the tile-first decode ----------===//
#include "DecodeTiles.h"
#include "KernelMath.h"

#include "../SparseKToLoops/DecodeChecks.h"
#include "../SparseKToLoops/LoopUtils.h"
#include "../SparseKToLoops/Softmax.h"
#include "../SparseKToLoops/TauSolver.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/SymbolTable.h"

#include <cmath>
#include <limits>

using namespace mlir;
using namespace mlir::sparsek;

DecodeGeometry DecodeGeometry::get(int64_t d, int64_t group, bool mma) {
  int64_t lanes = d / kDecodeChunk;
  if (mma) // two key tiles of 8 per warp and iteration
    return {lanes, 1, 16};
  // Loads in flight per lane: 4 K and 4 V chunks; with 8 heads the q and
  // output registers leave room for 2 of each.
  int64_t chunks = group <= 4 ? 4 : 2;
  return {lanes, 32 / lanes, chunks};
}

std::string sparsek::decodeTilesUnsupportedReason(DecodeAttentionOp op,
                                                  bool kernel) {
  auto q = cast<MemRefType>(op.getQuery().getType());
  Type elem = q.getElementType();
  if (kernel && !elem.isBF16() && !elem.isF16())
    return "q, key and value are not bf16 or f16";
  for (Value v : op->getOperands()) {
    auto type = cast<MemRefType>(v.getType());
    if (!type.getLayout().isIdentity())
      return "an operand has a non-identity layout";
  }
  for (Value v : {op.getKeySlots(), op.getValueSlots(), op.getInit()})
    if (cast<MemRefType>(v.getType()).getElementType() != elem)
      return "q, key, value and the output differ in element type";
  auto key = cast<MemRefType>(op.getKeySlots().getType());
  auto value = cast<MemRefType>(op.getValueSlots().getType());
  if (key.isDynamicDim(3) || value.isDynamicDim(3))
    return "D and Dv must be static";
  int64_t d = key.getDimSize(3), dv = value.getDimSize(3);
  if (d != dv || (d != 64 && d != 128))
    return "D and Dv must be equal, 64 or 128";
  // The kernel walks slots in i32 (DecodeTileKernel.cpp).
  if (op.getKAttr().getInt() + op.getWAttr().getInt() >= (int64_t(1) << 30))
    return "k + w must be below 2^30";
  return "";
}

Value sparsek::emitDecodeSplits(OpBuilder &b, Location loc, Value pairs,
                                int64_t slots, int64_t targetBlocks) {
  KernelMath x{b, loc};
  int64_t maxSplits = std::max<int64_t>(1, slots / kDecodeMinSplitSlots);
  // max(pairs, 1): B = 0 launches nothing but must not divide by zero.
  Value wanted = x.ceilDiv(x.c(targetBlocks), x.max(pairs, x.c(1)));
  return x.max(x.min(wanted, x.c(maxSplits)), x.c(1));
}

DecodeSplitRange DecodeSplitRange::emit(OpBuilder &b, Location loc,
                                        const DecodeOperands &ops, int64_t k,
                                        int64_t w, Value bi, Value h,
                                        Value split, Value splits) {
  KernelMath x{b, loc};
  // The cache state comes from the runtime and cannot be checked on the
  // host: checked here, per block, as the loop form's kernels check it
  // (also where k = 0 or w = 0 leaves the count or the position unused, so
  // both forms report the same inputs).
  Value count = emitLoadIndex(b, loc, ops.count, ValueRange{bi, h});
  Value pos = emitLoadIndex(b, loc, ops.positions, ValueRange{bi});
  // One unsigned compare: a negative count (sign-extended) is above k.
  Value countOk =
      arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ule, count, x.c(k));
  Value posOk =
      arith::CmpIOp::create(b, loc, arith::CmpIPredicate::sge, pos, x.c(0));
  Value stateOk = x.andI(countOk, posOk);
  Value yes = emitBool(b, loc, true);
  Value badState = arith::XOrIOp::create(b, loc, stateOk, yes);
  // A bad state walks nothing (n = 0): every head of (b, h) outputs 0.
  Value poolCount = k > 0 ? x.sel(stateOk, count, x.c(0)) : x.c(0);
  Value windowCount = x.c(0);
  if (w > 0) // min(pos, w - 1) + 1 cannot overflow for pos >= 0
    windowCount = x.sel(stateOk, x.add(x.min(pos, x.c(w - 1)), x.c(1)), x.c(0));
  Value tau32 = memref::LoadOp::create(b, loc, ops.tau, ValueRange{bi, h});
  Value tauNaN =
      arith::CmpFOp::create(b, loc, arith::CmpFPredicate::UNO, tau32, tau32);
  Value tau = k > 0 ? tau32 : Value();
  Value n = x.add(poolCount, windowCount);
  Value length = x.ceilDiv(n, splits);
  Value lo = x.min(x.mul(split, length), n);
  Value hi = x.min(x.add(lo, length), n);
  return {poolCount, lo, hi, badState, x.andI(stateOk, tauNaN), tau};
}

Value DecodeSplitRange::emitSlot(OpBuilder &b, Location loc, Value v,
                                 int64_t k) const {
  KernelMath x{b, loc};
  return x.sel(x.lt(v, poolCount), v, x.add(x.c(k), x.sub(v, poolCount)));
}

Value sparsek::emitWalkSlot(OpBuilder &b, Location loc,
                            const DecodeGeometry &geo, Value lo, Value it,
                            Value warp, int64_t c, Value rowClass) {
  KernelMath x{b, loc};
  Value step = x.add(x.mul(it, x.c(kDecodeWarps)), warp);
  return x.add(x.add(lo, x.mul(step, x.c(geo.slotsPerIter()))),
               x.add(x.c(c * geo.rowsPerLoad), rowClass));
}

Value sparsek::emitWalkIterations(OpBuilder &b, Location loc,
                                  const DecodeGeometry &geo, Value lo,
                                  Value hi) {
  KernelMath x{b, loc};
  return x.ceilDiv(x.sub(hi, lo), x.c(geo.slotsPerBlockIter()));
}

std::pair<Value, Value>
sparsek::emitSlotGate(OpBuilder &b, Location loc, const DecodeOperands &ops,
                      int64_t k, const DecodeSplitRange &range, Value v,
                      Value bi, Value h, Value slot, Value tau) {
  Value score;
  if (k > 0)
    score = memref::LoadOp::create(b, loc, ops.scores, ValueRange{bi, h, slot});
  return emitSlotGateOf(b, loc, k, range, v, score, tau);
}

std::pair<Value, Value> sparsek::emitSlotGateOf(OpBuilder &b, Location loc,
                                                int64_t k,
                                                const DecodeSplitRange &range,
                                                Value v, Value score,
                                                Value tau) {
  Value one = emitF32(b, loc, 1.0);
  if (k == 0)
    return {emitBool(b, loc, true), one};
  KernelMath x{b, loc};
  Value inPool = x.lt(v, range.poolCount);
  Value counts =
      x.sel(inPool, emitValidSlotScore(b, loc, score), emitBool(b, loc, true));
  Value gate = x.sel(inPool, emitClipGate(b, loc, score, tau), one);
  return {counts, gate};
}

MergeWeights sparsek::emitMergeWeights(OpBuilder &b, Location loc, Value m1,
                                       Value m2) {
  Value negInf = emitF32(b, loc, -std::numeric_limits<double>::infinity());
  Value max = arith::MaxNumFOp::create(b, loc, m1, m2);
  // Both empty: exponents against 0 give exp2(-inf) = 0, not NaN.
  Value empty =
      arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OEQ, max, negInf);
  Value use = arith::SelectOp::create(b, loc, empty, emitF32(b, loc, 0.0), max);
  auto weight = [&](Value m) {
    return math::Exp2Op::create(b, loc, arith::SubFOp::create(b, loc, m, use))
        .getResult();
  };
  return {max, weight(m1), weight(m2)};
}

Value sparsek::emitLog2Scale(OpBuilder &b, Location loc, DecodeAttentionOp op,
                             int64_t d) {
  Value scale = emitAttentionScale(b, loc, op.getScale(), emitIndex(b, loc, d));
  return arith::MulFOp::create(b, loc, scale,
                               emitF32(b, loc, 1.0 / std::log(2.0)));
}

StringRef sparsek::declareSplitCounters(OpBuilder &b, Location loc,
                                        Operation *symbols, StringRef base,
                                        int64_t slots, Attribute memorySpace) {
  // Unique within `symbols` (one per op in a host module).
  std::string name = base.str();
  for (int i = 1; SymbolTable::lookupSymbolIn(symbols, name); ++i)
    name = (base + "_" + Twine(i)).str();
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPointToStart(&symbols->getRegion(0).front());
  auto type = MemRefType::get({slots}, b.getI32Type(),
                              MemRefLayoutAttrInterface(), memorySpace);
  Attribute zero = b.getI32IntegerAttr(0);
  auto global = memref::GlobalOp::create(
      b, loc, name, b.getStringAttr("private"), type,
      DenseElementsAttr::get(RankedTensorType::get({slots}, b.getI32Type()),
                             ArrayRef<Attribute>{zero}),
      /*constant=*/false, /*alignment=*/nullptr);
  return global.getSymName();
}
