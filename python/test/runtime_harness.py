# KV-cache test helpers: finds libsparsek_runtime.so (skips where it is not built, unless CI requires it) and
# compares cache views with reference.DecodeCache.
import os

import numpy as np
import pytest

from sparsek import kv_cache


def require_runtime():
    try:
        kv_cache.library_path()
    except kv_cache.RuntimeNotFound as e:
        if os.environ.get("SPARSEK_REQUIRE_RUNTIME"):
            raise
        pytest.skip(f"runtime not available: {e}")


def assert_matches_reference(view, seq, ref):
    """A cache view's slots of `seq` against reference.DecodeCache `ref` (f32 views)."""
    sl = ref.slots()
    assert view.pos[seq] == sl.pos
    np.testing.assert_array_equal(view.pool_count[seq], sl.pool_count)
    np.testing.assert_array_equal(view.slot_pos[seq], sl.slot_pos)
    filled = sl.slot_pos >= 0
    np.testing.assert_array_equal(view.slot_scores[seq][filled], sl.slot_scores[filled].astype(np.float32))
    np.testing.assert_array_equal(view.k_slots[seq][filled], sl.kslots[filled].astype(np.float32))
    np.testing.assert_array_equal(view.v_slots[seq][filled], sl.vslots[filled].astype(np.float32))
    np.testing.assert_allclose(view.tau[seq], sl.tau, rtol=0, atol=1e-5)
