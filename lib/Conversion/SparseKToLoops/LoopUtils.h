//===- LoopUtils.h - Helpers shared by the loop lowerings ---*- C++ -*-===//
//
// Small builders that every buffer-form lowering needs: sizes of memrefs
// whose dimensions may be dynamic, loads widened to f32 and stores narrowed
// back, run-time shape checks and the grouped-query head split. Private to
// lib/Conversion/SparseKToLoops.
//
//===----------------------------------------------------------------------===//
#ifndef SPARSEK_LIB_CONVERSION_SPARSEKTOLOOPS_LOOPUTILS_H
#define SPARSEK_LIB_CONVERSION_SPARSEKTOLOOPS_LOOPUTILS_H

#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/IR/Builders.h"
#include "llvm/ADT/SmallVector.h"

#include <tuple>

namespace mlir::sparsek {

Value emitIndex(OpBuilder &b, Location loc, int64_t v);
Value emitF32(OpBuilder &b, Location loc, double v);
Value emitBool(OpBuilder &b, Location loc, bool v);

/// Size of dimension `d` of the memref `buf` (a constant when static).
Value emitDim(OpBuilder &b, Location loc, Value buf, int64_t d);

/// Conjunction of i1 values (true when `conds` is empty).
Value emitAnd(OpBuilder &b, Location loc, ArrayRef<Value> conds);

/// One pair of dimensions that must have the same size: (a, ad, c, cd).
using DimPair = std::tuple<Value, unsigned, Value, unsigned>;

/// i1: every pair agrees. Static pairs were checked by the verifier, so
/// only dynamic ones cost run-time code.
Value emitDimsAllEqual(OpBuilder &b, Location loc, ArrayRef<DimPair> pairs);

/// Loads `buf[indices]` (f16, bf16 or f32) and widens it to f32: the
/// lowerings compute and accumulate in f32 whatever the storage type.
Value emitLoadF32(OpBuilder &b, Location loc, Value buf, ValueRange indices);

/// Narrows the f32 `v` to the element type of `buf` and stores it.
void emitStoreF32(OpBuilder &b, Location loc, Value v, Value buf,
                  ValueRange indices);

/// Loads an i32 or i64 element as a signed index, so that negative padding
/// entries stay negative.
Value emitLoadIndex(OpBuilder &b, Location loc, Value buf, ValueRange indices);

/// i1: lo <= x <= hi, as signed indices.
Value emitInRange(OpBuilder &b, Location loc, Value x, Value lo, Value hi);

/// Over the `k` listed entries i of query t of row (bi, h) of `indices`
/// ([B, Hkv, T, k]): `body(j, i, carried)` for each whose position j is a
/// candidate, 0 <= j <= lastCandidate (the rest is padding or would double
/// the window), carrying its results; returns the final carried values.
SmallVector<Value> emitForListedCandidates(
    OpBuilder &b, Location loc, Value indices, Value bi, Value h, Value t,
    Value k, Value lastCandidate, ValueRange init,
    function_ref<SmallVector<Value>(OpBuilder &, Location, Value j, Value i,
                                    ValueRange carried)>
        body);

/// scf.if without results.
void emitIf(OpBuilder &b, Location loc, Value cond,
            function_ref<void(OpBuilder &, Location)> thenBody);

/// scf.for over [lb, ub) with unit step and no loop-carried values.
void emitFor(OpBuilder &b, Location loc, Value lb, Value ub,
             function_ref<void(OpBuilder &, Location, Value)> body);

/// scf.for over [lb, ub) with unit step carrying `init`; `body` returns the
/// values for the next iteration. Returns the loop's results.
SmallVector<Value> emitForCarrying(
    OpBuilder &b, Location loc, Value lb, Value ub, ValueRange init,
    function_ref<SmallVector<Value>(OpBuilder &, Location, Value, ValueRange)>
        body);

/// emitForCarrying with `body` unrolled `factor` times: a loop of step
/// `factor` whose iterations hold `factor` copies of the body, then a unit
/// loop over the rest. Same results (the body runs for each index in order).
/// On a GPU a loop whose body loads (and whose carried values only
/// accumulate) then has `factor` loads in flight instead of one: neither
/// LLVM nor ptxas unrolls a loop of unknown trip count there, so each
/// iteration would otherwise wait a whole memory latency.
SmallVector<Value> emitForCarryingUnrolled(
    OpBuilder &b, Location loc, int64_t factor, Value lb, Value ub,
    ValueRange init,
    function_ref<SmallVector<Value>(OpBuilder &, Location, Value, ValueRange)>
        body);

/// Runs `body` only when every size is non-zero: a GPU launch with an empty
/// grid is an error for CUDA (S <= w leaves no candidates; T or B may be 0).
/// Static sizes decide at compile time.
void emitIfNonEmpty(OpBuilder &b, Location loc, ArrayRef<Value> sizes,
                    function_ref<void(OpBuilder &, Location)> body);

/// The parallel (GPU) form shared by the lowerings: scf.parallel over
/// (blocks of `block` along n, dims...) around scf.parallel over the
/// block's items; `body` runs for every item x < n with the dims' ivs.
/// gpu-map-parallel-loops maps the outer loop to GPU blocks (n's blocks on
/// the grid's x, up to 2^31 - 1; the first two dims on y and z, up to 65535
/// each) and the inner one to threads, so one item is one GPU thread.
/// Nothing runs (no launch) when a size is 0.
void emitParallelBlocks(
    OpBuilder &b, Location loc, ArrayRef<Value> dims, Value n, int64_t block,
    function_ref<void(OpBuilder &, Location, ValueRange, Value)> body);

/// emitParallelBlocks over (d0, d1, queries): `body` gets (i0, i1, t).
void emitParallelQueryBlocks(
    OpBuilder &b, Location loc, Value d0, Value d1, Value numQueries,
    int64_t block,
    function_ref<void(OpBuilder &, Location, Value, Value, Value)> body);

/// The alignment, in bytes, of the row vectors the GPU kernels load.
constexpr int64_t kRowAlignment = 16;

/// Whether every row (last dimension) of `buf` starts kRowAlignment-aligned
/// once its data does: identity layout and a static last dimension whose
/// byte size is a multiple of kRowAlignment. The run-time half is
/// emitDataAligned.
bool rowsKeepAlignment(Value buf);

/// i1: the data of `buf` (identity layout: the aligned pointer) starts on a
/// multiple of `bytes`. Reads only the descriptor.
Value emitDataAligned(OpBuilder &b, Location loc, Value buf,
                      int64_t bytes = kRowAlignment);

/// For the GPU kernels' aligned row vectors: when every buffer of `rows`
/// keeps row alignment (rowsKeepAlignment), sets `aligned` and returns the
/// i1 run-time check that their data is aligned, recording
/// SPARSEK_ERROR_MISALIGNED for `anchor` when it is not; otherwise clears
/// `aligned` (the kernels then load element by element) and returns true.
Value emitRowAlignmentCheck(OpBuilder &b, Location loc, Operation *anchor,
                            ArrayRef<Value> rows, bool &aligned);

/// i1: T <= S, recording SPARSEK_ERROR_QUERIES_EXCEED_KEYS for `anchor`
/// when not. Static sizes were compared by the verifier: no code then.
Value emitQueriesFitKeys(OpBuilder &b, Location loc, Operation *anchor,
                         Value numQueries, Value numKeys);

/// Grouped-query attention: the query heads `hq` split into `hkv` groups of
/// G = hq / hkv. Sets `ok` to whether the split is exact (hq is a multiple
/// of hkv, and hkv = 0 only with hq = 0) and returns G. Never divides by
/// zero, so it may run before the check is acted on.
Value emitGroupSize(OpBuilder &b, Location loc, Value hq, Value hkv, Value &ok);

/// A row of a memref: every index but the last fixed. The attention
/// lowerings read q, key and value rows and write output rows through it.
struct Row {
  Value buf;
  SmallVector<Value, 4> lead;

  Value loadF32(OpBuilder &b, Location loc, Value i) const;
  void storeF32(OpBuilder &b, Location loc, Value v, Value i) const;
};

/// Stores f32 zero into every element of the f32 memref `buf`: the
/// gradient lowerings accumulate into their destinations.
void emitZeroFill(OpBuilder &b, Location loc, Value buf);

/// buf[indices] += v for an f32 memref `buf`.
void emitAccumulate(OpBuilder &b, Location loc, Value buf, ValueRange indices,
                    Value v);

/// Atomically buf[indices] += v (f32 or f64 `buf`): the parallel gradient
/// lowerings sum over queries whose threads run concurrently.
void emitAtomicAdd(OpBuilder &b, Location loc, Value buf, ValueRange indices,
                   Value v);

/// Arrival of one of `participants` (index) work items at the i32 counter
/// counters[indices]: an atomic increment; returns i1 "this was the last
/// one". The last one resets the counter to 0, so the next launch (or graph
/// replay) starts from zero. Ordering the items' other writes around it is
/// the caller's (emitDeviceFence, or a kernel's own fences).
Value emitArriveLast(OpBuilder &b, Location loc, Value counters,
                     ValueRange indices, Value participants);

/// A fence of `ordering` among the threads of one device (llvm.fence,
/// syncscope "device": fence.acq_rel.gpu on NVPTX, a compiler barrier for
/// release or acquire on the host). Atomic read-modify-writes lower to
/// relaxed `atom` on NVPTX, so writes published through a counter
/// (emitArriveLast) need a release fence before the arrival and an acquire
/// fence after the last one.
void emitDeviceFence(OpBuilder &b, Location loc, LLVM::AtomicOrdering ordering);

/// The parallel form of emitZeroFill: scf.parallel over the first (at most
/// two) dimensions and blocks of `block` along the next one, one thread per
/// element of that dimension looping over the rest. f32 or f64 `buf`.
void emitParallelZeroFill(OpBuilder &b, Location loc, Value buf, int64_t block);

/// Row `acc` (f32) += factor * row `x` over [0, n), each element added
/// atomically (emitAtomicAdd).
void emitAtomicAxpy(OpBuilder &b, Location loc, Value factor, const Row &x,
                    const Row &acc, Value n);

/// Row `acc` (f32) += factor * row `x` over [0, n).
void emitAxpy(OpBuilder &b, Location loc, Value factor, const Row &x,
              const Row &acc, Value n);

/// f32 dot product of rows `x` and `y` over [0, n).
Value emitDotF32(OpBuilder &b, Location loc, const Row &x, const Row &y,
                 Value n);

/// Binary search: the first x in [lo, hi) where `pred` holds, or hi;
/// `pred` must be false then true along [lo, hi).
Value emitFirstTrue(OpBuilder &b, Location loc, Value lo, Value hi,
                    function_ref<Value(OpBuilder &, Location, Value)> pred);

/// `count` binary searches over the same [lo, hi) in one loop: result i is
/// the first x where pred(i, x) holds, or hi (each pred false then true).
/// The searches' loads overlap (one memory latency per round for all of
/// them, where separate loops pay one per round each). A finished search
/// evaluates its predicate at another one's midpoint, which lies in
/// [lo, hi), and ignores it: every predicate must be safe anywhere there.
SmallVector<Value> emitFirstTrueMany(
    OpBuilder &b, Location loc, Value lo, Value hi, unsigned count,
    function_ref<Value(OpBuilder &, Location, unsigned, Value)> pred);

} // namespace mlir::sparsek

#endif // SPARSEK_LIB_CONVERSION_SPARSEKTOLOOPS_LOOPUTILS_H
