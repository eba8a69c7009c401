# Checks shared by the GPU suite.
import importlib.util
import os

import numpy as np

_EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "..", "..", "examples", "tiny_transformer.py")


def load_example():
    """examples/tiny_transformer.py as a module (its model, weights and reference)."""
    spec = importlib.util.spec_from_file_location("tiny_transformer", _EXAMPLE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def assert_matches_sdpa(torch, out, q, key, value, elem):
    """`out` against torch's scaled_dot_product_attention on the same
    (rounded, float32 numpy) q, key, value: causal, aligned to the lower
    right when S > T (query t sees keys 0 .. S - T + t), GQA when the head
    counts differ (SPEC 5)."""
    T, S = q.shape[2], key.shape[2]
    gqa = q.shape[1] != key.shape[1]
    tq, tk, tv = (torch.from_numpy(a).cuda() for a in (q, key, value))
    if S == T:
        ref = torch.nn.functional.scaled_dot_product_attention(
            tq, tk, tv, is_causal=True, enable_gqa=gqa)
    else:
        mask = torch.ones(T, S, dtype=torch.bool, device="cuda").tril(diagonal=S - T)
        ref = torch.nn.functional.scaled_dot_product_attention(
            tq, tk, tv, attn_mask=mask, enable_gqa=gqa)
    tol = 1e-4 if elem == "f32" else 2e-2
    np.testing.assert_allclose(out, ref.cpu().numpy(), atol=tol, rtol=tol)


def grad_close(got, want, rel, what):
    """SPEC 8 on gradients: `rel` of the gradient's own scale (1e-3 for f32 against float64;
    2e-2 for bf16 inputs against the reference on the same rounded inputs)."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    scale = max(float(np.abs(want).max()), 1e-6) if want.size else 1.0
    err = float(np.abs(got - want).max()) if want.size else 0.0
    assert err <= rel * scale, f"{what}: max error {err:.3g} vs scale {scale:.3g}"
