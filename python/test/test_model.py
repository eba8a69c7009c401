# The whole tiny transformer as one MLIR module (sparsek.model), compiled for the CPU, against the
# float64 numpy model of examples/tiny_transformer.py and the torch model of the same file.
import importlib.util
import os

import numpy as np
import pytest

from cpu_harness import require_compiler

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def tiny():
    spec = importlib.util.spec_from_file_location("tiny_transformer",
                                                  os.path.join(ROOT, "examples", "tiny_transformer.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def model_config(t):
    from sparsek.model import ModelConfig

    c = t.TinyConfig()
    return ModelConfig(vocab=c.vocab, C=c.C, layers=c.layers, Hq=c.Hq, Hkv=c.Hkv, D=c.D, k=c.k, w=c.w,
                       hidden=c.hidden)


@pytest.fixture(scope="module")
def compiled():
    require_compiler()
    from sparsek.model import CompiledModel

    t = tiny()
    return t, CompiledModel(model_config(t))


@pytest.mark.parametrize("T", [1, 5, 23])   # 23: past k + w, selection decides
def test_logits_match_the_float64_model(compiled, T):
    t, model = compiled
    weights = t.init_weights(t.TinyConfig(), seed=T)
    g = np.random.default_rng(T)
    tokens = g.integers(0, t.TinyConfig().vocab, size=(2, T))
    got = model(tokens, weights)
    assert got.shape == (2, T, t.TinyConfig().vocab) and got.dtype == np.float32
    for b in range(2):
        want = t.reference_logits(t.TinyConfig(), weights, tokens[b])
        assert t.logits_error(got[b], want) < 1e-4


def test_logits_match_torch_eager(compiled):
    torch = pytest.importorskip("torch")
    t, model = compiled
    cfg = t.TinyConfig()
    weights = t.init_weights(cfg, seed=3)
    tokens = np.random.default_rng(3).integers(0, cfg.vocab, size=(1, 17))
    net = t.torch_model(cfg, weights)
    with torch.no_grad():
        h = net.emb[torch.from_numpy(tokens)]
        for blk in net.blocks:
            h = h + blk.attn(net_rms(torch, h, blk.norm1))
            h = h + blk.mlp(net_rms(torch, h, blk.norm2))
        want = net.logits(h).numpy()
    np.testing.assert_allclose(model(tokens, weights), want, rtol=1e-4, atol=1e-4)


def net_rms(torch, x, g):
    return x * torch.rsqrt((x * x).mean(-1, keepdim=True) + 1e-5) * g


def test_bad_tokens_and_weights_are_refused(compiled):
    t, model = compiled
    weights = t.init_weights(t.TinyConfig(), seed=0)
    with pytest.raises(ValueError, match="tokens must lie"):
        model(np.array([[0, t.TinyConfig().vocab]]), weights)
    with pytest.raises(ValueError, match="integer"):
        model(np.zeros((1, 3), np.float32), weights)
    bad = dict(weights, head=weights["head"][:, :-1])
    with pytest.raises(ValueError, match="weight head"):
        model(np.zeros((1, 3), np.int64), bad)


def test_the_module_compiles_for_the_gpu():
    """The same module through sparsek-gpu-pipeline (PTX: no ptxas or GPU needed)."""
    require_compiler()
    from sparsek import compiler
    from sparsek.model import model_module

    text = compiler.run_pipeline(model_module(model_config(tiny())), "sparsek-gpu-pipeline{format=isa}")
    assert "gpu.binary" in text and "sparsek_model" in text


def test_sparsek_compile_builds_the_model(tmp_path, compiled):
    """The emitted module through the command-line compiler gives the same logits."""
    import subprocess

    from sparsek import compiler
    from sparsek.cpu import CompiledLibrary
    from sparsek.model import model_module

    t, model = compiled
    tool = os.path.join(os.path.dirname(os.path.dirname(compiler.library_path())), "bin", "sparsek-compile")
    if not os.path.exists(tool):
        pytest.skip(f"{tool} not built")
    src, lib = tmp_path / "model.mlir", tmp_path / "libmodel.so"
    src.write_text(model_module(model.cfg))
    subprocess.run([tool, str(src), "-o", str(lib)], check=True, capture_output=True)
    weights = t.init_weights(t.TinyConfig(), seed=9)
    tokens = np.random.default_rng(9).integers(0, t.TinyConfig().vocab, size=(3, 11)).astype(np.int32)
    logits = np.zeros((3, 11, t.TinyConfig().vocab), np.float32)
    CompiledLibrary(str(lib)).call("sparsek_model", tokens, *model.cfg.flatten(weights), logits)
    np.testing.assert_array_equal(logits, model(tokens, weights))
    # The same library through CompiledModel (as the GPU artifacts are loaded).
    from sparsek.model import CompiledModel

    np.testing.assert_array_equal(CompiledModel(model.cfg, library=str(lib))(tokens, weights), logits)
    with pytest.raises(ValueError, match="no function 'other'"):
        CompiledModel(model.cfg, name="other", library=str(lib))


def test_unknown_devices_are_refused():
    from sparsek.model import CompiledModel

    with pytest.raises(ValueError, match="device must be"):
        CompiledModel(model_config(tiny()), device="tpu")
