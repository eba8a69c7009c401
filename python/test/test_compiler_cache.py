# The compiler's disk cache under concurrent use: processes compiling one module at once each get a
# complete library (the ranks of a distributed job do exactly this).
import multiprocessing as mp
import os
import uuid

import numpy as np

from cpu_harness import require_compiler


def _compile_and_run(text, name, cache):
    os.environ["SPARSEK_CACHE_DIR"] = cache
    from sparsek import compiler
    from sparsek.cpu import CompiledLibrary

    lib = CompiledLibrary(compiler.compile(text))
    u = np.zeros((1, 1, 4), np.float32)
    lib.call(name, np.ones((1, 4, 3), np.float32), np.full((1, 3), 0.5, np.float32), u)
    return u.tolist()


def test_concurrent_compiles_of_one_module_all_load(tmp_path):
    require_compiler()
    from sparsek import ir

    name = "score_" + uuid.uuid4().hex[:8]   # a module no cache holds yet
    text = ir.module(ir.score_function(name, kv_heads=1))
    with mp.get_context("spawn").Pool(4) as pool:
        results = pool.starmap(_compile_and_run, [(text, name, str(tmp_path))] * 4)
    assert all(r == [[[1.5] * 4]] for r in results)
    leftovers = [f for f in os.listdir(tmp_path) if f.endswith(".partial")]
    assert not leftovers
    assert len([f for f in os.listdir(tmp_path) if f.endswith(".so")]) == 1


def test_a_failed_compile_leaves_nothing_in_the_cache(tmp_path, monkeypatch):
    require_compiler()
    import pytest

    from sparsek import compiler

    monkeypatch.setenv("SPARSEK_CACHE_DIR", str(tmp_path))
    with pytest.raises(compiler.CompilerError):
        compiler.compile("module { func.func @f() { not_an_op } }")
    assert os.listdir(tmp_path) == []
