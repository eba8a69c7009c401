# The compiler's C API through sparsek.compiler: pipelines, compiling, caching and error messages.
import os
import re

import numpy as np
import pytest

from cpu_harness import require_compiler
from sparsek import compiler, ir
from sparsek.cpu import CompiledLibrary

MASK = ir.module(ir.mask_function("mask", k=2))


@pytest.fixture(autouse=True)
def _compiler():
    require_compiler()


def test_version_names_llvm_22():
    assert compiler.version().startswith("SparseK ") and "LLVM 22." in compiler.version()


def test_run_pipeline_verifies_and_lowers():
    assert "sparsek.mask" in compiler.run_pipeline(MASK, "")
    lowered = compiler.run_pipeline(MASK)
    assert "llvm.func @_mlir_ciface_mask" in lowered and "sparsek." not in lowered
    assert "define void @_mlir_ciface_mask" in compiler.translate_to_llvm_ir(MASK)


def test_compile_to_explicit_output_and_run(tmp_path):
    out = str(tmp_path / "mask.so")
    assert compiler.compile(MASK, output=out) == out
    z = np.array([[3.0, 1.0, 0.5, -2.0]], np.float32)
    p, tau = np.zeros_like(z), np.zeros(1, np.float32)
    CompiledLibrary(out).call("mask", z, p, tau)
    np.testing.assert_allclose(p, [[1.0, 0.75, 0.25, 0.0]], atol=1e-6)
    np.testing.assert_allclose(tau, [0.25], atol=1e-6)


def test_cache_hit_and_offline_fallback(tmp_path, monkeypatch):
    monkeypatch.setenv("SPARSEK_CACHE_DIR", str(tmp_path))
    first = compiler.compile(MASK)
    assert os.path.dirname(first) == str(tmp_path)
    mtime = os.stat(first).st_mtime_ns
    assert compiler.compile(MASK) == first and os.stat(first).st_mtime_ns == mtime
    # Without a compiler the cached library still serves the same module ...
    monkeypatch.setenv("SPARSEK_COMPILER_LIB", str(tmp_path / "missing.so"))
    assert compiler.compile(MASK) == first
    # ... but not another one.
    with pytest.raises(compiler.CompilerNotFound, match="no library compiled from this module"):
        compiler.compile(ir.module(ir.mask_function("mask", k=3)))


def test_errors_carry_diagnostics(tmp_path):
    with pytest.raises(compiler.CompilerError, match=r"input:1:\d+: error"):
        compiler.run_pipeline("func.func @f( {", "")
    with pytest.raises(compiler.CompilerError, match="'no-such-pass' does not refer"):
        compiler.run_pipeline(MASK, "no-such-pass")
    with pytest.raises(compiler.CompilerError, match="translation to LLVM IR failed"):
        compiler.compile(MASK, pipeline="canonicalize", output=str(tmp_path / "x.so"))
    assert not os.listdir(tmp_path)  # no partial library left behind


def test_missing_compiler_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("SPARSEK_COMPILER_LIB", "/nonexistent/libSparseKCompiler.so")
    assert not compiler.available()
    with pytest.raises(compiler.CompilerNotFound, match="SPARSEK_COMPILER_LIB"):
        compiler.run_pipeline(MASK, "")


def test_link_args_reach_the_linker(tmp_path):
    with pytest.raises(compiler.CompilerError, match="cannot find -lsparsek_no_such_lib"):
        compiler.compile(MASK, output=str(tmp_path / "x.so"), link_args=["-lsparsek_no_such_lib"])
    out = compiler.compile(MASK, output=str(tmp_path / "m.so"), link_args=["-Wl,-soname,libmask.so"])
    with open(out, "rb") as f:
        assert b"libmask.so" in f.read()


def test_gpu_pipeline_runs_through_the_api():
    lowered = compiler.run_pipeline(
        ir.module(ir.attention_function("attn", 16, "bf16", k=8, head_dim=64)),
        "sparsek-gpu-pipeline{format=isa}")
    assert "gpu.binary @" in lowered and "llvm.func @_mlir_ciface_attn" in lowered


@pytest.mark.parametrize("options,message", [
    ("chip=", "option chip must be an NVPTX architecture such as sm_90 or sm_90a, got ''"),
    ("format=garbage", "option format must be one of fatbin, bin, isa, got 'garbage'"),
    ("query-block=4096", "option query-block must be in [1, 1024]"),
    ("features=+ptx99", "option features must be a comma-separated list of NVPTX features"),
    ("opt-level=7", "option opt-level must be in [0, 3], got 7"),
])
def test_invalid_gpu_pipeline_options_are_errors(tmp_path, options, message):
    # An empty chip used to segfault the Python process; format=garbage and
    # query-block=4096 went through.
    text = ir.module(ir.attention_function("attn", 16, "bf16", k=8, head_dim=64))
    pipeline = f"sparsek-gpu-pipeline{{{options}}}"
    with pytest.raises(compiler.CompilerError, match=re.escape(message)):
        compiler.run_pipeline(text, pipeline)
    with pytest.raises(compiler.CompilerError, match=re.escape(message)):
        compiler.compile(text, pipeline=pipeline, output=str(tmp_path / "x.so"), link_args=[])
    assert not os.listdir(tmp_path)


TRANSPOSE = """func.func @t(%a: tensor<2x3xf32>, %b: tensor<3x2xf32>) -> tensor<3x2xf32> {{
  %r = linalg.transpose ins(%a : tensor<2x3xf32>) outs(%b : tensor<3x2xf32>) permutation = {perm}
  return %r : tensor<3x2xf32>
}}
"""


@pytest.mark.parametrize("perm,diagnostic", [("[1, 0.5]", "expected integer value"),
                                             ("[1, 0", "expected ']'"), ("", "expected '['")])
def test_upstream_crashes_are_errors_not_process_deaths(tmp_path, perm, diagnostic):
    # MLIR's linalg.transpose parser segfaults after these parse errors. It
    # used to take this process with it; the compiler process dies instead,
    # and its diagnostics come back in the message.
    text = TRANSPOSE.format(perm=perm)
    for call in (lambda: compiler.run_pipeline(text, ""),
                 lambda: compiler.translate_to_llvm_ir(text),
                 lambda: compiler.compile(text, output=str(tmp_path / "t.so"))):
        with pytest.raises(compiler.CompilerError) as e:
            call()
        assert "the compiler process was killed by signal" in str(e.value)
        assert "input:2:" in str(e.value) and diagnostic in str(e.value)
    assert not os.listdir(tmp_path)  # the dead child's partial library is removed
    assert "sparsek.mask" in compiler.run_pipeline(MASK, "")  # and this process carries on


def test_upstream_fatal_errors_are_errors():
    # LLVM's NVPTX backend exits the process on a PTX version below the
    # chip's minimum (reportFatalUsageError): now the compiler process's.
    text = ir.module(ir.attention_function("attn", 16, "bf16", k=8, head_dim=64))
    with pytest.raises(compiler.CompilerError, match=r"exited with status 1(.|\n)*PTX version 6.0 does "
                                                     r"not support target 'sm_90'"):
        compiler.run_pipeline(text, "sparsek-gpu-pipeline{format=isa features=+ptx60}")


def test_concurrent_compiles_from_threads():
    from concurrent.futures import ThreadPoolExecutor
    texts = [ir.module(ir.mask_function("mask", k=k)) for k in range(1, 9)]
    with ThreadPoolExecutor(4) as pool:
        lowered = list(pool.map(compiler.run_pipeline, texts))
    assert all("llvm.func @_mlir_ciface_mask" in t for t in lowered)


def test_in_process_mode_for_debuggers(monkeypatch):
    monkeypatch.setenv("SPARSEK_COMPILER_IN_PROCESS", "1")
    assert "llvm.func @_mlir_ciface_mask" in compiler.run_pipeline(MASK)
    with pytest.raises(compiler.CompilerError, match="'no-such-pass' does not refer"):
        compiler.run_pipeline(MASK, "no-such-pass")


def test_gpu_libraries_link_the_runtime_and_cache_independently_of_its_folder(tmp_path, monkeypatch):
    import shutil

    from runtime_harness import require_runtime
    from sparsek import kv_cache

    require_runtime()
    monkeypatch.setenv("SPARSEK_CACHE_DIR", str(tmp_path / "cache"))
    text = ir.module(ir.select_function("sel", 2, 1))
    pipeline = "sparsek-gpu-pipeline{format=isa}"  # PTX: no CUDA toolkit needed to build it
    first = compiler.compile(text, pipeline=pipeline)
    with open(first, "rb") as f:
        assert b"libsparsek_runtime.so" in f.read()  # DT_NEEDED: the mgpu* functions
    # The runtime elsewhere (the GPU machine's checkout): the same cache entry.
    (tmp_path / "rt").mkdir()
    moved = shutil.copy(kv_cache.library_path(), tmp_path / "rt")
    monkeypatch.setenv("SPARSEK_RUNTIME_LIB", str(moved))
    assert compiler.compile(text, pipeline=pipeline) == first
    # Without a compiler, the cache serves it.
    monkeypatch.setenv("SPARSEK_COMPILER_LIB", str(tmp_path / "missing.so"))
    assert compiler.compile(text, pipeline=pipeline) == first
