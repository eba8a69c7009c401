# Bad arguments to compiled entry points: the compiled size checks and the Python signature checks (issue 13).
import ctypes

import numpy as np
import pytest

from cpu_harness import library, rng
from sparsek import ir, status
from sparsek.memref import to_descriptor
from sparsek.status import SparseKError


def guarded(shape, dtype, fill=0):
    """An array of `shape` at the front of a larger buffer, and the buffer: a
    write past the array's end shows in the buffer's tail."""
    n = int(np.prod(shape))
    whole = np.full(n + 64, fill, dtype)
    return whole[:n].reshape(shape), whole


def assert_rejected_untouched(fn, *buffers):
    """`fn` raises SHAPE_MISMATCH and leaves every byte of `buffers` as it was."""
    before = [b.copy() for b in buffers]
    with pytest.raises(SparseKError) as e:
        fn()
    assert e.value.code == status.SHAPE_MISMATCH
    for b, old in zip(buffers, before):
        np.testing.assert_array_equal(b, old)


# --- static sizes (k, k + w, head dim) are checked by the compiled entry points ---

@pytest.mark.parametrize("last", [2, 3, 5])
def test_select_rejects_index_and_gate_arrays_of_the_wrong_k(last):
    lib = library(ir.select_function("select", k=4, w=2))
    u = rng(1).normal(size=(1, 2, 8)).astype(np.float32)
    idx, idx_buf = guarded((1, 2, 8, last), np.int32, 12345)
    gates, gates_buf = guarded((1, 2, 8, last), np.float32, 7.0)
    tau, tau_buf = guarded((1, 2, 8), np.float32, 7.0)
    assert_rejected_untouched(lambda: lib.call("select", u, idx, gates, tau),
                              idx_buf, gates_buf, tau_buf)
    # Only the index array wrong: still nothing written.
    ok_gates = np.zeros((1, 2, 8, 4), np.float32)
    assert_rejected_untouched(lambda: lib.call("select", u, idx, ok_gates, tau), idx_buf, ok_gates)


def test_decode_rejects_slot_arrays_smaller_than_k_plus_w():
    k, w, B, H, D = 4, 3, 1, 2, 8
    lib = library(ir.decode_function("decode", k, w))
    g = rng(2)
    q = g.normal(size=(B, H, D)).astype(np.float32)
    kc = g.normal(size=(B, H, 3, D)).astype(np.float32)  # 3 slots, not k + w = 7
    vc = g.normal(size=(B, H, 3, D)).astype(np.float32)
    sc = g.normal(size=(B, H, 3)).astype(np.float32)
    tau = np.zeros((B, H), np.float32)
    cnt = np.full((B, H), 3, np.int32)
    pos = np.array([2], np.int64)
    out, out_buf = guarded((B, H, D), np.float32, 5.0)
    assert_rejected_untouched(lambda: lib.call("decode", q, kc, vc, sc, tau, cnt, pos, out),
                              out_buf)


def test_attention_rejects_a_wrong_static_k():
    lib = library(ir.attention_function("attn", w=2, k=4))
    g = rng(3)
    q = g.normal(size=(1, 1, 6, 8)).astype(np.float32)
    idx = np.zeros((1, 1, 6, 2), np.int32)
    gates = np.ones((1, 1, 6, 2), np.float32)
    out, out_buf = guarded((1, 1, 6, 8), np.float32, 5.0)
    assert_rejected_untouched(lambda: lib.call("attn", q, q, q, idx, gates, out), out_buf)


@pytest.mark.parametrize("fuse", [True, False])
def test_select_attention_rejects_a_wrong_static_head_dim(fuse):
    pipeline = "sparsek-cpu-pipeline" + ("{fuse-select-attention=true}" if fuse else "")
    lib = library(ir.select_attention_function("sa", k=2, w=2, head_dim=8), pipeline=pipeline)
    g = rng(4)
    q = g.normal(size=(1, 1, 6, 4)).astype(np.float32)  # D = 4, not 8
    u = g.normal(size=(1, 1, 6)).astype(np.float32)
    out, out_buf = guarded((1, 1, 6, 4), np.float32, 5.0)
    assert_rejected_untouched(lambda: lib.call("sa", q, q, q, u, out), out_buf)
    # The right head dim runs.
    q8 = g.normal(size=(1, 1, 6, 8)).astype(np.float32)
    lib.call("sa", q8, q8, q8, u, np.zeros_like(q8))


def test_the_raw_entry_point_checks_sizes_without_python():
    """C callers get the same check: the descriptor's sizes are compared."""
    lib = library(ir.select_function("select", k=4, w=2))
    u = np.zeros((1, 1, 8), np.float32)
    idx, idx_buf = guarded((1, 1, 8, 2), np.int32, 9)
    gates, gates_buf = guarded((1, 1, 8, 2), np.float32, 9.0)
    tau = np.zeros((1, 1, 8), np.float32)
    descs = [to_descriptor(a) for a in (u, idx, gates, tau)]
    fn = getattr(lib._lib, "_mlir_ciface_select_entry")
    fn.restype = ctypes.c_int32
    assert fn(*[ctypes.byref(d) for d in descs]) == status.SHAPE_MISMATCH
    assert lib.status() == status.SHAPE_MISMATCH
    assert (idx_buf == 9).all() and (gates_buf == 9.0).all()
    # A negative dynamic size is refused too.
    descs[0].sizes[2] = -8
    descs[1].sizes[3] = descs[2].sizes[3] = 4
    assert fn(*[ctypes.byref(d) for d in descs]) == status.SHAPE_MISMATCH


# --- the decomposed select_attention checks what the fused one checks ---

@pytest.mark.parametrize("fuse", [False, True], ids=["decomposed", "fused"])
@pytest.mark.parametrize("scores_s", [60, 4, 7])
def test_scores_and_keys_of_different_lengths_are_a_shape_mismatch(fuse, scores_s):
    """u with S = 60 (or 4, fewer than T = 5; or 7) against keys with S = 6."""
    pipeline = "sparsek-cpu-pipeline" + ("{fuse-select-attention=true}" if fuse else "")
    lib = library(ir.select_attention_function("sa", k=2, w=2, head_dim=4), pipeline=pipeline)
    g = rng(6)
    q = g.normal(size=(1, 1, 5, 4)).astype(np.float32)
    kv = g.normal(size=(1, 1, 6, 4)).astype(np.float32)
    u = g.normal(size=(1, 1, scores_s)).astype(np.float32)
    with pytest.raises(SparseKError) as e:
        lib.call("sa", q, kv, kv, u, np.zeros_like(q))
    assert e.value.code == status.SHAPE_MISMATCH
    lib.call("sa", q, kv, kv, g.normal(size=(1, 1, 6)).astype(np.float32), np.zeros_like(q))


# --- scratch is sized by the keys present, not by k ---

@pytest.mark.parametrize("fuse", [False, True], ids=["decomposed", "fused"])
@pytest.mark.parametrize("k", [1 << 28, 1 << 30, (1 << 62) + 5])
def test_a_budget_far_beyond_the_keys_allocates_for_the_keys(fuse, k):
    """select_attention with k >= 2^28 over 7 keys: same output as k = 7, and
    no gigabytes reserved (it reserved ~14 GiB decomposed, and segfaulted
    fused, when lists were sized by k)."""
    import resource

    pipeline = "sparsek-cpu-pipeline" + ("{fuse-select-attention=true}" if fuse else "")
    g = rng(7)
    q = g.normal(size=(1, 2, 7, 4)).astype(np.float32)
    kv = g.normal(size=(1, 1, 7, 4)).astype(np.float32)
    u = g.normal(size=(1, 1, 7)).astype(np.float32)
    want = np.zeros_like(q)
    library(ir.select_attention_function("sa", k=7, w=2, head_dim=4),
            pipeline=pipeline).call("sa", q, kv, kv, u, want)
    lib = library(ir.select_attention_function("sa", k=k, w=2, head_dim=4), pipeline=pipeline)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    got = np.zeros_like(q)
    lib.call("sa", q, kv, kv, u, got)
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    assert grown_kib < 256 * 1024


def test_an_allocation_that_cannot_be_made_is_an_error_not_a_crash():
    """T = S = k = 2^23 with head dim 0: the decomposition's index and gate lists
    need 2^23 x 2^23 entries (256 TiB, more than any address space) while the
    inputs hold only the 32 MiB of scores. malloc returns null: the call must
    report OUT_OF_MEMORY and write nothing (it segfaulted)."""
    s = 1 << 23
    lib = library(ir.select_attention_function("sa", k=s, w=2))
    q = np.zeros((1, 1, s, 0), np.float32)
    u = np.zeros((1, 1, s), np.float32)
    with pytest.raises(SparseKError) as e:
        lib.call("sa", q, q, q, u, q.copy())
    assert e.value.code == status.OUT_OF_MEMORY


SELECT_DYNAMIC_K = """
func.func @sel(%u: tensor<?x?x?xf32>, %i0: tensor<?x?x?x?xi32>, %g0: tensor<?x?x?x?xf32>,
               %t0: tensor<?x?x?xf32>) -> (tensor<?x?x?x?xi32>, tensor<?x?x?x?xf32>, tensor<?x?x?xf32>) {
  %i, %g, %t = sparsek.select ins(%u : tensor<?x?x?xf32>) k = 6 w = 1
      outs(%i0, %g0, %t0 : tensor<?x?x?x?xi32>, tensor<?x?x?x?xf32>, tensor<?x?x?xf32>)
      -> tensor<?x?x?x?xi32>, tensor<?x?x?x?xf32>, tensor<?x?x?xf32>
  return %i, %g, %t : tensor<?x?x?x?xi32>, tensor<?x?x?x?xf32>, tensor<?x?x?xf32>
}
"""


@pytest.mark.parametrize("pipeline", ["sparsek-cpu-pipeline",
                                      "sparsek-cpu-pipeline{parallel-loops=true}"])
def test_select_with_a_dynamic_list_length(pipeline):
    """K may be anything from min(k, S) to k; outside that, a shape mismatch."""
    from cpu_harness import require_compiler
    from sparsek import toolchain
    from sparsek.cpu import CompiledLibrary

    require_compiler()
    lib = CompiledLibrary(toolchain.compile_shared_library(ir.module(SELECT_DYNAMIC_K),
                                                           pipeline=pipeline))
    u = rng(8).normal(size=(1, 2, 4)).astype(np.float32)  # S = 4 < k = 6

    def run(K):
        idx = np.full((1, 2, 4, K), 99, np.int32)
        gates = np.full((1, 2, 4, K), 9.0, np.float32)
        tau = np.zeros((1, 2, 4), np.float32)
        lib.call("sel", u, idx, gates, tau)
        return idx, gates, tau

    full = run(6)
    for K in (4, 5):
        idx, gates, tau = run(K)
        np.testing.assert_array_equal(idx, full[0][..., :K])
        np.testing.assert_array_equal(gates, full[1][..., :K])
        np.testing.assert_array_equal(tau, full[2])
    assert (full[0][..., 4:] == -1).all()
    for K in (3, 7):
        with pytest.raises(SparseKError) as e:
            run(K)
        assert e.value.code == status.SHAPE_MISMATCH


# --- the Python layer checks arguments against the signature the library exports ---

def select_args():
    u = rng(5).normal(size=(1, 2, 8)).astype(np.float32)
    return [u, np.zeros((1, 2, 8, 4), np.int32), np.zeros((1, 2, 8, 4), np.float32),
            np.zeros((1, 2, 8), np.float32)]


@pytest.fixture(scope="module")
def select_lib():
    return library(ir.select_function("select", k=4, w=2))


def test_manifest_describes_the_signature(select_lib):
    entry = select_lib.manifest["select"]
    assert [a.kind for a in entry.args] == ["memref"] * 4
    assert [a.element for a in entry.args] == ["f32", "i32", "f32", "f32"]
    assert [a.shape for a in entry.args] == [(None,) * 3, (None,) * 3 + (4,), (None,) * 3 + (4,),
                                             (None,) * 3]
    assert [a.written for a in entry.args] == [False, True, True, True]
    assert not select_lib.manifest.stream


@pytest.mark.parametrize("func,written", [
    (ir.attention_function("f", w=2, k=4), [False] * 5 + [True]),
    (ir.select_attention_function("f", k=2, w=2), [False] * 4 + [True]),
    (ir.decode_function("f", 4, 3), [False] * 7 + [True]),
    (ir.score_function("f", bias=True, offset=True), [False, False, False, None, True]),
    (ir.mask_function("f", 3), [False, True, True]),
], ids=["attention", "select_attention", "decode", "score", "mask"])
def test_only_outputs_are_written(func, written):
    entry = library(func).manifest["f"]
    assert [a.written if a.kind == "memref" else None for a in entry.args] == written


def test_the_call_succeeds_with_matching_arguments(select_lib):
    args = select_args()
    select_lib.call("select", *args)
    assert (args[1] >= -1).all() and args[1].max() > 0


@pytest.mark.parametrize("position", range(4))
def test_an_int_in_place_of_an_array_raises(select_lib, position):
    args = select_args()
    args[position] = 3
    with pytest.raises(TypeError, match="expected a numpy array"):
        select_lib.call("select", *args)


@pytest.mark.parametrize("position,shape", [(0, (2, 8)), (1, (1, 2, 8, 4, 1)), (3, (16,)),
                                            (2, ())])
def test_a_wrong_rank_raises(select_lib, position, shape):
    args = select_args()
    args[position] = np.zeros(shape, args[position].dtype)
    with pytest.raises(ValueError, match="expected rank"):
        select_lib.call("select", *args)


@pytest.mark.parametrize("count", [0, 3, 5, 8])
def test_a_wrong_argument_count_raises(select_lib, count):
    args = (select_args() * 2)[:count]
    with pytest.raises(TypeError, match="takes 4 arguments"):
        select_lib.call("select", *args)


@pytest.mark.parametrize("position,dtype", [(0, np.float64), (0, np.float16), (0, np.int32),
                                            (1, np.int64), (1, np.float32), (2, np.float64),
                                            (3, np.int32)])
def test_a_wrong_dtype_raises(select_lib, position, dtype):
    args = select_args()
    args[position] = args[position].astype(dtype)
    with pytest.raises(TypeError, match="expected dtype"):
        select_lib.call("select", *args)


@pytest.mark.parametrize("position", [1, 2, 3])
def test_a_read_only_output_raises_and_is_not_written(select_lib, position):
    args = select_args()
    args[position] = np.full_like(args[position], 3)
    args[position].flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        select_lib.call("select", *args)
    assert (args[position] == 3).all()


def test_a_read_only_input_is_fine(select_lib):
    args = select_args()
    args[0].flags.writeable = False
    select_lib.call("select", *args)


def test_non_contiguous_and_misaligned_arrays_raise(select_lib):
    args = select_args()
    args[0] = np.zeros((1, 2, 16), np.float32)[:, :, ::2]
    with pytest.raises(ValueError, match="C-contiguous"):
        select_lib.call("select", *args)
    args = select_args()
    raw = np.zeros(1 * 2 * 8 * 4 + 1, np.float32).view(np.uint8)[1:1 + 1 * 2 * 8 * 4 * 4]
    args[2] = raw.view(np.float32).reshape(1, 2, 8, 4)
    assert not args[2].flags.aligned
    with pytest.raises(ValueError, match="aligned"):
        select_lib.call("select", *args)


def test_scalar_arguments_are_checked():
    lib = library(ir.score_function("score", offset=True))
    x = np.zeros((1, 3, 4), np.float32)
    w = np.zeros((2, 4), np.float32)
    u = np.zeros((1, 2, 3), np.float32)
    lib.call("score", x, w, 5, u)
    for bad in (np.zeros(1, np.int64), 1.5, True, None):
        with pytest.raises(TypeError, match="expected an int"):
            lib.call("score", x, w, bad, u)
    with pytest.raises(ValueError, match="does not fit"):
        lib.call("score", x, w, 1 << 64, u)


def test_an_unknown_function_raises(select_lib):
    with pytest.raises(AttributeError, match="no entry point 'nope'"):
        select_lib.call("nope")


# --- GPU libraries: the same manifest, checked on torch tensors (no GPU needed) ---

@pytest.fixture(scope="module")
def gpu_select_path():
    from cpu_harness import require_compiler
    from sparsek import compiler

    require_compiler()
    try:
        return compiler.compile(ir.module(ir.select_function("select", k=4, w=2)),
                                pipeline="sparsek-gpu-pipeline")
    except compiler.CompilerError as e:  # no ptxas / CUDA toolkit here
        pytest.skip(f"cannot compile for the GPU here: {e}")


def test_a_gpu_library_exports_its_signature_and_is_refused_by_the_cpu_loader(gpu_select_path):
    from sparsek.cpu import CompiledLibrary
    from sparsek.signature import Manifest

    manifest = Manifest(ctypes.CDLL(gpu_select_path), gpu_select_path)
    assert manifest.stream
    assert [a.written for a in manifest["select"].args] == [False, True, True, True]
    with pytest.raises(ValueError, match="compiled for the GPU"):
        CompiledLibrary(gpu_select_path)


def test_gpu_arguments_are_checked_before_anything_runs(gpu_select_path):
    torch = pytest.importorskip("torch")
    from sparsek.gpu import GPULibrary

    lib = GPULibrary(gpu_select_path)
    good = [torch.zeros(1, 2, 8), torch.zeros(1, 2, 8, 4, dtype=torch.int32),
            torch.zeros(1, 2, 8, 4), torch.zeros(1, 2, 8)]
    with pytest.raises(TypeError, match="takes 4 arguments"):
        lib.call("select", *good[:3])
    with pytest.raises(TypeError, match="expected a CUDA tensor, got int"):
        lib.call("select", 3, *good[1:])
    with pytest.raises(TypeError, match="expected dtype torch.float32"):
        lib.call("select", good[0].double(), *good[1:])
    with pytest.raises(ValueError, match="expected rank 3"):
        lib.call("select", good[0][0], *good[1:])
    # Right types and ranks, but host tensors: refused before any CUDA call.
    with pytest.raises(ValueError, match="expected a CUDA tensor, got one on cpu"):
        lib.call("select", *good)


def test_packed_descriptors_match_the_ctypes_layout():
    # GPU calls pass every memref as a pointer into one int64 array of
    # descriptor words; each must read as memref.descriptor_type's struct.
    import array

    from sparsek.memref import descriptor_from_pointer, descriptor_words

    for shape, strides in [((), ()), ((5,), (1,)), ((1, 8, 2560, 128), (2621440, 327680, 128, 1))]:
        words = array.array("q", descriptor_words(0x7f0012345600, shape, strides))
        assert words.tobytes() == bytes(descriptor_from_pointer(0x7f0012345600, shape, strides))


def test_gpu_scalar_arguments_are_typed_once(gpu_select_path):
    # The call plan gives ctypes every argument's C type (pointers for
    # memrefs), so a scalar of the wrong kind is refused, not reinterpreted.
    from sparsek.gpu import GPULibrary

    lib = GPULibrary(gpu_select_path)
    plan = lib._plan("select")
    assert plan.fn.argtypes == [ctypes.c_void_p] * 5
    assert plan.fn.restype is ctypes.c_int32


def test_a_gpu_library_exports_its_device_status(gpu_select_path):
    # Kernels report NaN/+inf scores and bad cache states through the
    # library's device status (sparsek.gpu); every GPU library exports its
    # accessors, and reading it needs no GPU work (nothing recorded here).
    from sparsek.gpu import GPULibrary

    raw = ctypes.CDLL(gpu_select_path)
    assert hasattr(raw, "sparsek_device_status") and hasattr(raw, "sparsek_clear_device_status")
    lib = GPULibrary(gpu_select_path)
    assert lib.device_status() == 0


def test_gpu_device_errors_raise_the_cpu_paths_error_once(gpu_select_path, monkeypatch):
    # The Python side of the device status without a GPU: the library's
    # accessors are replaced by a fake word. check() synchronizes the stream
    # it is given, raises the code as the CPU path's SparseKError and clears
    # it; a pending error found at the next call is raised the same way.
    torch = pytest.importorskip("torch")
    from sparsek.gpu import GPULibrary
    from sparsek.status import INVALID_CACHE_STATE, SparseKError

    lib = GPULibrary(gpu_select_path)
    word = {"code": 0, "cleared": 0}
    lib._device_status = lambda: word["code"]

    def clear(stream):
        word["code"] = 0
        word["cleared"] += 1

    monkeypatch.setattr(lib, "clear_device_status", clear)
    monkeypatch.setattr(torch.cuda, "is_current_stream_capturing", lambda: False)

    class Stream:
        synced = 0
        cuda_stream = 0

        def synchronize(self):
            Stream.synced += 1

    lib.check(Stream())  # nothing recorded: no error
    word["code"] = INVALID_CACHE_STATE
    with pytest.raises(SparseKError) as e:
        lib.check(Stream(), function="decode")
    assert e.value.code == INVALID_CACHE_STATE
    assert str(e.value) == str(SparseKError(INVALID_CACHE_STATE, "decode"))
    assert word == {"code": 0, "cleared": 1} and Stream.synced == 2
    word["code"] = INVALID_CACHE_STATE
    with pytest.raises(SparseKError, match="kernels of an earlier call"):
        lib._raise_pending(Stream())
    assert word["code"] == 0 and Stream.synced == 2  # no synchronization to find it
    lib._raise_pending(Stream())


def test_linalg_operands_that_disagree_on_a_dynamic_size_are_a_shape_mismatch():
    """A's columns against B's rows, both dynamic: neither the verifier nor the
    per-argument entry checks see it; sparsek-check-linalg-sizes does."""
    t = "tensor<?x?xf32>"
    lib = library(f"""func.func @mm(%a: {t}, %b: {t}, %c: {t}) -> {t} {{
  %r = linalg.matmul ins(%a, %b : {t}, {t}) outs(%c : {t}) -> {t}
  return %r : {t}
}}""")
    a = rng(2).normal(size=(3, 8)).astype(np.float32)
    b = rng(3).normal(size=(4, 5)).astype(np.float32)
    c, c_buf = guarded((3, 5), np.float32, 7.0)
    assert_rejected_untouched(lambda: lib.call("mm", a, b, c), c_buf)
    b = rng(3).normal(size=(8, 5)).astype(np.float32)
    lib.call("mm", a, b, c)
    np.testing.assert_allclose(c, 7.0 + a @ b, rtol=1e-5)
