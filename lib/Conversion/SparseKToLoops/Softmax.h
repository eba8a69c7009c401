//===- Softmax.h - Online gated softmax for attention ------*- C++ -*-===//
//
// sparsek.attention and sparsek.decode_attention both compute, for one
// query q over a set of keys j with gates g_j,
//
//   o = (sum_j exp(s_j - m) g_j v_j) / (sum_j exp(s_j - m)),
//   s_j = scale <q, k_j>,  m = max_j s_j,
//
// (SPEC 5: the gates scale the values, not the normalizer; an empty set
// gives o = 0). SoftmaxAccumulator emits that as an online softmax: one pass
// over the keys, the running maximum and sum carried through the caller's
// loops as f32 values, the weighted value sum in a Dv-float scratch buffer.
// Only the order in which the keys are visited differs between the ops.
//
//===----------------------------------------------------------------------===//
#ifndef SPARSEK_LIB_CONVERSION_SPARSEKTOLOOPS_SOFTMAX_H
#define SPARSEK_LIB_CONVERSION_SPARSEKTOLOOPS_SOFTMAX_H

#include "LoopUtils.h"

#include "llvm/ADT/APFloat.h"

#include <optional>

namespace mlir::sparsek {

/// The f32 score scale: `scale` when given, else 1/sqrt(d) (SPEC 5).
Value emitAttentionScale(OpBuilder &b, Location loc,
                         std::optional<APFloat> scale, Value d);

/// Rows of at most this many elements may be held in registers as one
/// vector: vector ops are unrolled per element down the pipeline, so
/// compile time grows with the length (seconds at 2048, minutes beyond), and
/// a GPU thread's 255 registers spill long before this bound anyway. Longer
/// rows take the memory form, whose loops do not depend on the length.
constexpr int64_t kMaxRegisterRow = 1024;

class SoftmaxAccumulator {
public:
  /// The loop-carried part of one query's softmax: running maximum of the
  /// scores and running sum of exp(score - max); in the register form also
  /// the weighted value sum, a vector<Dv x f32>.
  struct State {
    Value max;
    Value sum;
    Value acc; // null unless the accumulator lives in registers

    SmallVector<Value> values() const {
      if (acc)
        return {max, sum, acc};
      return {max, sum};
    }
    static State from(ValueRange v) {
      return {v[0], v[1], v.size() > 2 ? v[2] : Value()};
    }
  };

  /// Allocates the scratch of `dv` floats, once per op and reused by every
  /// query; `d` is the length of the q and key rows. Pair with release().
  /// `onStack` makes it private to the enclosing iteration instead (one per
  /// parallel iteration: per GPU thread once the loops are mapped): a
  /// vector<Dv x f32> carried in registers when Dv is static and at most
  /// 1024 (memory, even a GPU thread's local memory, costs a load and a
  /// store per element and key), else a stack buffer.
  /// `alignedRows` (register form): every query, key and value row and
  /// output row starts kRowAlignment-aligned (the caller checked), so they
  /// are read and written as aligned vectors: a few wide loads per row
  /// instead of one per element.
  static SoftmaxAccumulator create(OpBuilder &b, Location loc, Value d,
                                   Value dv, Value scale, bool onStack = false,
                                   bool alignedRows = false);

  /// Starts a query: zeroes the scratch; max = -inf, sum = 0. In the
  /// register form with a static D, the `query` row is loaded once here
  /// into a vector that every add() reuses; the accumulator then serves
  /// that query only.
  State begin(OpBuilder &b, Location loc, const Row *query = nullptr) const;

  /// Adds the key row `key` with value row `value` and f32 `gate`.
  State add(OpBuilder &b, Location loc, State st, const Row &query,
            const Row &key, const Row &value, Value gate) const;

  /// Adds the key only when the i1 `cond` holds; the rows are read only
  /// then, so they may point out of bounds otherwise.
  State addIf(OpBuilder &b, Location loc, Value cond, State st,
              const Row &query, const Row &key, const Row &value,
              Value gate) const;

  /// Writes the normalized output row (0 when no key was added), narrowed
  /// to the element type of `out`.
  void finish(OpBuilder &b, Location loc, State st, const Row &out) const;

  /// Writes the unnormalized weighted value sum (a split's partial result,
  /// f32) to the row `out`.
  void storePartial(OpBuilder &b, Location loc, State st, const Row &out) const;

  /// Frees the scratch.
  void release(OpBuilder &b, Location loc) const;

private:
  SoftmaxAccumulator(Value acc, Value d, Value dv, Value scale, bool onStack,
                     bool alignedRows)
      : acc(acc), d(d), dv(dv), scale(scale), onStack(onStack),
        alignedRows(alignedRows) {}

  /// f32 scale * <query, key>.
  Value emitScore(OpBuilder &b, Location loc, const Row &query,
                  const Row &key) const;

  Value acc;    // memref<Dv x f32>: sum_j exp(s_j - max) g_j v_j (null in
                // the register form)
  Value d;      // length of q and key rows
  Value dv;     // length of value and output rows
  Value scale;  // f32 factor of the dot products
  bool onStack; // alloca'd: released with its scope, not freed
  bool alignedRows;
  /// The register form: the query row as vector<D x f32>, set by begin()
  /// when D is static.
  mutable Value queryVec;
};

/// Adds the window keys max(0, pos - w + 1) .. pos of KV head h (rows
/// [bi, h, j] of `key` and `value`) with gate 1; returns the new state.
SoftmaxAccumulator::State
emitWindowKeys(OpBuilder &b, Location loc, const SoftmaxAccumulator &acc,
               SoftmaxAccumulator::State st, const Row &query, Value key,
               Value value, Value bi, Value h, Value pos, int64_t w);

} // namespace mlir::sparsek

#endif // SPARSEK_LIB_CONVERSION_SPARSEKTOLOOPS_SOFTMAX_H
