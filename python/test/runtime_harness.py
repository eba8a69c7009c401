# Finds libsparsek_runtime.so for the KV-cache tests: skips where it is not built, unless CI requires it.
import os

import pytest

from sparsek import kv_cache


def require_runtime():
    try:
        kv_cache.library_path()
    except kv_cache.RuntimeNotFound as e:
        if os.environ.get("SPARSEK_REQUIRE_RUNTIME"):
            raise
        pytest.skip(f"runtime not available: {e}")
