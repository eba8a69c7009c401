//===- WgmmaKernel.cpp - select_attention tiles on Hopper wgmma -----------===//
//
// The sm_90a form of the tile-first kernel (TileLowerings.h), in the shape
// of FlashAttention-3 adapted to gathered keys. One CTA per tile of M (query,
// head) rows, one warpgroup (4 warps, 128 threads) per 64 of them: the
// tiles, key lists and membership test of the mma.sync form (BlockKeySets.h)
// for M = 64. With M = 128 the two warpgroups share every gathered K/V tile
// (half the gathers per row) but meet at the CTA barrier every key tile:
// 12% slower at P1 32k on an H200 than two 64-row CTAs per SM, whose
// softmax and tensor-core work interleave freely (the 64-row kernel is
// bound by its per-step dependency chains at two warps per scheduler, not
// by L2: bench/results/session11_3a30aab_6152438.md).
//
// Workgroup memory (dynamic, base rounded up to 1024 bytes): Q (M rows), two
// buffers each of K and V, three of the key slots (position j, score u_j
// and list rank (emitListRank) of each of a key tile's 64 slots). Every [64][D]
// tile is stored as D / 64 atoms of [64 rows][64 columns], 128 bytes a row,
// 16-byte chunks XOR-swizzled with row % 8: TMA's SWIZZLE_128B, the layout the
// wgmma descriptors below name (layout 1, base offset 0).
//
// Step i (key tile i, 64 slots; every warpgroup alike, on its own Q rows),
// with cp.async groups and wgmma groups as the pipeline (FlashAttention-3's
// intra-warpgroup overlap: the P V of key tile i - 1 runs on the tensor cores
// during the softmax of tile i):
//   - wait for the group issued one step earlier (tile i's K rows, tile
//     i - 1's V rows, the scores of tile i + 1's slots), make it visible to
//     the async proxy (fence.proxy.async) and to all warps (barrier; every
//     warp is then also past step i - 1's wgmma waits);
//   - issue the next group, in flight during the math: the K rows of tile
//     i + 1 and the V rows of tile i into the buffers that tiles i - 1 and
//     i - 2 freed (16-byte cp.async, zero fill for padding slots), and the
//     slots of tile i + 2 (positions loaded by the previous step, scores by
//     4-byte cp.async); load the positions of tile i + 3; store the list
//     ranks of tile i + 1 (its scores landed with the wait);
//   - S = Q K^T: wgmma m64n64k16, A (Q) and B (K rows, K-major) from shared
//     memory descriptors (nvvm.wgmma.mma_async), one wgmma group;
//   - O += (P * gates) V of tile i - 1, the second group: wgmma m64nDvk16
//     with P as the A operand from registers (the S accumulator n-tiles 2c,
//     2c+1 are exactly the A fragment of k-chunk c) and V (N-major,
//     transposed B) from shared memory. nvvm.wgmma.mma_async has no
//     register-A form in MLIR 22, so this one is an llvm.inline_asm of the
//     same PTX instruction, built as convert-nvvm-to-llvm builds the
//     shared-memory form;
//   - wait for S only (wgmma.wait_group 1); membership and gates per
//     element from the slots (emitIsMember / emitGate), online softmax in
//     registers: the accumulator of warp w, lane l holds rows 16w + l/4
//     (+8), columns 8n + 2(l%4) (+1), the layout of mma.m16n8k16, so a
//     row's max and sum are the lane's values plus two xor shuffles;
//   - wait for P V (wait_group 0), rescale O to the new maximum, pack P for
//     the next step.
// The prologue fills V buffer 1 with zeros (the V of "tile -1", whose P is
// zero); after the loop the last tile's P V runs alone.
// wgmma and its descriptors require sm_90a (sparsek-gpu-pipeline checks
// chip=sm_90a for prefill-kernel=wgmma).
//
//===----------------------------------------------------------------------===//
#include "MmaSyncOps.h"
#include "TileLowerings.h"

#include "../SparseKToLoops/LoopUtils.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/LLVMIR/NVVMDialect.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/NVGPU/IR/NVGPUDialect.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"

#include <cassert>
#include <cmath>
#include <limits>
#include <string>

using namespace mlir;
using namespace mlir::sparsek;

/// One swizzle atom: 64 rows of 64 elements (128 bytes).
static constexpr int64_t kAtomCols = 64;
static constexpr int64_t kAtomBytes = kKeyTile * kAtomCols * 2;
/// Rows per 8-row core-matrix group of a 128B-swizzled operand.
static constexpr int64_t kGroupBytes = 8 * 128;
/// Slot buffers: key tile t's slots live in buffer t % 3 from the step of
/// tile t - 2 (written) to the step of tile t (read).
static constexpr int64_t kSlotBuffers = 3;
/// A row's reference maximum moves only when P would otherwise exceed
/// 2^kRescaleLog2 (bf16 and f16 hold such P with the relative precision
/// of P <= 1, far from their largest values; sums stay in f32).
static constexpr double kRescaleLog2 = 8.0;

namespace {
/// Builders of the kernel body: the mma.sync kernels' operand movement
/// (16-byte cp.async chunks, quad reductions) plus the wgmma layouts.
struct WB : MmaSyncOps {
  using MmaSyncOps::MmaSyncOps;

  Value ci64(int64_t v) {
    return arith::ConstantIntOp::create(b, loc, b.getI64Type(), v);
  }
  void barrier() { gpu::BarrierOp::create(b, loc); }

  /// Where element (row, col) of a [64][width] tile lives in its atoms
  /// [width / 64][64][64]: (atom, row, swizzled column); col is a multiple
  /// of kChunk.
  SmallVector<Value> swizzled(Value row, Value col) {
    Value atom = div(col, c(kAtomCols));
    Value chunk = div(rem(col, c(kAtomCols)), c(kChunk));
    Value x = arith::XOrIOp::create(b, loc, chunk, rem(row, c(8)));
    return {atom, row, mul(x, c(kChunk))};
  }

  /// Two f32 -> one 32-bit register holding elem x 2 (x in the low half):
  /// wgmma's A operand from registers takes i32 for f16 too, where mma.sync
  /// takes vector<2xf16> (MmaMath::pack).
  Value packWord(Value x, Value y) {
    Value v = vector::FromElementsOp::create(
        b, loc, VectorType::get({2}, b.getF32Type()), ValueRange{x, y});
    Value narrow =
        arith::TruncFOp::create(b, loc, VectorType::get({2}, elem), v);
    Value cast = vector::BitCastOp::create(
        b, loc, VectorType::get({1}, b.getI32Type()), narrow);
    return vector::ExtractOp::create(b, loc, cast, ArrayRef<int64_t>{0});
  }

  /// Max or sum of `v` as a balanced tree: a dependency chain of
  /// log2(size) operations instead of size (with two warps per scheduler,
  /// the kernel's pace is set by such chains).
  Value treeReduce(ArrayRef<Value> v, bool isMax) {
    assert(!v.empty() && "nothing to reduce");
    if (v.size() == 1)
      return v.front();
    size_t half = v.size() / 2;
    Value x = treeReduce(v.take_front(half), isMax);
    Value y = treeReduce(v.drop_front(half), isMax);
    return isMax ? fmax(x, y) : fadd(x, y);
  }

  /// Waits until at most `pending` cp.async groups of this thread are in
  /// flight, then makes the shared memory they wrote visible to wgmma (the
  /// async proxy) and, through the barrier, to every warp.
  void waitCopiesForWgmma(ValueRange tokens, int64_t pending) {
    waitCopies(tokens, pending);
    NVVM::FenceProxyOp::create(
        b, loc, NVVM::ProxyKind::async_shared,
        NVVM::SharedSpaceAttr::get(b.getContext(),
                                   NVVM::SharedSpace::shared_cta));
    barrier();
  }

  /// The low word (i32) of a wgmma shared-memory descriptor for the
  /// 128B-swizzled tile at shared address `addr` (index, 1024-byte aligned
  /// or a k-step inside an atom): start address >> 4 in bits 0-13, LBO >> 4
  /// in 16-29. The high word is the same for every operand here (kDescHigh).
  /// Descriptors are moved and chosen as i32, so that neither LLVM nor ptxas
  /// carries 64-bit additions into the wgmma issue.
  Value descriptor(Value addr, int64_t lboBytes) {
    Value a = arith::IndexCastOp::create(b, loc, b.getI32Type(), addr);
    a = arith::AndIOp::create(
        b, loc, arith::ShRUIOp::create(b, loc, a, ci32(4)), ci32(0x3fff));
    return arith::OrIOp::create(b, loc, a, ci32((lboBytes >> 4) << 16));
  }

  /// The descriptor (low word) `desc` moved by `bytes` (a multiple of 16,
  /// inside the 14-bit address field).
  Value advance(Value desc, int64_t bytes) {
    if (bytes == 0)
      return desc;
    return arith::AddIOp::create(b, loc, desc, ci32(bytes >> 4));
  }

  /// The whole descriptor of low word `desc`: SBO >> 4 (one 8-row group,
  /// 1024 bytes) in bits 32-45, layout 1 (128B swizzle) in 62-63.
  Value fullDescriptor(Value desc) {
    int64_t high = (int64_t(1) << 62) | ((kGroupBytes >> 4) << 32);
    return arith::OrIOp::create(
        b, loc, arith::ExtUIOp::create(b, loc, b.getI64Type(), desc),
        ci64(high));
  }

  NVVM::WGMMATypes wgmmaType() const {
    return elem.isBF16() ? NVVM::WGMMATypes::bf16 : NVVM::WGMMATypes::f16;
  }

  /// acc + A B on wgmma m64nNk16, A and B from shared memory, both K-major.
  Value wgmmaSS(Value acc, Value descA, Value descB, int64_t n) {
    return NVVM::WgmmaMmaAsyncOp::create(
        b, loc, acc.getType(), acc, fullDescriptor(descA),
        fullDescriptor(descB),
        NVVM::MMAShapeAttr::get(b.getContext(), 64, n, 16), wgmmaType(),
        wgmmaType(), NVVM::WGMMATypes::f32, NVVM::WGMMAScaleOut::one,
        NVVM::WGMMAScaleIn::one, NVVM::WGMMAScaleIn::one, NVVM::MMALayout::row,
        NVVM::MMALayout::col,
        /*satfinite=*/nullptr);
  }

  /// acc + A B on wgmma m64nNk16 with A (4 x elem2 registers per thread, the
  /// m16n8k16 A fragment of the thread's warp) from registers and B
  /// N-major ("row", imm-trans-b = 1) from shared memory: the register-A
  /// form nvvm.wgmma.mma_async lacks, as inline PTX.
  SmallVector<Value> wgmmaRS(ArrayRef<Value> acc, ArrayRef<Value> a,
                             Value descB) {
    int64_t n = acc.size() * 2;
    int64_t regs = acc.size();
    std::string type = elem.isBF16() ? "bf16" : "f16";
    std::string text =
        "{\n.reg .pred p;\nsetp.ne.b32 p, $" + std::to_string(2 * regs + 5) +
        ", 0;\nwgmma.mma_async.sync.aligned.m64n" + std::to_string(n) +
        "k16.f32." + type + "." + type + " {";
    std::string constraints;
    for (int64_t i = 0; i < regs; ++i) {
      text += (i ? ", $" : "$") + std::to_string(i);
      constraints += "=f,";
    }
    text += "}, {";
    for (int64_t i = 0; i < 4; ++i)
      text += (i ? ", $" : "$") + std::to_string(2 * regs + i);
    text += "}, $" + std::to_string(2 * regs + 4) + ", p, 1, 1, 1;\n}\n";
    for (int64_t i = 0; i < regs; ++i)
      constraints += std::to_string(i) + ",";
    constraints += "r,r,r,r,l,n";
    SmallVector<Value> operands(acc.begin(), acc.end());
    operands.append(a.begin(), a.end());
    operands.push_back(fullDescriptor(descB));
    operands.push_back(ci32(1)); // scale-d: accumulate
    auto structTy = LLVM::LLVMStructType::getLiteral(
        b.getContext(), SmallVector<Type>(regs, b.getF32Type()));
    auto asmOp = LLVM::InlineAsmOp::create(
        b, loc, structTy, operands, text, constraints,
        /*has_side_effects=*/true, /*is_align_stack=*/false,
        LLVM::tailcallkind::TailCallKind::None,
        LLVM::AsmDialectAttr::get(b.getContext(), LLVM::AsmDialect::AD_ATT),
        /*operand_attrs=*/ArrayAttr());
    return unpack(asmOp.getResult(0), regs);
  }

  /// The values `acc` (f32 or i32) as they are at this point: an empty asm
  /// statement that reads and rewrites each (CUTLASS's
  /// warpgroup_fence_operand). LLVM would otherwise move their arithmetic
  /// across the wgmma fence or their reads before the wgmma wait, and ptxas
  /// then serializes every wgmma with arrive/wait pairs of its own.
  SmallVector<Value> pin(ArrayRef<Value> acc) {
    std::string constraints;
    SmallVector<Type> types;
    for (Value v : acc) {
      constraints += v.getType().isF32() ? "=f," : "=r,";
      types.push_back(v.getType());
    }
    for (size_t i = 0; i < acc.size(); ++i)
      constraints += std::to_string(i) + (i + 1 < acc.size() ? "," : "");
    auto structTy = LLVM::LLVMStructType::getLiteral(b.getContext(), types);
    auto asmOp = LLVM::InlineAsmOp::create(
        b, loc, structTy, acc, "", constraints, /*has_side_effects=*/true,
        /*is_align_stack=*/false, LLVM::tailcallkind::TailCallKind::None,
        LLVM::AsmDialectAttr::get(b.getContext(), LLVM::AsmDialect::AD_ATT),
        /*operand_attrs=*/ArrayAttr());
    return unpack(asmOp.getResult(0), acc.size());
  }

  /// The struct of `values` (f32).
  Value packStruct(ArrayRef<Value> values) {
    auto structTy = LLVM::LLVMStructType::getLiteral(
        b.getContext(), SmallVector<Type>(values.size(), b.getF32Type()));
    Value v = LLVM::PoisonOp::create(b, loc, structTy);
    for (auto [i, x] : llvm::enumerate(values))
      v = LLVM::InsertValueOp::create(b, loc, v, x,
                                      ArrayRef<int64_t>{int64_t(i)});
    return v;
  }

  SmallVector<Value> unpack(Value structValue, int64_t count) {
    SmallVector<Value> out;
    for (int64_t i = 0; i < count; ++i)
      out.push_back(LLVM::ExtractValueOp::create(b, loc, structValue,
                                                 ArrayRef<int64_t>{i}));
    return out;
  }
};

/// The kernel's arguments, in launch order (as the mma.sync form's).
/// Byte offsets of the regions of workgroup memory (from the 1024-aligned
/// base).
struct SmemLayout {
  /// Regions: Q[warpgroups], K[2], V[2], slot positions, scores and list
  /// ranks [3][64]; kBytes and vBytes: one K and one V buffer (and one
  /// warpgroup's 64 Q rows: Q has D columns as K does).
  int64_t q, k, v, j, u, rank, bytes, kBytes, vBytes;

  SmemLayout(int64_t d, int64_t dv, int64_t warpgroups) {
    kBytes = (d / kAtomCols) * kAtomBytes;
    vBytes = (dv / kAtomCols) * kAtomBytes;
    q = 0;
    k = q + warpgroups * kBytes;
    v = k + 2 * kBytes;
    j = v + 2 * vBytes;
    u = j + kSlotBuffers * kKeyTile * 4;
    rank = u + kSlotBuffers * kKeyTile * 4; // 8-byte aligned
    bytes = rank + kSlotBuffers * kKeyTile * 8;
  }
  /// What the launch requests: the regions plus room to round the base up.
  int64_t dynamicBytes() const { return bytes + 1024; }
};

/// One of the lane's two rows (g and g + 8 of its warp's 16).
struct LaneRow {
  Value hq, t;
  QueryThresholds th;
  Value rank;       // emitListRowRank (with selection)
  RowBounds bounds; // (with selection)
};
} // namespace

/// Builds the kernel body into `b` (the gpu.func's entry block).
static void buildKernel(OpBuilder &b, Location loc, const TileKernelArgs &a,
                        int64_t k, int64_t w, int64_t d, int64_t dv,
                        int64_t tileRows, Type elem) {
  MLIRContext *ctx = b.getContext();
  WB x{b, loc, elem};
  int64_t warpgroups = tileRows / kKeyTile;
  int64_t threads = kTileThreads * warpgroups;
  SmemLayout layout(d, dv, warpgroups);
  auto wg = gpu::AddressSpaceAttr::get(ctx, gpu::AddressSpace::Workgroup);

  // Workgroup memory: the dynamic buffer, its base rounded up to 1024.
  Value smem = gpu::DynamicSharedMemoryOp::create(
      b, loc,
      MemRefType::get({ShapedType::kDynamic}, b.getI8Type(),
                      MemRefLayoutAttrInterface(), wg));
  Value smemAddr = memref::ExtractAlignedPointerAsIndexOp::create(b, loc, smem);
  Value pad = x.sub(
      x.mul(x.div(x.add(smemAddr, x.c(1023)), x.c(1024)), x.c(1024)), smemAddr);
  Value base = x.add(smemAddr, pad); // shared address of region offset 0
  auto view = [&](int64_t offset, ArrayRef<int64_t> shape, Type type) {
    return memref::ViewOp::create(
        b, loc, MemRefType::get(shape, type, MemRefLayoutAttrInterface(), wg),
        smem, x.add(pad, x.c(offset)), ValueRange{});
  };
  // Tiles as [atoms][64][64], Q as [warpgroups][atoms][64][64], double
  // buffers as [2][atoms][64][64].
  Value sQ =
      view(layout.q, {warpgroups, d / kAtomCols, kKeyTile, kAtomCols}, elem);
  Value sK = view(layout.k, {2, d / kAtomCols, kKeyTile, kAtomCols}, elem);
  Value sV = view(layout.v, {2, dv / kAtomCols, kKeyTile, kAtomCols}, elem);
  Value sJ = view(layout.j, {kSlotBuffers, kKeyTile}, b.getI32Type());
  Value sU = view(layout.u, {kSlotBuffers, kKeyTile}, b.getF32Type());
  Value sR = view(layout.rank, {kSlotBuffers, kKeyTile}, b.getI64Type());

  Value tid = gpu::ThreadIdOp::create(b, loc, gpu::Dimension::x);
  Value lane = x.rem(tid, x.c(32)), warp = x.div(tid, x.c(32));
  auto [blk, hy] = emitHeavyFirstTile(b, loc);
  Value bi = gpu::BlockIdOp::create(b, loc, gpu::Dimension::z);
  Value numHeads = emitDim(b, loc, a.q, 1), kvHeads = emitDim(b, loc, a.key, 1);
  Value numQueries = emitDim(b, loc, a.q, 2),
        numKeys = emitDim(b, loc, a.key, 2);
  TileGeometry geo = TileGeometry::emit(b, loc, x.div(numHeads, kvHeads),
                                        numQueries, tileRows);
  Value h = x.div(hy, geo.headSplits), split = x.rem(hy, geo.headSplits);
  Value r = x.add(x.mul(bi, kvHeads), h);
  Value t0 = x.mul(blk, geo.blockQueries);
  Value firstPos = x.sub(numKeys, numQueries);
  // Without selection there is no list, and the range starts at t0's
  // window.
  Value list = geo.emitListOf(b, loc, blk);
  Value count =
      a.lists ? emitLoadIndex(b, loc, a.counts, ValueRange{r, list}) : x.c(0);
  Value ta = a.lists ? geo.emitListQuery(b, loc, list) : t0;
  BlockKeys keys = BlockKeys::emit(b, loc, count, t0, ta, geo.blockQueries,
                                   numQueries, numKeys, w);
  Value numTiles = x.div(x.add(keys.length, x.c(kKeyTile - 1)), x.c(kKeyTile));
  auto tileRow = [&](Value row) {
    return emitTileRow(b, loc, row, t0, split, geo.headsPerTile, geo.group,
                       geo.blockQueries, numQueries);
  };

  // Slot tid % 64 of key tile `tile`: its position j (i32, -1 past the
  // list), loaded by every thread (no branch, so that the load can be
  // issued a step before its use).
  Value slotLane = x.rem(tid, x.c(kKeyTile));
  Value storesSlots = x.lt(tid, x.c(kKeyTile));
  auto loadPosition = [&](OpBuilder &lb, Location ll, Value tile) -> Value {
    WB z{lb, ll, elem};
    Value slot = z.add(z.mul(tile, z.c(kKeyTile)), slotLane);
    Value j = keys.emitKeyAt(lb, ll, slot, a.lists, ValueRange{r, list}, k);
    return arith::IndexCastOp::create(lb, ll, lb.getI32Type(), j);
  };
  // The first 64 threads store position j into slot buffer `buf` and copy
  // u_j next to it (cp.async, 4 bytes, zero past the list), in the group
  // that the caller commits next.
  auto storeSlot = [&](OpBuilder &lb, Location ll, Value j, Value buf) {
    emitIf(lb, ll, storesSlots, [&](OpBuilder &sb, Location sl) {
      WB z{sb, sl, elem};
      memref::StoreOp::create(sb, sl, j, sJ, ValueRange{buf, tid});
      Value jIdx = arith::IndexCastOp::create(sb, sl, sb.getIndexType(), j);
      nvgpu::DeviceAsyncCopyOp::create(
          sb, sl, nvgpu::DeviceAsyncTokenType::get(sb.getContext()), sU,
          ValueRange{buf, tid}, a.scores,
          ValueRange{bi, h, z.max(jIdx, z.c(0))}, sb.getIndexAttr(1),
          z.sel(z.lt(jIdx, z.c(0)), z.c(0), z.c(1)), UnitAttr());
    });
  };
  // The rows of `src` (key or value, `width` columns) of the slots in slot
  // buffer `slots` into buffer `buf` of `dst` (sK or sV; zero rows for
  // padding, and for every row when `slots` is null); returns the copies'
  // tokens. Lanes take consecutive chunks of a row, so a warp reads whole
  // rows.
  auto gather = [&](OpBuilder &gb, Location gl, Value dst, Value src,
                    int64_t width, Value buf, Value slots) {
    WB y{gb, gl, elem};
    SmallVector<Value> tokens;
    // Copy i of the thread: row row0 + i * rowStep, columns col..col + 7.
    // rowStep is a multiple of 8, so the row's swizzle (row % 8) and chunk
    // are the same for every i, and the slot and destination addresses are
    // one base plus constant offsets.
    int64_t chunks = width / kChunk, rowStep = threads / chunks;
    assert(rowStep % 8 == 0 && "the swizzle repeats every 8 rows");
    Value row0 = y.div(tid, y.c(chunks));
    Value col = y.mul(y.rem(tid, y.c(chunks)), y.c(kChunk));
    SmallVector<Value> at0 = y.swizzled(row0, col);
    // The positions first, then the copies: ptxas pads each cp.async that
    // follows a shared-memory load with no-op issue slots.
    int64_t copies = kKeyTile / rowStep;
    SmallVector<Value> rows, positions;
    for (int64_t i = 0; i < copies; ++i) {
      rows.push_back(y.add(row0, y.c(rowStep * i)));
      positions.push_back(
          slots ? emitLoadIndex(gb, gl, sJ, ValueRange{slots, rows.back()})
                : y.c(-1));
    }
    for (int64_t i = 0; i < copies; ++i) {
      Value j = positions[i];
      SmallVector<Value> at{buf, at0[0], rows[i], at0[2]};
      tokens.push_back(y.copy(dst, at, src, {bi, h, y.max(j, y.c(0)), col},
                              y.lt(y.c(-1), j)));
    }
    return tokens;
  };

  // Prologue: the slots of key tiles 0 and 1; Q rows (zero for rows that
  // are no (query, head)), the K rows of key tile 0 and zeros into V buffer
  // 1 (the V of "key tile -1", which the first step multiplies by P = 0) as
  // the first group.
  storeSlot(b, loc, loadPosition(b, loc, x.c(0)), x.c(0));
  storeSlot(b, loc, loadPosition(b, loc, x.c(1)), x.c(1));
  Value scoresGroup = x.commit({}); // the slots' scores, waited for below
  x.barrier();
  SmallVector<Value> first;
  {
    int64_t chunks = d / kChunk;
    for (int64_t i = 0; i < tileRows * chunks / threads; ++i) {
      Value linear = x.add(tid, x.c(threads * i));
      Value row = x.div(linear, x.c(chunks));
      Value col = x.mul(x.rem(linear, x.c(chunks)), x.c(kChunk));
      TileRow tr = tileRow(row);
      Value hq = x.sel(tr.valid, x.add(x.mul(h, geo.group), tr.qhead), x.c(0));
      Value t = x.sel(tr.valid, tr.query, x.c(0));
      SmallVector<Value> at = x.swizzled(x.rem(row, x.c(kKeyTile)), col);
      at.insert(at.begin(), x.div(row, x.c(kKeyTile)));
      first.push_back(x.copy(sQ, at, a.q, {bi, hq, t, col}, tr.valid));
    }
  }
  llvm::append_range(first, gather(b, loc, sK, a.key, d, x.c(0), x.c(0)));
  llvm::append_range(first,
                     gather(b, loc, sV, a.value, dv, x.c(1), /*slots=*/{}));
  x.commit(first);
  Value firstAhead = loadPosition(b, loc, x.c(2));
  // The list ranks (emitListRank) of slot buffer `buf`'s slots, stored next
  // to them by the threads that stored the slots, once their scores landed
  // (a thread's own copies, so no barrier: the next one publishes them).
  // A list tile's membership is then one load and one i64 comparison per
  // element.
  auto storeRanks = [&](OpBuilder &lb, Location ll, Value buf) {
    emitIf(lb, ll, storesSlots, [&](OpBuilder &sb, Location sl) {
      Value j = memref::LoadOp::create(sb, sl, sJ, ValueRange{buf, tid});
      Value u = memref::LoadOp::create(sb, sl, sU, ValueRange{buf, tid});
      memref::StoreOp::create(sb, sl, emitListRank(sb, sl, u, j), sR,
                              ValueRange{buf, tid});
    });
  };
  if (a.lists) {
    // At most the group of Q and tile 0 still in flight.
    nvgpu::DeviceAsyncWaitOp::create(b, loc, scoresGroup,
                                     b.getI32IntegerAttr(1));
    storeRanks(b, loc, x.c(0));
  }

  // The lane's rows g and g + 8 and their thresholds.
  Value g = x.div(lane, x.c(4)), quad = x.rem(lane, x.c(4));
  LaneRow rows[2];
  for (int i = 0; i < 2; ++i) {
    Value row = x.add(x.add(x.mul(warp, x.c(16)), g), x.c(8 * i));
    TileRow tr = tileRow(row);
    Value pos = x.add(firstPos, tr.query);
    QueryThresholds th{tr.valid, pos, Value(), Value(), Value()};
    if (a.lists)
      th = a.thresholds.emitLoad(b, loc, r, tr.query, tr.valid, pos);
    rows[i] = {x.add(x.mul(h, geo.group), tr.qhead), tr.query,
               th.castPositions(b, loc, b.getI32Type()), Value()};
    if (a.lists) {
      rows[i].rank = emitListRowRank(b, loc, rows[i].th);
      rows[i].bounds = RowBounds::emit(b, loc, rows[i].th, w);
    }
  }
  Value scaleLog2 = x.fmul(a.scale, x.f(1.0 / std::log(2.0)));
  Value negScaleLog2 = x.fmul(a.scale, x.f(-1.0 / std::log(2.0)));

  // Loop-invariant descriptors: Q (A of Q K^T: the warpgroup's rows), and
  // buffers 0 of K and V.
  int64_t vLbo = kAtomBytes; // V is N-major: the next 64 columns
  Value qRows = x.add(base, x.c(layout.q));
  if (warpgroups > 1)
    qRows = x.add(qRows, x.mul(x.div(warp, x.c(4)), x.c(layout.kBytes)));
  Value descQ = x.descriptor(qRows, kGroupBytes);
  Value descK0 = x.descriptor(x.add(base, x.c(layout.k)), kGroupBytes);
  Value descV0 = x.descriptor(x.add(base, x.c(layout.v)), vLbo);

  // Carried: O (dv / 8 n-tiles x 4), m and l of both rows, P * gates of
  // the previous key tile (the A fragments of its P V, packed: 4 registers
  // per 16 keys; zero before the first), the position of the thread's slot
  // in key tile + 2, then the slot buffers (below).
  int64_t oTiles = dv / 8;
  int64_t oRegs = oTiles * 4, pRegs = kKeyTile / 16 * 4;
  int64_t pAt = oRegs + 4;
  Value negInf = x.f(-std::numeric_limits<double>::infinity());
  SmallVector<Value> init(oRegs, x.f(0.0));
  init.append({negInf, negInf, x.f(0.0), x.f(0.0)});
  init.append(pRegs, x.ci32(0));
  init.push_back(firstAhead);
  // Then the slot buffers of key tiles tile, tile + 1 and tile + 2 (tile % 3
  // and so on), rotated by each step rather than computed, so that LLVM
  // does not rewrite the remainders into per-row induction variables.
  int64_t slotsAt = init.size();
  init.append({x.c(0), x.c(1), x.c(2)});

  // O += P V for the P of one key tile (packed) and the V buffer that
  // `descV` names: 4 k-steps of m64nDvk16, 16 keys (rows of V, 2048 bytes)
  // each, as one wgmma group (committed, not waited for).
  auto issuePV = [&](WB &y, ArrayRef<Value> o, ArrayRef<Value> p, Value descV) {
    SmallVector<Value> acc(o);
    for (int64_t kc = 0; kc < kKeyTile / 16; ++kc)
      acc = y.wgmmaRS(acc, p.slice(4 * kc, 4), y.advance(descV, kc * 16 * 128));
    NVVM::WgmmaGroupSyncAlignedOp::create(y.b, y.loc);
    return acc;
  };
  // The descriptor of V buffer `vbuf` (index).
  auto vDescriptor = [&](WB &y, Value vbuf) {
    return y.add(descV0, y.mul(y.i32(vbuf), y.ci32(layout.vBytes >> 4)));
  };

  // Step `tile`: S of key tile `tile` and P V of key tile - 1 on the tensor
  // cores while this tile's softmax runs (FlashAttention-3's intra-warpgroup
  // pipelining). K of tile `tile` is in K buffer tile % 2, V of tile - 1 in
  // V buffer (tile + 1) % 2 (committed by the previous step or the
  // prologue), the slots of tile `tile` in slot buffer tile % 3, those of
  // tile + 1 stored there too.
  auto step = [&](OpBuilder &lb, Location ll, Value tile,
                  ValueRange carried) -> SmallVector<Value> {
    WB y{lb, ll, elem};
    Value buf = y.rem(tile, y.c(2)), other = y.sub(y.c(1), buf);
    Value slots = carried[slotsAt], nextSlots = carried[slotsAt + 1],
          aheadSlots = carried[slotsAt + 2];
    // The buffers' descriptors: buffer 0's plus buf buffers (in 16 bytes).
    Value descK = y.add(descK0, y.mul(y.i32(buf), y.ci32(layout.kBytes >> 4)));
    Value descV = vDescriptor(y, other);
    // K of this tile and V of the previous one landed (the only group in
    // flight); the slots of this tile and the next are visible, and every
    // warp is past the previous step's wgmma waits, so the K buffer of
    // tile - 1 and the V buffer of tile - 2 are free.
    y.waitCopiesForWgmma({}, 0);
    // In flight during this step's math, as one group: the K rows of tile
    // + 1 and the V rows of this tile into those free buffers (all zero
    // fill past the list: its slots are -1), and the slots of tile + 2
    // (position loaded by the previous step, score copied) into the slot
    // buffer that tile - 1 freed. The position for tile + 3 is loaded for
    // the next step.
    SmallVector<Value> tokens = gather(lb, ll, sK, a.key, d, other, nextSlots);
    llvm::append_range(tokens, gather(lb, ll, sV, a.value, dv, buf, slots));
    storeSlot(lb, ll, carried[slotsAt - 1], aheadSlots);
    y.commit(tokens);
    Value ahead = loadPosition(lb, ll, y.add(tile, y.c(3)));
    // The scores of tile + 1 landed with the wait above: its ranks, read by
    // the next step.
    if (a.lists)
      storeRanks(lb, ll, nextSlots);

    // O, the previous P and S's zero accumulators, pinned before the fence.
    SmallVector<Value> operands(carried.begin(), carried.begin() + oRegs);
    operands.append(carried.begin() + pAt, carried.begin() + pAt + pRegs);
    operands.append(kKeyTile / 2, y.f(0.0));
    operands = y.pin(operands);
    ArrayRef<Value> pinned(operands);
    NVVM::WgmmaFenceAlignedOp::create(lb, ll);
    // S = Q K^T, then O += P V of the previous tile: two groups.
    Value acc = y.packStruct(pinned.drop_front(oRegs + pRegs));
    for (int64_t kk = 0; kk < d / 16; ++kk) {
      int64_t offset = (kk / 4) * kAtomBytes + (kk % 4) * 32;
      acc = y.wgmmaSS(acc, y.advance(descQ, offset), y.advance(descK, offset),
                      kKeyTile);
    }
    NVVM::WgmmaGroupSyncAlignedOp::create(lb, ll);
    SmallVector<Value> o =
        issuePV(y, pinned.take_front(oRegs), pinned.slice(oRegs, pRegs), descV);
    // S is done; P V of the previous tile runs on during the softmax.
    NVVM::WgmmaWaitGroupSyncOp::create(lb, ll, 1);
    SmallVector<Value> sAll = y.pin(y.unpack(acc, kKeyTile / 2));
    // s[nt][reg]: register 2 ri + e of n-tile nt is row g + 8 ri, key
    // column 8 nt + 2 quad + e.
    SmallVector<SmallVector<Value>> s(8);
    for (int64_t nt = 0; nt < 8; ++nt)
      s[nt].assign(sAll.begin() + 4 * nt, sAll.begin() + 4 * nt + 4);

    // The tile's class (the same for every thread): all of its keys in
    // every row's window, all from the list Sel(t0), or mixed.
    KeyTileClass cls =
        KeyTileClass::emit(lb, ll, keys, y.mul(tile, y.c(kKeyTile)), w);
    // The slot (key column) of the thread's element (n-tile nt, e), and
    // its entries in slot buffers `bufs`.
    auto slotAt = [&](OpBuilder &kb, Location kl, ArrayRef<Value> bufs,
                      int64_t nt, int64_t e) {
      WB z{kb, kl, elem};
      Value col = z.add(z.mul(quad, z.c(2)), z.c(8 * nt + e));
      SmallVector<Value> out;
      for (Value buf : bufs)
        out.push_back(
            memref::LoadOp::create(kb, kl, buf, ValueRange{slots, col}));
      return out;
    };
    auto keyAt = [&](OpBuilder &kb, Location kl, int64_t nt,
                     int64_t e) -> std::pair<Value, Value> {
      SmallVector<Value> ju = slotAt(kb, kl, {sJ, sU}, nt, e);
      return {ju[0], ju[1]};
    };
    // Per element by class, in a branch every thread takes alike (around
    // no wgmma): the membership (non-members get s = -inf, so p = 0), then
    // after the exponents the gate. Window tiles need neither test, list
    // tiles only the score tests.
    enum class Class { Window, List, Mixed };
    auto byClass = [&](SmallVector<Value> in,
                       function_ref<Value(OpBuilder &, Location, Class, Value,
                                          int64_t, int64_t, int64_t)>
                           fn) {
      auto emitClass = [&](OpBuilder &cb, Location cl, Class c) {
        SmallVector<Value> out;
        for (int64_t nt = 0; nt < 8; ++nt)
          for (int64_t reg = 0; reg < 4; ++reg)
            out.push_back(
                fn(cb, cl, c, in[4 * nt + reg], nt, reg % 2, reg / 2));
        scf::YieldOp::create(cb, cl, out);
      };
      auto outer = scf::IfOp::create(
          lb, ll, cls.window,
          [&](OpBuilder &cb, Location cl) { emitClass(cb, cl, Class::Window); },
          [&](OpBuilder &cb, Location cl) {
            if (k == 0)
              return emitClass(cb, cl, Class::Mixed);
            auto inner = scf::IfOp::create(
                cb, cl, cls.list,
                [&](OpBuilder &ib, Location il) {
                  emitClass(ib, il, Class::List);
                },
                [&](OpBuilder &ib, Location il) {
                  emitClass(ib, il, Class::Mixed);
                });
            scf::YieldOp::create(cb, cl, inner.getResults());
          });
      return SmallVector<Value>(outer.getResults());
    };
    SmallVector<Value> flat;
    for (int64_t nt = 0; nt < 8; ++nt)
      llvm::append_range(flat, s[nt]);
    flat =
        byClass(flat,
                [&](OpBuilder &cb, Location cl, Class c, Value v, int64_t nt,
                    int64_t e, int64_t ri) -> Value {
                  WB z{cb, cl, elem};
                  // A window tile's keys are members of every real row.
                  // The other rows (past T, or heads past G) have zero Q
                  // rows, so finite scores, and their output is not
                  // stored: they need no mask either.
                  if (c == Class::Window)
                    return v;
                  Value valid;
                  if (c == Class::List) {
                    Value rank = slotAt(cb, cl, {sR}, nt, e)[0];
                    valid = arith::CmpIOp::create(
                        cb, cl, arith::CmpIPredicate::sge, rank, rows[ri].rank);
                  } else if (c == Class::Mixed && k > 0) {
                    // By list rank as well: a few integer comparisons.
                    SmallVector<Value> jr = slotAt(cb, cl, {sJ, sR}, nt, e);
                    valid = rows[ri].bounds.emitIsMember(cb, cl, jr[0], jr[1],
                                                         rows[ri].rank);
                  } else if (c == Class::Mixed) {
                    auto [j, u] = keyAt(cb, cl, nt, e);
                    valid = emitIsMember(cb, cl, rows[ri].th, j, u, w, false);
                  }
                  return z.sel(valid, v, negInf);
                });
    for (int64_t nt = 0; nt < 8; ++nt)
      s[nt].assign(flat.begin() + 4 * nt, flat.begin() + 4 * nt + 4);
    // Online softmax per row: new max, P * gate; O is rescaled once the
    // previous P V is done. The reference maximum m of a row may stay
    // below its true maximum by up to 2^kRescaleLog2 in P (FlashAttention-4's
    // conditional rescaling; O / l is the same for any reference): a warp
    // moves its rows' references, and rescales O and l, only when one of
    // them would grow past that. After the first key tiles a row's maximum
    // rarely grows so much, which saves the rescale of O (Dv / 2 products
    // per thread) at most steps.
    SmallVector<Value> next(carried.begin(), carried.end());
    next[slotsAt - 1] = ahead;
    next[slotsAt] = nextSlots;
    next[slotsAt + 1] = aheadSlots;
    next[slotsAt + 2] = slots;
    Value mNew[2], grows = emitBool(lb, ll, false);
    for (int64_t ri = 0; ri < 2; ++ri) {
      Value m = carried[oTiles * 4 + ri];
      SmallVector<Value> row;
      for (int64_t nt = 0; nt < 8; ++nt)
        for (int64_t e = 0; e < 2; ++e)
          row.push_back(s[nt][2 * ri + e]);
      Value mx = y.treeReduce(row, /*isMax=*/true);
      mNew[ri] = y.fmax(m, y.quadReduce(mx, /*isMax=*/true));
      // From -inf to a score: +inf, grows; -inf to -inf: NaN, does not.
      Value growth = y.fmul(y.fsub(mNew[ri], m), scaleLog2);
      grows = arith::OrIOp::create(
          lb, ll, grows,
          arith::CmpFOp::create(lb, ll, arith::CmpFPredicate::OGT, growth,
                                y.f(kRescaleLog2)));
    }
    Value rescale = NVVM::VoteSyncOp::create(lb, ll, lb.getI1Type(), y.ci32(-1),
                                             grows, NVVM::VoteSyncKind::any);
    Value alpha[2];
    for (int64_t ri = 0; ri < 2; ++ri) {
      Value m = carried[oTiles * 4 + ri], l = carried[oTiles * 4 + 2 + ri];
      Value mRef = y.sel(rescale, mNew[ri], m);
      // No member yet: exponents against 0 give exp2(-inf) = 0.
      Value mUse = y.sel(y.isNegInf(mRef), y.f(0.0), mRef);
      // Scores and maxima are unscaled; the exponent of x in base 2 is
      // x c - mUse c as one fma, c = scale log2(e) (the verifier keeps the
      // scale positive, so the maximum of x c is mUse c).
      Value negMc = y.fmul(mUse, negScaleLog2);
      auto exponent = [&](Value v) -> Value {
        return math::FmaOp::create(lb, ll, v, scaleLog2, negMc);
      };
      alpha[ri] = y.exp2Ftz(exponent(m));
      SmallVector<Value> ps;
      for (int64_t nt = 0; nt < 8; ++nt)
        for (int64_t e = 0; e < 2; ++e) {
          int64_t reg = 2 * ri + e;
          s[nt][reg] = y.exp2Ftz(exponent(s[nt][reg]));
          ps.push_back(s[nt][reg]);
        }
      // The sum leaves the gates out.
      Value lNew = y.fadd(y.sel(rescale, y.fmul(l, alpha[ri]), l),
                          y.treeReduce(ps, /*isMax=*/false));
      next[oTiles * 4 + ri] = mRef;
      next[oTiles * 4 + 2 + ri] = lNew;
    }
    // P * gates (1 in the window).
    if (k > 0) {
      flat.clear();
      for (int64_t nt = 0; nt < 8; ++nt)
        llvm::append_range(flat, s[nt]);
      flat =
          byClass(flat,
                  [&](OpBuilder &cb, Location cl, Class c, Value p, int64_t nt,
                      int64_t e, int64_t ri) -> Value {
                    if (c == Class::Window)
                      return p;
                    WB z{cb, cl, elem};
                    auto [j, u] = keyAt(cb, cl, nt, e);
                    return z.fmul(p, c == Class::List
                                         ? emitListGate(cb, cl, rows[ri].th, u)
                                         : rows[ri].bounds.emitGate(
                                               cb, cl, rows[ri].th, j, u));
                  });
      for (int64_t nt = 0; nt < 8; ++nt)
        s[nt].assign(flat.begin() + 4 * nt, flat.begin() + 4 * nt + 4);
    }
    // The previous P V is done: O to this tile's maximum, and P packed into
    // the registers that the next P V reads. O and P (as f32) are pinned
    // after the wait, so that nothing writes the registers the loop carries
    // them in while this P V still reads them (ptxas would serialize every
    // wgmma otherwise).
    SmallVector<Value> after(o);
    for (int64_t nt = 0; nt < 8; ++nt)
      llvm::append_range(after, s[nt]);
    NVVM::WgmmaWaitGroupSyncOp::create(lb, ll, 0);
    after = y.pin(after);
    for (int64_t nt = 0; nt < 8; ++nt)
      s[nt].assign(after.begin() + oRegs + 4 * nt,
                   after.begin() + oRegs + 4 * nt + 4);
    // P of k-chunk kc (16 keys): registers 4 kc .. 4 kc + 3, the A fragment
    // of the next step's P V.
    for (int64_t kc = 0; kc < kKeyTile / 16; ++kc) {
      Value packed[4] = {y.packWord(s[2 * kc][0], s[2 * kc][1]),
                         y.packWord(s[2 * kc][2], s[2 * kc][3]),
                         y.packWord(s[2 * kc + 1][0], s[2 * kc + 1][1]),
                         y.packWord(s[2 * kc + 1][2], s[2 * kc + 1][3])};
      std::copy(packed, packed + 4, next.begin() + pAt + 4 * kc);
    }
    // O to the new references, in a branch alike for the whole warp.
    auto rescaled = scf::IfOp::create(
        lb, ll, rescale,
        [&](OpBuilder &rb, Location rl) {
          WB z{rb, rl, elem};
          SmallVector<Value> o;
          for (int64_t ot = 0; ot < oTiles; ++ot)
            for (int64_t ri = 0; ri < 2; ++ri)
              for (int64_t e = 0; e < 2; ++e)
                o.push_back(z.fmul(after[4 * ot + 2 * ri + e], alpha[ri]));
          scf::YieldOp::create(rb, rl, o);
        },
        [&](OpBuilder &rb, Location rl) {
          scf::YieldOp::create(rb, rl, ArrayRef(after).take_front(oRegs));
        });
    std::copy(rescaled.getResults().begin(), rescaled.getResults().end(),
              next.begin());
    return next;
  };

  // No branch around the wgmma ops: ptxas serializes wgmma on a path it
  // sees as divergent.
  auto loop = scf::ForOp::create(
      b, loc, x.c(0), numTiles, x.c(1), init,
      [&](OpBuilder &lb, Location ll, Value tile, ValueRange carried) {
        scf::YieldOp::create(lb, ll, step(lb, ll, tile, carried));
      });

  // The last tile's P V: its V rows are the last group in flight (with the
  // zero K rows of the tile after it); V buffer (numTiles + 1) % 2 (buffer
  // 1, zero, when there was no tile).
  SmallVector<Value> res(loop.getResults());
  {
    x.waitCopiesForWgmma({}, 0);
    Value descV = vDescriptor(x, x.rem(x.add(numTiles, x.c(1)), x.c(2)));
    SmallVector<Value> operands(res.begin(), res.begin() + oRegs);
    operands.append(res.begin() + pAt, res.begin() + pAt + pRegs);
    operands = x.pin(operands);
    ArrayRef<Value> pinned(operands);
    NVVM::WgmmaFenceAlignedOp::create(b, loc);
    SmallVector<Value> o =
        issuePV(x, pinned.take_front(oRegs), pinned.slice(oRegs, pRegs), descV);
    NVVM::WgmmaWaitGroupSyncOp::create(b, loc, 0);
    o = x.pin(o);
    std::copy(o.begin(), o.end(), res.begin());
  }
  // out = O / l (0 for rows without a member), in v's element type.
  for (int64_t ri = 0; ri < 2; ++ri) {
    Value l = x.quadReduce(res[oTiles * 4 + 2 + ri], /*isMax=*/false);
    Value any =
        arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OGT, l, x.f(0.0));
    Value inv =
        x.sel(any, arith::DivFOp::create(b, loc, x.f(1.0), l), x.f(0.0));
    emitIf(b, loc, rows[ri].th.valid, [&](OpBuilder &sb, Location sl) {
      WB z{sb, sl, elem};
      for (int64_t ot = 0; ot < oTiles; ++ot) {
        Value v = vector::FromElementsOp::create(
            sb, sl, VectorType::get({2}, sb.getF32Type()),
            ValueRange{z.fmul(res[4 * ot + 2 * ri], inv),
                       z.fmul(res[4 * ot + 2 * ri + 1], inv)});
        Value narrow =
            arith::TruncFOp::create(sb, sl, VectorType::get({2}, elem), v);
        Value col = z.add(z.mul(quad, z.c(2)), z.c(8 * ot));
        vector::StoreOp::create(sb, sl, narrow, a.out,
                                ValueRange{bi, rows[ri].hq, rows[ri].t, col});
      }
    });
  }
}

void sparsek::emitWgmmaTiles(OpBuilder &b, Location loc, const TileProblem &p,
                             ModuleOp module) {
  SelectAttentionOp op = p.op;
  auto qType = cast<MemRefType>(op.getQuery().getType());
  Type elem = qType.getElementType();
  int64_t d = qType.getDimSize(3);
  int64_t dv = cast<MemRefType>(op.getValue().getType()).getDimSize(3);
  int64_t rows = p.geo.rows, warpgroups = rows / kKeyTile;
  Value smemBytes = arith::ConstantIntOp::create(
      b, loc, b.getI32Type(), SmemLayout(d, dv, warpgroups).dynamicBytes());
  emitTileKernelLaunch(
      b, loc, p, module, "sparsek_select_attention_wgmma",
      kTileThreads * warpgroups, TypeRange{}, smemBytes,
      [&](OpBuilder &kb, Location kl, const TileKernelArgs &a, ValueRange) {
        buildKernel(kb, kl, a, p.k, p.w, d, dv, rows, elem);
      });
}
