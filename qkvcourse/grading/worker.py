"""The student's side of the autograder: run a submission, then answer calls.

Started by :mod:`qkvcourse.grading.autograde` as
``python -m qkvcourse.grading.worker NOTEBOOK READ_FD WRITE_FD MEMORY_MB``, in a fresh
temporary directory and a new session. It limits its own memory (``RLIMIT_AS``) and file
sizes, runs the notebook's code cells (errors in a cell are recorded and execution goes on,
as in a notebook), then reads requests ``{"name", "kind", "case"}`` from ``READ_FD`` and
writes back ``{"ok": True, "value": ...}`` or ``{"ok": False, "error": ...}``.

Nothing here decides a score: the grader compares the values in its own process. Patching
this module, ``qkvcourse.grading`` or anything else in this process therefore changes only
the values sent back, which are checked against the reference like any other answer.
"""
from __future__ import annotations

import io
import os
import re
import struct
import sys
import types

__all__ = ["prepare_code", "run_cells", "read_message", "write_message"]

_MAGIC = re.compile(r"^\s*[%!]")


def prepare_code(source: str) -> str:
    """A cell's code as plain Python: IPython magics and shell lines become ``pass``."""
    lines = [("pass  # " + line.strip()) if _MAGIC.match(line) else line
             for line in source.splitlines()]
    return "\n".join(lines)


class _NoGrader:
    """Stands in for otter's ``grader`` while grading: checks run in the grader instead."""

    def __init__(self, *args, **kwargs):
        pass

    def check(self, *args, **kwargs):
        return None

    def __getattr__(self, name):
        return lambda *args, **kwargs: None


def _otter_stub() -> types.ModuleType:
    otter = types.ModuleType("otter")
    otter.Notebook = _NoGrader
    return otter


def run_cells(cells: list[str], namespace: dict | None = None) -> tuple[dict, list[str]]:
    """Execute notebook cells in one namespace; return it and one message per failed cell."""
    namespace = {"__name__": "__main__"} if namespace is None else namespace
    sys.modules["otter"] = _otter_stub()
    errors = []
    for i, source in enumerate(cells):
        try:
            code = compile(prepare_code(source), f"<cell {i + 1}>", "exec")
            exec(code, namespace)
        except SystemExit as exc:
            errors.append(f"cell {i + 1} called sys.exit({exc.code!r})")
        except BaseException as exc:  # noqa: BLE001  (a student's cell may raise anything)
            if isinstance(exc, KeyboardInterrupt):
                raise
            errors.append(f"cell {i + 1} raised {type(exc).__name__}: {str(exc)[:300]}")
    return namespace, errors


# --- framing: 4-byte length, then a torch.save payload -----------------------------------

def write_message(fd: int, message) -> None:
    import torch

    buffer = io.BytesIO()
    torch.save(message, buffer)
    data = buffer.getvalue()
    payload = struct.pack(">I", len(data)) + data
    view = memoryview(payload)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _read_exactly(fd: int, n: int) -> bytes:
    chunks, left = [], n
    while left:
        chunk = os.read(fd, left)
        if not chunk:
            raise EOFError("the other side closed the pipe")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def read_message(fd: int, max_bytes: int = 256 * 2**20):
    """Read one message. ``weights_only`` loading: tensors and plain containers only."""
    import torch

    (n,) = struct.unpack(">I", _read_exactly(fd, 4))
    if n > max_bytes:
        raise ValueError(f"message of {n} bytes is larger than the limit of {max_bytes}")
    return torch.load(io.BytesIO(_read_exactly(fd, n)), weights_only=True)


def _limit_resources(memory_mb: int) -> None:
    import resource

    if memory_mb > 0:
        limit = memory_mb * 2**20
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 2**20, 64 * 2**20))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _plain(value):
    """Tensors, numbers, strings, None and containers of them; anything else is refused."""
    import torch

    if isinstance(value, torch.Tensor):
        return value.detach().cpu().clone()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v) for v in value)
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    raise TypeError(f"returned a {type(value).__name__}, which the grader cannot compare "
                    "(return tensors, numbers, or tuples/lists of them)")


def main(argv: list[str]) -> int:
    notebook, read_fd, write_fd, memory_mb = argv[0], int(argv[1]), int(argv[2]), int(argv[3])
    # The student's prints go to a log, not to the grader's pipes.
    log = open("student_output.log", "w", buffering=1)
    sys.stdout = sys.stderr = log
    import json

    import torch

    from .core import Case, _error_text, call_object
    from .sheets import code_cells

    torch.set_num_threads(1)
    os.environ["QKVCOURSE_GRADING_WORKER"] = "1"  # grader.check in the notebook does nothing
    _limit_resources(memory_mb)
    try:
        with open(notebook, encoding="utf-8") as f:
            cells = code_cells(json.load(f))
    except Exception as exc:  # noqa: BLE001
        write_message(write_fd, {"ready": False, "error": f"the notebook could not be read: "
                                                          f"{type(exc).__name__}: {str(exc)[:200]}"})
        return 3
    namespace, errors = run_cells(cells)
    write_message(write_fd, {"ready": True, "errors": errors[:20]})
    while True:
        try:
            request = read_message(read_fd)
        except EOFError:
            return 0
        name = request["name"]
        try:
            if name not in namespace:
                raise NameError(f"`{name}` is not defined in your notebook")
            case = Case(**request["case"])
            value = _plain(call_object(namespace[name], request["kind"], case))
            reply = {"ok": True, "value": value}
        except BaseException as exc:  # noqa: BLE001
            if isinstance(exc, SystemExit):
                reply = {"ok": False, "error": f"SystemExit: your code called sys.exit({exc.code!r})"}
            else:
                reply = {"ok": False, "error": _error_text(exc)[:1000]}
        write_message(write_fd, reply)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
