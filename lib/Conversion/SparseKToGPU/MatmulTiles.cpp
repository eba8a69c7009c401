//===- MatmulTiles.cpp - The sparsek-gpu-matmul-tiles pass ----------------===//
//
// linalg.matmul on bf16/f16 operands with an f32 accumulator (a layer's
// projections, as sparsek.layer emits them) on mma.sync tensor cores. The
// loops' form (convert-linalg-to-parallel-loops) gives one thread per output
// element walking K: about 1 TFLOP/s at a layer's shapes.
//
// One CTA of 4 warps per 64 x 128 tile of C (warps 2 x 2, each 32 x 64:
// 2 x 8 m16n8 accumulators). K goes in steps of 64 through a two-stage
// workgroup ring filled with 16-byte cp.async (zero fill past M, N or K):
// step s + 1 is in flight while step s is multiplied. Tiles are
// XOR-swizzled by 16-byte chunk with row % 8 (MmaSyncOps), so each ldmatrix
// (A without transpose, B [k][n] with .trans) hits 8 bank groups. The
// epilogue adds the accumulators to C (linalg.matmul accumulates), each
// element written by one thread: results do not depend on the run.
//
// Sizes that disagree set SPARSEK_ERROR_SHAPE_MISMATCH and skip the op.
// cp.async needs 16-byte aligned rows: the host launches the kernel only
// when A and B start on 16 bytes and K and N are multiples of 8 (checked at
// run time where they are dynamic); otherwise a copy of the op runs in the
// loops' form.
//
//===----------------------------------------------------------------------===//
#include "sparsek/Conversion/Passes.h"
#include "sparsek/Conversion/SparseKToLoops/Status.h"

#include "MmaSyncOps.h"
#include "TileLowerings.h"

#include "../SparseKToLoops/LoopUtils.h"

#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/NVGPU/IR/NVGPUDialect.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"

namespace mlir::sparsek {
#define GEN_PASS_DEF_SPARSEKGPUMATMULTILES
#include "sparsek/Conversion/Passes.h.inc"
} // namespace mlir::sparsek

using namespace mlir;
using namespace mlir::sparsek;

namespace {
constexpr int64_t kRows = 64, kCols = 128, kDepth = 64;
constexpr int64_t kThreads = 128;
constexpr int64_t kWarpRows = 32, kWarpCols = 64;
constexpr int64_t kStages = 2;
using KB = MmaSyncOps;
/// Marks the op kept for the loops in the guard's else branch (a second run
/// of the pass leaves it there).
constexpr StringLiteral kFallback = "sparsek.matmul_fallback";
} // namespace

/// Why `op` stays in the loops' form ("" when the kernel takes it).
static std::string unsupportedReason(linalg::MatmulOp op) {
  if (!op.hasPureBufferSemantics())
    return "not in buffer form";
  if (op->hasAttr(kFallback))
    return "the guard's fallback";
  if (op.hasUserDefinedMaps() || op.getCast() != linalg::TypeFn::cast_signed)
    return "transposed, broadcast or unsigned-cast operands";
  auto a = dyn_cast<MemRefType>(op.getDpsInputs()[0].getType());
  auto bt = dyn_cast<MemRefType>(op.getDpsInputs()[1].getType());
  auto c = dyn_cast<MemRefType>(op.getDpsInits()[0].getType());
  if (!a || !bt || !c)
    return "operands are not memrefs";
  Type elem = a.getElementType();
  if ((!elem.isBF16() && !elem.isF16()) || bt.getElementType() != elem ||
      !c.getElementType().isF32())
    return "not bf16 x bf16 or f16 x f16 into f32";
  for (MemRefType t : {a, bt, c})
    if (!t.getLayout().isIdentity())
      return "an operand has a non-identity layout";
  // Rows of 16 bytes: a static K or N that is no multiple of 8 never fits.
  for (int64_t size : {a.getDimSize(1), bt.getDimSize(1)})
    if (!ShapedType::isDynamic(size) && size % kChunk)
      return "K or N is not a multiple of 8";
  return "";
}

/// The kernel body: C[m0.., n0..] += A[m0.., :] B[:, n0..] for this CTA's
/// tile.
static void buildKernel(OpBuilder &b, Location loc, ValueRange args,
                        ValueRange smem, Type elem) {
  Value a = args[0], bm = args[1], cm = args[2];
  Value sA = smem[0], sB = smem[1];
  KB x{b, loc, elem};
  Value tid = gpu::ThreadIdOp::create(b, loc, gpu::Dimension::x);
  Value lane = x.rem(tid, x.c(32)), warp = x.div(tid, x.c(32));
  Value wm = x.div(warp, x.c(2)), wn = x.rem(warp, x.c(2));
  Value m0 =
      x.mul(gpu::BlockIdOp::create(b, loc, gpu::Dimension::x), x.c(kRows));
  Value n0 =
      x.mul(gpu::BlockIdOp::create(b, loc, gpu::Dimension::y), x.c(kCols));
  Value numRows = emitDim(b, loc, a, 0), depth = emitDim(b, loc, a, 1),
        numCols = emitDim(b, loc, bm, 1);
  Value steps = x.ceilDiv(depth, x.c(kDepth));

  // Copies of step `s` into stage `stage`; rows or chunks past M, N, K (or
  // a step past the last) are zero-filled from element 0.
  auto issue = [&](KB &y, Value stage, Value s) {
    Value k0 = y.mul(s, y.c(kDepth));
    Value live = y.lt(s, steps);
    SmallVector<Value> tokens;
    auto tile = [&](Value dst, Value src, int64_t rows, int64_t cols,
                    Value rowBase, Value rowLimit, Value colBase,
                    Value colLimit) {
      int64_t chunks = cols / kChunk;
      for (int64_t i = 0; i < rows * chunks / kThreads; ++i) {
        Value linear = y.add(tid, y.c(kThreads * i));
        Value row = y.div(linear, y.c(chunks));
        Value col = y.mul(y.rem(linear, y.c(chunks)), y.c(kChunk));
        Value r = y.add(rowBase, row), cc = y.add(colBase, col);
        Value valid =
            y.andI(live, y.andI(y.lt(r, rowLimit), y.lt(cc, colLimit)));
        tokens.push_back(
            y.copy(dst, {stage, row, y.swizzle(row, col)}, src,
                   {y.sel(valid, r, y.c(0)), y.sel(valid, cc, y.c(0))}, valid));
      }
    };
    tile(sA, a, kRows, kDepth, m0, numRows, k0, depth);
    tile(sB, bm, kDepth, kCols, k0, depth, n0, numCols);
    return tokens;
  };

  x.commit(issue(x, x.c(0), x.c(0)));
  Value l16 = x.rem(lane, x.c(16)), l8 = x.rem(lane, x.c(8));
  Value half = x.div(lane, x.c(16));
  constexpr int64_t mTiles = kWarpRows / 16, nTiles = kWarpCols / 8;
  SmallVector<Value> init(mTiles * nTiles * 4, x.f(0.0));
  auto loop = scf::ForOp::create(
      b, loc, x.c(0), steps, x.c(1), init,
      [&](OpBuilder &lb, Location ll, Value s, ValueRange carried) {
        KB y{lb, ll, elem};
        Value stage = y.rem(s, y.c(kStages));
        Value next = y.add(s, y.c(1));
        // Step s + 1 goes in flight; wait for step s's group only.
        y.waitCopies(issue(y, y.rem(next, y.c(kStages)), next), 1);
        gpu::BarrierOp::create(lb, ll);
        SmallVector<Value> acc(carried.begin(), carried.end());
        for (int64_t kk = 0; kk < kDepth / 16; ++kk) {
          SmallVector<SmallVector<Value>> af;
          for (int64_t mi = 0; mi < mTiles; ++mi) {
            Value row = y.add(y.mul(wm, y.c(kWarpRows)), y.c(16 * mi));
            af.push_back(y.ldmatrixAt(
                sA,
                {stage, y.add(row, l16), y.swizzleLdmatrix(half, l8, 16 * kk)},
                false));
          }
          Value krow = y.add(l16, y.c(16 * kk));
          for (int64_t q = 0; q < nTiles / 2; ++q) {
            // wn * 64 is a whole number of 8-chunk groups: the swizzle
            // leaves it alone.
            Value col = y.add(y.mul(wn, y.c(kWarpCols)),
                              y.swizzleLdmatrix(half, l8, 16 * q));
            SmallVector<Value> bf = y.ldmatrixAt(sB, {stage, krow, col}, true);
            for (int64_t mi = 0; mi < mTiles; ++mi)
              for (int64_t h = 0; h < 2; ++h) {
                int64_t at = 4 * (mi * nTiles + 2 * q + h);
                SmallVector<Value> o(acc.begin() + at, acc.begin() + at + 4);
                o = y.mma(af[mi], {bf[2 * h], bf[2 * h + 1]}, o);
                std::copy(o.begin(), o.end(), acc.begin() + at);
              }
          }
        }
        // The next iteration's copies overwrite this stage.
        gpu::BarrierOp::create(lb, ll);
        scf::YieldOp::create(lb, ll, acc);
      });
  // Drain the zero-filled copies of the step past the last.
  nvgpu::DeviceAsyncWaitOp::create(b, loc, x.commit({}),
                                   b.getI32IntegerAttr(0));

  // C += acc: register 2 ri + e of (mi, nt) is row g + 8 ri, column
  // 2 quad + e of that m16n8 tile.
  Value g = x.div(lane, x.c(4)), quad = x.rem(lane, x.c(4));
  auto pair = VectorType::get({2}, b.getF32Type());
  ValueRange res = loop.getResults();
  for (int64_t mi = 0; mi < mTiles; ++mi)
    for (int64_t ri = 0; ri < 2; ++ri) {
      Value row = x.add(x.add(m0, x.mul(wm, x.c(kWarpRows))),
                        x.add(g, x.c(16 * mi + 8 * ri)));
      for (int64_t nt = 0; nt < nTiles; ++nt) {
        Value col = x.add(x.add(n0, x.mul(wn, x.c(kWarpCols))),
                          x.add(x.mul(quad, x.c(2)), x.c(8 * nt)));
        int64_t at = 4 * (mi * nTiles + nt) + 2 * ri;
        emitIf(b, loc, x.andI(x.lt(row, numRows), x.lt(col, numCols)),
               [&](OpBuilder &sb, Location sl) {
                 Value old = vector::LoadOp::create(sb, sl, pair, cm,
                                                    ValueRange{row, col});
                 Value add = vector::FromElementsOp::create(
                     sb, sl, pair, ValueRange{res[at], res[at + 1]});
                 vector::StoreOp::create(
                     sb, sl, arith::AddFOp::create(sb, sl, old, add), cm,
                     ValueRange{row, col});
               });
      }
    }
}

/// i1: `v`'s first element sits on a multiple of `bytes`.
static Value emitAligned(OpBuilder &b, Location loc, Value v, int64_t bytes) {
  KernelMath x{b, loc};
  Value ptr = memref::ExtractAlignedPointerAsIndexOp::create(b, loc, v);
  return x.eq(x.rem(ptr, x.c(bytes)), x.c(0));
}

/// Replaces `op` by the guarded launch, with a copy of `op` for the rest.
static void lower(RewriterBase &rewriter, linalg::MatmulOp op,
                  ModuleOp module) {
  Location loc = op.getLoc();
  OpBuilder &b = rewriter;
  Value a = op.getDpsInputs()[0], bm = op.getDpsInputs()[1],
        cm = op.getDpsInits()[0];
  Type elem = cast<MemRefType>(a.getType()).getElementType();
  KernelMath x{b, loc};
  Value numRows = emitDim(b, loc, a, 0), depth = emitDim(b, loc, a, 1),
        numCols = emitDim(b, loc, bm, 1);
  // Disagreeing sizes (possible where they are dynamic) set the status and
  // skip the op: the kernel would read past B or write past C.
  Value same = x.eq(emitDim(b, loc, cm, 0), numRows);
  same = x.andI(same, x.eq(emitDim(b, loc, bm, 0), depth));
  same = x.andI(same, x.eq(emitDim(b, loc, cm, 1), numCols));
  auto checked = scf::IfOp::create(
      b, loc, emitCheck(b, loc, op, same, SPARSEK_ERROR_SHAPE_MISMATCH),
      /*withElseRegion=*/false);
  b.setInsertionPointToStart(checked.thenBlock());
  // Conditions in a fixed order (one statement each): A, B on 16 bytes; C
  // on 8 (its pairs are 8-byte vectors); K and N multiples of 8.
  Value fits = emitAligned(b, loc, a, 16);
  fits = x.andI(fits, emitAligned(b, loc, bm, 16));
  fits = x.andI(fits, emitAligned(b, loc, cm, 8));
  for (Value size : {depth, numCols})
    fits = x.andI(fits, x.eq(x.rem(size, x.c(kChunk)), x.c(0)));
  auto ifOp = scf::IfOp::create(b, loc, fits, /*withElseRegion=*/true);
  {
    OpBuilder tb = ifOp.getThenBodyBuilder();
    MLIRContext *ctx = b.getContext();
    auto wg = gpu::AddressSpaceAttr::get(ctx, gpu::AddressSpace::Workgroup);
    auto smem = [&](ArrayRef<int64_t> shape) {
      return MemRefType::get(shape, elem, MemRefLayoutAttrInterface(), wg);
    };
    // 48 KiB: two stages of a 64 x 64 A tile and a 64 x 128 B tile.
    SmallVector<Type> workgroup{smem({kStages, kRows, kDepth}),
                                smem({kStages, kDepth, kCols})};
    KernelMath y{tb, loc};
    emitKernelLaunch(
        tb, loc, module, "sparsek_matmul_tiles", ValueRange{a, bm, cm},
        kThreads, workgroup, Value(),
        gpu::KernelDim3{y.ceilDiv(numRows, y.c(kRows)),
                        y.ceilDiv(numCols, y.c(kCols)), y.c(1)},
        {numRows, numCols},
        [&](OpBuilder &kb, Location kl, ValueRange args, ValueRange wgBufs) {
          buildKernel(kb, kl, args, wgBufs, elem);
        });
  }
  OpBuilder eb = ifOp.getElseBodyBuilder();
  eb.clone(*op)->setAttr(kFallback, b.getUnitAttr());
  rewriter.setInsertionPoint(op);
  rewriter.eraseOp(op);
}

namespace {
struct SparseKGPUMatmulTilesPass
    : mlir::sparsek::impl::SparseKGPUMatmulTilesBase<
          SparseKGPUMatmulTilesPass> {
  using Base::Base;

  void runOnOperation() override {
    ModuleOp module = getOperation();
    SmallVector<linalg::MatmulOp> ops;
    module.walk([&](linalg::MatmulOp op) {
      if (!op->getParentOfType<gpu::GPUModuleOp>() &&
          !op->getParentOfType<gpu::LaunchOp>() &&
          unsupportedReason(op).empty())
        ops.push_back(op);
    });
    if (ops.empty())
      return;
    ensureStatusSymbols(module);
    IRRewriter rewriter(&getContext());
    for (linalg::MatmulOp op : ops) {
      rewriter.setInsertionPoint(op);
      lower(rewriter, op, module);
    }
  }
};
} // namespace
