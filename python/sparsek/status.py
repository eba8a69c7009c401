# Status codes of compiled SparseK entry points (mirrors include/sparsek-c/Status.h).
"""Errors reported by compiled SparseK code.

Compiled code never aborts: it records the first error in its library's
status word (GPU kernels: in its device status, see sparsek.gpu).
`SparseKError` carries the code and its message.
"""

OK = 0
INVALID_SCORE = 1
SHAPE_MISMATCH = 2
QUERIES_EXCEED_KEYS = 3
INVALID_CACHE_STATE = 4
RUNTIME = 5
MISALIGNED = 6
OUT_OF_MEMORY = 7

MESSAGES = {
    OK: "ok",
    INVALID_SCORE: "invalid score: NaN or +inf in the scores (use -inf to mask a key)",
    SHAPE_MISMATCH: ("shape mismatch: an operand's sizes disagree with the function type or with "
                     "another operand"),
    QUERIES_EXCEED_KEYS: "more queries than keys: T must not exceed S",
    INVALID_CACHE_STATE: "invalid cache state: a position or pool count is out of range",
    RUNTIME: "runtime error: a CUDA call failed (see sk_rt_get_last_error)",
    MISALIGNED: ("misaligned operand: the GPU kernels read rows as 16-byte vectors; pass "
                 "tensors whose data starts 16-byte aligned (e.g. contiguous copies)"),
    OUT_OF_MEMORY: "out of memory: a buffer the compiled code needs could not be allocated",
}


class SparseKError(RuntimeError):
    """A compiled SparseK function rejected its input."""

    def __init__(self, code, function=None):
        self.code = code
        where = f"{function}: " if function else ""
        super().__init__(f"{where}{MESSAGES.get(code, 'unknown SparseK status code')} (status {code})")
