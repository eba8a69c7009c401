//===- MmaSyncGradKernel.cpp - select_attention_grad tiles on mma.sync ----===//
//
// The backward of the forward's tiles (MmaSyncKernel.cpp), FlashAttention-2
// style over the same tiles, key lists and membership test (BlockKeySets.h):
// one CTA per tile of 64 or 128 (query, head) rows, 4 or 8 warps, warp w
// owning rows 16w..16w+15, lane l rows l/4 and l/4 + 8 of them and key
// columns 8n + 2(l%4) (+1) of each 8-key n-tile (mma.m16n8k16's layout).
// Nothing of the forward is saved, so each tile walks its key list twice,
// gathering K and V rows per key tile of 64 slots (cp.async, zero fill for
// padding) as the forward does. Each walk is pipelined: key tile i + 1's K
// and V rows are in flight while tile i is computed (two buffers), and tile
// i + 2's slots (positions and scores) are loaded before tile i's products
// and stored after them (three buffers). At 128 rows one CTA fills a
// multiprocessor's workgroup memory, so no other CTA hides the gathers.
//
//   pass 1, the row statistics: S = Q K^T and dPv = dO V^T on mma.sync; per
//     row the online maximum m and sum l of the softmax, and
//     Delta = sum_j a(t, j) g(t, j) dPv(t, j) = <do, o> (rescaled with l);
//   pass 2, the gradients, with P = exp(S - lse) exact per element:
//     dS = P (g dPv - Delta)          (SPEC 5; dP = g dPv: gates scale values)
//     dq += dS K                      (registers, A = dS from the S layout)
//     dvalue[j] += (P g)^T dO         (P g through workgroup memory, read
//     dkey[j] += scale dS^T Q          transposed by ldmatrix.trans; each
//                                      warp 16 keys over all the rows, with
//                                      8 warps half the columns)
//     dg = P dPv on the selected support (0 < g < 1), summed per key column
//     into du and per row into the query's support sum.
// dkey and dvalue are f32 atomic adds (a key is in the lists of many tiles;
// 128-row tiles add half as often per row), in column pairs with
// vectorAtomics (red.global.add.v2.f32: the atomics, not the products, set
// the pace: G1 32k 41.1 -> 35.7 ms on an H100,
// bench/results/gpu_grad_pairs_h100_06e38b2.md); dq is written once per row.
// The score gradient's mean term needs every query's support sum, so it is
// left to the host's kernels that follow (emitParallelSupportGrad).
//
// Workgroup memory (dynamic: more than the 48 KB of static attributions at
// D = 128): Q and dO of the tile's rows, the K and V buffers, P g and dS as
// [rows][64 keys], and the slot buffers' positions and scores. Every
// [rows][cols] tile is XOR-swizzled by 16-byte chunks with row % 8, as the
// forward's.
//
//===----------------------------------------------------------------------===//
#include "MmaSyncOps.h"
#include "TileLowerings.h"

#include "../SparseKToLoops/LoopUtils.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"

#include <cmath>

using namespace mlir;
using namespace mlir::sparsek;

/// The dynamic buffer's base is rounded up to this (ldmatrix and cp.async
/// need 16).
static constexpr int64_t kSmemAlign = 128;

/// K/V buffers (the next key tile's rows land while one is read) and slot
/// buffers (key tile i + 2's slots are stored while i and i + 1's are read).
static constexpr int64_t kKvBuffers = 2, kSlotBuffers = 3;

std::string sparsek::mmaSyncGradUnsupportedReason(SelectAttentionGradOp op) {
  return tileOperandsUnsupportedReason(
      {op.getQuery(), op.getKey(), op.getValue(), op.getGradOutput()},
      {op.getScores(), op.getGradQueryInit(), op.getGradKeyInit(),
       op.getGradValueInit(), op.getGradScoresInit()});
}

namespace {
using KB = MmaSyncOps;

/// The kernel's arguments, in launch order.
struct GradKernelArgs {
  Value q, key, value, scores, gradOut;
  Value dq, dkey, dvalue, du, sums; // du and sums: k >= 1
  Value lists, counts;              // k >= 1
  ThresholdBuffers thresholds;
  Value scale;

  static GradKernelArgs fromProblem(const GradTileProblem &p) {
    SelectAttentionGradOp op = p.op;
    GradKernelArgs a{op.getQuery(),
                     op.getKey(),
                     op.getValue(),
                     op.getScores(),
                     op.getGradOutput(),
                     op.getGradQueryInit(),
                     op.getGradKeyInit(),
                     op.getGradValueInit(),
                     Value(),
                     Value(),
                     Value(),
                     Value(),
                     {},
                     p.scale};
    if (p.keys) {
      a.du = op.getGradScoresInit();
      a.sums = p.supportSums;
      a.lists = p.keys->lists;
      a.counts = p.keys->counts;
      a.thresholds = p.keys->thresholds;
    }
    return a;
  }

  static GradKernelArgs fromKernel(ValueRange v, bool selects) {
    GradKernelArgs a{v[0], v[1], v[2], v[3], v[4], v[5], v[6],
                     v[7], {},   {},   {},   {},   {},   v.back()};
    if (selects) {
      a.du = v[8];
      a.sums = v[9];
      a.lists = v[10];
      a.counts = v[11];
      a.thresholds = {v[12], v[13], v[14]};
    }
    return a;
  }

  SmallVector<Value> values() const {
    SmallVector<Value> v{q, key, value, scores, gradOut, dq, dkey, dvalue};
    if (lists)
      v.append({du, sums, lists, counts, thresholds.tau, thresholds.thetaScore,
                thresholds.thetaPos});
    v.push_back(scale);
    return v;
  }
};

/// Byte offsets of the workgroup buffers.
struct GradSmem {
  int64_t q, gradOut, k, v, pg, ds, j, u, bytes;

  GradSmem(int64_t rows, int64_t d, int64_t dv, int64_t elemBytes) {
    int64_t at = 0;
    auto take = [&](int64_t n) {
      int64_t off = at;
      at += n;
      return off;
    };
    q = take(rows * d * elemBytes);
    gradOut = take(rows * dv * elemBytes);
    k = take(kKvBuffers * kKeyTile * d * elemBytes);
    v = take(kKvBuffers * kKeyTile * dv * elemBytes);
    pg = take(rows * kKeyTile * elemBytes);
    ds = take(rows * kKeyTile * elemBytes);
    j = take(kSlotBuffers * kKeyTile * 4);
    u = take(kSlotBuffers * kKeyTile * 4);
    bytes = at + kSmemAlign;
  }
};

/// A warp's mma fragments: per 8-column n-tile, the lane's 4 f32.
using Frags = SmallVector<SmallVector<Value>>;

/// Where a key tile's operands are: the first of its rows in the K and V
/// buffers (sK, sV) and of its slots in the slot buffers (sJ, sU).
struct KeyTileBufs {
  Value kv, slots;
};

/// One of the lane's two rows (g and g + 8 of its warp's 16).
struct LaneRow {
  Value hq, t;
  QueryThresholds th;
};

/// The kernel body's builder: the tile's values shared by both passes.
struct GradKernel {
  OpBuilder &b;
  Location loc;
  const GradKernelArgs &a;
  int64_t k, w, d, dv;
  int64_t tileRows; // 64 or 128: 4 or 8 warps of 16
  bool vectorAtomics;
  Type elem;
  Value sQ, sO, sK, sV, sPg, sDs, sJ, sU;
  Value tid, lane, warp, bi, h, r, list;
  Value l16, l8, half, odd, half8, g, quad;
  BlockKeys keys;
  LaneRow rows[2];

  bool selects() const { return static_cast<bool>(a.lists); }
  int64_t threads() const { return tileRows * 2; } // 32 per 16 rows

  /// (position as i32, score) of the thread's slot of key tile `tile`
  /// (threads < kKeyTile; (-1, 0) for the others).
  std::pair<Value, Value> loadSlot(KB &y, Value tile) {
    auto ifOp = scf::IfOp::create(
        y.b, y.loc, y.lt(tid, y.c(kKeyTile)),
        [&](OpBuilder &sb, Location sl) {
          KB z{sb, sl, elem};
          Value j =
              keys.emitKeyAt(sb, sl, z.add(z.mul(tile, z.c(kKeyTile)), tid),
                             a.lists, ValueRange{r, list}, k);
          Value u = memref::LoadOp::create(sb, sl, a.scores,
                                           ValueRange{bi, h, z.max(j, z.c(0))});
          scf::YieldOp::create(sb, sl, ValueRange{z.i32(j), u});
        },
        [&](OpBuilder &sb, Location sl) {
          KB z{sb, sl, elem};
          scf::YieldOp::create(sb, sl, ValueRange{z.ci32(-1), z.f(0.0)});
        });
    return {ifOp.getResult(0), ifOp.getResult(1)};
  }

  /// Stores a loadSlot result at slot row `slots` + tid.
  void storeSlot(KB &y, Value slots, std::pair<Value, Value> slot) {
    emitIf(y.b, y.loc, y.lt(tid, y.c(kKeyTile)),
           [&](OpBuilder &sb, Location sl) {
             KB z{sb, sl, elem};
             Value at = z.add(slots, tid);
             memref::StoreOp::create(sb, sl, slot.first, sJ, at);
             memref::StoreOp::create(sb, sl, slot.second, sU, at);
           });
  }

  /// cp.async of the K and V rows of the slots at `bufs.slots` (visible to
  /// every thread) into the buffers at `bufs.kv`, zero fill for padding
  /// slots, committed as one group.
  void gatherKV(KB &y, KeyTileBufs bufs) {
    SmallVector<Value> tokens;
    for (auto [dst, src, width] :
         {std::tuple{sK, a.key, d}, std::tuple{sV, a.value, dv}}) {
      int64_t chunks = width / kChunk;
      for (int64_t i = 0; i < kKeyTile * chunks / threads(); ++i) {
        Value linear = y.add(tid, y.c(threads() * i));
        Value row = y.div(linear, y.c(chunks));
        Value col = y.mul(y.rem(linear, y.c(chunks)), y.c(kChunk));
        Value j =
            emitLoadIndex(y.b, y.loc, sJ, ValueRange{y.add(bufs.slots, row)});
        tokens.push_back(y.copy(dst, {y.add(bufs.kv, row), y.swizzle(row, col)},
                                src, {bi, h, y.max(j, y.c(0)), col},
                                y.lt(y.c(-1), j)));
      }
    }
    y.commit(tokens);
  }

  /// The walk over the tile's key tiles: `body(y, bufs, carried)` for each,
  /// its K/V rows and slots visible to every warp, returning the next
  /// carried values. Tile i + 1's K and V rows are copied into the other
  /// K/V buffer during body, and tile i + 2's slots are loaded before it
  /// and stored after it into the slot buffer that tile i - 1 freed. The
  /// buffers' first rows are carried and rotated, not computed from i. No
  /// copy is in flight when the walk returns, so a later walk may reuse the
  /// buffers.
  SmallVector<Value>
  walk(OpBuilder &b, Location loc, Value numTiles, ValueRange init,
       function_ref<SmallVector<Value>(KB &, KeyTileBufs, ValueRange)> body) {
    KB x{b, loc, elem};
    storeSlot(x, x.c(0), loadSlot(x, x.c(0)));
    storeSlot(x, x.c(kKeyTile), loadSlot(x, x.c(1)));
    gpu::BarrierOp::create(b, loc);
    gatherKV(x, {x.c(0), x.c(0)});
    SmallVector<Value> carried(init);
    int64_t at = carried.size();
    // The K/V buffer of tile i, then the slot buffers of tiles i, i + 1
    // and i + 2.
    carried.append({x.c(0), x.c(0), x.c(kKeyTile), x.c(2 * kKeyTile)});
    auto loop = scf::ForOp::create(
        b, loc, x.c(0), numTiles, x.c(1), carried,
        [&](OpBuilder &lb, Location ll, Value tile, ValueRange c) {
          KB y{lb, ll, elem};
          Value kv = c[at], slots = c[at + 1], next = c[at + 2],
                ahead = c[at + 3];
          Value otherKv = y.sub(y.c(kKeyTile), kv);
          // Past the list the slots are -1: the last tile's copies are zero
          // fill, waited for after the loop.
          gatherKV(y, {otherKv, next});
          std::pair<Value, Value> slot = loadSlot(y, y.add(tile, y.c(2)));
          y.waitCopies({}, 1);
          gpu::BarrierOp::create(lb, ll);
          SmallVector<Value> out = body(y, {kv, slots}, c.take_front(at));
          // Every warp is past this tile's reads of its K/V buffer and slot
          // buffer before the next step copies into them.
          storeSlot(y, ahead, slot);
          gpu::BarrierOp::create(lb, ll);
          out.append({otherKv, next, ahead, slots});
          scf::YieldOp::create(lb, ll, out);
        });
    x.waitCopies({}, 0);
    return SmallVector<Value>(loop.getResults().take_front(at));
  }

  /// C = A B^T over the warp's 16 rows and the tile's 64 keys: A the rows of
  /// `sA` (Q or dO, `width` columns), B the key rows of `sB` (K or V) from
  /// row `keyRow`. 8 n-tiles of 4 f32 per lane.
  Frags rowsTimesKeys(KB &y, Value sA, Value sB, Value keyRow, int64_t width) {
    Frags acc(8, SmallVector<Value>(4, y.f(0.0)));
    Value arow = y.add(y.mul(warp, y.c(16)), l16);
    for (int64_t kc = 0; kc < width / 16; ++kc) {
      SmallVector<Value> af =
          y.ldmatrix(sA, arow, y.swizzleLdmatrix(half, l8, 16 * kc), false);
      for (int64_t p = 0; p < 4; ++p) {
        Value krow = y.add(y.add(y.add(half8, l8), y.c(16 * p)), keyRow);
        SmallVector<Value> kb =
            y.ldmatrix(sB, krow, y.swizzleLdmatrix(odd, l8, 16 * kc), false);
        acc[2 * p] = y.mma(af, {kb[0], kb[1]}, acc[2 * p]);
        acc[2 * p + 1] = y.mma(af, {kb[2], kb[3]}, acc[2 * p + 1]);
      }
    }
    return acc;
  }

  /// (j, u) of key column 8 nt + 2 quad + e (j as i32) of the slots at
  /// `slots`.
  std::pair<Value, Value> keyAt(KB &y, Value slots, int64_t nt, int64_t e) {
    Value col = y.add(y.add(y.mul(quad, y.c(2)), y.c(8 * nt + e)), slots);
    return {memref::LoadOp::create(y.b, y.loc, sJ, ValueRange{col}),
            memref::LoadOp::create(y.b, y.loc, sU, ValueRange{col})};
  }

  /// S with non-members at -inf, in log2 units (scaled by scaleLog2).
  void maskScores(KB &y, Frags &s, Value slots, Value scaleLog2) {
    for (int64_t nt = 0; nt < 8; ++nt)
      for (int64_t e = 0; e < 2; ++e) {
        auto [j, u] = keyAt(y, slots, nt, e);
        for (int64_t ri = 0; ri < 2; ++ri) {
          Value valid = emitIsMember(y.b, y.loc, rows[ri].th, j, u, w, k > 0);
          int64_t reg = 2 * ri + e;
          s[nt][reg] = y.sel(valid, y.fmul(s[nt][reg], scaleLog2), y.negInf());
        }
      }
  }

  /// The walk of both passes: per key tile, S (non-members at -inf, log2
  /// units) and dPv = dO V^T of the warp's rows, then `body(y, bufs, s,
  /// dpv, carried, next)`, which may rewrite s and dpv and sets `next`
  /// (carried's copy) to the values carried on.
  SmallVector<Value>
  walkScores(OpBuilder &b, Location loc, Value numTiles, ValueRange init,
             Value scaleLog2,
             function_ref<void(KB &, KeyTileBufs, Frags &, Frags &, ValueRange,
                               SmallVector<Value> &)>
                 body) {
    return walk(b, loc, numTiles, init,
                [&](KB &y, KeyTileBufs bufs, ValueRange carried) {
                  Frags s = rowsTimesKeys(y, sQ, sK, bufs.kv, d);
                  maskScores(y, s, bufs.slots, scaleLog2);
                  Frags dpv = rowsTimesKeys(y, sO, sV, bufs.kv, dv);
                  SmallVector<Value> next(carried.begin(), carried.end());
                  body(y, bufs, s, dpv, carried, next);
                  return next;
                });
  }

  /// The f32 fragment values of the warp's rows as `elem` into the
  /// [64 rows][64 keys] tile `dst`.
  void storeRowsKeys(KB &y, Value dst, const Frags &frag) {
    for (int64_t ri = 0; ri < 2; ++ri) {
      Value row = y.add(y.add(y.mul(warp, y.c(16)), g), y.c(8 * ri));
      for (int64_t nt = 0; nt < 8; ++nt) {
        Value v = vector::FromElementsOp::create(
            y.b, y.loc, VectorType::get({2}, y.b.getF32Type()),
            ValueRange{frag[nt][2 * ri], frag[nt][2 * ri + 1]});
        Value narrow =
            arith::TruncFOp::create(y.b, y.loc, VectorType::get({2}, elem), v);
        Value col = y.add(y.swizzle(row, y.c(8 * nt)), y.mul(quad, y.c(2)));
        vector::StoreOp::create(y.b, y.loc, narrow, dst, ValueRange{row, col});
      }
    }
  }

  /// The global address (i64) of f32 `dst`[at] (identity layout). The
  /// buffer's generic address is its global one (the global window of the
  /// generic space is the identity), as red.global takes it.
  Value address(KB &y, Value dst, ArrayRef<Value> at) {
    Value linear = at[0];
    for (size_t i = 1; i < at.size(); ++i)
      linear = y.add(y.mul(linear, emitDim(y.b, y.loc, dst, i)), at[i]);
    Value base =
        memref::ExtractAlignedPointerAsIndexOp::create(y.b, y.loc, dst);
    return arith::IndexCastOp::create(y.b, y.loc, y.b.getI64Type(),
                                      y.add(base, y.mul(linear, y.c(4))));
  }

  /// The two f32 at `addr` + `offset` bytes (8-byte aligned) += (v0, v1) as
  /// one red.global.add.v2.f32: half the atomic operations of two scalar
  /// adds. The offset is an immediate of the instruction, so that one
  /// address register serves a row's pairs.
  void addPair(KB &y, Value addr, int64_t offset, Value v0, Value v1) {
    LLVM::InlineAsmOp::create(
        y.b, y.loc, TypeRange{}, ValueRange{addr, v0, v1},
        "red.global.add.v2.f32 [$0+" + std::to_string(offset) + "], {$1, $2};",
        "l,f,f", /*has_side_effects=*/true, /*is_align_stack=*/false,
        LLVM::tailcallkind::TailCallKind::None,
        LLVM::AsmDialectAttr::get(y.b.getContext(), LLVM::AsmDialect::AD_ATT),
        /*operand_attrs=*/ArrayAttr());
  }

  /// acc += X^T Y for the warp's 16 keys (columns 16 (w % 4).. of the
  /// [rows][64 keys] tile `sX`) over the tile's rows, Y the rows of `sY`
  /// (`width` columns; with 8 warps, each of the two warps of a key block
  /// takes half of them), then acc * factor added atomically into
  /// `dst`[bi, h, j] of each valid key (j from the slots at `slots`).
  void keysTimesRows(KB &y, Value sX, Value sY, int64_t width, Value factor,
                     Value dst, Value slots) {
    int64_t splits = tileRows / kKeyTile, cols = width / splits;
    int64_t nTiles = cols / 8;
    Frags acc(nTiles, SmallVector<Value>(4, y.f(0.0)));
    Value keyBlock = y.rem(warp, y.c(4));
    Value colBase = y.mul(y.div(warp, y.c(4)), y.c(cols));
    Value keyCol = y.add(y.mul(keyBlock, y.c(16)), y.mul(odd, y.c(8)));
    for (int64_t kc = 0; kc < tileRows / 16; ++kc) {
      // A = X^T: the 8x8 blocks of X at (rows 16kc + 8 half, keys 16 (w %
      // 4) + 8 odd), transposed by ldmatrix.trans.
      Value xrow = y.add(y.add(l8, half8), y.c(16 * kc));
      SmallVector<Value> af = y.ldmatrix(sX, xrow, y.swizzle(xrow, keyCol),
                                         /*trans=*/true);
      Value yrow = y.add(l16, y.c(16 * kc));
      for (int64_t q = 0; q < cols / 16; ++q) {
        // One warp per key block: a constant column (one of four per-lane
        // bases plus an immediate); two: the half's base is a run-time value.
        Value ycol =
            splits == 1
                ? y.swizzleLdmatrix(half, l8, 16 * q)
                : y.swizzle(yrow, y.add(colBase, y.add(y.c(16 * q),
                                                       y.mul(half, y.c(8)))));
        SmallVector<Value> yb = y.ldmatrix(sY, yrow, ycol, true);
        for (int64_t hlf = 0; hlf < 2; ++hlf)
          acc[2 * q + hlf] =
              y.mma(af, {yb[2 * hlf], yb[2 * hlf + 1]}, acc[2 * q + hlf]);
      }
    }
    for (int64_t ri = 0; ri < 2; ++ri) {
      Value slot = y.add(y.add(y.mul(keyBlock, y.c(16)), g), y.c(8 * ri));
      Value j = emitLoadIndex(y.b, y.loc, sJ, ValueRange{y.add(slots, slot)});
      emitIf(y.b, y.loc, y.le(y.c(0), j), [&](OpBuilder &ab, Location al) {
        KB z{ab, al, elem};
        Value col0 = z.add(colBase, z.mul(quad, z.c(2)));
        Value addr =
            vectorAtomics ? address(z, dst, {bi, h, j, col0}) : Value();
        for (int64_t nt = 0; nt < nTiles; ++nt) {
          Value v0 = z.fmul(acc[nt][2 * ri], factor),
                v1 = z.fmul(acc[nt][2 * ri + 1], factor);
          if (vectorAtomics) {
            addPair(z, addr, 8 * nt * 4, v0, v1);
            continue;
          }
          Value col = z.add(col0, z.c(8 * nt));
          emitAtomicAdd(ab, al, dst, ValueRange{bi, h, j, col}, v0);
          emitAtomicAdd(ab, al, dst, ValueRange{bi, h, j, z.add(col, z.c(1))},
                        v1);
        }
      });
    }
  }
};
} // namespace

static void buildKernel(OpBuilder &b, Location loc, const GradKernelArgs &a,
                        int64_t k, int64_t w, int64_t d, int64_t dv,
                        int64_t rows, bool vectorAtomics, Type elem) {
  MLIRContext *ctx = b.getContext();
  KB x{b, loc, elem};
  auto wg = gpu::AddressSpaceAttr::get(ctx, gpu::AddressSpace::Workgroup);
  int64_t elemBytes = elem.getIntOrFloatBitWidth() / 8;
  GradSmem layout(rows, d, dv, elemBytes);
  Value smem = gpu::DynamicSharedMemoryOp::create(
      b, loc,
      MemRefType::get({ShapedType::kDynamic}, b.getI8Type(),
                      MemRefLayoutAttrInterface(), wg));
  Value smemAddr = memref::ExtractAlignedPointerAsIndexOp::create(b, loc, smem);
  Value pad =
      x.sub(x.mul(x.div(x.add(smemAddr, x.c(kSmemAlign - 1)), x.c(kSmemAlign)),
                  x.c(kSmemAlign)),
            smemAddr);
  auto view = [&](int64_t offset, ArrayRef<int64_t> shape, Type type) {
    return memref::ViewOp::create(
        b, loc, MemRefType::get(shape, type, MemRefLayoutAttrInterface(), wg),
        smem, x.add(pad, x.c(offset)), ValueRange{});
  };
  GradKernel kb{b,
                loc,
                a,
                k,
                w,
                d,
                dv,
                rows,
                vectorAtomics,
                elem,
                view(layout.q, {rows, d}, elem),
                view(layout.gradOut, {rows, dv}, elem),
                view(layout.k, {kKvBuffers * kKeyTile, d}, elem),
                view(layout.v, {kKvBuffers * kKeyTile, dv}, elem),
                view(layout.pg, {rows, kKeyTile}, elem),
                view(layout.ds, {rows, kKeyTile}, elem),
                view(layout.j, {kSlotBuffers * kKeyTile}, b.getI32Type()),
                view(layout.u, {kSlotBuffers * kKeyTile}, b.getF32Type())};
  kb.tid = gpu::ThreadIdOp::create(b, loc, gpu::Dimension::x);
  kb.lane = x.rem(kb.tid, x.c(32));
  kb.warp = x.div(kb.tid, x.c(32));
  Value blk = gpu::BlockIdOp::create(b, loc, gpu::Dimension::x);
  Value hy = gpu::BlockIdOp::create(b, loc, gpu::Dimension::y);
  kb.bi = gpu::BlockIdOp::create(b, loc, gpu::Dimension::z);
  Value numHeads = emitDim(b, loc, a.q, 1), kvHeads = emitDim(b, loc, a.key, 1);
  Value numQueries = emitDim(b, loc, a.q, 2),
        numKeys = emitDim(b, loc, a.key, 2);
  TileGeometry geo =
      TileGeometry::emit(b, loc, x.div(numHeads, kvHeads), numQueries, rows);
  kb.h = x.div(hy, geo.headSplits);
  Value split = x.rem(hy, geo.headSplits);
  kb.r = x.add(x.mul(kb.bi, kvHeads), kb.h);
  Value t0 = x.mul(blk, geo.blockQueries);
  Value firstPos = x.sub(numKeys, numQueries);
  kb.list = geo.emitListOf(b, loc, blk);
  Value count = a.lists
                    ? emitLoadIndex(b, loc, a.counts, ValueRange{kb.r, kb.list})
                    : x.c(0);
  Value ta = a.lists ? geo.emitListQuery(b, loc, kb.list) : t0;
  kb.keys = BlockKeys::emit(b, loc, count, t0, ta, geo.blockQueries, numQueries,
                            numKeys, w);
  Value numTiles =
      x.div(x.add(kb.keys.length, x.c(kKeyTile - 1)), x.c(kKeyTile));
  auto tileRow = [&](Value row) {
    return emitTileRow(b, loc, row, t0, split, geo.headsPerTile, geo.group,
                       geo.blockQueries, numQueries);
  };
  Value bi = kb.bi, h = kb.h, tid = kb.tid;

  // Q and dO rows (zero for rows that are no (query, head)).
  {
    SmallVector<Value> tokens;
    for (auto [dst, src, width] :
         {std::tuple{kb.sQ, a.q, d}, std::tuple{kb.sO, a.gradOut, dv}}) {
      int64_t chunks = width / kChunk;
      for (int64_t i = 0; i < rows * chunks / kb.threads(); ++i) {
        Value linear = x.add(tid, x.c(kb.threads() * i));
        Value row = x.div(linear, x.c(chunks));
        Value col = x.mul(x.rem(linear, x.c(chunks)), x.c(kChunk));
        TileRow tr = tileRow(row);
        Value hq =
            x.sel(tr.valid, x.add(x.mul(h, geo.group), tr.qhead), x.c(0));
        Value t = x.sel(tr.valid, tr.query, x.c(0));
        tokens.push_back(x.copy(dst, {row, x.swizzle(row, col)}, src,
                                {bi, hq, t, col}, tr.valid));
      }
    }
    x.waitCopies(tokens);
  }
  Value lane = kb.lane;
  kb.l16 = x.rem(lane, x.c(16));
  kb.l8 = x.rem(lane, x.c(8));
  kb.half = x.div(lane, x.c(16));
  kb.odd = x.rem(x.div(lane, x.c(8)), x.c(2));
  kb.half8 = x.mul(kb.half, x.c(8));
  kb.g = x.div(lane, x.c(4));
  kb.quad = x.rem(lane, x.c(4));
  for (int i = 0; i < 2; ++i) {
    Value row = x.add(x.add(x.mul(kb.warp, x.c(16)), kb.g), x.c(8 * i));
    TileRow tr = tileRow(row);
    Value pos = x.add(firstPos, tr.query);
    QueryThresholds th{tr.valid, pos, Value(), Value(), Value()};
    if (a.lists)
      th = a.thresholds.emitLoad(b, loc, kb.r, tr.query, tr.valid, pos);
    kb.rows[i] = {x.add(x.mul(h, geo.group), tr.qhead), tr.query,
                  th.castPositions(b, loc, b.getI32Type())};
  }
  Value scaleLog2 = x.fmul(a.scale, x.f(1.0 / std::log(2.0)));
  Value negInf = x.negInf();

  // Pass 1: per row (m, l, Delta l), m quad-uniform, l and Delta l the
  // lane's partial sums.
  SmallVector<Value> init1{negInf,   negInf,   x.f(0.0),
                           x.f(0.0), x.f(0.0), x.f(0.0)};
  SmallVector<Value> stats = kb.walkScores(
      b, loc, numTiles, init1, scaleLog2,
      [&](KB &y, KeyTileBufs bufs, Frags &s, Frags &dpv, ValueRange carried,
          SmallVector<Value> &next) {
        OpBuilder &lb = y.b;
        Location ll = y.loc;
        for (int64_t ri = 0; ri < 2; ++ri) {
          Value mx = negInf;
          for (int64_t nt = 0; nt < 8; ++nt)
            for (int64_t e = 0; e < 2; ++e)
              mx = y.fmax(mx, s[nt][2 * ri + e]);
          Value mNew = y.fmax(carried[ri], y.quadReduce(mx, /*isMax=*/true));
          Value mUse = y.sel(y.isNegInf(mNew), y.f(0.0), mNew);
          Value alpha = y.exp2Ftz(y.fsub(carried[ri], mUse));
          Value l = y.fmul(carried[2 + ri], alpha);
          Value dl = y.fmul(carried[4 + ri], alpha);
          for (int64_t nt = 0; nt < 8; ++nt)
            for (int64_t e = 0; e < 2; ++e) {
              int64_t reg = 2 * ri + e;
              Value pe = y.exp2Ftz(y.fsub(s[nt][reg], mUse));
              auto [j, u] = kb.keyAt(y, bufs.slots, nt, e);
              Value gate = emitGate(lb, ll, kb.rows[ri].th, j, u, w, k > 0);
              l = y.fadd(l, pe);
              dl = y.fadd(dl, y.fmul(y.fmul(pe, gate), dpv[nt][reg]));
            }
          next[ri] = mNew;
          next[2 + ri] = l;
          next[4 + ri] = dl;
        }
      });
  // lse in log2 units and Delta per row; a row without members has l = 0,
  // every P = exp2(-inf) = 0 and Delta = 0.
  Value lse[2], delta[2];
  for (int64_t ri = 0; ri < 2; ++ri) {
    Value m = stats[ri];
    Value l = x.quadReduce(stats[2 + ri], /*isMax=*/false);
    Value dl = x.quadReduce(stats[4 + ri], /*isMax=*/false);
    Value any = x.fgt(l, x.f(0.0));
    Value safeL = x.sel(any, l, x.f(1.0));
    lse[ri] =
        x.sel(any, x.fadd(m, math::Log2Op::create(b, loc, safeL)), x.f(0.0));
    delta[ri] = x.sel(any, arith::DivFOp::create(b, loc, dl, safeL), x.f(0.0));
  }

  // Pass 2: carried dq (d / 8 n-tiles x 4) and each row's support sum.
  int64_t qTiles = d / 8;
  SmallVector<Value> init2(qTiles * 4 + 2, x.f(0.0));
  SmallVector<Value> res = kb.walkScores(
      b, loc, numTiles, init2, scaleLog2,
      [&](KB &y, KeyTileBufs bufs, Frags &s, Frags &dpv, ValueRange carried,
          SmallVector<Value> &next) {
        OpBuilder &lb = y.b;
        Location ll = y.loc;
        // In place: s becomes dS and dpv becomes P g. dg = P dPv on the
        // selected support (0 < g < 1: window gates are 1) goes at once into
        // the rows' support sums and, summed over the warp's 16 rows (xor
        // over the lanes' row bits), into du by the lanes of row 0 where
        // nonzero.
        for (int64_t nt = 0; nt < 8; ++nt)
          for (int64_t e = 0; e < 2; ++e) {
            auto [j, u] = kb.keyAt(y, bufs.slots, nt, e);
            Value colSum = y.f(0.0);
            for (int64_t ri = 0; ri < 2; ++ri) {
              int64_t reg = 2 * ri + e;
              Value p = y.exp2Ftz(y.fsub(s[nt][reg], lse[ri]));
              Value gate = emitGate(lb, ll, kb.rows[ri].th, j, u, w, k > 0);
              if (kb.selects()) {
                Value inSupport =
                    y.andI(y.fgt(gate, y.f(0.0)), y.fgt(y.f(1.0), gate));
                Value dg = y.sel(inSupport, y.fmul(p, dpv[nt][reg]), y.f(0.0));
                next[qTiles * 4 + ri] = y.fadd(next[qTiles * 4 + ri], dg);
                colSum = y.fadd(colSum, dg);
              }
              Value dP = y.fmul(gate, dpv[nt][reg]);
              s[nt][reg] = y.fmul(p, y.fsub(dP, delta[ri]));
              dpv[nt][reg] = y.fmul(p, gate);
            }
            if (!kb.selects())
              continue;
            colSum = y.xorReduce(colSum, 4, 32);
            Value add =
                y.andI(y.eq(kb.g, y.c(0)),
                       arith::CmpFOp::create(lb, ll, arith::CmpFPredicate::UNE,
                                             colSum, y.f(0.0)));
            emitIf(lb, ll, add, [&](OpBuilder &ab, Location al) {
              Value jx =
                  arith::IndexCastOp::create(ab, al, ab.getIndexType(), j);
              emitAtomicAdd(ab, al, a.du, ValueRange{bi, h, jx}, colSum);
            });
          }
        kb.storeRowsKeys(y, kb.sPg, dpv);
        kb.storeRowsKeys(y, kb.sDs, s);
        // dq += dS K: dS is the A operand as P is in the forward's P V.
        for (int64_t kc = 0; kc < 4; ++kc) {
          SmallVector<Value> pa{y.pack(s[2 * kc][0], s[2 * kc][1]),
                                y.pack(s[2 * kc][2], s[2 * kc][3]),
                                y.pack(s[2 * kc + 1][0], s[2 * kc + 1][1]),
                                y.pack(s[2 * kc + 1][2], s[2 * kc + 1][3])};
          Value krow = y.add(y.add(kb.l16, y.c(16 * kc)), bufs.kv);
          for (int64_t q = 0; q < d / 16; ++q) {
            SmallVector<Value> kf = y.ldmatrix(
                kb.sK, krow, y.swizzleLdmatrix(kb.half, kb.l8, 16 * q), true);
            for (int64_t hlf = 0; hlf < 2; ++hlf) {
              int64_t ot = 2 * q + hlf;
              SmallVector<Value> o(next.begin() + 4 * ot,
                                   next.begin() + 4 * ot + 4);
              o = y.mma(pa, {kf[2 * hlf], kf[2 * hlf + 1]}, o);
              std::copy(o.begin(), o.end(), next.begin() + 4 * ot);
            }
          }
        }
        gpu::BarrierOp::create(lb, ll);
        kb.keysTimesRows(y, kb.sPg, kb.sO, dv, y.f(1.0), a.dvalue, bufs.slots);
        kb.keysTimesRows(y, kb.sDs, kb.sQ, d, a.scale, a.dkey, bufs.slots);
      });

  // dq = scale * (dS K) per valid row; the rows' support sums.
  for (int64_t ri = 0; ri < 2; ++ri) {
    const LaneRow &row = kb.rows[ri];
    Value sum = kb.selects()
                    ? x.quadReduce(res[qTiles * 4 + ri], /*isMax=*/false)
                    : Value();
    emitIf(b, loc, row.th.valid, [&](OpBuilder &sb, Location sl) {
      KB z{sb, sl, elem};
      for (int64_t ot = 0; ot < qTiles; ++ot) {
        Value v = vector::FromElementsOp::create(
            sb, sl, VectorType::get({2}, sb.getF32Type()),
            ValueRange{z.fmul(res[4 * ot + 2 * ri], a.scale),
                       z.fmul(res[4 * ot + 2 * ri + 1], a.scale)});
        Value col = z.add(z.mul(kb.quad, z.c(2)), z.c(8 * ot));
        vector::StoreOp::create(sb, sl, v, a.dq,
                                ValueRange{bi, row.hq, row.t, col});
      }
      if (sum)
        emitIf(sb, sl, z.eq(kb.quad, z.c(0)), [&](OpBuilder &ab, Location al) {
          emitAtomicAdd(ab, al, a.sums, ValueRange{bi, h, row.t}, sum);
        });
    });
  }
}

void sparsek::emitMmaSyncGradTiles(OpBuilder &b, Location loc,
                                   const GradTileProblem &p, ModuleOp module) {
  SelectAttentionGradOp op = p.op;
  auto qType = cast<MemRefType>(op.getQuery().getType());
  Type elem = qType.getElementType();
  int64_t d = qType.getDimSize(3);
  int64_t dv = cast<MemRefType>(op.getValue().getType()).getDimSize(3);
  int64_t rows = p.geo.rows;
  GradSmem layout(rows, d, dv, elem.getIntOrFloatBitWidth() / 8);
  Value smemBytes =
      arith::ConstantIntOp::create(b, loc, b.getI32Type(), layout.bytes);
  const FusedSizes &z = p.sizes;
  Value heads = arith::MulIOp::create(b, loc, z.hkv, p.geo.headSplits);
  emitKernelLaunch(
      b, loc, module, "sparsek_select_attention_grad_tiles",
      GradKernelArgs::fromProblem(p).values(), rows * 2, TypeRange{}, smemBytes,
      gpu::KernelDim3{p.geo.numBlocks, heads, z.batch},
      {p.geo.numBlocks, heads, z.batch, z.hq},
      [&](OpBuilder &kb, Location kl, ValueRange args, ValueRange) {
        buildKernel(kb, kl,
                    GradKernelArgs::fromKernel(args, static_cast<bool>(p.keys)),
                    p.k, p.w, d, dv, rows, p.vectorAtomics, elem);
      });
}
