"""Small helpers shared by the test modules (importable because pytest puts tests/ on sys.path)."""
import re

import pytest


def raises(exc, *fragments):
    """``pytest.raises`` requiring every fragment (literal text) somewhere in the message."""
    pattern = "(?s)" + "".join(f"(?=.*{re.escape(f)})" for f in fragments)
    return pytest.raises(exc, match=pattern)


def book_links():
    """``book/links.py``, the one reader of the repository URL in ``_config.yml``."""
    import importlib.util
    import sys
    from pathlib import Path

    name = "qkvcourse_book_links"
    if name not in sys.modules:
        path = Path(__file__).resolve().parents[1] / "book" / "links.py"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # (its dataclass looks its module up there)
        spec.loader.exec_module(module)
    return sys.modules[name]
