//===- KernelMath.cpp - Out-of-line builders of the tile kernels ----------===//
//
// See KernelMath.h.
//
//===----------------------------------------------------------------------===//
#include "KernelMath.h"

#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/LLVMIR/NVVMDialect.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"

using namespace mlir;
using namespace mlir::sparsek;

Value KernelMath::exp2Ftz(Value x) {
  return LLVM::CallIntrinsicOp::create(
             b, loc, b.getF32Type(),
             b.getStringAttr("llvm.nvvm.ex2.approx.ftz.f32"), ValueRange{x})
      .getResult(0);
}

Value MmaMath::toReg(Value pair) {
  if (!bf16())
    return pair;
  Value cast = vector::BitCastOp::create(
      b, loc, VectorType::get({1}, b.getI32Type()), pair);
  return vector::ExtractOp::create(b, loc, cast, ArrayRef<int64_t>{0});
}

Value MmaMath::pack(Value x, Value y) {
  Value v = vector::FromElementsOp::create(
      b, loc, VectorType::get({2}, b.getF32Type()), ValueRange{x, y});
  return toReg(arith::TruncFOp::create(b, loc, pairType(), v));
}

SmallVector<Value> MmaMath::mma(ArrayRef<Value> a, ArrayRef<Value> bReg,
                                ArrayRef<Value> acc) {
  Type f32 = b.getF32Type();
  auto structTy =
      LLVM::LLVMStructType::getLiteral(b.getContext(), {f32, f32, f32, f32});
  NVVM::MMATypes t = bf16() ? NVVM::MMATypes::bf16 : NVVM::MMATypes::f16;
  Value d = NVVM::MmaOp::create(
      b, loc, structTy, a, bReg, acc, ArrayRef<int64_t>{16, 8, 16},
      std::nullopt, std::nullopt, std::array<NVVM::MMATypes, 2>{t, t},
      std::array<NVVM::MMALayout, 2>{NVVM::MMALayout::row,
                                     NVVM::MMALayout::col});
  SmallVector<Value> out;
  for (int64_t i = 0; i < 4; ++i)
    out.push_back(
        LLVM::ExtractValueOp::create(b, loc, d, ArrayRef<int64_t>{i}));
  return out;
}
