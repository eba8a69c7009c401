//===- Softmax.cpp - Online gated softmax for attention ------------===//
#include "Softmax.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/IR/Matchers.h"

#include <cmath>
#include <limits>

using namespace mlir;
using namespace mlir::sparsek;

Value sparsek::emitAttentionScale(OpBuilder &b, Location loc,
                                  std::optional<APFloat> scale, Value d) {
  if (scale)
    return emitF32(b, loc, scale->convertToDouble());
  if (auto cst = getConstantIntValue(d))
    return emitF32(b, loc, 1.0 / std::sqrt(static_cast<double>(*cst)));
  Value i64 = arith::IndexCastOp::create(b, loc, b.getI64Type(), d);
  Value f = arith::SIToFPOp::create(b, loc, b.getF32Type(), i64);
  Value root = math::SqrtOp::create(b, loc, f);
  return arith::DivFOp::create(b, loc, emitF32(b, loc, 1.0), root);
}

/// The static length of a row that the register form holds as one vector,
/// if it may (kMaxRegisterRow).
static std::optional<int64_t> registerRowLength(Value length) {
  std::optional<int64_t> n = getConstantIntValue(length);
  if (n && *n > kMaxRegisterRow)
    return std::nullopt;
  return n;
}

SoftmaxAccumulator SoftmaxAccumulator::create(OpBuilder &b, Location loc,
                                              Value d, Value dv, Value scale,
                                              bool onStack, bool alignedRows) {
  if (onStack && registerRowLength(dv))
    return SoftmaxAccumulator(Value(), d, dv, scale, onStack, alignedRows);
  auto type = MemRefType::get({ShapedType::kDynamic}, b.getF32Type());
  SmallVector<Value, 1> sizes{dv};
  if (auto cst = getConstantIntValue(dv)) {
    type = MemRefType::get({*cst}, b.getF32Type());
    sizes.clear();
  }
  Value acc = onStack
                  ? memref::AllocaOp::create(b, loc, type, sizes).getResult()
                  : memref::AllocOp::create(b, loc, type, sizes).getResult();
  return SoftmaxAccumulator(acc, d, dv, scale, onStack, /*alignedRows=*/false);
}

/// vector<n x f32> of the row's first n elements, widened to f32.
static Value loadRowVector(OpBuilder &b, Location loc, const Row &row,
                           int64_t n, bool aligned) {
  Type elem = cast<MemRefType>(row.buf.getType()).getElementType();
  SmallVector<Value, 4> at(row.lead);
  at.push_back(emitIndex(b, loc, 0));
  llvm::MaybeAlign align;
  if (aligned)
    align = llvm::Align(kRowAlignment);
  Value v = vector::LoadOp::create(b, loc, VectorType::get({n}, elem), row.buf,
                                   at, /*nontemporal=*/false, align);
  if (elem.isF32())
    return v;
  return arith::ExtFOp::create(b, loc, VectorType::get({n}, b.getF32Type()), v);
}

static Value splat(OpBuilder &b, Location loc, Value scalar, Type type) {
  return vector::BroadcastOp::create(b, loc, type, scalar);
}

SoftmaxAccumulator::State SoftmaxAccumulator::begin(OpBuilder &b, Location loc,
                                                    const Row *query) const {
  Value zero = emitF32(b, loc, 0.0);
  auto negInf = [&] {
    return emitF32(b, loc, -std::numeric_limits<double>::infinity());
  };
  if (!acc) {
    queryVec = Value();
    if (auto dim = registerRowLength(d); dim && query)
      queryVec = loadRowVector(b, loc, *query, *dim, alignedRows);
    auto type = VectorType::get({*getConstantIntValue(dv)}, b.getF32Type());
    return {negInf(), zero, splat(b, loc, zero, type)};
  }
  emitFor(b, loc, emitIndex(b, loc, 0), dv,
          [&](OpBuilder &nb, Location nl, Value c) {
            memref::StoreOp::create(nb, nl, zero, acc, c);
          });
  return {negInf(), zero, Value()};
}

Value SoftmaxAccumulator::emitScore(OpBuilder &b, Location loc,
                                    const Row &query, const Row &key) const {
  Value dot;
  if (queryVec) {
    int64_t n = cast<VectorType>(queryVec.getType()).getNumElements();
    Value prod = arith::MulFOp::create(
        b, loc, queryVec, loadRowVector(b, loc, key, n, alignedRows));
    // Reassociation lets the sum be a tree instead of a chain of n adds.
    dot = vector::ReductionOp::create(b, loc, vector::CombiningKind::ADD, prod,
                                      /*acc=*/Value(),
                                      arith::FastMathFlags::reassoc);
  } else {
    dot = emitDotF32(b, loc, query, key, d);
  }
  return arith::MulFOp::create(b, loc, scale, dot);
}

SoftmaxAccumulator::State
SoftmaxAccumulator::add(OpBuilder &b, Location loc, State st, const Row &query,
                        const Row &key, const Row &value, Value gate) const {
  Value s = emitScore(b, loc, query, key);
  // The first key meets max = -inf: alpha = exp(-inf) = 0 scales away
  // nothing (the scratch and the sum are still 0).
  Value max = arith::MaximumFOp::create(b, loc, st.max, s);
  Value alpha =
      math::ExpOp::create(b, loc, arith::SubFOp::create(b, loc, st.max, max));
  Value p = math::ExpOp::create(b, loc, arith::SubFOp::create(b, loc, s, max));
  Value sum = arith::AddFOp::create(
      b, loc, arith::MulFOp::create(b, loc, st.sum, alpha), p);
  // The gate weighs the value only; the normalizer `sum` stays ungated.
  Value weight = p;
  if (!matchPattern(gate, m_OneFloat())) // window keys: skip the * 1
    weight = arith::MulFOp::create(b, loc, p, gate);
  if (!acc) {
    Type type = st.acc.getType();
    int64_t n = cast<VectorType>(type).getNumElements();
    Value scaled =
        arith::MulFOp::create(b, loc, st.acc, splat(b, loc, alpha, type));
    Value next = vector::FMAOp::create(
        b, loc, splat(b, loc, weight, type),
        loadRowVector(b, loc, value, n, alignedRows), scaled);
    return {max, sum, next};
  }
  emitFor(b, loc, emitIndex(b, loc, 0), dv,
          [&](OpBuilder &nb, Location nl, Value c) {
            Value old = memref::LoadOp::create(nb, nl, acc, c);
            Value scaled = arith::MulFOp::create(nb, nl, old, alpha);
            Value v = value.loadF32(nb, nl, c);
            Value next = arith::AddFOp::create(
                nb, nl, scaled, arith::MulFOp::create(nb, nl, weight, v));
            memref::StoreOp::create(nb, nl, next, acc, c);
          });
  return {max, sum, Value()};
}

SoftmaxAccumulator::State
SoftmaxAccumulator::addIf(OpBuilder &b, Location loc, Value cond, State st,
                          const Row &query, const Row &key, const Row &value,
                          Value gate) const {
  auto ifOp = scf::IfOp::create(
      b, loc, cond,
      [&](OpBuilder &nb, Location nl) {
        State next = add(nb, nl, st, query, key, value, gate);
        scf::YieldOp::create(nb, nl, next.values());
      },
      [&](OpBuilder &nb, Location nl) {
        scf::YieldOp::create(nb, nl, st.values());
      });
  return State::from(ifOp.getResults());
}

void SoftmaxAccumulator::finish(OpBuilder &b, Location loc, State st,
                                const Row &out) const {
  // An empty key set leaves sum = 0 and the scratch 0: write 0, not 0/0.
  // (A NaN sum from NaN inputs still propagates.)
  Value zero = emitF32(b, loc, 0.0);
  Value empty =
      arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OEQ, st.sum, zero);
  Value inv = arith::SelectOp::create(
      b, loc, empty, zero,
      arith::DivFOp::create(b, loc, emitF32(b, loc, 1.0), st.sum));
  if (!acc) {
    auto type = cast<VectorType>(st.acc.getType());
    Value o = arith::MulFOp::create(b, loc, st.acc, splat(b, loc, inv, type));
    Type elem = cast<MemRefType>(out.buf.getType()).getElementType();
    if (!elem.isF32())
      o = arith::TruncFOp::create(b, loc, type.clone(elem), o);
    SmallVector<Value, 4> at(out.lead);
    at.push_back(emitIndex(b, loc, 0));
    llvm::MaybeAlign align;
    if (alignedRows)
      align = llvm::Align(kRowAlignment);
    vector::StoreOp::create(b, loc, o, out.buf, at, /*nontemporal=*/false,
                            align);
    return;
  }
  emitFor(b, loc, emitIndex(b, loc, 0), dv,
          [&](OpBuilder &nb, Location nl, Value c) {
            Value a = memref::LoadOp::create(nb, nl, acc, c);
            out.storeF32(nb, nl, arith::MulFOp::create(nb, nl, a, inv), c);
          });
}

void SoftmaxAccumulator::storePartial(OpBuilder &b, Location loc, State st,
                                      const Row &out) const {
  if (!acc) {
    SmallVector<Value, 4> at(out.lead);
    at.push_back(emitIndex(b, loc, 0));
    vector::StoreOp::create(b, loc, st.acc, out.buf, at);
    return;
  }
  emitFor(b, loc, emitIndex(b, loc, 0), dv,
          [&](OpBuilder &nb, Location nl, Value c) {
            out.storeF32(nb, nl, memref::LoadOp::create(nb, nl, acc, c), c);
          });
}

void SoftmaxAccumulator::release(OpBuilder &b, Location loc) const {
  if (acc && !onStack)
    memref::DeallocOp::create(b, loc, acc);
}

SoftmaxAccumulator::State sparsek::emitWindowKeys(
    OpBuilder &b, Location loc, const SoftmaxAccumulator &acc,
    SoftmaxAccumulator::State st, const Row &query, Value key, Value value,
    Value bi, Value h, Value pos, int64_t w) {
  if (w == 0)
    return st;
  Value end = arith::AddIOp::create(b, loc, pos, emitIndex(b, loc, 1));
  Value start = arith::SubIOp::create(b, loc, end, emitIndex(b, loc, w));
  Value first = arith::MaxSIOp::create(b, loc, start, emitIndex(b, loc, 0));
  Value gate = emitF32(b, loc, 1.0);
  return SoftmaxAccumulator::State::from(emitForCarrying(
      b, loc, first, end, st.values(),
      [&](OpBuilder &nb, Location nl, Value j,
          ValueRange carried) -> SmallVector<Value> {
        return acc
            .add(nb, nl, SoftmaxAccumulator::State::from(carried), query,
                 Row{key, {bi, h, j}}, Row{value, {bi, h, j}}, gate)
            .values();
      }));
}
