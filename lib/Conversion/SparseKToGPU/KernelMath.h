//===- KernelMath.h - Scalar builders of the tile kernels -------*- C++ -*-===//
//
// The index and f32 arithmetic, selects and warp shuffles that every
// tile-first kernel body (and its scalar CPU form) spells many times; one
// short name each keeps the kernels readable. MmaMath adds the mma.sync
// operand plumbing that the prefill and decode tensor-core kernels share.
//
//===----------------------------------------------------------------------===//
#ifndef SPARSEK_LIB_CONVERSION_SPARSEKTOGPU_KERNELMATH_H
#define SPARSEK_LIB_CONVERSION_SPARSEKTOGPU_KERNELMATH_H

#include "../SparseKToLoops/LoopUtils.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/Math/IR/Math.h"

#include <limits>

namespace mlir::sparsek {

struct KernelMath {
  OpBuilder &b;
  Location loc;

  Value c(int64_t v) { return emitIndex(b, loc, v); }
  Value ci32(int64_t v) {
    return arith::ConstantIntOp::create(b, loc, b.getI32Type(), v);
  }
  Value f(double v) { return emitF32(b, loc, v); }
  Value negInf() { return f(-std::numeric_limits<double>::infinity()); }
  Value add(Value x, Value y) { return arith::AddIOp::create(b, loc, x, y); }
  Value sub(Value x, Value y) { return arith::SubIOp::create(b, loc, x, y); }
  Value mul(Value x, Value y) { return arith::MulIOp::create(b, loc, x, y); }
  Value div(Value x, Value y) { return arith::DivUIOp::create(b, loc, x, y); }
  Value rem(Value x, Value y) { return arith::RemUIOp::create(b, loc, x, y); }
  Value min(Value x, Value y) { return arith::MinSIOp::create(b, loc, x, y); }
  Value max(Value x, Value y) { return arith::MaxSIOp::create(b, loc, x, y); }
  Value ceilDiv(Value x, Value y) { return div(add(x, sub(y, c(1))), y); }
  Value lt(Value x, Value y) {
    return arith::CmpIOp::create(b, loc, arith::CmpIPredicate::slt, x, y);
  }
  Value le(Value x, Value y) {
    return arith::CmpIOp::create(b, loc, arith::CmpIPredicate::sle, x, y);
  }
  Value eq(Value x, Value y) {
    return arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq, x, y);
  }
  Value andI(Value x, Value y) { return arith::AndIOp::create(b, loc, x, y); }
  Value orI(Value x, Value y) { return arith::OrIOp::create(b, loc, x, y); }
  /// An index as i32.
  Value i32(Value x) {
    return arith::IndexCastOp::create(b, loc, b.getI32Type(), x);
  }
  Value sel(Value cnd, Value x, Value y) {
    return arith::SelectOp::create(b, loc, cnd, x, y);
  }
  Value fmul(Value x, Value y) { return arith::MulFOp::create(b, loc, x, y); }
  Value fsub(Value x, Value y) { return arith::SubFOp::create(b, loc, x, y); }
  Value fadd(Value x, Value y) { return arith::AddFOp::create(b, loc, x, y); }
  Value fmax(Value x, Value y) {
    return arith::MaxNumFOp::create(b, loc, x, y);
  }
  Value exp2(Value x) { return math::Exp2Op::create(b, loc, x); }
  /// exp2 for the GPU kernels' online softmaxes, as ex2.approx.ftz.f32
  /// (defined in KernelMath.cpp). math.exp2 lowers to the non-ftz
  /// instruction wrapped in a range fix-up for results below 2^-126 (a
  /// compare and two predicated multiplies around each MUFU.EX2); such
  /// weights are zero next to the running maximum's 1 anyway. exp2(-inf)
  /// is still 0.
  Value exp2Ftz(Value x);
  Value isNegInf(Value x) {
    return arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OEQ, x,
                                 negInf());
  }
  Value fgt(Value x, Value y) {
    return arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OGT, x, y);
  }

  /// The value of `x` in lane (this lane xor `offset`) of the warp.
  Value shuffleXor(Value x, int64_t offset) {
    return gpu::ShuffleOp::create(b, loc, x, ci32(offset), ci32(32),
                                  gpu::ShuffleMode::XOR)
        .getShuffleResult();
  }

  /// `x` summed (or maxed) over the lanes that differ from this one in the
  /// lane-id bits [log2 from, log2 to): xor shuffles by from, 2 from, ..
  /// below `to` (powers of two), every lane getting the result.
  Value xorReduce(Value x, int64_t from, int64_t to, bool isMax = false) {
    for (int64_t off = from; off < to; off *= 2) {
      Value other = shuffleXor(x, off);
      x = isMax ? fmax(x, other) : fadd(x, other);
    }
    return x;
  }
};

/// KernelMath plus the operands of mma.sync m16n8k16 on bf16 or f16 with f32
/// accumulators (nvvm.mma.sync: nvgpu.mma.sync cannot lower bf16 in MLIR
/// 22). Defined in KernelMath.cpp.
struct MmaMath : KernelMath {
  Type elem; // bf16 or f16

  MmaMath(OpBuilder &b, Location loc, Type elem)
      : KernelMath{b, loc}, elem(elem) {}

  bool bf16() const { return elem.isBF16(); }
  VectorType pairType() const { return VectorType::get({2}, elem); }
  /// A pair of elements as an mma operand register: bf16x2 as i32 (the form
  /// nvvm.mma.sync takes for bf16), f16 as vector<2xf16>.
  Value toReg(Value pair);
  /// Two f32 as one register (x in the low half, the lower k index).
  Value pack(Value x, Value y);
  /// D = A B + C: the four f32 of the lane's D fragment.
  SmallVector<Value> mma(ArrayRef<Value> a, ArrayRef<Value> bReg,
                         ArrayRef<Value> acc);
};

} // namespace mlir::sparsek

#endif // SPARSEK_LIB_CONVERSION_SPARSEKTOGPU_KERNELMATH_H
