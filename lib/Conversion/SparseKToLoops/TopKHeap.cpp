//===- TopKHeap.cpp - Binary heaps on scratch memrefs, emitted as scf loops
//===//
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

// The loops below move a hole instead of swapping: each step copies one
// entry, and `entry` is stored once where the hole stops. The loop condition
// forwards the neighbour it compared against, so it is loaded once.

Value ScratchHeap::emitPush(OpBuilder &b, Location loc, Value size,
                            ValueRange entry) const {
  Type indexType = b.getIndexType();
  // Carried from the condition: (hole, parent, parent's entry).
  SmallVector<Type> carried{indexType, indexType};
  llvm::append_range(carried, types);
  auto loop = scf::WhileOp::create(
      b, loc, carried, ValueRange{size},
      [&](OpBuilder &nb, Location nl, ValueRange args) {
        Value hole = args[0];
        Value zero = emitIndex(nb, nl, 0);
        Value hasParent = arith::CmpIOp::create(
            nb, nl, arith::CmpIPredicate::ugt, hole, zero);
        SmallVector<Value> step = emitIfElse(
            nb, nl, hasParent,
            [&](OpBuilder &tb, Location tl) {
              Value parent = arith::DivUIOp::create(
                  tb, tl,
                  arith::SubIOp::create(tb, tl, hole, emitIndex(tb, tl, 1)),
                  emitIndex(tb, tl, 2));
              SmallVector<Value> up = emitLoad(tb, tl, parent);
              return concat({precedes(tb, tl, entry, up), parent}, up);
            },
            [&](OpBuilder &eb, Location el) {
              return concat({emitBool(eb, el, false), hole}, entry);
            });
        scf::ConditionOp::create(nb, nl, step[0],
                                 concat({hole}, ArrayRef(step).drop_front()));
      },
      [&](OpBuilder &nb, Location nl, ValueRange args) {
        // Move the parent down into the hole; the hole rises.
        emitStore(nb, nl, args.drop_front(2), args[0]);
        scf::YieldOp::create(nb, nl, args[1]);
      });
  emitStore(b, loc, entry, loop.getResult(0));
  return arith::AddIOp::create(b, loc, size, emitIndex(b, loc, 1));
}

void ScratchHeap::emitSiftDown(OpBuilder &b, Location loc, Value size,
                               ValueRange entry) const {
  Type indexType = b.getIndexType();
  // Carried from the condition: (hole, child, child's entry).
  SmallVector<Type> carried{indexType, indexType};
  llvm::append_range(carried, types);
  auto loop = scf::WhileOp::create(
      b, loc, carried, ValueRange{emitIndex(b, loc, 0)},
      [&](OpBuilder &nb, Location nl, ValueRange args) {
        Value hole = args[0];
        Value one = emitIndex(nb, nl, 1);
        Value left = arith::AddIOp::create(
            nb, nl, arith::ShLIOp::create(nb, nl, hole, one), one);
        Value hasLeft = arith::CmpIOp::create(nb, nl, arith::CmpIPredicate::ult,
                                              left, size);
        SmallVector<Value> step = emitIfElse(
            nb, nl, hasLeft,
            [&](OpBuilder &tb, Location tl) {
              // The child that precedes the other moves up, if it precedes
              // `entry`. The right child is loaded only when it exists.
              Value right = arith::AddIOp::create(tb, tl, left, one);
              Value hasRight = arith::CmpIOp::create(
                  tb, tl, arith::CmpIPredicate::ult, right, size);
              Value child = emitIfElse(
                  tb, tl, hasRight,
                  [&](OpBuilder &rb, Location rl) {
                    Value rightFirst = precedes(rb, rl, emitLoad(rb, rl, right),
                                                emitLoad(rb, rl, left));
                    return SmallVector<Value>{arith::SelectOp::create(
                        rb, rl, rightFirst, right, left)};
                  },
                  [&](OpBuilder &, Location) {
                    return SmallVector<Value>{left};
                  })[0];
              SmallVector<Value> down = emitLoad(tb, tl, child);
              return concat({precedes(tb, tl, down, entry), child}, down);
            },
            [&](OpBuilder &eb, Location el) {
              return concat({emitBool(eb, el, false), hole}, entry);
            });
        scf::ConditionOp::create(nb, nl, step[0],
                                 concat({hole}, ArrayRef(step).drop_front()));
      },
      [&](OpBuilder &nb, Location nl, ValueRange args) {
        // Move the child up into the hole; the hole sinks.
        emitStore(nb, nl, args.drop_front(2), args[0]);
        scf::YieldOp::create(nb, nl, args[1]);
      });
  emitStore(b, loc, entry, loop.getResult(0));
}

void ScratchHeap::emitReplaceTop(OpBuilder &b, Location loc, Value size,
                                 ValueRange entry) const {
  emitSiftDown(b, loc, size, entry);
}

Value ScratchHeap::emitPop(OpBuilder &b, Location loc, Value size) const {
  // The last entry refills the root's slot in the heap one shorter.
  Value last = arith::SubIOp::create(b, loc, size, emitIndex(b, loc, 1));
  SmallVector<Value> moved = emitLoad(b, loc, last);
  emitSiftDown(b, loc, last, moved);
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
