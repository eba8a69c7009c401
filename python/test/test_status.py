# The Python status codes mirror include/sparsek-c/Status.h exactly.
import os
import re

from sparsek import status

HEADER = os.path.join(os.path.dirname(__file__), "..", "..", "include", "sparsek-c", "Status.h")


def test_codes_and_messages_match_the_c_header():
    text = open(HEADER).read()
    codes = {name: int(v) for name, v in re.findall(r"SPARSEK_(?:ERROR_)?(\w+) = (\d+)", text)}
    assert codes == {n: getattr(status, n) for n in codes}
    messages = dict(re.findall(r"case SPARSEK_(?:ERROR_)?\w+:\s*return\s*\"([^\"]*)\"", text) and
                    [(getattr(status, n), m) for n, m in
                     re.findall(r"case SPARSEK_(?:ERROR_)?(\w+):\s*return\s*\"([^\"]*)\"", text)])
    assert messages == status.MESSAGES
