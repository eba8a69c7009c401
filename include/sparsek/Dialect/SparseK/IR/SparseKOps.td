// Operations of the sparsek dialect. Each op's semantics is the section of
// SPEC.md named in its description; verifiers live in SparseKOps.cpp so that
// every diagnostic can name the operand at fault.
#ifndef SPARSEK_OPS_TD
#define SPARSEK_OPS_TD

include "sparsek/Dialect/SparseK/IR/SparseKDialect.td"
include "mlir/Interfaces/DestinationStyleOpInterface.td"
include "mlir/Interfaces/SideEffectInterfaces.td"
include "mlir/IR/OpAsmInterface.td"

// Operands are all ranked tensors (and the op returns one tensor per
// destination) or all memrefs (and the op writes its destinations and
// returns nothing), like linalg: tensor form for tiling and fusion, buffer
// form after one-shot bufferization, where the loop lowerings apply.
def SparseK_TensorOrMemRef : AnyTypeOf<[AnyRankedTensor, AnyMemRef],
                                       "ranked tensor or memref">;

// Traits shared by every op: destination-passing style, memory effects only
// in buffer form, and a hand-written verifier.
class SparseK_DpsOp<string mnemonic, list<Trait> traits = []>
    : SparseK_Op<mnemonic, !listconcat(traits, [
        DeclareOpInterfaceMethods<MemoryEffectsOpInterface>,
        DeclareOpInterfaceMethods<DestinationStyleOpInterface>])> {
  // One tensor per destination in tensor form, none in buffer form.
  let results = (outs Variadic<AnyRankedTensor>:$results);
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// score (SPEC 2)
//===----------------------------------------------------------------------===//

def SparseK_ScoreOp : SparseK_DpsOp<"score", [
    AttrSizedOperandSegments]> {
  let summary = "Scoring network: one query-independent score per KV head and token";
  let description = [{
    Computes, for every batch `b`, KV head `h` and token `t` of this call,

        u[b, h, t] = sum_c input[b, t, c] * weight[h, c]
                     + bias[h] + slope[h] * (offset + t)

    `input` is `[B, T, C]` hidden states (f16, bf16 or f32), `weight` is
    `[Hkv, C]` of the same element type, the optional `bias` and `slope` are
    `[Hkv]` f32 (zero when absent) and `offset` (index, default 0) is the
    absolute position of the first token, so that with a cached prefix the
    slope sees positions counted from the start of the sequence. The result is
    `[B, Hkv, T]` f32, accumulated in f32.

    Example:

    ```mlir
    %u = sparsek.score ins(%x, %wsc : tensor<2x?x64xbf16>, tensor<4x64xbf16>)
           bias(%b : tensor<4xf32>) slope(%s : tensor<4xf32>) offset(%off)
           outs(%init : tensor<2x4x?xf32>) -> tensor<2x4x?xf32>
    ```
  }];
  let arguments = (ins SparseK_TensorOrMemRef:$input, SparseK_TensorOrMemRef:$weight,
                       Optional<SparseK_TensorOrMemRef>:$bias,
                       Optional<SparseK_TensorOrMemRef>:$slope,
                       Optional<Index>:$offset, SparseK_TensorOrMemRef:$init);
  let assemblyFormat = [{
    `ins` `(` $input `,` $weight `:` type($input) `,` type($weight) `)`
    (`bias` `(` $bias^ `:` type($bias) `)`)?
    (`slope` `(` $slope^ `:` type($slope) `)`)?
    (`offset` `(` $offset^ `)`)?
    `outs` `(` $init `:` type($init) `)` attr-dict (`->` type($results)^)?
  }];
}

//===----------------------------------------------------------------------===//
// mask (SPEC 3)
//===----------------------------------------------------------------------===//

def SparseK_MaskOp : SparseK_DpsOp<"mask", [
    DeclareOpInterfaceMethods<OpAsmOpInterface, ["getAsmResultNames"]>]> {
  let summary = "SPARSEK operator: differentiable top-k mask on the last axis";
  let description = [{
    The Euclidean projection of each row `z` (the last axis of `input`) onto
    the capped simplex `{p : 0 <= p_i <= 1, sum p = min(k, n)}`:
    `mask = clip(z - tau, 0, 1)` with the threshold `tau` solving
    `sum_i clip(z_i - tau, 0, 1) = min(k, n)`. Entries equal to `-inf` are
    masked: never in the support and not counted in `n`. `k = 0` gives
    `mask = 0, tau = +inf`; `k >= n` gives `mask = 1` on unmasked entries and
    `tau = -inf`; in the hard case the largest valid `tau` is reported.

    `input` and `mask` are f32 of any rank >= 1; `tau` has the shape of
    `input` without its last dimension.

    Example:

    ```mlir
    %p, %tau = sparsek.mask ins(%z : tensor<8x?xf32>) k = 16
                 outs(%p0, %t0 : tensor<8x?xf32>, tensor<8xf32>)
                 -> tensor<8x?xf32>, tensor<8xf32>
    ```
  }];
  let arguments = (ins SparseK_TensorOrMemRef:$input, I64Attr:$k,
                       SparseK_TensorOrMemRef:$mask_init, SparseK_TensorOrMemRef:$tau_init);
  let assemblyFormat = [{
    `ins` `(` $input `:` type($input) `)` `k` `=` $k
    `outs` `(` $mask_init `,` $tau_init `:` type($mask_init) `,` type($tau_init) `)`
    attr-dict (`->` type($results)^)?
  }];
  let hasCanonicalizer = 1;
}

//===----------------------------------------------------------------------===//
// select (SPEC 4)
//===----------------------------------------------------------------------===//

def SparseK_SelectOp : SparseK_DpsOp<"select", [
    DeclareOpInterfaceMethods<OpAsmOpInterface, ["getAsmResultNames"]>]> {
  let summary = "Causal SparseK selection: top-k candidates, gates and tau per query";
  let description = [{
    `scores` is `[B, Hkv, S]` f32 (one score per KV head and absolute
    position). The `T` queries (taken from the result shapes) are the last `T`
    positions: query `t` sits at `pos(t) = S - T + t`. For each query its
    window is the `w` most recent positions up to and including `pos(t)`;
    its candidates are the earlier positions `j <= pos(t) - w` whose score is
    not `-inf`. `tau` is the SPARSEK threshold of the candidates' scores with
    budget `k`; the selected set is the `k` candidates largest in the order
    (score, -position); the gate of a selected position is
    `clip(score - tau, 0, 1)`.

    Results: `indices` `[B, Hkv, T, K]` (i32 or i64) lists the selected
    positions ascending, padded with -1; `gates` `[B, Hkv, T, K]` f32 padded
    with 0; `tau` `[B, Hkv, T]` f32. Window positions are implicit (gate 1)
    and never appear in `indices`. The list length `K` is `k` when static;
    a dynamic `K` may be anything from `min(k, S)` to `k` (no query has
    more than `min(k, S)` selected positions), which is checked at run
    time: `sparsek-decompose-select-attention` sizes its lists by
    `min(k, S)`, so that a budget far beyond the keys present allocates
    nothing for it.

    Example:

    ```mlir
    %idx, %g, %tau = sparsek.select ins(%u : tensor<1x8x?xf32>) k = 64 w = 32
        outs(%i0, %g0, %t0 : tensor<1x8x?x64xi32>, tensor<1x8x?x64xf32>,
                             tensor<1x8x?xf32>)
        -> tensor<1x8x?x64xi32>, tensor<1x8x?x64xf32>, tensor<1x8x?xf32>
    ```
  }];
  let arguments = (ins SparseK_TensorOrMemRef:$scores, I64Attr:$k, I64Attr:$w,
                       SparseK_TensorOrMemRef:$indices_init,
                       SparseK_TensorOrMemRef:$gates_init, SparseK_TensorOrMemRef:$tau_init);
  let assemblyFormat = [{
    `ins` `(` $scores `:` type($scores) `)` `k` `=` $k `w` `=` $w
    `outs` `(` $indices_init `,` $gates_init `,` $tau_init `:`
        type($indices_init) `,` type($gates_init) `,` type($tau_init) `)`
    attr-dict (`->` type($results)^)?
  }];
  let hasCanonicalizer = 1;
}

//===----------------------------------------------------------------------===//
// attention (SPEC 5)
//===----------------------------------------------------------------------===//

def SparseK_AttentionOp : SparseK_DpsOp<"attention"> {
  let summary = "Sparse attention over a sliding window plus gated selected keys";
  let description = [{
    For query head `hq` (KV head `h = hq / G`, `G = Hq / Hkv`) and query `t`
    at position `pos(t) = S - T + t`:

        s(t, j) = scale * <query[hq, t], key[h, j]>
        a(t, j) = softmax of s over Win(t) U Sel(t)
        o[hq, t] = sum_j a(t, j) * g(t, j) * value[h, j]

    `Win(t)` is the `w` most recent positions up to `pos(t)` (gate 1);
    `Sel(t)` are the entries of `indices[b, h, t, :]` with gates from
    `gates[b, h, t, :]`. Index entries `< 0` are padding; entries outside
    the candidate range `0 <= j <= pos(t) - w` are ignored. Gates scale the
    values and are not renormalized. An empty set gives a zero output.

    Shapes: `query [B, Hq, T, D]`, `key [B, Hkv, S, D]`,
    `value [B, Hkv, S, Dv]`, `indices [B, Hkv, T, K]` (i32 or i64),
    `gates [B, Hkv, T, K]` f32, result `[B, Hq, T, Dv]` of value's element
    type. `scale` defaults to `1/sqrt(D)`.

    Example:

    ```mlir
    %o = sparsek.attention
           ins(%q, %k, %v, %idx, %g : tensor<1x32x?x128xbf16>,
               tensor<1x8x?x128xbf16>, tensor<1x8x?x128xbf16>,
               tensor<1x8x?x64xi32>, tensor<1x8x?x64xf32>)
           w = 32 outs(%o0 : tensor<1x32x?x128xbf16>) -> tensor<1x32x?x128xbf16>
    ```
  }];
  let arguments = (ins SparseK_TensorOrMemRef:$query, SparseK_TensorOrMemRef:$key,
                       SparseK_TensorOrMemRef:$value, SparseK_TensorOrMemRef:$indices,
                       SparseK_TensorOrMemRef:$gates, I64Attr:$w,
                       OptionalAttr<F32Attr>:$scale, SparseK_TensorOrMemRef:$init);
  let assemblyFormat = [{
    `ins` `(` $query `,` $key `,` $value `,` $indices `,` $gates `:`
        type($query) `,` type($key) `,` type($value) `,` type($indices) `,`
        type($gates) `)`
    `w` `=` $w (`scale` `=` $scale^)?
    `outs` `(` $init `:` type($init) `)` attr-dict (`->` type($results)^)?
  }];
  let hasCanonicalizer = 1;
}

//===----------------------------------------------------------------------===//
// select_attention (SPEC 7)
//===----------------------------------------------------------------------===//

def SparseK_SelectAttentionOp : SparseK_DpsOp<"select_attention"> {
  let summary = "Composite SparseK attention: selection from scores, then attention";
  let description = [{
    Means `sparsek.select` on `scores` with budget `k` and window `w`,
    followed by `sparsek.attention` with the same window (SPEC 7). The
    `sparsek-decompose-select-attention` pass rewrites it into those two ops;
    a fused GPU lowering may instead compute each query's membership from
    `tau(t)` and the k-th largest candidate without materializing indices.

    Shapes: `query [B, Hq, T, D]`, `key [B, Hkv, S, D]`,
    `value [B, Hkv, S, Dv]`, `scores [B, Hkv, S]` f32, result
    `[B, Hq, T, Dv]` of value's element type.

    Example:

    ```mlir
    %o = sparsek.select_attention
           ins(%q, %k, %v, %u : tensor<1x32x?x128xbf16>, tensor<1x8x?x128xbf16>,
               tensor<1x8x?x128xbf16>, tensor<1x8x?xf32>)
           k = 2048 w = 512 outs(%o0 : tensor<1x32x?x128xbf16>)
           -> tensor<1x32x?x128xbf16>
    ```
  }];
  let arguments = (ins SparseK_TensorOrMemRef:$query, SparseK_TensorOrMemRef:$key,
                       SparseK_TensorOrMemRef:$value, SparseK_TensorOrMemRef:$scores,
                       I64Attr:$k, I64Attr:$w, OptionalAttr<F32Attr>:$scale,
                       SparseK_TensorOrMemRef:$init);
  let assemblyFormat = [{
    `ins` `(` $query `,` $key `,` $value `,` $scores `:`
        type($query) `,` type($key) `,` type($value) `,` type($scores) `)`
    `k` `=` $k `w` `=` $w (`scale` `=` $scale^)?
    `outs` `(` $init `:` type($init) `)` attr-dict (`->` type($results)^)?
  }];
  let hasCanonicalizer = 1;
}

//===----------------------------------------------------------------------===//
// decode_attention (SPEC 6)
//===----------------------------------------------------------------------===//

def SparseK_DecodeAttentionOp : SparseK_DpsOp<"decode_attention"> {
  let summary = "One decoding step of SparseK attention over the runtime's KV cache";
  let description = [{
    Attention of one new query per sequence over the constant-size cache of
    SPEC 6, laid out as the runtime keeps it, for a batch of sequences at
    different positions. Per sequence `b` and KV head `h` there are `k + w`
    slots: slots `[0, k)` are the selected pool, valid in
    `[0, pool_count[b, h])`, with gate `clip(slot_scores - tau[b, h], 0, 1)`;
    slots `[k, k + w)` are the window ring holding token `p` in slot
    `k + (p mod w)`, valid for positions `max(0, pos[b] - w + 1) .. pos[b]`,
    with gate 1. `pos[b]` is the position of the token just appended, whose
    query this is.

    Shapes: `query [B, Hq, D]`, `key_slots [B, Hkv, k + w, D]`,
    `value_slots [B, Hkv, k + w, Dv]`, `slot_scores [B, Hkv, k + w]` f32,
    `tau [B, Hkv]` f32, `pool_count [B, Hkv]` i32, `positions [B]` i64,
    result `[B, Hq, Dv]` of value's element type.

    Example:

    ```mlir
    %o = sparsek.decode_attention
           ins(%q, %kc, %vc, %sc, %tau, %cnt, %pos : tensor<?x32x128xbf16>,
               tensor<?x8x2560x128xbf16>, tensor<?x8x2560x128xbf16>,
               tensor<?x8x2560xf32>, tensor<?x8xf32>, tensor<?x8xi32>,
               tensor<?xi64>)
           k = 2048 w = 512 outs(%o0 : tensor<?x32x128xbf16>)
           -> tensor<?x32x128xbf16>
    ```
  }];
  let arguments = (ins SparseK_TensorOrMemRef:$query, SparseK_TensorOrMemRef:$key_slots,
                       SparseK_TensorOrMemRef:$value_slots,
                       SparseK_TensorOrMemRef:$slot_scores, SparseK_TensorOrMemRef:$tau,
                       SparseK_TensorOrMemRef:$pool_count,
                       SparseK_TensorOrMemRef:$positions, I64Attr:$k, I64Attr:$w,
                       OptionalAttr<F32Attr>:$scale, SparseK_TensorOrMemRef:$init);
  let assemblyFormat = [{
    `ins` `(` $query `,` $key_slots `,` $value_slots `,` $slot_scores `,`
        $tau `,` $pool_count `,` $positions `:` type($query) `,`
        type($key_slots) `,` type($value_slots) `,` type($slot_scores) `,`
        type($tau) `,` type($pool_count) `,` type($positions) `)`
    `k` `=` $k `w` `=` $w (`scale` `=` $scale^)?
    `outs` `(` $init `:` type($init) `)` attr-dict (`->` type($results)^)?
  }];
}

//===----------------------------------------------------------------------===//
// Gradients (SPEC 5 "Backward", SPEC 3, SPEC 2)
//===----------------------------------------------------------------------===//

def SparseK_AttentionGradOp : SparseK_DpsOp<"attention_grad", [
    DeclareOpInterfaceMethods<OpAsmOpInterface, ["getAsmResultNames"]>]> {
  let summary = "Backward of sparsek.attention: gradients of q, key, value and gates";
  let description = [{
    Given `grad_output = dL/do` of `o = sparsek.attention(query, key, value,
    indices, gates)` with the same window `w` and `scale`, computes (SPEC 5
    "Backward", with `vt(t, j) = g(t, j) value[h, j]`):

        dP(t, j) = <grad_output[hq, t], vt(t, j)>
        ds(t, j) = a(t, j) (dP(t, j) - sum_l a(t, l) dP(t, l))
        grad_query[hq, t] = scale * sum_j ds(t, j) key[h, j]
        grad_key[h, j]    = scale * sum_{hq in group, t} ds(t, j) query[hq, t]
        grad_value[h, j]  = sum_{hq in group, t} a(t, j) g(t, j) grad_output[hq, t]
        grad_gates[h, t, i] = sum_{hq in group} a(t, j) <grad_output[hq, t], value[h, j]>
                              for the selected entry j = indices[h, t, i]

    over the same key sets `Win(t) U Sel(t)` as the forward op. The softmax
    `a` is recomputed from `query` and `key` (nothing of the forward pass is
    saved). Entries of `indices` that the forward op ignores (padding, window
    or future positions) get a zero gate gradient. Every destination is
    overwritten.

    Shapes: `query [B, Hq, T, D]`, `key [B, Hkv, S, D]`,
    `value [B, Hkv, S, Dv]` (f16, bf16 or f32, one type), `indices
    [B, Hkv, T, K]` (i32 or i64), `gates [B, Hkv, T, K]` f32,
    `grad_output [B, Hq, T, Dv]` of value's element type. The gradients are
    f32 whatever the input type: `grad_key`, `grad_value` and `grad_gates`
    sum over queries and query heads, and that sum is kept in f32.

    Example:

    ```mlir
    %dq, %dk, %dv, %dg = sparsek.attention_grad
        ins(%q, %k, %v, %idx, %g, %do : tensor<1x8x?x64xf32>,
            tensor<1x2x?x64xf32>, tensor<1x2x?x64xf32>, tensor<1x2x?x16xi32>,
            tensor<1x2x?x16xf32>, tensor<1x8x?x64xf32>)
        w = 32
        outs(%dq0, %dk0, %dv0, %dg0 : tensor<1x8x?x64xf32>, tensor<1x2x?x64xf32>,
             tensor<1x2x?x64xf32>, tensor<1x2x?x16xf32>)
        -> tensor<1x8x?x64xf32>, tensor<1x2x?x64xf32>, tensor<1x2x?x64xf32>,
           tensor<1x2x?x16xf32>
    ```
  }];
  let arguments = (ins SparseK_TensorOrMemRef:$query, SparseK_TensorOrMemRef:$key,
                       SparseK_TensorOrMemRef:$value, SparseK_TensorOrMemRef:$indices,
                       SparseK_TensorOrMemRef:$gates, SparseK_TensorOrMemRef:$grad_output,
                       I64Attr:$w, OptionalAttr<F32Attr>:$scale,
                       SparseK_TensorOrMemRef:$grad_query_init,
                       SparseK_TensorOrMemRef:$grad_key_init,
                       SparseK_TensorOrMemRef:$grad_value_init,
                       SparseK_TensorOrMemRef:$grad_gates_init);
  let assemblyFormat = [{
    `ins` `(` $query `,` $key `,` $value `,` $indices `,` $gates `,` $grad_output `:`
        type($query) `,` type($key) `,` type($value) `,` type($indices) `,`
        type($gates) `,` type($grad_output) `)`
    `w` `=` $w (`scale` `=` $scale^)?
    `outs` `(` $grad_query_init `,` $grad_key_init `,` $grad_value_init `,`
        $grad_gates_init `:` type($grad_query_init) `,` type($grad_key_init) `,`
        type($grad_value_init) `,` type($grad_gates_init) `)`
    attr-dict (`->` type($results)^)?
  }];
}

def SparseK_SelectGradOp : SparseK_DpsOp<"select_grad"> {
  let summary = "Backward of sparsek.select: score gradients from gate gradients";
  let description = [{
    Given the gate gradients `grad_gates = dL/dg` of a selection made by
    `sparsek.select` (its `indices` and `tau`, with window `w`) from
    `scores`, computes the score gradients by the SPARSEK vector-Jacobian
    product of each query's candidate row (SPEC 3, SPEC 5):

        grad_scores[h, j] = sum_t [j in Supp(t)] (dg(t, j) - mean_{l in Supp(t)} dg(t, l))

    with `Supp(t) = {j in Cand(t) : 0 < clip(scores[h, j] - tau(t), 0, 1) < 1}`
    and `dg(t, j)` the entry of `grad_gates[h, t, :]` whose index is `j`, or
    0 for support entries truncated out of `Sel(t)`: they count in the mean
    although no gate of theirs was used. Entries with a gate of 0 or 1,
    window positions and masked (`-inf`) scores get no gradient. With
    `k = 0` (`tau = +inf`) or `|Cand(t)| <= k` (`tau = -inf`) the support
    is empty and the gradient 0.

    The selection is taken from the forward state (`indices`, `tau`), not
    recomputed: `sparsek.select_attention_grad` recomputes it once and
    feeds it here and to `sparsek.attention_grad`.

    Shapes: `scores [B, Hkv, S]` f32, `indices [B, Hkv, T, K]` (i32 or
    i64), `tau [B, Hkv, T]` f32, `grad_gates [B, Hkv, T, K]` f32, result
    `[B, Hkv, S]` f32. Queries are the last `T` of the `S` positions.

    Example:

    ```mlir
    %du = sparsek.select_grad
        ins(%u, %idx, %tau, %dg : tensor<1x2x?xf32>, tensor<1x2x?x16xi32>,
            tensor<1x2x?xf32>, tensor<1x2x?x16xf32>)
        w = 32 outs(%du0 : tensor<1x2x?xf32>) -> tensor<1x2x?xf32>
    ```
  }];
  let arguments = (ins SparseK_TensorOrMemRef:$scores, SparseK_TensorOrMemRef:$indices,
                       SparseK_TensorOrMemRef:$tau, SparseK_TensorOrMemRef:$grad_gates,
                       I64Attr:$w, SparseK_TensorOrMemRef:$init);
  let assemblyFormat = [{
    `ins` `(` $scores `,` $indices `,` $tau `,` $grad_gates `:`
        type($scores) `,` type($indices) `,` type($tau) `,` type($grad_gates) `)`
    `w` `=` $w `outs` `(` $init `:` type($init) `)` attr-dict (`->` type($results)^)?
  }];
}

def SparseK_SelectAttentionGradOp : SparseK_DpsOp<"select_attention_grad", [
    DeclareOpInterfaceMethods<OpAsmOpInterface, ["getAsmResultNames"]>]> {
  let summary = "Backward of sparsek.select_attention: gradients of q, key, value and scores";
  let description = [{
    Given `grad_output = dL/do` of `o = sparsek.select_attention(query, key,
    value, scores)` with the same `k`, `w` and `scale`, computes
    `grad_query`, `grad_key`, `grad_value` (as `sparsek.attention_grad`)
    and `grad_scores = dL/dscores` (as `sparsek.select_grad`), SPEC 5
    "Backward". Scores reach the loss only through the gates, so
    `grad_scores` is nonzero only on SPARSEK support entries
    (`0 < gate < 1`) of some query.

    The selection (`Sel(t)`, `tau(t)`) is recomputed from `scores`, not
    taken from saved forward state. It is a deterministic function of the
    scores, so the recomputed sets are those of the forward pass bit for
    bit; it costs `O(T log k)` per head against the `O(T (k + w) D)` of the
    attention gradient; and the forward composite stays free to never
    materialize indices (SPEC 7), which saved state would forbid. Callers
    that do hold a selection use `sparsek.attention_grad` and
    `sparsek.select_grad` directly.

    Shapes: `query [B, Hq, T, D]`, `key [B, Hkv, S, D]`,
    `value [B, Hkv, S, Dv]` (f16, bf16 or f32), `scores [B, Hkv, S]` f32,
    `grad_output [B, Hq, T, Dv]` of value's element type; the gradients are
    f32 and shaped like their primal.

    Example:

    ```mlir
    %dq, %dk, %dv, %du = sparsek.select_attention_grad
        ins(%q, %k, %v, %u, %do : tensor<1x8x?x64xf32>, tensor<1x2x?x64xf32>,
            tensor<1x2x?x64xf32>, tensor<1x2x?xf32>, tensor<1x8x?x64xf32>)
        k = 16 w = 32
        outs(%dq0, %dk0, %dv0, %du0 : tensor<1x8x?x64xf32>, tensor<1x2x?x64xf32>,
             tensor<1x2x?x64xf32>, tensor<1x2x?xf32>)
        -> tensor<1x8x?x64xf32>, tensor<1x2x?x64xf32>, tensor<1x2x?x64xf32>,
           tensor<1x2x?xf32>
    ```
  }];
  let arguments = (ins SparseK_TensorOrMemRef:$query, SparseK_TensorOrMemRef:$key,
                       SparseK_TensorOrMemRef:$value, SparseK_TensorOrMemRef:$scores,
                       SparseK_TensorOrMemRef:$grad_output,
                       I64Attr:$k, I64Attr:$w, OptionalAttr<F32Attr>:$scale,
                       SparseK_TensorOrMemRef:$grad_query_init,
                       SparseK_TensorOrMemRef:$grad_key_init,
                       SparseK_TensorOrMemRef:$grad_value_init,
                       SparseK_TensorOrMemRef:$grad_scores_init);
  let assemblyFormat = [{
    `ins` `(` $query `,` $key `,` $value `,` $scores `,` $grad_output `:`
        type($query) `,` type($key) `,` type($value) `,` type($scores) `,`
        type($grad_output) `)`
    `k` `=` $k `w` `=` $w (`scale` `=` $scale^)?
    `outs` `(` $grad_query_init `,` $grad_key_init `,` $grad_value_init `,`
        $grad_scores_init `:` type($grad_query_init) `,` type($grad_key_init) `,`
        type($grad_value_init) `,` type($grad_scores_init) `)`
    attr-dict (`->` type($results)^)?
  }];
}

def SparseK_ScoreGradOp : SparseK_DpsOp<"score_grad", [
    DeclareOpInterfaceMethods<OpAsmOpInterface, ["getAsmResultNames"]>]> {
  let summary = "Backward of sparsek.score: gradients of input, weight, bias and slope";
  let description = [{
    Given `grad_scores = dL/du [B, Hkv, T]` of `u = sparsek.score(input,
    weight, bias, slope, offset)`, the chain rule through SPEC 2:

        grad_input[b, t, c] = sum_h grad_scores[b, h, t] * weight[h, c]
        grad_weight[h, c]   = sum_{b, t} grad_scores[b, h, t] * input[b, t, c]
        grad_bias[h]        = sum_{b, t} grad_scores[b, h, t]
        grad_slope[h]       = sum_{b, t} grad_scores[b, h, t] * (offset + t)

    `u` is linear in bias and slope, so their values are not needed; a
    caller without them ignores their gradients. `input [B, T, C]` and
    `weight [Hkv, C]` are f16, bf16 or f32 (one type); `grad_scores` and
    every gradient are f32, accumulated in f32.

    Example:

    ```mlir
    %dx, %dw, %db, %ds = sparsek.score_grad
        ins(%x, %wsc, %du : tensor<2x?x64xf32>, tensor<4x64xf32>, tensor<2x4x?xf32>)
        offset(%off)
        outs(%dx0, %dw0, %db0, %ds0 : tensor<2x?x64xf32>, tensor<4x64xf32>,
             tensor<4xf32>, tensor<4xf32>)
        -> tensor<2x?x64xf32>, tensor<4x64xf32>, tensor<4xf32>, tensor<4xf32>
    ```
  }];
  let arguments = (ins SparseK_TensorOrMemRef:$input, SparseK_TensorOrMemRef:$weight,
                       SparseK_TensorOrMemRef:$grad_scores, Optional<Index>:$offset,
                       SparseK_TensorOrMemRef:$grad_input_init,
                       SparseK_TensorOrMemRef:$grad_weight_init,
                       SparseK_TensorOrMemRef:$grad_bias_init,
                       SparseK_TensorOrMemRef:$grad_slope_init);
  let assemblyFormat = [{
    `ins` `(` $input `,` $weight `,` $grad_scores `:` type($input) `,`
        type($weight) `,` type($grad_scores) `)`
    (`offset` `(` $offset^ `)`)?
    `outs` `(` $grad_input_init `,` $grad_weight_init `,` $grad_bias_init `,`
        $grad_slope_init `:` type($grad_input_init) `,` type($grad_weight_init) `,`
        type($grad_bias_init) `,` type($grad_slope_init) `)`
    attr-dict (`->` type($results)^)?
  }];
}

def SparseK_MaskGradOp : SparseK_DpsOp<"mask_grad"> {
  let summary = "SPARSEK vector-Jacobian product on the last axis";
  let description = [{
    Given `grad_mask = dL/dp` of `p, tau = sparsek.mask(input, k)`, computes
    per row (SPEC 3), with `Supp = {i : 0 < clip(input_i - tau, 0, 1) < 1}`:

        grad_input_i = [i in Supp] (grad_mask_i - mean_{j in Supp} grad_mask_j)

    Entries with `p = 0` or `p = 1` (masked ones included) get zero
    gradient, as does every entry of a row whose support is empty
    (`tau = +inf` for `k = 0`, `-inf` for `k >= n`). `tau` is the forward
    op's; `k` is not needed.

    `input`, `grad_mask` and `grad_input` are f32 of one shape (rank >= 1),
    `tau` is f32 with the shape of `input` without its last dimension.

    Example:

    ```mlir
    %dz = sparsek.mask_grad ins(%z, %tau, %dp : tensor<8x?xf32>, tensor<8xf32>,
                                tensor<8x?xf32>)
            outs(%dz0 : tensor<8x?xf32>) -> tensor<8x?xf32>
    ```
  }];
  let arguments = (ins SparseK_TensorOrMemRef:$input, SparseK_TensorOrMemRef:$tau,
                       SparseK_TensorOrMemRef:$grad_mask, SparseK_TensorOrMemRef:$init);
  let assemblyFormat = [{
    `ins` `(` $input `,` $tau `,` $grad_mask `:` type($input) `,` type($tau) `,`
        type($grad_mask) `)`
    `outs` `(` $init `:` type($init) `)` attr-dict (`->` type($results)^)?
  }];
}

//===----------------------------------------------------------------------===//
// check_sizes (run-time size check left by transformations)
//===----------------------------------------------------------------------===//

def SparseK_CheckSizesOp : SparseK_Op<"check_sizes", [
    MemoryEffects<[MemRead, MemWrite]>]> {
  let summary = "Report a shape mismatch at run time when two sizes differ";
  let description = [{
    Records SPARSEK_ERROR_SHAPE_MISMATCH (include/sparsek-c/Status.h) in the
    status word when `lhs != rhs`, unless an earlier error is recorded. A
    transformation that splits an op whose lowering compares sizes of its
    operands emits it where no remaining op sees both sizes:
    `sparsek-decompose-select-attention` checks that the scores and the keys
    have the same S. It guards nothing: the ops after it stay memory-safe
    on any sizes, and the caller sees the error. It is lowered by
    `sparsek-lower-to-loops` (in host code on the GPU path) and folds away
    when both sizes are the same value or equal constants.

    Example:

    ```mlir
    sparsek.check_sizes %scores_s, %keys_s
    ```
  }];
  let arguments = (ins Index:$lhs, Index:$rhs);
  let assemblyFormat = "$lhs `,` $rhs attr-dict";
  let hasCanonicalizeMethod = 1;
}

#endif // SPARSEK_OPS_TD
