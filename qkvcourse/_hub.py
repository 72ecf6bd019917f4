"""Loading pretrained weights from the Hugging Face Hub, failing fast when offline."""
from __future__ import annotations

import os
import socket
from typing import Any

HUB_HOST = "huggingface.co"


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether a TCP connection to the Hub opens within ``timeout`` seconds."""
    try:
        with socket.create_connection((HUB_HOST, 443), timeout=timeout):
            return True
    except OSError:
        return False


def from_pretrained(model_class: Any, name: str, **kwargs) -> Any:
    """``model_class.from_pretrained(name)``: from the local cache if there, else downloaded.

    Without a network, ``transformers`` retries for about half a minute before it fails;
    we look in the cache first and then check in a few seconds whether the Hub can be
    reached at all, so that an offline call fails at once (with the caller's message).
    """
    try:
        return model_class.from_pretrained(name, local_files_only=True, **kwargs)
    except OSError:
        pass
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        raise OSError("HF_HUB_OFFLINE is set and the weights are not in the local cache")
    if not hub_reachable():
        raise OSError(f"cannot reach {HUB_HOST} (no network?) and the weights are not in "
                      f"the local cache")
    return model_class.from_pretrained(name, **kwargs)
