# Bad decode inputs of the tile-first decode's device-status tests, shared by the CPU form
# (test_cpu_device_status.py) and the GPU (gpu/test_gpu_device_status.py), and what must
# survive them.
import numpy as np

from sparsek.status import INVALID_CACHE_STATE, INVALID_SCORE

# Where each broken field stands in decode_attention's operands
# [q, key_slots, value_slots, slot_scores, tau, pool_count, pos, out].
ARG_INDEX = {"slot_scores": 3, "tau": 4, "pool_count": 5, "pos": 6}

# (field, bad value, where, code); sequence 2 is the long one, whose pools are full.
TILE_CASES = [
    ("pool_count", "k+1", (2, 1), INVALID_CACHE_STATE),     # more than k
    ("pool_count", -3, (2, 1), INVALID_CACHE_STATE),
    ("pool_count", 1 << 30, (2, 0), INVALID_CACHE_STATE),   # far past k + w
    ("pos", -1, (2,), INVALID_CACHE_STATE),
    ("pos", -(2**40), (0,), INVALID_CACHE_STATE),
    ("slot_scores", np.nan, (2, 1, 0), INVALID_SCORE),      # a pool slot
    ("slot_scores", np.inf, (2, 0, 7), INVALID_SCORE),
    ("tau", np.nan, (2, 1), INVALID_SCORE),
]


def case_value(value, k):
    """The case's bad value for a function of this k."""
    return k + 1 if value == "k+1" else value


def assert_other_heads_kept(out, want, what, at, G, **tol):
    """What the loop form's kernels keep after a report: every head the bad field does not
    touch exactly as `want`; zeros for a (b, h) with a bad pool count and for every head of
    a sequence at a bad position; finite outputs for a (b, h) with a bad score."""
    touched = np.zeros(out.shape[:2], bool)
    if what == "pos":
        touched[at[0]] = True
        np.testing.assert_array_equal(out[at[0]], 0)
    else:
        b, h = at[:2]
        heads = slice(h * G, (h + 1) * G)
        touched[b, heads] = True
        if what == "pool_count":
            np.testing.assert_array_equal(out[b, heads], 0)
        else:
            assert np.all(np.isfinite(out[b, heads]))
    np.testing.assert_allclose(out[~touched], want[~touched], **tol)
