"""Small helpers shared by the test modules (importable because pytest puts tests/ on sys.path)."""
import re

import pytest


def raises(exc, *fragments):
    """``pytest.raises`` requiring every fragment (literal text) somewhere in the message."""
    pattern = "(?s)" + "".join(f"(?=.*{re.escape(f)})" for f in fragments)
    return pytest.raises(exc, match=pattern)
