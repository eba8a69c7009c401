//===- TopKHeap.cpp - Binary heaps on scratch memrefs as scf loops -------===//
#include "TopKHeap.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"

using namespace mlir;
using namespace mlir::sparsek;

SmallVector<Value> sparsek::emitIfElse(OpBuilder &b, Location loc, Value cond,
                                       BranchBuilder thenBuilder,
                                       BranchBuilder elseBuilder) {
  auto ifOp = scf::IfOp::create(
      b, loc, cond,
      [&](OpBuilder &nb, Location nl) {
        scf::YieldOp::create(nb, nl, thenBuilder(nb, nl));
      },
      [&](OpBuilder &nb, Location nl) {
        scf::YieldOp::create(nb, nl, elseBuilder(nb, nl));
      });
  return SmallVector<Value>(ifOp.getResults());
}

static SmallVector<Value> concat(ValueRange head, ValueRange tail) {
  SmallVector<Value> all(head);
  llvm::append_range(all, tail);
  return all;
}

ScratchHeap::ScratchHeap(SmallVector<Value> arrays, Order precedes)
    : arrays(std::move(arrays)), precedes(std::move(precedes)) {
  for (Value a : this->arrays)
    types.push_back(cast<MemRefType>(a.getType()).getElementType());
}

SmallVector<Value> ScratchHeap::emitLoad(OpBuilder &b, Location loc,
                                         Value slot) const {
  SmallVector<Value> entry;
  for (Value a : arrays)
    entry.push_back(memref::LoadOp::create(b, loc, a, slot));
  return entry;
}

void ScratchHeap::emitStore(OpBuilder &b, Location loc, ValueRange entry,
                            Value slot) const {
  for (auto [v, a] : llvm::zip_equal(entry, arrays))
    memref::StoreOp::create(b, loc, v, a, slot);
}

SmallVector<Value> ScratchHeap::emitTop(OpBuilder &b, Location loc) const {
  return emitLoad(b, loc, emitIndex(b, loc, 0));
}

// Sifting moves a hole instead of swapping: each step copies one entry, and
// `entry` is stored once where the hole stops. The loop condition forwards
// the neighbour it compared against, so every entry is loaded once.
void ScratchHeap::emitMoveHole(OpBuilder &b, Location loc, Value start,
                               ValueRange entry, HoleStep step) const {
  Type indexType = b.getIndexType();
  // Carried from the condition: (hole, neighbour, neighbour's entry).
  SmallVector<Type> carried{indexType, indexType};
  llvm::append_range(carried, types);
  auto loop = scf::WhileOp::create(
      b, loc, carried, ValueRange{start},
      [&](OpBuilder &nb, Location nl, ValueRange args) {
        Value hole = args[0];
        auto [exists, neighbourOf] = step(nb, nl, hole);
        SmallVector<Value> next = emitIfElse(
            nb, nl, exists,
            [&](OpBuilder &tb, Location tl) {
              auto [slot, moves] = neighbourOf(tb, tl);
              SmallVector<Value> other = emitLoad(tb, tl, slot);
              return concat({moves(tb, tl, other), slot}, other);
            },
            [&](OpBuilder &eb, Location el) {
              return concat({emitBool(eb, el, false), hole}, entry);
            });
        scf::ConditionOp::create(nb, nl, next[0],
                                 concat({hole}, ArrayRef(next).drop_front()));
      },
      [&](OpBuilder &nb, Location nl, ValueRange args) {
        emitStore(nb, nl, args.drop_front(2), args[0]);
        scf::YieldOp::create(nb, nl, args[1]);
      });
  emitStore(b, loc, entry, loop.getResult(0));
}

Value ScratchHeap::emitPush(OpBuilder &b, Location loc, Value size,
                            ValueRange entry) const {
  // The hole starts at the new last slot and rises while `entry` precedes
  // the parent, which moves down.
  emitMoveHole(
      b, loc, size, entry,
      [&](OpBuilder &nb, Location nl, Value hole) -> HoleNeighbour {
        Value hasParent = arith::CmpIOp::create(
            nb, nl, arith::CmpIPredicate::ugt, hole, emitIndex(nb, nl, 0));
        return {
            hasParent, [&, hole](OpBuilder &tb, Location tl) -> NeighbourMove {
              Value one = emitIndex(tb, tl, 1);
              Value two = emitIndex(tb, tl, 2);
              Value above = arith::SubIOp::create(tb, tl, hole, one);
              Value parent = arith::DivUIOp::create(tb, tl, above, two);
              return {parent, [&](OpBuilder &mb, Location ml, ValueRange up) {
                        return precedes(mb, ml, entry, up);
                      }};
            }};
      });
  return arith::AddIOp::create(b, loc, size, emitIndex(b, loc, 1));
}

void ScratchHeap::emitReplaceTop(OpBuilder &b, Location loc, Value size,
                                 ValueRange entry) const {
  emitSiftDown(b, loc, size, emitIndex(b, loc, 0), entry);
}

void ScratchHeap::emitSiftDown(OpBuilder &b, Location loc, Value size,
                               Value slot, ValueRange entry) const {
  // The hole starts at `slot` and sinks while the child that precedes its
  // sibling also precedes `entry`; that child moves up.
  emitMoveHole(
      b, loc, slot, entry,
      [&](OpBuilder &nb, Location nl, Value hole) -> HoleNeighbour {
        Value one = emitIndex(nb, nl, 1);
        Value left = arith::AddIOp::create(
            nb, nl, arith::ShLIOp::create(nb, nl, hole, one), one);
        Value hasLeft = arith::CmpIOp::create(nb, nl, arith::CmpIPredicate::ult,
                                              left, size);
        return {hasLeft,
                [&, left, one](OpBuilder &tb, Location tl) -> NeighbourMove {
                  // The right child is loaded only when it exists.
                  Value right = arith::AddIOp::create(tb, tl, left, one);
                  Value hasRight = arith::CmpIOp::create(
                      tb, tl, arith::CmpIPredicate::ult, right, size);
                  Value child = emitIfElse(
                      tb, tl, hasRight,
                      [&](OpBuilder &rb, Location rl) {
                        SmallVector<Value> r = emitLoad(rb, rl, right);
                        SmallVector<Value> l = emitLoad(rb, rl, left);
                        Value rightFirst = precedes(rb, rl, r, l);
                        return SmallVector<Value>{arith::SelectOp::create(
                            rb, rl, rightFirst, right, left)};
                      },
                      [&](OpBuilder &, Location) {
                        return SmallVector<Value>{left};
                      })[0];
                  return {child,
                          [&](OpBuilder &mb, Location ml, ValueRange down) {
                            return precedes(mb, ml, down, entry);
                          }};
                }};
      });
}

Value ScratchHeap::emitPop(OpBuilder &b, Location loc, Value size) const {
  // The last entry refills the root's slot in the heap one shorter.
  Value last = arith::SubIOp::create(b, loc, size, emitIndex(b, loc, 1));
  SmallVector<Value> moved = emitLoad(b, loc, last);
  emitReplaceTop(b, loc, last, moved);
  return last;
}

SmallVector<Value> ScratchHeap::emitPopWhile(OpBuilder &b, Location loc,
                                             Value size, ValueRange carried,
                                             TopTest test, PopFold fold) const {
  SmallVector<Value> inits = concat({size}, carried);
  SmallVector<Type> loopTypes = llvm::to_vector(ValueRange(inits).getTypes());
  auto loop = scf::WhileOp::create(
      b, loc, loopTypes, inits,
      [&](OpBuilder &nb, Location nl, ValueRange args) {
        Value nonEmpty = arith::CmpIOp::create(
            nb, nl, arith::CmpIPredicate::ugt, args[0], emitIndex(nb, nl, 0));
        Value more = emitIfElse(
            nb, nl, nonEmpty,
            [&](OpBuilder &tb, Location tl) {
              return SmallVector<Value>{test(tb, tl, emitTop(tb, tl))};
            },
            [&](OpBuilder &eb, Location el) {
              return SmallVector<Value>{emitBool(eb, el, false)};
            })[0];
        scf::ConditionOp::create(nb, nl, more, args);
      },
      [&](OpBuilder &nb, Location nl, ValueRange args) {
        SmallVector<Value> top = emitTop(nb, nl);
        Value popped = emitPop(nb, nl, args[0]);
        scf::YieldOp::create(
            nb, nl, concat({popped}, fold(nb, nl, top, args.drop_front())));
      });
  return SmallVector<Value>(loop.getResults());
}

Value sparsek::emitStronger(OpBuilder &b, Location loc, Value xs, Value xp,
                            Value ys, Value yp) {
  Value higher =
      arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OGT, xs, ys);
  Value equal =
      arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OEQ, xs, ys);
  Value earlier =
      arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult, xp, yp);
  return arith::OrIOp::create(b, loc, higher,
                              arith::AndIOp::create(b, loc, equal, earlier));
}

ScratchHeap sparsek::makePoolHeap(Value scores, Value positions) {
  return ScratchHeap({scores, positions}, [](OpBuilder &b, Location loc,
                                             ValueRange x, ValueRange y) {
    // x sits above y when it is the weaker one.
    return emitStronger(b, loc, y[0], y[1], x[0], x[1]);
  });
}

Value sparsek::emitPoolOffer(
    OpBuilder &b, Location loc, const ScratchHeap &pool, int64_t k, Value size,
    Value score, Value pos,
    llvm::function_ref<void(OpBuilder &, Location, Value)> onPush,
    llvm::function_ref<void(OpBuilder &, Location, Value, ValueRange)>
        onEvict) {
  Value notFull = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult, size,
                                        emitIndex(b, loc, k));
  return emitIfElse(
      b, loc, notFull,
      [&](OpBuilder &nb, Location nl) -> SmallVector<Value> {
        if (onPush)
          onPush(nb, nl, size);
        return {pool.emitPush(nb, nl, size, ValueRange{score, pos})};
      },
      [&](OpBuilder &nb, Location nl) -> SmallVector<Value> {
        SmallVector<Value> weakest = pool.emitTop(nb, nl);
        Value beats = arith::CmpFOp::create(nb, nl, arith::CmpFPredicate::OGT,
                                            score, weakest[0]);
        emitIf(nb, nl, beats, [&](OpBuilder &tb, Location tl) {
          pool.emitReplaceTop(tb, tl, size, ValueRange{score, pos});
          if (onEvict)
            onEvict(tb, tl, size, weakest);
        });
        return {size};
      })[0];
}
