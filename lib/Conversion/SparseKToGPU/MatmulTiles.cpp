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
// The pipelines check first that the operands agree on their sizes
// (sparsek-check-linalg-sizes). cp.async needs 16-byte aligned rows: the host
// launches the kernel only when A and B start on 16 bytes and K and N are
// multiples of 8 (checked at run time where they are dynamic); otherwise a copy
// of the op runs in the loops' form.
//
//===----------------------------------------------------------------------===//
#include "sparsek/Conversion/Passes.h"

#include "DecodeTiles.h"
#include "MmaSyncOps.h"
#include "TileLowerings.h"

#include "../SparseKToLoops/LoopUtils.h"

#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/LLVMIR/NVVMDialect.h"
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
/// Split K when the tiles alone are fewer CTAs than this (two per SM of an
/// H100 / H200): at most kMaxSplits splits of at least kMinSteps steps.
constexpr int64_t kTargetBlocks = 264, kMaxSplits = 16, kMinSteps = 2;
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
                        ValueRange smem, Type elem, StringRef counterName,
                        MemRefType counterType) {
  Value a = args[0], bm = args[1], cm = args[2], partials = args[3],
        splits = args[4];
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
  // This CTA's steps [s0, s1): split blockIdx.z of `splits`.
  Value steps = x.ceilDiv(depth, x.c(kDepth));
  Value split = gpu::BlockIdOp::create(b, loc, gpu::Dimension::z);
  Value per = x.ceilDiv(steps, splits);
  Value s0 = x.min(steps, x.mul(split, per));
  Value s1 = x.min(steps, x.add(s0, per));

  // Copies of step `s` into stage `stage`; rows or chunks past M, N, K (or
  // a step past the last) are zero-filled from element 0.
  auto issue = [&](KB &y, Value stage, Value s) {
    Value k0 = y.mul(s, y.c(kDepth));
    Value live = y.lt(s, s1);
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

  x.commit(issue(x, x.c(0), s0));
  Value l16 = x.rem(lane, x.c(16)), l8 = x.rem(lane, x.c(8));
  Value half = x.div(lane, x.c(16));
  constexpr int64_t mTiles = kWarpRows / 16, nTiles = kWarpCols / 8;
  SmallVector<Value> init(mTiles * nTiles * 4, x.f(0.0));
  auto loop = scf::ForOp::create(
      b, loc, s0, s1, x.c(1), init,
      [&](OpBuilder &lb, Location ll, Value s, ValueRange carried) {
        KB y{lb, ll, elem};
        Value stage = y.rem(y.sub(s, s0), y.c(kStages));
        Value next = y.add(s, y.c(1));
        // Step s + 1 goes in flight; wait for step s's group only.
        y.waitCopies(issue(y, y.rem(y.sub(next, s0), y.c(kStages)), next), 1);
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

  // Register 2 ri + e of (mi, nt) is row g + 8 ri, column 2 quad + e of
  // that m16n8 tile. `visit(b, row, col, at)` for the lane's pairs in range
  // (`at`: the pair's first accumulator).
  Value g = x.div(lane, x.c(4)), quad = x.rem(lane, x.c(4));
  auto pair = VectorType::get({2}, b.getF32Type());
  ValueRange res = loop.getResults();
  auto forPairs =
      [&](OpBuilder &ob, Location ol,
          function_ref<void(OpBuilder &, Location, Value, Value, int64_t)>
              visit) {
        KernelMath y{ob, ol};
        for (int64_t mi = 0; mi < mTiles; ++mi)
          for (int64_t ri = 0; ri < 2; ++ri) {
            Value row = y.add(y.add(m0, y.mul(wm, y.c(kWarpRows))),
                              y.add(g, y.c(16 * mi + 8 * ri)));
            for (int64_t nt = 0; nt < nTiles; ++nt) {
              Value col = y.add(y.add(n0, y.mul(wn, y.c(kWarpCols))),
                                y.add(y.mul(quad, y.c(2)), y.c(8 * nt)));
              int64_t at = 4 * (mi * nTiles + nt) + 2 * ri;
              emitIf(ob, ol, y.andI(y.lt(row, numRows), y.lt(col, numCols)),
                     [&](OpBuilder &sb, Location sl) {
                       visit(sb, sl, row, col, at);
                     });
            }
          }
      };
  auto accPair = [&](OpBuilder &sb, Location sl, int64_t at) {
    return vector::FromElementsOp::create(sb, sl, pair,
                                          ValueRange{res[at], res[at + 1]})
        .getResult();
  };
  // C[row, col..col+1] += v.
  auto addToC = [&](OpBuilder &sb, Location sl, Value row, Value col, Value v) {
    Value old = vector::LoadOp::create(sb, sl, pair, cm, ValueRange{row, col});
    vector::StoreOp::create(sb, sl, arith::AddFOp::create(sb, sl, old, v), cm,
                            ValueRange{row, col});
  };
  auto single = scf::IfOp::create(b, loc, x.eq(splits, x.c(1)),
                                  /*withElseRegion=*/true);
  {
    // One split: C += acc, one writer per element.
    OpBuilder sb = single.getThenBodyBuilder();
    forPairs(sb, loc,
             [&](OpBuilder &pb, Location pl, Value row, Value col, int64_t at) {
               addToC(pb, pl, row, col, accPair(pb, pl, at));
             });
  }
  // Several: each split stores its partial tile (rows split * M + row);
  // the last CTA of the tile to arrive adds them to C in split order, so
  // the result does not depend on which one that is.
  OpBuilder mb = single.getElseBodyBuilder();
  KB z{mb, loc, elem};
  Value partRow0 = z.mul(split, numRows);
  forPairs(mb, loc,
           [&](OpBuilder &pb, Location pl, Value row, Value col, int64_t at) {
             vector::StoreOp::create(
                 pb, pl, accPair(pb, pl, at), partials,
                 ValueRange{KernelMath{pb, pl}.add(partRow0, row), col});
           });
  // This CTA's partials are visible before its arrival.
  NVVM::MembarOp::create(mb, loc, NVVM::MemScopeKind::GPU);
  gpu::BarrierOp::create(mb, loc);
  // Thread 0 arrives; a barrier that ORs its answer tells every thread.
  Value zero = z.c(0);
  Value tile = z.add(gpu::BlockIdOp::create(mb, loc, gpu::Dimension::x),
                     z.mul(gpu::BlockIdOp::create(mb, loc, gpu::Dimension::y),
                           gpu::GridDimOp::create(mb, loc, gpu::Dimension::x)));
  auto arrive = scf::IfOp::create(mb, loc, mb.getI1Type(), z.eq(tid, zero),
                                  /*withElseRegion=*/true);
  {
    OpBuilder ab = arrive.getThenBodyBuilder();
    Value counters =
        memref::GetGlobalOp::create(ab, loc, counterType, counterName);
    scf::YieldOp::create(
        ab, loc, emitArriveLast(ab, loc, counters, ValueRange{tile}, splits));
    OpBuilder nb = arrive.getElseBodyBuilder();
    scf::YieldOp::create(nb, loc, emitBool(nb, loc, false));
  }
  Value lastHere =
      arith::ExtUIOp::create(mb, loc, mb.getI32Type(), arrive.getResult(0));
  Value anyLast = NVVM::BarrierOp::create(
                      mb, loc, TypeRange{mb.getI32Type()}, Value(), Value(),
                      NVVM::BarrierReductionAttr::get(
                          mb.getContext(), NVVM::BarrierReduction::OR),
                      lastHere)
                      .getResult(0);
  Value isLast = arith::CmpIOp::create(mb, loc, arith::CmpIPredicate::ne,
                                       anyLast, z.ci32(0));
  emitIf(mb, loc, isLast, [&](OpBuilder &lb, Location ll) {
    // The other CTAs' partials, after their arrivals.
    NVVM::MembarOp::create(lb, ll, NVVM::MemScopeKind::GPU);
    forPairs(
        lb, ll, [&](OpBuilder &pb, Location pl, Value row, Value col, int64_t) {
          KernelMath y{pb, pl};
          Value zeros = vector::BroadcastOp::create(pb, pl, pair, y.f(0.0));
          auto sum = scf::ForOp::create(
              pb, pl, y.c(0), splits, y.c(1), ValueRange{zeros},
              [&](OpBuilder &fb, Location fl, Value sp, ValueRange acc) {
                KernelMath u{fb, fl};
                Value part = vector::LoadOp::create(
                    fb, fl, pair, partials,
                    ValueRange{u.add(u.mul(sp, numRows), row), col});
                scf::YieldOp::create(
                    fb, fl,
                    ValueRange{arith::AddFOp::create(fb, fl, acc[0], part)});
              });
          addToC(pb, pl, row, col, sum.getResult(0));
        });
  });
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
  // Conditions in a fixed order (one statement each): A, B on 16 bytes; C
  // on 8 (its pairs are 8-byte vectors); K and N multiples of 8.
  Value fits = emitDataAligned(b, loc, a, 16);
  fits = x.andI(fits, emitDataAligned(b, loc, bm, 16));
  fits = x.andI(fits, emitDataAligned(b, loc, cm, 8));
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
    Value mTiles = y.ceilDiv(numRows, y.c(kRows)),
          nTiles = y.ceilDiv(numCols, y.c(kCols));
    // Splits of K where the tiles leave SMs idle (then tiles < kTarget-
    // Blocks: a counter each), with partials [splits * M, N].
    Value tiles = y.max(y.mul(mTiles, nTiles), y.c(1));
    Value steps = y.ceilDiv(depth, y.c(kDepth));
    Value cap = y.min(y.c(kMaxSplits), y.div(steps, y.c(kMinSteps)));
    Value wanted =
        y.max(y.c(1), y.min(y.ceilDiv(y.c(kTargetBlocks), tiles), cap));
    // As many as needed for ceil(steps / wanted) steps each: none is empty.
    Value splits = y.max(
        y.c(1), y.ceilDiv(steps, y.max(y.c(1), y.ceilDiv(steps, wanted))));
    Value partRows =
        y.sel(y.lt(y.c(1), splits), y.mul(splits, numRows), y.c(0));
    Value partials = memref::AllocOp::create(
        tb, loc,
        MemRefType::get({ShapedType::kDynamic, ShapedType::kDynamic},
                        tb.getF32Type()),
        ValueRange{partRows, numCols});
    emitKernelLaunch(
        tb, loc, module, "sparsek_matmul_tiles",
        ValueRange{a, bm, cm, partials, splits}, kThreads, workgroup, Value(),
        gpu::KernelDim3{mTiles, nTiles, splits}, {numRows, numCols},
        [&](OpBuilder &kb, Location kl, ValueRange args, ValueRange wgBufs) {
          auto gpuModule = kb.getInsertionBlock()
                               ->getParentOp()
                               ->getParentOfType<gpu::GPUModuleOp>();
          auto mb = OpBuilder::atBlockBegin(gpuModule.getBody());
          auto global =
              gpu::AddressSpaceAttr::get(ctx, gpu::AddressSpace::Global);
          StringRef counters = declareSplitCounters(
              mb, kl, gpuModule, "split_counters", kTargetBlocks, global);
          buildKernel(kb, kl, args, wgBufs, elem, counters,
                      MemRefType::get({kTargetBlocks}, kb.getI32Type(),
                                      MemRefLayoutAttrInterface(), global));
        });
    memref::DeallocOp::create(tb, loc, partials);
  }
  OpBuilder eb = ifOp.getElseBodyBuilder();
  eb.clone(*op)->setAttr(kFallback, b.getUnitAttr());
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
    IRRewriter rewriter(&getContext());
    for (linalg::MatmulOp op : ops) {
      rewriter.setInsertionPoint(op);
      lower(rewriter, op, module);
    }
  }
};
} // namespace
