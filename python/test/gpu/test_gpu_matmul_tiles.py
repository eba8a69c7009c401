# linalg.matmul with bf16/f16 operands into f32 on tensor cores
# (sparsek-gpu-matmul-tiles, the GPU pipeline's default): 64 x 128 tiles
# of C, K in steps of 64. Rows, columns and depth off the tile grid; static and
# dynamic K and N; the run-time guard's fallback to the loops (K or N not a
# multiple of 8, A not on 16 bytes); C accumulated, not overwritten; M = 0;
# repeated calls bit-identical. Reference: float64 products of the same
# rounded inputs, within the f32 summation bound K * 2^-24 * sum |a||b|.
import pytest


DTYPES = {"bf16": "bfloat16", "f16": "float16"}


def operands(torch, elem, m, k, n, seed):
    g = torch.Generator(device="cpu").manual_seed(seed)
    dtype = getattr(torch, DTYPES[elem])
    a = torch.randn(m, k, generator=g).to(dtype).cuda()
    b = torch.randn(k, n, generator=g).to(dtype).cuda()
    c = torch.randn(m, n, generator=g).cuda()
    return a, b, c


def check(torch, a, b, c0, c):
    a64, b64 = a.double(), b.double()
    want = c0.double() + a64 @ b64
    bound = a.shape[1] * 2.0 ** -24 * (a64.abs() @ b64.abs() + c0.double().abs()) + 1e-6
    err = (c.double() - want).abs()
    assert bool((err <= bound).all()), f"max error {float(err.max())} over the f32 summation bound"


def run(torch, lib, name, a, b, c):
    out = c.clone()
    lib.call(name, a, b, out)
    torch.cuda.synchronize()
    return out


STATIC = [("bf16", 64, 128), ("bf16", 200, 136), ("f16", 512, 384), ("bf16", 12, 64),
          ("bf16", 2048, 2048), ("bf16", 2048, 512)]


@pytest.mark.parametrize("elem,k,n", STATIC)
@pytest.mark.parametrize("m", [1, 63, 65, 130])
def test_static_shapes_match_float64(torch, manifest, gpu_matmul_lib, elem, k, n, m):
    name = manifest["matmul"][f"{elem}/{k}/{n}"]
    a, b, c = operands(torch, elem, m, k, n, seed=m * 1000 + k + n)
    check(torch, a, b, c, run(torch, gpu_matmul_lib, name, a, b, c))


def test_wide_n_and_many_rows(torch, manifest, gpu_matmul_lib):
    name = manifest["matmul"]["bf16/2048/8192"]
    a, b, c = operands(torch, "bf16", 257, 2048, 8192, seed=7)
    check(torch, a, b, c, run(torch, gpu_matmul_lib, name, a, b, c))


@pytest.mark.parametrize("elem", ["bf16", "f16"])
@pytest.mark.parametrize("m,k,n", [(70, 96, 40), (5, 8, 8), (130, 1000, 264), (3, 64, 1000),
                                   # the guard's fallback: K or N not a multiple of 8
                                   (17, 100, 64), (9, 64, 36)])
def test_dynamic_shapes_match_float64(torch, manifest, gpu_matmul_lib, elem, m, k, n):
    name = manifest["matmul"][f"{elem}/None/None"]
    a, b, c = operands(torch, elem, m, k, n, seed=m + k + n)
    check(torch, a, b, c, run(torch, gpu_matmul_lib, name, a, b, c))


def test_unaligned_operand_takes_the_loops(torch, manifest, gpu_matmul_lib):
    """A starting 2 bytes past a 16-byte boundary cannot feed cp.async: the
    guard runs the op's copy instead, with the same results."""
    name = manifest["matmul"]["bf16/200/136"]
    a, b, c = operands(torch, "bf16", 33, 200, 136, seed=3)
    flat = torch.empty(33 * 200 + 1, dtype=a.dtype, device="cuda")
    shifted = flat[1:].view(33, 200)
    shifted.copy_(a)
    assert shifted.data_ptr() % 16
    check(torch, shifted, b, c, run(torch, gpu_matmul_lib, name, shifted, b, c))


def test_empty_rows_and_repeat_calls(torch, manifest, gpu_matmul_lib):
    name = manifest["matmul"]["bf16/2048/512"]
    a, b, c = operands(torch, "bf16", 0, 2048, 512, seed=1)
    assert run(torch, gpu_matmul_lib, name, a, b, c).shape == (0, 512)
    a, b, c = operands(torch, "bf16", 100, 2048, 512, seed=2)
    first = run(torch, gpu_matmul_lib, name, a, b, c)
    second = run(torch, gpu_matmul_lib, name, a, b, c)
    assert torch.equal(first, second)   # one writer per element: no atomics, no order effects


def test_shape_mismatch_is_an_error_not_a_fault(torch, manifest, gpu_matmul_lib):
    """A's columns against B's rows, both dynamic (sparsek-check-linalg-sizes): the
    CPU path's SHAPE_MISMATCH, C untouched."""
    from sparsek import status
    from sparsek.status import SparseKError

    name = manifest["matmul"]["bf16/None/None"]
    a, b, c = operands(torch, "bf16", 8, 64, 32, seed=4)
    before = c.clone()
    with pytest.raises(SparseKError) as e:
        gpu_matmul_lib.call(name, a, b[:32].contiguous(), c)
    assert e.value.code == status.SHAPE_MISMATCH
    assert torch.equal(c, before)
