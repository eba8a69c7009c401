//===- MmaSyncKernel.cpp - select_attention tiles on mma.sync -------------===//
//
// One CTA of 4 warps per tile (TileLowerings.h): warp w owns rows
// 16w..16w+15 of the tile's 64 (query, head) rows. Per key tile of 64 slots:
//   - 64 threads write the slots' positions j (-1 past the list) and scores
//     u_j to workgroup memory;
//   - K and V rows are gathered with 16-byte cp.async (src-size 0, i.e. zero
//     fill, for padding) into XOR-swizzled [64][D] tiles (the 16-byte chunk
//     index XOR row % 8: the 8 rows one ldmatrix reads hit 8 bank groups);
//   - S = Q K^T on mma.sync m16n8k16 (Q fragments loaded once, K with
//     ldmatrix without transpose: K rows are B in "col" layout);
//   - each of the lane's 2 rows x 16 columns gets its membership and gate
//     (BlockKeySets.h), the online softmax updates in registers (row max and
//     sum over the 4 lanes of a quad with xor shuffles, exp2 with the scale
//     folded in);
//   - O += (P * gates) V: the S accumulator fragments are the A fragments of
//     P V (no data movement), V through ldmatrix.trans.
// bf16 goes through nvvm.mma.sync with bf16x2 packed as i32 (nvgpu.mma.sync
// cannot lower bf16 in MLIR 22); f16 takes vector<2xf16> operands.
// Port of ../shared/tensorcore/tools/gen_attn_tile.py (verified on an H100),
// generalized to GQA rows, D in {64, 128}, gathered key lists and SPEC 4
// membership.
//
//===----------------------------------------------------------------------===//
#include "MmaSyncOps.h"
#include "TileLowerings.h"

#include "../SparseKToLoops/LoopUtils.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/NVGPU/IR/NVGPUDialect.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"

#include <cassert>
#include <cmath>
#include <limits>

using namespace mlir;
using namespace mlir::sparsek;

static constexpr int64_t kWarps = kTileRows / 16;
static constexpr int64_t kThreads = kTileThreads;
static_assert(kWarps * 32 == kThreads, "one warp per 16 rows");

std::string sparsek::tileOperandsUnsupportedReason(ArrayRef<Value> typed,
                                                   ArrayRef<Value> others) {
  Type elem = cast<MemRefType>(typed[0].getType()).getElementType();
  if (!elem.isBF16() && !elem.isF16())
    return "q, key and value are not bf16 or f16";
  for (ArrayRef<Value> vals : {typed, others})
    for (Value v : vals)
      if (!cast<MemRefType>(v.getType()).getLayout().isIdentity())
        return "an operand has a non-identity layout";
  for (Value v : typed)
    if (cast<MemRefType>(v.getType()).getElementType() != elem)
      return "q, key, value and the output differ in element type";
  for (Value v : {typed[0], typed[2]}) {
    auto type = cast<MemRefType>(v.getType());
    if (type.isDynamicDim(3) ||
        (type.getDimSize(3) != 64 && type.getDimSize(3) != 128))
      return "D and Dv must be static, 64 or 128";
  }
  return "";
}

std::string sparsek::mmaSyncUnsupportedReason(SelectAttentionOp op) {
  return tileOperandsUnsupportedReason(
      {op.getQuery(), op.getKey(), op.getValue(), op.getInit()},
      {op.getScores()});
}

namespace {
using KB = MmaSyncOps;

/// The kernel's arguments, in launch order.
/// One of the lane's two rows (g and g + 8 of its warp's 16).
struct LaneRow {
  Value hq, t;
  QueryThresholds th;
};
} // namespace

/// Builds the kernel body into `b` (the gpu.func's entry block).
static void buildKernel(OpBuilder &b, Location loc, const TileKernelArgs &a,
                        ValueRange smem, int64_t k, int64_t w, int64_t d,
                        int64_t dv, Type elem) {
  KB x{b, loc, elem};
  Value sK = smem[0], sV = smem[1], sU = smem[2], sJ = smem[3];
  Value tid = gpu::ThreadIdOp::create(b, loc, gpu::Dimension::x);
  Value lane = x.rem(tid, x.c(32)), warp = x.div(tid, x.c(32));
  auto [blk, hy] = emitHeavyFirstTile(b, loc);
  Value bi = gpu::BlockIdOp::create(b, loc, gpu::Dimension::z);
  Value numHeads = emitDim(b, loc, a.q, 1), kvHeads = emitDim(b, loc, a.key, 1);
  Value numQueries = emitDim(b, loc, a.q, 2),
        numKeys = emitDim(b, loc, a.key, 2);
  TileGeometry geo = TileGeometry::emit(b, loc, x.div(numHeads, kvHeads),
                                        numQueries, kTileRows);
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

  // Q rows -> sK (staging; zero for rows that are no (query, head)), then
  // the loop-invariant A fragments of each warp's 16 rows.
  {
    SmallVector<Value> tokens;
    int64_t chunks = d / kChunk;
    for (int64_t i = 0; i < kTileRows * chunks / kThreads; ++i) {
      Value linear = x.add(tid, x.c(kThreads * i));
      Value row = x.div(linear, x.c(chunks));
      Value col = x.mul(x.rem(linear, x.c(chunks)), x.c(kChunk));
      TileRow tr = tileRow(row);
      Value hq = x.sel(tr.valid, x.add(x.mul(h, geo.group), tr.qhead), x.c(0));
      Value t = x.sel(tr.valid, tr.query, x.c(0));
      tokens.push_back(x.copy(sK, {row, x.swizzle(row, col)}, a.q,
                              {bi, hq, t, col}, tr.valid));
    }
    x.waitCopies(tokens);
    gpu::BarrierOp::create(b, loc);
  }
  SmallVector<SmallVector<Value>> qa;
  Value l16 = x.rem(lane, x.c(16)), l8 = x.rem(lane, x.c(8));
  Value half = x.div(lane, x.c(16));              // l / 16
  Value odd = x.rem(x.div(lane, x.c(8)), x.c(2)); // (l / 8) % 2
  Value half8 = x.mul(half, x.c(8));
  // Rows read by ldmatrix below are (lane part) + (multiple of 8): their
  // row % 8 is l % 8.
  {
    Value row = x.add(x.mul(warp, x.c(16)), l16);
    for (int64_t kc = 0; kc < d / 16; ++kc)
      qa.push_back(
          x.ldmatrix(sK, row, x.swizzleLdmatrix(half, l8, 16 * kc), false));
  }
  gpu::BarrierOp::create(b, loc);

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
               th.castPositions(b, loc, b.getI32Type())};
  }
  Value scaleLog2 = x.fmul(a.scale, x.f(1.0 / std::log(2.0)));

  // Carried: O (dv / 8 n-tiles x 4), then m and l of both rows.
  int64_t oTiles = dv / 8;
  Value negInf = x.f(-std::numeric_limits<double>::infinity());
  SmallVector<Value> init(oTiles * 4, x.f(0.0));
  init.append({negInf, negInf, x.f(0.0), x.f(0.0)});
  auto loop = scf::ForOp::create(
      b, loc, x.c(0), numTiles, x.c(1), init,
      [&](OpBuilder &lb, Location ll, Value tile, ValueRange carried) {
        KB y{lb, ll, elem};
        Value base = y.mul(tile, y.c(kKeyTile));
        // Slots: position and score of each of the tile's 64 keys.
        emitIf(lb, ll, y.lt(tid, y.c(kKeyTile)),
               [&](OpBuilder &sb, Location sl) {
                 KB z{sb, sl, elem};
                 Value j = keys.emitKeyAt(sb, sl, z.add(base, tid), a.lists,
                                          ValueRange{r, list}, k);
                 Value u = memref::LoadOp::create(
                     sb, sl, a.scores, ValueRange{bi, h, z.max(j, z.c(0))});
                 memref::StoreOp::create(sb, sl, u, sU, tid);
                 memref::StoreOp::create(
                     sb, sl,
                     arith::IndexCastOp::create(sb, sl, sb.getI32Type(), j), sJ,
                     tid);
               });
        gpu::BarrierOp::create(lb, ll);
        // Gather the K and V rows (zero rows for padding).
        SmallVector<Value> tokens;
        for (auto [dst, src, width] :
             {std::tuple{sK, a.key, d}, std::tuple{sV, a.value, dv}}) {
          int64_t chunks = width / kChunk;
          for (int64_t i = 0; i < kKeyTile * chunks / kThreads; ++i) {
            Value linear = y.add(tid, y.c(kThreads * i));
            Value row = y.div(linear, y.c(chunks));
            Value col = y.mul(y.rem(linear, y.c(chunks)), y.c(kChunk));
            Value j = emitLoadIndex(lb, ll, sJ, ValueRange{row});
            Value valid = y.lt(y.c(-1), j);
            tokens.push_back(y.copy(dst, {row, y.swizzle(row, col)}, src,
                                    {bi, h, y.max(j, y.c(0)), col}, valid));
          }
        }
        y.waitCopies(tokens);
        gpu::BarrierOp::create(lb, ll);

        // S = Q K^T: 8 n-tiles of 8 keys x 4 f32 per lane.
        SmallVector<SmallVector<Value>> s(8, SmallVector<Value>(4, y.f(0.0)));
        for (int64_t p = 0; p < 4; ++p) {
          Value krow = y.add(y.add(half8, l8), y.c(16 * p));
          for (int64_t kc = 0; kc < d / 16; ++kc) {
            SmallVector<Value> kb = y.ldmatrix(
                sK, krow, y.swizzleLdmatrix(odd, l8, 16 * kc), false);
            s[2 * p] = y.mma(qa[kc], {kb[0], kb[1]}, s[2 * p]);
            s[2 * p + 1] = y.mma(qa[kc], {kb[2], kb[3]}, s[2 * p + 1]);
          }
        }
        // Membership: register 2 ri + e of n-tile nt is row g + 8 ri, key
        // column 8 nt + 2 quad + e. Non-members get s = -inf, so p = 0.
        auto keyAt = [&](int64_t nt, int64_t e) -> std::pair<Value, Value> {
          Value col = y.add(y.mul(quad, y.c(2)), y.c(8 * nt + e));
          return {memref::LoadOp::create(lb, ll, sJ, ValueRange{col}),
                  memref::LoadOp::create(lb, ll, sU, ValueRange{col})};
        };
        for (int64_t nt = 0; nt < 8; ++nt) {
          for (int64_t e = 0; e < 2; ++e) {
            auto [j, u] = keyAt(nt, e);
            for (int64_t ri = 0; ri < 2; ++ri) {
              Value valid = emitIsMember(lb, ll, rows[ri].th, j, u, w, k > 0);
              int64_t reg = 2 * ri + e;
              s[nt][reg] = y.sel(valid, y.fmul(s[nt][reg], scaleLog2), negInf);
            }
          }
        }
        // Online softmax per row: new max, rescale, P * gate (the gates are
        // recomputed here from the slots rather than kept in registers).
        SmallVector<Value> next(carried.begin(), carried.end());
        for (int64_t ri = 0; ri < 2; ++ri) {
          Value m = carried[oTiles * 4 + ri], l = carried[oTiles * 4 + 2 + ri];
          Value mx = negInf;
          for (int64_t nt = 0; nt < 8; ++nt)
            for (int64_t e = 0; e < 2; ++e)
              mx = y.fmax(mx, s[nt][2 * ri + e]);
          Value mNew = y.fmax(m, y.quadReduce(mx, /*isMax=*/true));
          // No member yet: exponents against 0 give exp2(-inf) = 0.
          Value mUse = y.sel(y.isNegInf(mNew), y.f(0.0), mNew);
          Value alpha = y.exp2Ftz(y.fsub(m, mUse));
          Value lNew = y.fmul(l, alpha);
          for (int64_t nt = 0; nt < 8; ++nt)
            for (int64_t e = 0; e < 2; ++e) {
              int64_t reg = 2 * ri + e;
              Value pe = y.exp2Ftz(y.fsub(s[nt][reg], mUse));
              lNew = y.fadd(lNew, pe); // the sum leaves the gates out
              auto [j, u] = keyAt(nt, e);
              s[nt][reg] =
                  y.fmul(pe, emitGate(lb, ll, rows[ri].th, j, u, w, k > 0));
            }
          for (int64_t ot = 0; ot < oTiles; ++ot)
            for (int64_t e = 0; e < 2; ++e)
              next[4 * ot + 2 * ri + e] =
                  y.fmul(carried[4 * ot + 2 * ri + e], alpha);
          next[oTiles * 4 + ri] = mNew;
          next[oTiles * 4 + 2 + ri] = lNew;
        }
        // O += P V, k-chunks of 16 keys.
        for (int64_t kc = 0; kc < 4; ++kc) {
          SmallVector<Value> pa{y.pack(s[2 * kc][0], s[2 * kc][1]),
                                y.pack(s[2 * kc][2], s[2 * kc][3]),
                                y.pack(s[2 * kc + 1][0], s[2 * kc + 1][1]),
                                y.pack(s[2 * kc + 1][2], s[2 * kc + 1][3])};
          Value vrow = y.add(l16, y.c(16 * kc));
          for (int64_t q = 0; q < dv / 16; ++q) {
            SmallVector<Value> vb =
                y.ldmatrix(sV, vrow, y.swizzleLdmatrix(half, l8, 16 * q), true);
            for (int64_t hlf = 0; hlf < 2; ++hlf) {
              int64_t ot = 2 * q + hlf;
              SmallVector<Value> o(next.begin() + 4 * ot,
                                   next.begin() + 4 * ot + 4);
              o = y.mma(pa, {vb[2 * hlf], vb[2 * hlf + 1]}, o);
              std::copy(o.begin(), o.end(), next.begin() + 4 * ot);
            }
          }
        }
        // The next tile overwrites the slots and K/V tiles.
        gpu::BarrierOp::create(lb, ll);
        scf::YieldOp::create(lb, ll, next);
      });

  // out = O / l (0 for rows without a member), in v's element type.
  ValueRange res = loop.getResults();
  for (int64_t ri = 0; ri < 2; ++ri) {
    Value l = x.quadReduce(res[oTiles * 4 + 2 + ri], /*isMax=*/false);
    Value any =
        arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OGT, l, x.f(0.0));
    Value inv =
        x.sel(any, arith::DivFOp::create(b, loc, x.f(1.0), l), x.f(0.0));
    emitIf(b, loc, rows[ri].th.valid, [&](OpBuilder &sb, Location sl) {
      KB z{sb, sl, elem};
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

void sparsek::emitMmaSyncTiles(OpBuilder &b, Location loc, const TileProblem &p,
                               ModuleOp module) {
  SelectAttentionOp op = p.op;
  MLIRContext *ctx = b.getContext();
  auto qType = cast<MemRefType>(op.getQuery().getType());
  Type elem = qType.getElementType();
  int64_t d = qType.getDimSize(3);
  int64_t dv = cast<MemRefType>(op.getValue().getType()).getDimSize(3);
  auto wg = gpu::AddressSpaceAttr::get(ctx, gpu::AddressSpace::Workgroup);
  auto smem = [&](ArrayRef<int64_t> shape, Type t) {
    return MemRefType::get(shape, t, MemRefLayoutAttrInterface(), wg);
  };
  Type f32 = b.getF32Type(), i32 = b.getI32Type();
  SmallVector<Type> workgroup{smem({kKeyTile, d}, elem),
                              smem({kKeyTile, dv}, elem), smem({kKeyTile}, f32),
                              smem({kKeyTile}, i32)};
  assert(p.geo.rows == kTileRows && "mma.sync tiles have 64 rows");
  emitTileKernelLaunch(b, loc, p, module, "sparsek_select_attention_tiles",
                       kThreads, workgroup, Value(),
                       [&](OpBuilder &kb, Location kl, const TileKernelArgs &a,
                           ValueRange wgBufs) {
                         buildKernel(kb, kl, a, wgBufs, p.k, p.w, d, dv, elem);
                       });
}
