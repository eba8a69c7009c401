// Conversions of sparsek ops to other dialects.
#ifndef SPARSEK_CONVERSION_PASSES_TD
#define SPARSEK_CONVERSION_PASSES_TD

include "mlir/Pass/PassBase.td"

def SparseKLowerToLoops : Pass<"sparsek-lower-to-loops", "ModuleOp"> {
  let summary = "Lower buffer-form sparsek ops to scf loops over memrefs (CPU reference)";
  let description = [{
    Rewrites every sparsek op in buffer form (after one-shot bufferization)
    into scf/arith/math/memref code that computes exactly what SPEC.md says:
    exact SPARSEK thresholds accumulated in f64, selection by a running
    top-k over the prefix (O(log k) per candidate, never a sort per query),
    and attention with an online softmax over the window and the selected
    keys (no T x S intermediate; extra memory O(k) per row).

    The composite `select_attention`, when it was not decomposed, is lowered
    fused (SPEC 7): per-query thresholds tau(t) and theta(t) from the chunked
    selection below, then attention that visits each query's selection
    without materializing indices or gates.

    With `parallel-loops`, selection is parallel over query chunks of
    `select-chunk` candidates: per-chunk sorted top-(k+1) lists, a
    logarithmic scan that merges them, exact boundary thresholds, then
    each query's tau and theta found alone (a bracketed search over its
    chunk's band and its own candidates, a rank among the chunk's); no step
    is sequential over a whole row. The gradient
    ops (but mask_grad) get parallel forms too: attention_grad one
    iteration per query (softmax statistics recomputed, dkey, dvalue and
    the gate gradients added atomically), select_grad per key a support
    range of queries found by binary search over tau (which never
    decreases along the queries) plus two-level scans over queries,
    score_grad per element and per chunk of tokens (atomic partial sums).

    Bad input found at run time (NaN or +inf scores, dynamic sizes that
    disagree, more queries than keys) is recorded in the module's status word
    (`sparsek_status()`, codes in include/sparsek-c/Status.h) and the op's
    computation is skipped; the process never aborts. With `parallel-loops`
    the data (scores, the decode cache state) is checked inside the
    parallel iterations (the GPU's kernels), which record the same codes in
    the device status (Status.h: a compare-and-swap on the status word, the
    first error wins) and skip what the bad value spoils; on the CPU that
    word is the module's status word, on the GPU sparsek-gpu-device-status
    makes it the runtime's.

    Ops still in tensor form are an error: run one-shot-bufferize first (the
    `sparsek-cpu-pipeline` does).
  }];
  let options = [
    Option<"parallelLoops", "parallel-loops", "bool", /*default=*/"false",
           "Emit scf.parallel over independent (batch, head, query-block) "
           "iterations with per-query stack scratch (select: kernels over "
           "query chunks, scratch allocated outside), for mapping "
           "to a GPU; kernels report NaN/+inf scores and bad cache states "
           "through the device status; "
           "ops without a parallel lowering (mask, mask_grad) are rejected">,
    Option<"queryBlock", "query-block", "int64_t", /*default=*/"64",
           "With parallel-loops: queries per outer parallel iteration">,
    Option<"selectChunk", "select-chunk", "int64_t", /*default=*/"0",
           "Candidates per chunk of the chunked (parallel) selection used by "
           "select with parallel-loops and by the fused select_attention; "
           "0 picks max(256, ceil(C / 64)) for C candidates per row">
  ];
  let dependentDialects = [
    "::mlir::affine::AffineDialect",
    "::mlir::arith::ArithDialect", "::mlir::func::FuncDialect",
    "::mlir::LLVM::LLVMDialect", "::mlir::math::MathDialect",
    "::mlir::memref::MemRefDialect", "::mlir::scf::SCFDialect",
    "::mlir::vector::VectorDialect"
  ];
}

def SparseKTileSelectAttention : Pass<"sparsek-tile-select-attention", "ModuleOp"> {
  let summary = "Lower buffer-form select_attention tile first: per-block key sets, then mma.sync tiles (GPU) or the same tile walk as scalar loops (CPU)";
  let description = [{
    The tile-first form of the fused composite (SPEC 7, DESIGN.md "tile
    first"). One tile holds M = 64 or 128 rows (`tile-rows`): BM = M / G
    consecutive queries [t0, t1] of one (batch, KV head) times the G query
    heads of the group (groups wider than M split over several tiles). Its key set is
    Sel(t0) = TopK(candidates <= pos(t0) - w), ascending, followed by the
    contiguous range [pos(t0) - w + 1, pos(t1)] (window span and the later
    queries' new candidates), walked in key tiles of 64. Per element (t, j):
    window if pos(t) - w + 1 <= j <= pos(t); candidate if j <= pos(t) - w
    and (u_j, -j) >= theta(t) in SPEC 4's order, with gate
    clip(u_j - tau(t), 0, 1); otherwise masked. The gate scales P after the
    exponent and stays out of the row sum.

    Host code first runs the chunked selection (as sparsek-lower-to-loops'
    parallel form does) and turns it, in parallel loops, into the block
    lists Sel(t0) and per-query f32 tau(t) and theta(t). With
    `row-selection=true` (and the automatic chunk length), rows of 1 to
    4096 candidates (S - w) get them from the row selection instead
    (`form=scalar`: the same steps for warps of one lane, as loops), one `gpu.launch_func` of
    1024 threads per (batch, KV head) row: the row's scores sorted in
    workgroup memory, then each warp sweeping a run of consecutive queries
    (tau's piece of f and theta carried from one query to the next,
    `nvvm.vote.sync ballot` over 32 sorted entries at once), then the
    block lists. Then:

    - `form=mma-sync`: one `gpu.launch_func` of a `gpu.func` (in a new
      `gpu.module`) per op, grid (query blocks, KV heads x head splits,
      batch), 128 threads: K/V rows gathered into workgroup memory with
      16-byte `nvgpu.device_async_copy` (zero fill for padding), `nvgpu.ldmatrix`,
      Q K^T and (P * gates) V on `nvvm.mma.sync` m16n8k16 (bf16 packed as
      i32), the online softmax in registers (`gpu.shuffle xor`,
      `math.exp2`). Covers bf16 and f16 inputs with static D and Dv in
      {64, 128}; other ops are left for sparsek-lower-to-loops.
    - `form=wgmma` (chip sm_90a only): the same tiles, grid and arguments
      as one warpgroup (128 threads) per 64 rows of a tile (two for
      M = 128, sharing every gathered K/V tile) with dynamic workgroup
      memory: Q and double-buffered K/V tiles gathered with cp.async into
      128-byte-swizzled atoms (the next key tile's gather in flight while
      the current one is computed), Q K^T on `nvvm.wgmma.mma_async`
      (operands from shared-memory descriptors), (P * gates) V on wgmma
      with P from registers (inline PTX: MLIR 22 has no register-A form),
      `nvvm.fence.proxy` between the gathers and wgmma. Covers what
      `form=mma-sync` covers and leaves the rest alike.
    - `form=scalar`: the same tiles, slots, membership test and per-tile
      softmax updates as plain loops, so the CPU runs (and tests) the walk.

    With `grads=true` the pass also lowers `select_attention_grad` on the
    same tiles (of `grad-tile-rows` rows), key lists and thresholds
    (recomputed from the scores, as the op says). dkey and dvalue are
    zeroed, then the SPARSEK VJP's kernels find each key's support range of
    queries and the support
    sizes (as select_grad's parallel form), then one kernel per op walks
    each tile's key list twice: pass 1 gives each row's softmax maximum,
    sum and Delta = <do, o>; pass 2 recomputes P = exp(S - lse) and forms
    dS = P (g dPv - Delta). dq is kept per row; dvalue += (P g)^T dO and
    dkey += scale dS^T Q are added atomically per key; the selected
    support's dg = P dPv goes into du (column sums) and into each query's
    support sum, from which the mean term follows. In both GPU forms the
    kernel is mma.sync (4 or 8 warps, dynamic workgroup memory holding Q,
    dO, two K/V tiles, three slot buffers and P g, dS, read transposed by
    `ldmatrix.trans`; the next key tile's gather is in flight while one is
    computed; 128 rows share each gathered K/V tile and add dkey and
    dvalue half as often per row); with `form=scalar` it is the same walk
    as loops. `forward=false` leaves
    `select_attention` to sparsek-lower-to-loops.

    Run-time checks and their status codes are those of the fused loop
    lowering; rows must be 16-byte aligned in the GPU forms
    (SPARSEK_ERROR_MISALIGNED). NaN and +inf scores are reported by the
    selection's kernels and a kernel over the window-only positions through
    the device status (sparsek-gpu-device-status), then skipped as masked.

    Before:

    ```mlir
    sparsek.select_attention ins(%q, %k, %v, %u : memref<?x?x?x64xbf16>, ...)
        k = 64 w = 32 outs(%o : memref<?x?x?x64xbf16>)
    ```

    After (`form=mma-sync`, abridged):

    ```mlir
    gpu.module @sparsek_select_attention_tiles_0 {
      gpu.func @tiles(...) workgroup(...) kernel {
        nvgpu.device_async_copy ... ; nvgpu.ldmatrix ... ; nvvm.mma.sync ...
      }
    }
    func.func @f(...) {
      scf.parallel ...   // chunked selection, block lists, thresholds
      gpu.launch_func @sparsek_select_attention_tiles_0::@tiles
          blocks in (%nb, %hs, %b) threads in (%c128, %c1, %c1) args(...)
    }
    ```
  }];
  let options = [
    Option<"form", "form", "std::string", /*default=*/"\"mma-sync\"",
           "mma-sync (GPU kernel on tensor cores), wgmma (the same on "
           "Hopper wgmma, sm_90a) or scalar (the same tile walk as loops, "
           "for the CPU)">,
    Option<"selectChunk", "select-chunk", "int64_t", /*default=*/"0",
           "Candidates per chunk of the chunked selection; 0 picks "
           "max(256, ceil(C / 64)) for C candidates per row">,
    Option<"rowSelection", "row-selection", "bool", /*default=*/"false",
           "With the automatic chunk length: rows of 1 to 4096 candidates "
           "take the one-launch row selection instead of the chunked one "
           "(form=scalar: the same steps as loops)">,
    Option<"tileRows", "tile-rows", "int64_t", /*default=*/"0",
           "(query, head) rows per tile: 64, or 128 (wgmma: two warpgroups "
           "sharing each gathered K/V tile; scalar: the same key sets); 0 "
           "picks 64">,
    Option<"forward", "forward", "bool", /*default=*/"true",
           "Lower select_attention (false: leave it to "
           "sparsek-lower-to-loops)">,
    Option<"grads", "grads", "bool", /*default=*/"false",
           "Also lower select_attention_grad on the same tiles: an "
           "mma.sync kernel in both GPU forms, loops with form=scalar">,
    Option<"gradTileRows", "grad-tile-rows", "int64_t", /*default=*/"0",
           "(query, head) rows per tile of the backward, in every form: 64 "
           "(4 warps) or 128 (8 warps sharing each gathered K/V tile); 0 "
           "picks 128">,
    Option<"vectorAtomics", "vector-atomics", "bool", /*default=*/"false",
           "The backward kernel adds dkey and dvalue two columns per "
           "atomic (red.global.add.v2.f32: sm_90 or later, PTX 8.1)">
  ];
  let dependentDialects = [
    "::mlir::affine::AffineDialect", "::mlir::arith::ArithDialect",
    "::mlir::gpu::GPUDialect", "::mlir::LLVM::LLVMDialect",
    "::mlir::math::MathDialect", "::mlir::memref::MemRefDialect",
    "::mlir::NVVM::NVVMDialect", "::mlir::nvgpu::NVGPUDialect",
    "::mlir::scf::SCFDialect", "::mlir::vector::VectorDialect"
  ];
}

def SparseKTileDecodeAttention : Pass<"sparsek-tile-decode-attention", "ModuleOp"> {
  let summary = "Lower buffer-form decode_attention tile first: one thread block per (sequence, KV head, split of the slots), splits merged in the same launch (GPU), or the same walk as scalar loops (CPU)";
  let description = [{
    Decode is bound by the bandwidth of reading the k + w cached K/V rows
    (DESIGN.md "tile first", point 5). Per sequence b and KV head h, the
    valid slots are the pool slots [0, n_pool) with
    n_pool = pool_count[b, h] and the window ring slots
    k + [0, n_win) with n_win = min(pos[b] + 1, w) (ring slot r holds
    a position of the window exactly when r <= pos[b]; the order of the
    keys does not change the softmax). They are numbered 0 .. n_pool + n_win
    and cut into `splits` equal ranges; splits = 1 once B * Hkv reaches
    `target-blocks`, else enough to reach it (at most one per 128 slots).

    - `form=kernel`: one `gpu.launch_func` per op, grid (splits, Hkv, B),
      4 warps. `math=simt` (CUDA cores): lanes copy 16-byte chunks of slot
      rows (D / 8 lanes per row, so a warp covers 32 * 8 / D slots per copy)
      and their scores with cp.async into a two-stage ring per warp, the
      next iteration's rows in flight while this one's are computed (each
      lane reads back only what it copied: no barrier), lane 0 bulk
      prefetching rows further ahead into L2; the G query heads of h keep
      their q chunk in registers and share every K/V chunk. Dot products
      are reduced with xor shuffles; each lane keeps an online softmax per
      head over its slots (exp2, the scale folded into q), with gates
      clip(score - tau, 0, 1) for pool slots and 1 for window slots.
      `math=mma` (tensor cores): each warp takes 16 slots per iteration,
      S = Q K^T and O^T += V^T P^T on mma.sync m16n8k16 (Q rows: the G
      heads), K and V loaded straight from global memory in 16-byte rows
      into the operand registers (the dot products run over a permutation
      of D), P kept in registers; one online softmax per (warp, head).
      Lanes, then warps (workgroup memory) merge their (max, sum, output)
      states. With one split the
      block writes the output; otherwise it writes its partial state to a
      scratch buffer [B * Hkv * splits, G, Dv + 32] (output, max, sum; rows
      padded to whole cache lines), and the last block of
      (b, h) to arrive (an atomic counter in a device global, which that
      block resets to 0 for the next launch or graph replay) merges them.
      No host synchronization and no host read; the scratch is one
      stream-ordered allocation (none with one split). Covers bf16 and f16
      with static D = Dv in {64, 128} and G = Hq / Hkv in 1..8: a static G
      gets one kernel, a dynamic G one kernel per value, chosen at run time
      (scf.index_switch); other G, types and head dims stay for
      sparsek-lower-to-loops (a copy of the op in the switch's default
      region when G is only known at run time).
    - `form=scalar`: the same splits, slot numbering, per-lane slot classes,
      gates and merges as sequential loops (CPU, any element type), the
      split merge included (its counter a host global), to test the walk
      where there is no GPU.

    Checks are those of the parallel loop form: sizes (SHAPE_MISMATCH) and,
    in the kernel form, 16-byte aligned rows (MISALIGNED) on the host. The
    cache state and scores are checked in the walk, as that form's kernels
    check them, and reported through the device status (the runtime's
    status word after sparsek-gpu-device-status; on the CPU the host
    status word) with its codes: a pool count outside [0, k] or a negative
    position is INVALID_CACHE_STATE and leaves the walk of (b, h) empty
    (its query heads output zeros, no slot is read); a NaN tau is
    INVALID_SCORE (the walk goes on with the gates it gives); a NaN or +inf
    score of a valid pool slot is INVALID_SCORE and skips that slot. The
    kernel form adds two memref<i32> launch operands (status word and
    mirror); thread 0 of a block reports the cache state and tau, and each
    lane the invalid scores it skipped, once, after its loop.

    Not safe for two launches of one compiled function running at the same
    time on different streams with more than one split (they share the
    counters).

    Before:

    ```mlir
    sparsek.decode_attention ins(%q, %kc, %vc, %sc, %tau, %cnt, %pos : ...)
        k = 2048 w = 512 outs(%o : memref<?x32x128xbf16>)
    ```

    After (`form=kernel`, abridged):

    ```mlir
    gpu.module @sparsek_decode_tiles_0 {
      memref.global "private" @counters : memref<2112xi32> = dense<0>
      gpu.func @decode_g4(...) workgroup(...) kernel {
        vector.load ... {alignment = 16} : memref<?x8x2560x128xbf16>, vector<8xbf16>
        gpu.shuffle xor ... ; math.exp2 ... ; memref.atomic_rmw addi ...
      }
    }
    func.func @f(...) {
      %splits = ...
      gpu.launch_func @sparsek_decode_tiles_0::@decode_g4
          blocks in (%splits, %c8, %b) threads in (%c128, %c1, %c1) args(...)
    }
    ```
  }];
  let options = [
    Option<"form", "form", "std::string", /*default=*/"\"kernel\"",
           "kernel (GPU) or scalar (the same walk as loops, for the CPU)">,
    Option<"math", "math", "std::string", /*default=*/"\"simt\"",
           "simt (CUDA cores: per-lane dot products, a cp.async ring per "
           "warp) or mma (tensor cores: mma.sync over 16-slot key tiles, "
           "P in registers); the scalar form walks as that kernel does">,
    Option<"targetBlocks", "target-blocks", "int64_t", /*default=*/"2112",
           "Thread blocks a launch aims for (16 per SM of an H100/H200, "
           "about 5 waves at 3 resident blocks per SM, so the last wave's "
           "tail is short): (b, KV head) pairs are split until they reach "
           "it; at most 2^20">
  ];
  let dependentDialects = [
    "::mlir::arith::ArithDialect", "::mlir::gpu::GPUDialect",
    "::mlir::LLVM::LLVMDialect", "::mlir::math::MathDialect",
    "::mlir::memref::MemRefDialect", "::mlir::NVVM::NVVMDialect",
    "::mlir::nvgpu::NVGPUDialect", "::mlir::scf::SCFDialect",
    "::mlir::vector::VectorDialect"
  ];
}

def SparseKEntryPoints : Pass<"sparsek-entry-points", "ModuleOp"> {
  let summary = "Add a C entry point per public function that returns a status (and takes a stream)";
  let description = [{
    For every public function `@f` with a body (the status accessors
    excluded), adds `@f_entry`, which clears the status word, checks the
    buffers, calls `@f` and returns the `i32` status of
    include/sparsek-c/Status.h. The entry point takes every memref with all
    sizes dynamic and compares each size the caller passes with `@f`'s type
    (static sizes such as select's k or a head dimension included; a
    dynamic size must not be negative): on a mismatch it returns
    SPARSEK_ERROR_SHAPE_MISMATCH and runs nothing. The lowerings compare
    dynamic sizes between operands.

    The module also exports `const char *sparsek_manifest(void)`: a JSON
    text (`version`, `stream`, `index_bits`, `functions`) giving each entry
    point's arguments in order: `{"kind": "memref", "element": "f32",
    "shape": [null, 4], "identity_layout": true, "written": false}` (sizes
    null where dynamic; `written` unless every use of the buffer provably
    only reads) or `{"kind": "scalar", "element": "index"}`. Callers that
    bind entry points at run time (python/sparsek) check their arguments
    against it.

    With `gpu`, the entry point's first argument is the CUDA stream
    (`!llvm.ptr`, e.g. torch's current stream) on which the generated
    launches run, through the runtime's `sk_rt_lend_stream`; a CUDA failure
    recorded by the runtime during the call becomes SPARSEK_ERROR_RUNTIME
    (its message is `sk_rt_get_last_error`). Buffers are passed as memref
    descriptors over device pointers; their sizes are the shapes. Run after
    bufferization (the functions take memrefs) and before the lowering to
    LLVM, with C wrappers requested, so that C sees
    `int32_t _mlir_ciface_f_entry(void *stream, Memref *...)`.

    After (`gpu=true`):

    ```mlir
    func.func @attn_entry(%stream: !llvm.ptr, %q: memref<?x?x?x?xbf16>, ...) -> i32 {
      call @sk_rt_lend_stream(%stream) : (!llvm.ptr) -> ()
      call @sparsek_clear_status() : () -> ()
      %d = memref.dim %q, %c3 : memref<?x?x?x?xbf16>
      %ok = arith.cmpi eq, %d, %c64 : index
      ...
      scf.if %ok {
        %q64 = memref.cast %q : memref<?x?x?x?xbf16> to memref<?x?x?x64xbf16>
        call @attn(%q64, ...) : (...) -> ()
      }
      ...
      return %status : i32
    }
    func.func @sparsek_manifest() -> !llvm.ptr
    ```
  }];
  let options = [
    Option<"gpu", "gpu", "bool", /*default=*/"false",
           "Take a CUDA stream first and fold the runtime's CUDA status in">
  ];
  let dependentDialects = [
    "::mlir::arith::ArithDialect", "::mlir::func::FuncDialect",
    "::mlir::LLVM::LLVMDialect", "::mlir::memref::MemRefDialect",
    "::mlir::scf::SCFDialect"
  ];
}

def SparseKCheckAllocations : Pass<"sparsek-check-allocations", "ModuleOp"> {
  let summary = "Guard every dynamically sized memref.alloc: overflow or a null buffer sets a status";
  let description = [{
    A `memref.alloc` becomes `malloc`, which returns null when memory runs
    out, and its byte size is a product of run-time sizes that can
    overflow: the code after it would write through a null or short
    buffer. For every allocation with a dynamic size this pass checks that
    the byte size fits in 63 bits before allocating, and that the buffer is
    not null (unless empty) after; otherwise it records
    SPARSEK_ERROR_OUT_OF_MEMORY (include/sparsek-c/Status.h) and skips the
    rest of the allocation's block, which holds every use of the buffer. An
    allocation whose block hands values to its terminator (a returned or
    loop-carried buffer) is left as it is. Run on host code before the
    lowering to LLVM (sparsek-cpu-pipeline runs it after the entry points).

    After:

    ```mlir
    %fits = ... // n * 4 <= INT64_MAX, or n == 0
    scf.if %fits {
      %buf = memref.alloc(%n) : memref<?xf32>
      %p = memref.extract_aligned_pointer_as_index %buf : memref<?xf32> -> index
      %there = ... // %p != 0, or n == 0
      scf.if %there {
        ... // the rest of the block, which uses %buf
      } else {
        ... // status = SPARSEK_ERROR_OUT_OF_MEMORY
      }
    } else {
      ... // status = SPARSEK_ERROR_OUT_OF_MEMORY
    }
    ```
  }];
  let dependentDialects = [
    "::mlir::arith::ArithDialect", "::mlir::memref::MemRefDialect",
    "::mlir::scf::SCFDialect"
  ];
}

def SparseKCheckLinalgSizes : Pass<"sparsek-check-linalg-sizes", "ModuleOp"> {
  let summary = "Guard buffer-form linalg ops whose operands share a dynamic size: a mismatch sets a status and skips the op";
  let description = [{
    A linalg op's operands must agree on the size of each loop dimension
    they share (in `linalg.matmul ins(A, B) outs(C)`: A's columns are B's
    rows, A's rows C's rows, B's columns C's columns). Where a size is
    dynamic, neither the verifier nor the entry points (which check each
    argument against its own type) compare them, and the lowered loops
    would read or write past the smaller buffer. For every buffer-form
    linalg op, the operand dimensions that index one loop dimension through
    a plain dimension of their indexing maps (`d1`, not `d1 * 16 + d2`) are
    compared at run time where one of a pair is dynamic; on a mismatch the
    status word records SPARSEK_ERROR_SHAPE_MISMATCH (2) and the op is
    skipped. Ops whose shared sizes are all static are left as they are.
    Both pipelines run it right after bufferization.

    ```mlir
    linalg.matmul ins(%a, %b : memref<?x?xf32>, memref<?x8xf32>)
                  outs(%c : memref<?x8xf32>)
    ```

    becomes

    ```mlir
    %ok = ... (dim %a, 0) == (dim %c, 0) and (dim %a, 1) == (dim %b, 0)
    scf.if %ok {   // otherwise: status 2
      linalg.matmul ins(%a, %b : ...) outs(%c : ...)
    }
    ```
  }];
  let dependentDialects = [
    "::mlir::arith::ArithDialect",
    "::mlir::func::FuncDialect",
    "::mlir::memref::MemRefDialect",
    "::mlir::scf::SCFDialect",
  ];
}

def SparseKGPUHostAllocs : Pass<"sparsek-gpu-host-allocs", "ModuleOp"> {
  let summary = "Move host-side buffers that GPU kernels use to device memory (gpu.alloc)";
  let description = [{
    Bufferization gives intermediate tensors (a decomposed composite op's
    indices and gates, a layer's projections) and the lowerings' scratch a
    `memref.alloc` in host code, which becomes `malloc`: a kernel that
    reads it faults. In code from `sparsek-gpu-pipeline` every buffer the
    host passes around is device memory (entry points take device
    pointers), so this pass, run once the parallel loops are launches,
    rewrites host code:
    - a `memref.alloc` whose buffer reaches a kernel (a `gpu.launch_func`
      operand or a use inside a `gpu.launch`, possibly through views or a
      `memref.copy`) becomes `gpu.alloc`, and its `memref.dealloc`s become
      `gpu.dealloc`;
    - a `memref.copy` between device buffers (function arguments or moved
      allocations) becomes `gpu.memcpy`.
    Each new op runs on the stream of `gpu.wait async` (the caller's stream
    under `sparsek-entry-points{gpu}`) and is waited for, as the
    synchronous launches around it are. Allocations inside kernels stay.
    A buffer that kernels use and host code also loads or stores is an
    error: host code cannot read device memory.

    Before:

    ```mlir
    %m = memref.alloc(%n) : memref<?xf32>
    gpu.launch_func @k::@k blocks in (...) threads in (...) args(%m : memref<?xf32>)
    memref.dealloc %m : memref<?xf32>
    ```

    After:

    ```mlir
    %0 = gpu.wait async
    %m, %1 = gpu.alloc async [%0] (%n) : memref<?xf32>
    gpu.wait [%1]
    gpu.launch_func @k::@k blocks in (...) threads in (...) args(%m : memref<?xf32>)
    %2 = gpu.wait async
    %3 = gpu.dealloc async [%2] %m : memref<?xf32>
    gpu.wait [%3]
    ```
  }];
  let dependentDialects = ["::mlir::gpu::GPUDialect"];
}

def SparseKGPULaunchDependents
    : Pass<"sparsek-gpu-launch-dependents", "ModuleOp"> {
  let summary = "Let each kernel launch while the one before it drains "
                "(programmatic dependent launch, sm_90)";
  let description = [{
    A fused select_attention is some forty launches on one stream, most of
    them short selection kernels; between two of them the GPU drains one
    grid, flushes its writes and only then starts launching the next. On
    sm_90 a launch may instead overlap the end of the grid before it
    (programmatic dependent launch) provided the kernel waits for that grid
    before touching memory. This pass, run on outlined kernels, makes every
    kernel of every `gpu.module`:
    start with `nvvm.griddepcontrol wait`, which returns once the grids
    before it on the stream have completed and their writes are visible (at
    once when the launch was an ordinary one), so nothing the kernel does
    can see an unfinished predecessor. Kernels do not trigger their
    dependents early (`launch_dependents`): blocks of the next kernel then
    sat on SMs that the current one still needed, and every shape measured
    slower. Each module also gets the external global `__sparsek_waits_on_grid`
    (i32 1): the runtime's `mgpuLaunchKernel` launches the kernels of
    modules that have it with the programmatic-serialization attribute and
    every other kernel as before, so code compiled without this pass never
    overlaps.
  }];
  let dependentDialects = [
    "::mlir::gpu::GPUDialect", "::mlir::LLVM::LLVMDialect",
    "::mlir::NVVM::NVVMDialect"
  ];
}

def SparseKGPUNameKernels : Pass<"sparsek-gpu-name-kernels", "ModuleOp"> {
  let summary = "Give every outlined kernel a name of its own";
  let description = [{
    `gpu-kernel-outlining` puts each launch of a function `f` in its own
    module (`f_kernel`, `f_kernel_0`, ...) but names the kernel in every one
    of them `f_kernel`. A profiler (nsys, ncu, torch.profiler) shows kernels
    by that name alone, so the forty-odd kernels of a fused select_attention
    all read the same and a breakdown cannot tell them apart. This pass
    renames each such kernel (one whose module's name extends its own, as
    outlining names them) that another `gpu.module` also names so to its
    module's symbol name, unique in the module, and updates the
    `gpu.launch_func` ops that launch it. Kernels the compiler named itself
    (`tiles`, `decode_g4`, ...) keep their names.

    ```mlir
    gpu.launch_func @f_kernel_0::@f_kernel ...   // before
    gpu.launch_func @f_kernel_0::@f_kernel_0 ... // after
    ```
  }];
  let dependentDialects = ["::mlir::gpu::GPUDialect"];
}

def SparseKGPUScratchArena : Pass<"sparsek-gpu-scratch-arena", "ModuleOp"> {
  let summary = "Carve a block's device buffers out of one checked allocation";
  let description = [{
    The fused select_attention allocates some forty scratch buffers per
    call. Each `gpu.alloc` and `gpu.dealloc` is a driver call on the host
    (a stream-ordered pool allocation), and the GPU idles while the host
    makes the ones between two launches. This pass, run after
    `sparsek-gpu-host-allocs`, gives the device buffers of one block a
    single allocation instead:
    - the buffers are the block's `gpu.alloc`s (not host-shared, identity
      layout) with one `gpu.dealloc` in the same block, and sizes the
      first of them can compute (pure ops that compute a later size move
      up to it);
    - at the first one, their byte sizes (rounded up to 256 bytes) are
      summed, each product and sum checked against int64, and one
      `gpu.alloc` of bytes is made; each buffer becomes a `memref.view` of
      it at its offset;
    - their deallocations become one, at the last of them;
    - the rest of the block runs only if the sum fits and the allocation
      is not null (or empty); otherwise the status word records
      SPARSEK_ERROR_OUT_OF_MEMORY, as sparsek-check-allocations does on
      the CPU. A kernel never gets a null scratch pointer.
    Every buffer then lives from the first allocation to the last
    deallocation: the peak is the sum of the buffers, not the largest set
    alive at once.

    Before:

    ```mlir
    %0 = gpu.wait async
    %a, %1 = gpu.alloc async [%0] (%n) : memref<?xf32>
    gpu.wait [%1]
    %2 = gpu.wait async
    %b, %3 = gpu.alloc async [%2] (%n) : memref<?xi64>
    gpu.wait [%3]
    ... // launches using %a and %b
    %4 = gpu.wait async
    %5 = gpu.dealloc async [%4] %a : memref<?xf32>
    gpu.wait [%5]
    %6 = gpu.wait async
    %7 = gpu.dealloc async [%6] %b : memref<?xi64>
    gpu.wait [%7]
    ```

    After:

    ```mlir
    %bytes = ... // 256-aligned sizes summed, %fits: no overflow
    scf.if %fits {
      %0 = gpu.wait async
      %arena, %1 = gpu.alloc async [%0] (%bytes) : memref<?xi8>
      gpu.wait [%1]
      %there = ... // %arena is not null, or %bytes is 0
      scf.if %there {
        %a = memref.view %arena[%c0][%n] : memref<?xi8> to memref<?xf32>
        %b = memref.view %arena[%offset][%n] : memref<?xi8> to memref<?xi64>
        ... // launches using %a and %b
        %2 = gpu.wait async
        %3 = gpu.dealloc async [%2] %arena : memref<?xi8>
        gpu.wait [%3]
      } else { ... } // status = SPARSEK_ERROR_OUT_OF_MEMORY
    } else { ... }
    ```
  }];
  let dependentDialects = [
    "::mlir::arith::ArithDialect", "::mlir::gpu::GPUDialect",
    "::mlir::memref::MemRefDialect", "::mlir::scf::SCFDialect"
  ];
}

def SparseKGPUDeviceStatus : Pass<"sparsek-gpu-device-status", "ModuleOp"> {
  let summary = "Give GPU kernels the runtime's device status words instead of the host status globals";
  let description = [{
    Kernels that find invalid input (NaN or +inf scores, a bad decode cache
    state) record it in the device status: a compare-and-swap on a word
    (the first error stays) and, by the thread that won, a store of the code
    to a mirror. The lowerings spell both as the module's host globals
    `__sparsek_status` and `__sparsek_status_mirror`, which is what the CPU
    runs (`sparsek-cpu-pipeline{parallel-loops}`): there kernel errors land
    in the host status word and the entry point returns them. A GPU kernel
    cannot reach host globals, so in the GPU pipeline this pass, run once
    the parallel loops are `gpu.launch` ops (before outlining), replaces
    every kernel use of them (inside a `gpu.launch`, or as a
    `gpu.launch_func` operand of a hand-built kernel) with the runtime's
    words for this library: `sk_rt_device_status_word(key)` in device
    memory and `sk_rt_device_status_mirror(key)` in pinned host-mapped
    memory, fetched by host code just before the launch (`key` is the
    address of the library's host status word). Host uses stay.

    The module also gets the host functions
    `int32_t sparsek_device_status(void)`, which reads the mirror without
    synchronizing (every error of kernels that have finished), and
    `void sparsek_clear_device_status(void *stream)`, which synchronizes
    `stream` and zeroes both words. Nothing is added to the launches' path
    but the two lookups, so a call stays capturable in a CUDA graph.

    Before:

    ```mlir
    gpu.launch blocks(...) threads(...) {
      %w = memref.get_global @__sparsek_status : memref<i32>
      %old = memref.generic_atomic_rmw %w[] : memref<i32> { ... }
      ...
    }
    ```

    After:

    ```mlir
    %s = memref.get_global @__sparsek_status : memref<i32>
    %key = memref.extract_aligned_pointer_as_index %s : memref<i32> -> index
    %w = call @sk_rt_device_status_word(%key) : (index) -> memref<i32>
    gpu.launch blocks(...) threads(...) {
      %old = memref.generic_atomic_rmw %w[] : memref<i32> { ... }
      ...
    }
    ```
  }];
  let dependentDialects = [
    "::mlir::func::FuncDialect",
    "::mlir::gpu::GPUDialect",
    "::mlir::LLVM::LLVMDialect",
    "::mlir::memref::MemRefDialect",
  ];
}

def SparseKGPUMatmulTiles : Pass<"sparsek-gpu-matmul-tiles", "ModuleOp"> {
  let summary = "Lower bf16/f16 linalg.matmul with f32 accumulators to mma.sync tensor-core tiles";
  let description = [{
    A layer's projections (`x @ W`, as `sparsek.layer` emits them) are
    `linalg.matmul` ops on bf16 or f16 operands that accumulate into f32.
    Left to `convert-linalg-to-parallel-loops`, each output element is one
    thread walking K on CUDA cores. This pass replaces each such op in
    buffer form (default indexing maps, identity layouts) by a
    `gpu.launch_func` of a tensor-core kernel: one CTA of 4 warps per
    64 x 128 tile of C, K in steps of 64 through a two-stage workgroup ring
    of 16-byte cp.async copies (zero fill past M, N and K), XOR-swizzled
    tiles read with ldmatrix, mma.sync m16n8k16 with f32 accumulators added
    to C in the epilogue (each element by one thread: deterministic).

    The launch sits in an `scf.if` on what cp.async needs: A and B starting
    on 16 bytes, C on 8, K and N multiples of 8 (folded where static). The
    else branch keeps a copy of the op for the loops. Ops whose static K or
    N is not a multiple of 8, other element types, user-defined maps and
    non-identity layouts are left alone.

    Before:

    ```mlir
    linalg.matmul ins(%x, %w : memref<?x256xbf16>, memref<256x512xbf16>)
                  outs(%acc : memref<?x512xf32>)
    ```

    After (abridged):

    ```mlir
    scf.if %fits {
      gpu.launch_func @sparsek_matmul_tiles_0::@tiles
          blocks in (%mtiles, %c4, %c1) threads in (%c128, %c1, %c1)
          args(%x : memref<?x256xbf16>, %w : memref<256x512xbf16>,
               %acc : memref<?x512xf32>)
    } else {
      linalg.matmul ins(%x, %w : ...) outs(%acc : ...)
    }
    ```
  }];
  let dependentDialects = [
    "::mlir::arith::ArithDialect",
    "::mlir::gpu::GPUDialect",
    "::mlir::memref::MemRefDialect",
    "::mlir::nvgpu::NVGPUDialect",
    "::mlir::NVVM::NVVMDialect",
    "::mlir::scf::SCFDialect",
    "::mlir::vector::VectorDialect",
  ];
}

def SparseKGPUThreadTiles : Pass<"sparsek-gpu-thread-tiles", "func::FuncOp"> {
  let summary = "Give single-level parallel loops a thread level for the GPU";
  let description = [{
    `gpu-map-parallel-loops` maps the outermost `scf.parallel` of a nest to
    GPU blocks and a nested one to threads. The sparsek lowerings emit both
    levels, but loops from plain tensor code (a layer's projections, norms,
    MLPs: `convert-linalg-to-parallel-loops`) have one level, so each block
    ran a single thread. This pass tiles every `scf.parallel` that neither
    contains nor sits in another one (with unit innermost step and no
    reductions, as linalg lowers): its innermost dimension is split into
    tiles of `threads` iterations, a one-dimensional tile loop nested inside
    (bound `affine.min(threads, extent - start)`), which becomes the
    block's x threads. The innermost dimension is the contiguous one of row-major
    results and of `x @ W` weights, so a warp's threads read and write
    neighbouring elements. Loops that already have a thread level are left
    alone.

    Before:

    ```mlir
    scf.parallel (%b, %h, %d) = (%c0, %c0, %c0) to (%nb, %c4, %c128) step (%c1, %c1, %c1) {
      ...
    }
    ```

    After (`threads=64`):

    ```mlir
    scf.parallel (%b, %h, %d0) = (%c0, %c0, %c0) to (%nb, %c4, %c128) step (%c1, %c1, %c64) {
      %n = affine.min affine_map<(d0, d1) -> (64, d0 - d1)>(%c128, %d0)
      scf.parallel (%j) = (%c0) to (%n) step (%c1) {
        %d = arith.addi %d0, %j : index
        ...
      }
    }
    ```
  }];
  let options = [
    Option<"threads", "threads", "int64_t", /*default=*/"128",
           "Iterations of the innermost dimension per tile (threads per block)">
  ];
  let dependentDialects = ["::mlir::affine::AffineDialect", "::mlir::scf::SCFDialect"];
}

#endif // SPARSEK_CONVERSION_PASSES_TD
