//===- LoopUtils.cpp - IR-building helpers shared by the loop lowerings ---===//
#include "LoopUtils.h"
#include "TopKHeap.h"

#include "sparsek/Conversion/SparseKToLoops/Status.h"

#include "mlir/Dialect/Affine/IR/AffineOps.h"
#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"

using namespace mlir;
using namespace mlir::sparsek;

Value sparsek::emitIndex(OpBuilder &b, Location loc, int64_t v) {
  return arith::ConstantIndexOp::create(b, loc, v);
}

Value sparsek::emitF32(OpBuilder &b, Location loc, double v) {
  return arith::ConstantFloatOp::create(b, loc, b.getF32Type(),
                                        APFloat(static_cast<float>(v)));
}

Value sparsek::emitBool(OpBuilder &b, Location loc, bool v) {
  return arith::ConstantIntOp::create(b, loc, b.getI1Type(), v);
}

Value sparsek::emitDim(OpBuilder &b, Location loc, Value buf, int64_t d) {
  auto type = cast<MemRefType>(buf.getType());
  if (!type.isDynamicDim(d))
    return emitIndex(b, loc, type.getDimSize(d));
  return memref::DimOp::create(b, loc, buf, d);
}

Value sparsek::emitAnd(OpBuilder &b, Location loc, ArrayRef<Value> conds) {
  Value all;
  for (Value c : conds) {
    // Constant-true terms (static checks) would only clutter the IR.
    if (auto cst = getConstantIntValue(c); cst && *cst)
      continue;
    all = all ? arith::AndIOp::create(b, loc, all, c).getResult() : c;
  }
  return all ? all : emitBool(b, loc, true);
}

Value sparsek::emitDimsAllEqual(OpBuilder &b, Location loc,
                                ArrayRef<DimPair> pairs) {
  SmallVector<Value> conds;
  for (auto [a, ad, c, cd] : pairs) {
    if (!cast<ShapedType>(a.getType()).isDynamicDim(ad) &&
        !cast<ShapedType>(c.getType()).isDynamicDim(cd))
      continue;
    conds.push_back(emitDimsEqual(b, loc, a, ad, c, cd));
  }
  return emitAnd(b, loc, conds);
}

Value sparsek::emitLoadF32(OpBuilder &b, Location loc, Value buf,
                           ValueRange indices) {
  Value v = memref::LoadOp::create(b, loc, buf, indices);
  if (v.getType().isF32())
    return v;
  return arith::ExtFOp::create(b, loc, b.getF32Type(), v);
}

void sparsek::emitStoreF32(OpBuilder &b, Location loc, Value v, Value buf,
                           ValueRange indices) {
  Type elem = cast<MemRefType>(buf.getType()).getElementType();
  if (elem != v.getType())
    v = arith::TruncFOp::create(b, loc, elem, v);
  memref::StoreOp::create(b, loc, v, buf, indices);
}

Value sparsek::emitLoadIndex(OpBuilder &b, Location loc, Value buf,
                             ValueRange indices) {
  Value v = memref::LoadOp::create(b, loc, buf, indices);
  if (v.getType().isIndex())
    return v;
  // index_cast sign-extends, which keeps -1 padding negative.
  return arith::IndexCastOp::create(b, loc, b.getIndexType(), v);
}

void sparsek::emitIf(OpBuilder &b, Location loc, Value cond,
                     function_ref<void(OpBuilder &, Location)> thenBody) {
  scf::IfOp::create(b, loc, cond, [&](OpBuilder &nb, Location nl) {
    thenBody(nb, nl);
    scf::YieldOp::create(nb, nl);
  });
}

void sparsek::emitFor(OpBuilder &b, Location loc, Value lb, Value ub,
                      function_ref<void(OpBuilder &, Location, Value)> body) {
  scf::ForOp::create(b, loc, lb, ub, emitIndex(b, loc, 1), ValueRange{},
                     [&](OpBuilder &nb, Location nl, Value iv, ValueRange) {
                       body(nb, nl, iv);
                       scf::YieldOp::create(nb, nl);
                     });
}

SmallVector<Value> sparsek::emitForCarrying(
    OpBuilder &b, Location loc, Value lb, Value ub, ValueRange init,
    function_ref<SmallVector<Value>(OpBuilder &, Location, Value, ValueRange)>
        body) {
  auto loop = scf::ForOp::create(
      b, loc, lb, ub, emitIndex(b, loc, 1), init,
      [&](OpBuilder &nb, Location nl, Value iv, ValueRange args) {
        scf::YieldOp::create(nb, nl, body(nb, nl, iv, args));
      });
  return SmallVector<Value>(loop.getResults());
}

SmallVector<Value> sparsek::emitForCarryingUnrolled(
    OpBuilder &b, Location loc, int64_t factor, Value lb, Value ub,
    ValueRange init,
    function_ref<SmallVector<Value>(OpBuilder &, Location, Value, ValueRange)>
        body) {
  if (factor <= 1)
    return emitForCarrying(b, loc, lb, ub, init, body);
  // mainEnd = lb + floor((ub - lb) / factor) * factor, for ub >= lb; an
  // empty range (ub <= lb) gives lb, so both loops run no iteration.
  Value f = emitIndex(b, loc, factor);
  Value span = arith::MaxSIOp::create(
      b, loc, arith::SubIOp::create(b, loc, ub, lb), emitIndex(b, loc, 0));
  Value whole =
      arith::MulIOp::create(b, loc, arith::DivUIOp::create(b, loc, span, f), f);
  Value mainEnd = arith::AddIOp::create(b, loc, lb, whole);
  auto main = scf::ForOp::create(
      b, loc, lb, mainEnd, f, init,
      [&](OpBuilder &nb, Location nl, Value iv, ValueRange args) {
        SmallVector<Value> carried(args);
        for (int64_t i = 0; i < factor; ++i) {
          Value at =
              i == 0 ? iv
                     : arith::AddIOp::create(nb, nl, iv, emitIndex(nb, nl, i))
                           .getResult();
          carried = body(nb, nl, at, carried);
        }
        scf::YieldOp::create(nb, nl, carried);
      });
  return emitForCarrying(b, loc, mainEnd, ub, main.getResults(), body);
}

void sparsek::emitIfNonEmpty(OpBuilder &b, Location loc, ArrayRef<Value> sizes,
                             function_ref<void(OpBuilder &, Location)> body) {
  SmallVector<Value> nonEmpty;
  for (Value d : sizes) {
    std::optional<int64_t> cst = getConstantIntValue(d);
    if (cst && *cst == 0)
      return;
    if (!cst)
      nonEmpty.push_back(arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ne,
                                               d, emitIndex(b, loc, 0)));
  }
  if (nonEmpty.empty())
    return body(b, loc);
  emitIf(b, loc, emitAnd(b, loc, nonEmpty), body);
}

void sparsek::emitParallelBlocks(
    OpBuilder &b, Location loc, ArrayRef<Value> dims, Value n, int64_t block,
    function_ref<void(OpBuilder &, Location, ValueRange, Value)> body) {
  SmallVector<Value> sizes(dims);
  sizes.push_back(n);
  emitIfNonEmpty(b, loc, sizes, [&](OpBuilder &nb, Location nl) {
    Value zero = emitIndex(nb, nl, 0), one = emitIndex(nb, nl, 1);
    // The blocks of n first: gpu-map-parallel-loops gives them the grid's
    // x, whose limit is 2^31 - 1 blocks, and the dims y and z (65535 each).
    // With the blocks in z, a long sequence's selection launches failed.
    SmallVector<Value> lbs(sizes.size(), zero), ubs{n},
        steps(sizes.size(), one);
    ubs.append(dims.begin(), dims.end());
    steps.front() = emitIndex(nb, nl, block);
    scf::ParallelOp::create(
        nb, nl, lbs, ubs, steps,
        [&](OpBuilder &b1, Location l1, ValueRange outer) {
          // min(block, n - start) as an affine.min: the inner bound depends
          // on the outer loop, so canonicalization does not merge the two
          // loops into one (whose extra dimension gpu-map-parallel-loops
          // would run sequentially in one thread), and
          // convert-parallel-loops-to-gpu reads the constant `block` off it
          // as the block size, guarding the last block itself.
          AffineExpr d0 = getAffineDimExpr(0, b1.getContext());
          AffineExpr s0 = getAffineSymbolExpr(0, b1.getContext());
          AffineMap map = AffineMap::get(
              1, 1, {getAffineConstantExpr(block, b1.getContext()), s0 - d0},
              b1.getContext());
          Value count = affine::AffineMinOp::create(
              b1, l1, map, ValueRange{outer.front(), n});
          scf::ParallelOp::create(
              b1, l1, ValueRange{zero}, ValueRange{count}, ValueRange{one},
              [&](OpBuilder &b2, Location l2, ValueRange inner) {
                Value x =
                    arith::AddIOp::create(b2, l2, outer.front(), inner[0]);
                body(b2, l2, outer.drop_front(), x);
              });
        });
  });
}

void sparsek::emitParallelQueryBlocks(
    OpBuilder &b, Location loc, Value d0, Value d1, Value numQueries,
    int64_t block,
    function_ref<void(OpBuilder &, Location, Value, Value, Value)> body) {
  emitParallelBlocks(b, loc, {d0, d1}, numQueries, block,
                     [&](OpBuilder &nb, Location nl, ValueRange ivs, Value t) {
                       body(nb, nl, ivs[0], ivs[1], t);
                     });
}

Value sparsek::emitGroupSize(OpBuilder &b, Location loc, Value hq, Value hkv,
                             Value &ok) {
  auto cst = [](Value v) { return getConstantIntValue(v); };
  if (auto q = cst(hq), kv = cst(hkv); q && kv && *kv > 0) {
    // Both static: the verifier already required an exact split.
    ok = emitBool(b, loc, true);
    return emitIndex(b, loc, *q / *kv);
  }
  Value one = emitIndex(b, loc, 1);
  Value safe = arith::MaxUIOp::create(b, loc, hkv, one);
  Value g = arith::DivUIOp::create(b, loc, hq, safe);
  Value back = arith::MulIOp::create(b, loc, g, hkv);
  ok = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq, back, hq);
  return g;
}

Value sparsek::emitInRange(OpBuilder &b, Location loc, Value x, Value lo,
                           Value hi) {
  Value aboveLo =
      arith::CmpIOp::create(b, loc, arith::CmpIPredicate::sge, x, lo);
  Value belowHi =
      arith::CmpIOp::create(b, loc, arith::CmpIPredicate::sle, x, hi);
  return arith::AndIOp::create(b, loc, aboveLo, belowHi);
}

SmallVector<Value> sparsek::emitForListedCandidates(
    OpBuilder &b, Location loc, Value indices, Value bi, Value h, Value t,
    Value k, Value lastCandidate, ValueRange init,
    function_ref<SmallVector<Value>(OpBuilder &, Location, Value, Value,
                                    ValueRange)>
        body) {
  Value zero = emitIndex(b, loc, 0);
  return emitForCarrying(
      b, loc, zero, k, init,
      [&](OpBuilder &nb, Location nl, Value i, ValueRange carried) {
        Value j = emitLoadIndex(nb, nl, indices, {bi, h, t, i});
        return emitIfElse(
            nb, nl, emitInRange(nb, nl, j, zero, lastCandidate),
            [&](OpBuilder &tb, Location tl) {
              return body(tb, tl, j, i, carried);
            },
            [&](OpBuilder &, Location) { return SmallVector<Value>(carried); });
      });
}

static SmallVector<Value, 4> withLast(ArrayRef<Value> lead, Value i) {
  SmallVector<Value, 4> all(lead);
  all.push_back(i);
  return all;
}

Value Row::loadF32(OpBuilder &b, Location loc, Value i) const {
  return emitLoadF32(b, loc, buf, withLast(lead, i));
}

void Row::storeF32(OpBuilder &b, Location loc, Value v, Value i) const {
  emitStoreF32(b, loc, v, buf, withLast(lead, i));
}

void sparsek::emitZeroFill(OpBuilder &b, Location loc, Value buf) {
  auto type = cast<MemRefType>(buf.getType());
  SmallVector<Value> lbs, ubs, steps;
  for (int64_t d = 0; d < type.getRank(); ++d) {
    lbs.push_back(emitIndex(b, loc, 0));
    ubs.push_back(emitDim(b, loc, buf, d));
    steps.push_back(emitIndex(b, loc, 1));
  }
  Value zero = emitF32(b, loc, 0.0);
  scf::buildLoopNest(b, loc, lbs, ubs, steps,
                     [&](OpBuilder &nb, Location nl, ValueRange ivs) {
                       memref::StoreOp::create(nb, nl, zero, buf, ivs);
                     });
}

void sparsek::emitAccumulate(OpBuilder &b, Location loc, Value buf,
                             ValueRange indices, Value v) {
  Value old = memref::LoadOp::create(b, loc, buf, indices);
  memref::StoreOp::create(b, loc, arith::AddFOp::create(b, loc, old, v), buf,
                          indices);
}

void sparsek::emitAtomicAdd(OpBuilder &b, Location loc, Value buf,
                            ValueRange indices, Value v) {
  memref::AtomicRMWOp::create(b, loc, arith::AtomicRMWKind::addf, v, buf,
                              indices);
}

Value sparsek::emitArriveLast(OpBuilder &b, Location loc, Value counters,
                              ValueRange indices, Value participants) {
  Type i32 = b.getI32Type();
  Value one = arith::ConstantIntOp::create(b, loc, i32, 1);
  Value before = memref::AtomicRMWOp::create(b, loc, arith::AtomicRMWKind::addi,
                                             one, counters, indices);
  Value lastBefore = arith::IndexCastOp::create(
      b, loc, i32,
      arith::SubIOp::create(b, loc, participants, emitIndex(b, loc, 1)));
  Value last = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq, before,
                                     lastBefore);
  emitIf(b, loc, last, [&](OpBuilder &nb, Location nl) {
    memref::StoreOp::create(
        nb, nl, arith::ConstantIntOp::create(nb, nl, nb.getI32Type(), 0),
        counters, indices);
  });
  return last;
}

void sparsek::emitDeviceFence(OpBuilder &b, Location loc,
                              LLVM::AtomicOrdering ordering) {
  LLVM::FenceOp::create(b, loc, ordering, "device");
}

void sparsek::emitParallelZeroFill(OpBuilder &b, Location loc, Value buf,
                                   int64_t block) {
  auto type = cast<MemRefType>(buf.getType());
  int64_t rank = type.getRank();
  int64_t lead = std::min<int64_t>(rank - 1, 2);
  SmallVector<Value> dims;
  for (int64_t d = 0; d < lead; ++d)
    dims.push_back(emitDim(b, loc, buf, d));
  Value zero = arith::ConstantOp::create(
      b, loc, b.getFloatAttr(type.getElementType(), 0.0));
  emitParallelBlocks(b, loc, dims, emitDim(b, loc, buf, lead), block,
                     [&](OpBuilder &nb, Location nl, ValueRange ivs, Value x) {
                       SmallVector<Value> lbs, ubs, steps;
                       for (int64_t d = lead + 1; d < rank; ++d) {
                         lbs.push_back(emitIndex(nb, nl, 0));
                         ubs.push_back(emitDim(nb, nl, buf, d));
                         steps.push_back(emitIndex(nb, nl, 1));
                       }
                       scf::buildLoopNest(
                           nb, nl, lbs, ubs, steps,
                           [&](OpBuilder &ib, Location il, ValueRange rest) {
                             SmallVector<Value> at(ivs);
                             at.push_back(x);
                             llvm::append_range(at, rest);
                             memref::StoreOp::create(ib, il, zero, buf, at);
                           });
                     });
}

void sparsek::emitAtomicAxpy(OpBuilder &b, Location loc, Value factor,
                             const Row &x, const Row &acc, Value n) {
  emitFor(b, loc, emitIndex(b, loc, 0), n,
          [&](OpBuilder &nb, Location nl, Value i) {
            Value xi = x.loadF32(nb, nl, i);
            emitAtomicAdd(nb, nl, acc.buf, withLast(acc.lead, i),
                          arith::MulFOp::create(nb, nl, factor, xi));
          });
}

void sparsek::emitAxpy(OpBuilder &b, Location loc, Value factor, const Row &x,
                       const Row &acc, Value n) {
  emitFor(b, loc, emitIndex(b, loc, 0), n,
          [&](OpBuilder &nb, Location nl, Value i) {
            Value xi = x.loadF32(nb, nl, i);
            emitAccumulate(nb, nl, acc.buf, withLast(acc.lead, i),
                           arith::MulFOp::create(nb, nl, factor, xi));
          });
}

Value sparsek::emitDotF32(OpBuilder &b, Location loc, const Row &x,
                          const Row &y, Value n) {
  Value zero = emitF32(b, loc, 0.0);
  return emitForCarrying(b, loc, emitIndex(b, loc, 0), n, zero,
                         [&](OpBuilder &nb, Location nl, Value i,
                             ValueRange sum) -> SmallVector<Value> {
                           Value xi = x.loadF32(nb, nl, i);
                           Value yi = y.loadF32(nb, nl, i);
                           Value p = arith::MulFOp::create(nb, nl, xi, yi);
                           return {arith::AddFOp::create(nb, nl, sum[0], p)};
                         })[0];
}

bool sparsek::rowsKeepAlignment(Value buf) {
  auto type = dyn_cast<MemRefType>(buf.getType());
  if (!type || !type.getLayout().isIdentity() || type.getRank() == 0 ||
      type.isDynamicDim(type.getRank() - 1))
    return false;
  unsigned bits = type.getElementTypeBitWidth();
  int64_t rowBytes = type.getDimSize(type.getRank() - 1) * bits / 8;
  return bits % 8 == 0 && rowBytes % kRowAlignment == 0;
}

Value sparsek::emitDataAligned(OpBuilder &b, Location loc, Value buf,
                               int64_t bytes) {
  // Identity layout: the offset is 0, the aligned pointer is where the data
  // starts.
  Value ptr = memref::ExtractAlignedPointerAsIndexOp::create(b, loc, buf);
  Value rem = arith::RemUIOp::create(b, loc, ptr, emitIndex(b, loc, bytes));
  return arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq, rem,
                               emitIndex(b, loc, 0));
}

Value sparsek::emitRowAlignmentCheck(OpBuilder &b, Location loc,
                                     Operation *anchor, ArrayRef<Value> rows,
                                     bool &aligned) {
  aligned = llvm::all_of(rows, rowsKeepAlignment);
  if (!aligned)
    return emitBool(b, loc, true);
  SmallVector<Value> conds;
  for (Value buf : rows)
    conds.push_back(emitDataAligned(b, loc, buf));
  return emitCheck(b, loc, anchor, emitAnd(b, loc, conds),
                   SPARSEK_ERROR_MISALIGNED);
}

Value sparsek::emitQueriesFitKeys(OpBuilder &b, Location loc, Operation *anchor,
                                  Value numQueries, Value numKeys) {
  if (getConstantIntValue(numQueries) && getConstantIntValue(numKeys))
    return emitBool(b, loc, true);
  Value fits = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ule,
                                     numQueries, numKeys);
  return emitCheck(b, loc, anchor, fits, SPARSEK_ERROR_QUERIES_EXCEED_KEYS);
}

Value sparsek::emitFirstTrue(
    OpBuilder &b, Location loc, Value lo, Value hi,
    function_ref<Value(OpBuilder &, Location, Value)> pred) {
  Type index = b.getIndexType();
  auto loop = scf::WhileOp::create(
      b, loc, TypeRange{index, index}, ValueRange{lo, hi},
      [&](OpBuilder &nb, Location nl, ValueRange args) {
        Value more = arith::CmpIOp::create(nb, nl, arith::CmpIPredicate::ult,
                                           args[0], args[1]);
        scf::ConditionOp::create(nb, nl, more, args);
      },
      [&](OpBuilder &nb, Location nl, ValueRange args) {
        Value mid = arith::DivUIOp::create(
            nb, nl, arith::AddIOp::create(nb, nl, args[0], args[1]),
            emitIndex(nb, nl, 2));
        Value holds = pred(nb, nl, mid);
        Value nextLo = arith::SelectOp::create(
            nb, nl, holds, args[0],
            arith::AddIOp::create(nb, nl, mid, emitIndex(nb, nl, 1)));
        Value nextHi = arith::SelectOp::create(nb, nl, holds, mid, args[1]);
        scf::YieldOp::create(nb, nl, ValueRange{nextLo, nextHi});
      });
  return loop.getResult(0);
}

SmallVector<Value> sparsek::emitFirstTrueMany(
    OpBuilder &b, Location loc, Value lo, Value hi, unsigned count,
    function_ref<Value(OpBuilder &, Location, unsigned, Value)> pred) {
  if (count == 0)
    return {};
  Type index = b.getIndexType();
  // Carried: lo and hi of each search.
  SmallVector<Value> init;
  for (unsigned i = 0; i < count; ++i)
    init.append({lo, hi});
  auto loop = scf::WhileOp::create(
      b, loc, SmallVector<Type>(2 * count, index), init,
      [&](OpBuilder &nb, Location nl, ValueRange args) {
        Value more = emitBool(nb, nl, false);
        for (unsigned i = 0; i < count; ++i)
          more = arith::OrIOp::create(
              nb, nl, more,
              arith::CmpIOp::create(nb, nl, arith::CmpIPredicate::ult,
                                    args[2 * i], args[2 * i + 1]));
        scf::ConditionOp::create(nb, nl, more, args);
      },
      [&](OpBuilder &nb, Location nl, ValueRange args) {
        // anyMid: some active search's midpoint (the loop runs only while
        // one is).
        SmallVector<Value> active, mids;
        Value anyMid;
        for (unsigned i = 0; i < count; ++i) {
          Value l = args[2 * i], h = args[2 * i + 1];
          active.push_back(
              arith::CmpIOp::create(nb, nl, arith::CmpIPredicate::ult, l, h));
          mids.push_back(arith::DivUIOp::create(
              nb, nl, arith::AddIOp::create(nb, nl, l, h),
              emitIndex(nb, nl, 2)));
          anyMid = anyMid ? arith::SelectOp::create(nb, nl, active.back(),
                                                    mids.back(), anyMid)
                                .getResult()
                          : mids.back();
        }
        SmallVector<Value> next;
        for (unsigned i = 0; i < count; ++i) {
          Value at =
              arith::SelectOp::create(nb, nl, active[i], mids[i], anyMid);
          Value holds = pred(nb, nl, i, at);
          Value l = args[2 * i], h = args[2 * i + 1];
          Value up = arith::AndIOp::create(
              nb, nl, active[i],
              arith::XOrIOp::create(nb, nl, holds, emitBool(nb, nl, true)));
          Value down = arith::AndIOp::create(nb, nl, active[i], holds);
          next.push_back(arith::SelectOp::create(
              nb, nl, up,
              arith::AddIOp::create(nb, nl, mids[i], emitIndex(nb, nl, 1)), l));
          next.push_back(arith::SelectOp::create(nb, nl, down, mids[i], h));
        }
        scf::YieldOp::create(nb, nl, next);
      });
  SmallVector<Value> firsts;
  for (unsigned i = 0; i < count; ++i)
    firsts.push_back(loop.getResult(2 * i));
  return firsts;
}
