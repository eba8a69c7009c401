//===- TopKHeap.h - Binary heaps on scratch memrefs, emitted as scf loops -===//
//
// The selection and SPARSEK lowerings keep running top-k pools and the
// threshold's score sets in binary heaps. The heap lives in scratch memrefs
// (slot i of every array holds entry i, so a (score, position) entry is two
// arrays); its size is an SSA value the caller threads through its loops.
// One emitter serves every heap: only the order between entries differs.
//
//===----------------------------------------------------------------------===//
#ifndef SPARSEK_LIB_CONVERSION_SPARSEKTOLOOPS_TOPKHEAP_H
#define SPARSEK_LIB_CONVERSION_SPARSEKTOLOOPS_TOPKHEAP_H

#include "LoopUtils.h"

#include "mlir/IR/Builders.h"

#include <functional>

namespace mlir::sparsek {

/// Builds the yielded values of one branch of an scf.if.
using BranchBuilder =
    llvm::function_ref<SmallVector<Value>(OpBuilder &, Location)>;

/// Emits `scf.if cond` whose branches yield what the builders return (both
/// the same types) and returns the results.
SmallVector<Value> emitIfElse(OpBuilder &b, Location loc, Value cond,
                              BranchBuilder thenBuilder,
                              BranchBuilder elseBuilder);

/// A binary heap of entries spread over parallel 1-D scratch memrefs. The
/// root is the entry that precedes all others in the order `precedes`
/// (a min-heap when `precedes` is "less than").
class ScratchHeap {
public:
  /// i1: entry `a` must sit above entry `b` (strict order).
  using Order =
      std::function<Value(OpBuilder &, Location, ValueRange a, ValueRange b)>;

  ScratchHeap(SmallVector<Value> arrays, Order precedes);

  SmallVector<Value> emitLoad(OpBuilder &b, Location loc, Value slot) const;
  void emitStore(OpBuilder &b, Location loc, ValueRange entry,
                 Value slot) const;

  /// The root entry; the heap must not be empty.
  SmallVector<Value> emitTop(OpBuilder &b, Location loc) const;
  /// Inserts `entry` into a heap of `size` entries (with room for one more)
  /// and returns the new size.
  Value emitPush(OpBuilder &b, Location loc, Value size,
                 ValueRange entry) const;
  /// Replaces the root of a non-empty heap of `size` entries by `entry`.
  void emitReplaceTop(OpBuilder &b, Location loc, Value size,
                      ValueRange entry) const;
  /// Puts `entry` at `slot`, whose subtrees are heaps, and sinks it until
  /// the subtree at `slot` is a heap.
  void emitSiftDown(OpBuilder &b, Location loc, Value size, Value slot,
                    ValueRange entry) const;
  /// Removes the root of a non-empty heap and returns the new size.
  Value emitPop(OpBuilder &b, Location loc, Value size) const;

  /// i1 from the root entry, asked only while the heap is not empty.
  using TopTest =
      llvm::function_ref<Value(OpBuilder &, Location, ValueRange top)>;
  /// Folds a popped root entry into the values carried along.
  using PopFold = llvm::function_ref<SmallVector<Value>(
      OpBuilder &, Location, ValueRange top, ValueRange carried)>;
  /// Pops roots while `test` holds for them, folding each into `carried`.
  /// Returns the new size followed by the final carried values.
  SmallVector<Value> emitPopWhile(OpBuilder &b, Location loc, Value size,
                                  ValueRange carried, TopTest test,
                                  PopFold fold) const;

private:
  /// Whether a hole's next neighbour must move into it (given its entry).
  using MoveTest =
      std::function<Value(OpBuilder &, Location, ValueRange neighbour)>;
  /// The neighbour's slot and its test, built only where it exists.
  struct NeighbourMove {
    Value slot;
    MoveTest moves;
  };
  /// i1 "the hole has a next neighbour" and, for where it does, the
  /// builder of that neighbour's slot and test.
  struct HoleNeighbour {
    Value exists;
    std::function<NeighbourMove(OpBuilder &, Location)> neighbour;
  };
  using HoleStep =
      llvm::function_ref<HoleNeighbour(OpBuilder &, Location, Value hole)>;
  /// Walks a hole from slot `start`, moving neighbours into it while they
  /// must move, and stores `entry` where it stops: sift-up and sift-down.
  void emitMoveHole(OpBuilder &b, Location loc, Value start, ValueRange entry,
                    HoleStep step) const;

  SmallVector<Value> arrays;
  SmallVector<Type> types;
  Order precedes;
};

/// i1: (xs, xp) precedes (ys, yp) in SPEC 4's selection order: higher
/// score first, then the smaller position (f32 scores, index positions).
Value emitStronger(OpBuilder &b, Location loc, Value xs, Value xp, Value ys,
                   Value yp);

/// The running top-k pool of SPEC 6 over 1-D (f32 score, index position)
/// arrays: a heap whose root is the weakest entry.
ScratchHeap makePoolHeap(Value scores, Value positions);

/// Offers candidate (score, pos) to a pool heap of `size` entries holding
/// at most k; returns the new size. Candidates come in increasing
/// position, so a newcomer with the weakest entry's score loses the tie.
/// `onPush(size)` runs before a push into a pool that is not full yet,
/// `onEvict(size, weakest)` after the weakest entry was replaced (it never
/// returns, SPEC 6): the callers' extra bookkeeping.
Value emitPoolOffer(
    OpBuilder &b, Location loc, const ScratchHeap &pool, int64_t k, Value size,
    Value score, Value pos,
    llvm::function_ref<void(OpBuilder &, Location, Value)> onPush = {},
    llvm::function_ref<void(OpBuilder &, Location, Value, ValueRange)> onEvict =
        {});

} // namespace mlir::sparsek

#endif // SPARSEK_LIB_CONVERSION_SPARSEKTOLOOPS_TOPKHEAP_H
