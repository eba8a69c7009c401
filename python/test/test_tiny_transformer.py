# The numeric core of examples/tiny_transformer.py (no torch): compiled prefill + KV-cache decode vs a float64 forward.
import importlib.util
import os

import numpy as np

from cpu_harness import require_compiler
from runtime_harness import require_runtime

_EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "tiny_transformer.py")


def load_example():
    spec = importlib.util.spec_from_file_location("tiny_transformer", _EXAMPLE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_generation_logits_match_float64_reference():
    require_compiler()
    require_runtime()
    ex = load_example()
    cfg = ex.TinyConfig()
    weights = ex.init_weights(cfg, seed=3)
    prompt = [1, 5, 9, 2, 7, 3, 11, 4]
    tokens, logits = ex.generate_numpy(cfg, weights, prompt, steps=30)
    assert len(tokens) == len(prompt) + 30 and logits.shape == (len(tokens) - 1, cfg.vocab)
    # Longer than k + w, so selection (not just the window) decides the output.
    assert len(tokens) > 2 * (cfg.k + cfg.w)
    want = ex.reference_logits(cfg, weights, tokens)[:-1]
    assert ex.logits_error(logits, want) <= 1e-4
    # Greedy decoding picked the argmax of its own logits.
    assert tokens[len(prompt):] == [int(np.argmax(row)) for row in logits[len(prompt) - 1:]]
