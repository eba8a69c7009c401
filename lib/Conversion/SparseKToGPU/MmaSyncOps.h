//===- MmaSyncOps.h - Operand movement of the mma.sync kernels --*- C++ -*-===//
//
// What the mma.sync tile kernels (the forward's MmaSyncKernel.cpp and the
// backward's MmaSyncGradKernel.cpp) spell around their tensor-core math:
// XOR-swizzled [rows][D] workgroup tiles, ldmatrix fragment loads, 16-byte
// cp.async gathers and quad reductions.
//
//===----------------------------------------------------------------------===//
#ifndef SPARSEK_LIB_CONVERSION_SPARSEKTOGPU_MMASYNCOPS_H
#define SPARSEK_LIB_CONVERSION_SPARSEKTOGPU_MMASYNCOPS_H

#include "KernelMath.h"

#include "mlir/Dialect/NVGPU/IR/NVGPUDialect.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"

#include <optional>

namespace mlir::sparsek {

/// bf16/f16 elements in one 16-byte cp.async / ldmatrix row.
constexpr int64_t kChunk = 8;

/// Builders of the kernel bodies: MmaMath plus swizzles, ldmatrix and
/// cp.async.
struct MmaSyncOps : MmaMath {
  using MmaMath::MmaMath;

  /// Column of (row, col) in a swizzled [rows][D] tile; col is a multiple
  /// of kChunk.
  Value swizzle(Value row, Value col) {
    Value chunk = div(col, c(kChunk));
    Value x = arith::XOrIOp::create(b, loc, chunk, rem(row, c(8)));
    return mul(x, c(kChunk));
  }

  /// The same column for an ldmatrix read whose row is (lane part) +
  /// (multiple of 8) and whose column is laneBit * 8 + colConst (colConst a
  /// multiple of 16): the chunk is (colConst / 8 + laneBit) ^ (lane % 8),
  /// split into a lane-dependent value with a small constant XORed in (four
  /// distinct values per operand) plus a constant, so that every read's
  /// shared address is one of four per-lane bases plus an immediate.
  Value swizzleLdmatrix(Value laneBit, Value lane8, int64_t colConst) {
    int64_t chunk = colConst / kChunk;
    Value low = arith::XOrIOp::create(
        b, loc, arith::XOrIOp::create(b, loc, laneBit, lane8), c(chunk % 8));
    return add(mul(low, c(kChunk)), c((chunk - chunk % 8) * kChunk));
  }

  /// ldmatrix x4 at (row, col) of `smem`: 4 registers.
  SmallVector<Value> ldmatrix(Value smem, Value row, Value col, bool trans) {
    return ldmatrixAt(smem, ValueRange{row, col}, trans);
  }

  /// The same at indices `at` (leading ones pick a tile of a stacked
  /// buffer).
  SmallVector<Value> ldmatrixAt(Value smem, ValueRange at, bool trans) {
    Value frag = nvgpu::LdMatrixOp::create(
        b, loc, VectorType::get({4, 2}, elem), smem, at, trans,
        /*numTiles=*/4);
    SmallVector<Value> regs;
    for (int64_t i = 0; i < 4; ++i)
      regs.push_back(
          toReg(vector::ExtractOp::create(b, loc, frag, ArrayRef<int64_t>{i})));
    return regs;
  }

  /// Reduction over the 4 lanes of a quad (the lanes holding one row).
  Value quadReduce(Value x, bool isMax) { return xorReduce(x, 1, 4, isMax); }

  /// 16-byte cp.async of src[srcAt] into dst[dstAt], zero fill unless
  /// `valid`.
  Value copy(Value dst, ValueRange dstAt, Value src, ValueRange srcAt,
             Value valid) {
    return nvgpu::DeviceAsyncCopyOp::create(
        b, loc, nvgpu::DeviceAsyncTokenType::get(b.getContext()), dst, dstAt,
        src, srcAt, b.getIndexAttr(kChunk), sel(valid, c(kChunk), c(0)),
        b.getUnitAttr());
  }

  /// Closes the copies issued so far into one cp.async group.
  Value commit(ValueRange tokens) {
    return nvgpu::DeviceAsyncCreateGroupOp::create(
        b, loc, nvgpu::DeviceAsyncTokenType::get(b.getContext()), tokens);
  }

  /// Commits `tokens`, then waits until at most `pending` of this thread's
  /// cp.async groups are in flight (without `pending`, all of them).
  void waitCopies(ValueRange tokens,
                  std::optional<int64_t> pending = std::nullopt) {
    nvgpu::DeviceAsyncWaitOp::create(b, loc, commit(tokens),
                                     pending ? b.getI32IntegerAttr(*pending)
                                             : IntegerAttr());
  }
};

} // namespace mlir::sparsek

#endif // SPARSEK_LIB_CONVERSION_SPARSEKTOGPU_MMASYNCOPS_H
