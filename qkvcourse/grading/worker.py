"""The student's side of the autograder: run a submission, then answer calls.

The grader (``qkvcourse.grading.instructor.autograde``) starts this module inside a sandbox as
``python -I -S worker.py NOTEBOOK PLAN READ_FD WRITE_FD MEMORY_MB``. The worker

1. imports what notebooks use, then arms its guards (below) and limits its memory and file
   sizes;
2. runs the notebook's code cells as Jupyter would, through IPython (``!cmd``, ``x = !cmd``,
   ``%%writefile``, ``%`` magics); a cell that raises is recorded and execution goes on;
3. stops every other process of the sandbox, and forbids new processes and threads for the
   rest of its life (a seccomp filter, which nothing in the process can lift);
4. answers requests ``{"question": i, "case": {...}}`` with ``{"ok": True, "value": ...}`` or
   ``{"ok": False, "error": ...}``.

Nothing here decides a score: the grader compares the values in its own process.

**Borrowing guard.** The plan lists, for each question, implementations its answer may not call
(see ``Question.forbidden``). While the grader's call of question *i* runs, the worker exits at
once with code ``100 + k`` if the *k*-th listed implementation runs, however it was reached:

- Python functions and classes (``qkvcourse``'s, ``torch.nn.functional.multi_head_attention_
  forward``...) are recognised by a profile hook on every Python frame, by the file and line
  where their code starts (so an alias, a wrapper, a module built on them or a re-import of
  the package is recognised too);
- PyTorch operators (``aten::scaled_dot_product_attention`` and its variants) are replaced in
  PyTorch's dispatcher by a kernel that checks the question before computing (with an explicit
  formula), so every route to the kernel (``F.``, ``torch.ops``, ``nn.MultiheadAttention``,
  ``map``) is covered.

The hook keeps its state in immutable default arguments, and an audit hook (which cannot be
removed) refuses what would disarm it: replacing the profile hook, changing or reading the code
of ``qkvcourse`` functions or of the guards, building functions from ``qkvcourse``'s code,
``ctypes`` and walking the garbage collector's object graph. It is a strong tripwire, not a
proof: copying the *text* of an implementation is not detected at run time.
"""
from __future__ import annotations

import io
import json
import os
import struct
import sys

__all__ = ["run_cells", "read_message", "write_message", "Shell"]

TAMPER_EXIT = 99  # the guard's own checks failed: the submission interfered with them
BORROW_EXIT = 100  # + k: the k-th forbidden implementation ran during a call


# --- running cells as Jupyter does ------------------------------------------------------------

class Shell:
    """Runs notebook cells in one namespace, with IPython's shell when it is installed (as a
    Jupyter kernel does: magics, ``!`` lines) and plain ``exec`` otherwise."""

    def __init__(self, namespace: dict | None = None):
        self.namespace = {"__name__": "__main__"} if namespace is None else namespace
        self.ip = None
        try:
            from IPython.core.interactiveshell import InteractiveShell
            from traitlets.config import Config
        except ImportError:
            return
        config = Config()
        config.HistoryManager.enabled = False  # no sqlite file, no history thread
        config.InteractiveShell.colors = "nocolor"
        class NotebookShell(InteractiveShell):
            def enable_gui(self, gui=None):  # `%matplotlib inline`: figures are not shown here
                pass

        self.ip = NotebookShell(config=config, user_ns=self.namespace)

    def run(self, source: str, index: int) -> str | None:
        """Run one cell; return a message when it failed."""
        if self.ip is None:
            try:
                exec(compile(_strip_magics(source), f"<cell {index}>", "exec"), self.namespace)
            except SystemExit as exc:
                return f"cell {index} called sys.exit({exc.code!r})"
            except BaseException as exc:  # noqa: BLE001  (a student's cell may raise anything)
                if isinstance(exc, KeyboardInterrupt):
                    raise
                return f"cell {index} raised {type(exc).__name__}: {str(exc)[:300]}"
            return None
        result = self.ip.run_cell(source, store_history=False)
        exc = result.error_before_exec or result.error_in_exec
        if exc is None:
            return None
        if isinstance(exc, SystemExit):
            return f"cell {index} called sys.exit({exc.code!r})"
        return f"cell {index} raised {type(exc).__name__}: {str(exc)[:300]}"


def _strip_magics(source: str) -> str:
    """Without IPython: ``%`` and ``!`` lines become ``pass``."""
    return "\n".join(("pass  # " + line.strip()) if line.lstrip().startswith(("%", "!")) else line
                     for line in source.splitlines())


class _NoGrader:
    """Stands in for otter's ``grader`` while grading: checks run in the grader instead."""

    def __init__(self, *args, **kwargs):
        pass

    def check(self, *args, **kwargs):
        return None

    def __getattr__(self, name):
        return lambda *args, **kwargs: None


def _otter_stub():
    import types

    otter = types.ModuleType("otter")
    otter.Notebook = _NoGrader
    return otter


def run_cells(cells: list[str], namespace: dict | None = None) -> tuple[dict, list[str]]:
    """Execute notebook cells in one namespace; return it and one message per failed cell."""
    sys.modules.setdefault("otter", _otter_stub())
    shell = Shell(namespace)
    errors = [e for i, cell in enumerate(cells, 1) if (e := shell.run(cell, i)) is not None]
    return shell.namespace, errors


# --- framing: 4-byte length, then a torch.save payload -----------------------------------------

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
        chunk = os.read(fd, min(left, 2**20))
        if not chunk:
            raise EOFError("the other side closed the pipe")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


class MessageTooLarge(ValueError):
    pass


def read_message(fd: int, max_bytes: int = 64 * 2**20):
    """Read one message. ``weights_only`` loading: tensors and plain containers only."""
    import torch

    (n,) = struct.unpack(">I", _read_exactly(fd, 4))
    if n > max_bytes:
        raise MessageTooLarge(f"a reply of {n} bytes, over the limit of {max_bytes}")
    return torch.load(io.BytesIO(_read_exactly(fd, n)), weights_only=True)


# --- limits ----------------------------------------------------------------------------------

def _limit_resources(memory_mb: int) -> None:
    import resource

    if memory_mb > 0:
        limit = memory_mb * 2**20
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 2**20, 64 * 2**20))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _process_filter():
    """Prepare a seccomp filter that makes fork, clone (threads included) and exec fail with
    EPERM, for this process and for good. Returns ``(arm, note)``: ``arm()`` installs it (a call
    of two already-resolved C functions, so it works under the audit hook); ``arm`` is None with
    a note where this platform has no filter."""
    import ctypes
    import platform

    numbers = {"x86_64": (0xC000003E, (56, 57, 58, 59, 322, 435)),  # clone fork vfork execve execveat clone3
               "aarch64": (0xC00000B7, (220, 221, 281, 435))}  # clone execve execveat clone3
    machine = platform.machine()
    if machine not in numbers or not sys.platform.startswith("linux"):
        return None, f"no process filter on {sys.platform}/{machine}", 0
    arch, calls = numbers[machine]

    def op(code, jt, jf, k):
        return struct.pack("=HBBI", code, jt, jf, k)

    ld_w_abs, jeq_k, ret_k = 0x20, 0x15, 0x06
    prog = [op(ld_w_abs, 0, 0, 4),  # seccomp_data.arch
            op(jeq_k, 1, 0, arch),
            op(ret_k, 0, 0, 0x7FFF0000),  # another architecture: allow
            op(ld_w_abs, 0, 0, 0)]  # seccomp_data.nr
    for i, nr in enumerate(calls):
        prog.append(op(jeq_k, len(calls) - i, 0, nr))  # jump to the EPERM return
    prog.append(op(ret_k, 0, 0, 0x7FFF0000))  # SECCOMP_RET_ALLOW
    prog.append(op(ret_k, 0, 0, 0x00050000 | 1))  # SECCOMP_RET_ERRNO | EPERM
    filt = b"".join(prog)
    buf = ctypes.create_string_buffer(filt, len(filt))

    class Prog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    prog_struct = Prog(len(prog), ctypes.cast(buf, ctypes.c_void_p))
    pointer = ctypes.byref(prog_struct)
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p, ctypes.c_ulong, ctypes.c_ulong]
    address = ctypes.cast(prctl, ctypes.c_void_p).value

    def arm(_keep=(buf, prog_struct)):
        if prctl(38, 1, None, 0, 0) != 0:  # PR_SET_NO_NEW_PRIVS
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS) failed")
        if prctl(22, 2, pointer, 0, 0) != 0:  # PR_SET_SECCOMP, SECCOMP_MODE_FILTER
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_SECCOMP) failed")

    return arm, None, address


def _threads() -> int:
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        import threading

        return threading.active_count()


# --- the borrowing guard -----------------------------------------------------------------------

def _resolve(name: str):
    """``"pkg.module.attr[.attr]"`` -> the object."""
    import importlib

    parts = name.split(".")
    for i in range(len(parts) - 1, 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attr in parts[i:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(f"cannot resolve {name!r}")


def _code_keys(obj) -> list[tuple[str, int]]:
    """(file, first line) of a function's code, or of every function defined in a class."""
    import inspect

    if inspect.isclass(obj):
        keys = []
        for value in vars(obj).values():
            value = getattr(value, "__func__", value)
            if inspect.isfunction(value):
                keys.append((value.__code__.co_filename, value.__code__.co_firstlineno))
        return keys
    obj = inspect.unwrap(obj)
    if inspect.isfunction(obj):
        return [(obj.__code__.co_filename, obj.__code__.co_firstlineno)]
    return []


def _sdpa_formula(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, *,
                  scale=None, enable_gqa=False):
    """scaled_dot_product_attention by its definition: what the guarded kernel computes when
    the running question allows it."""
    import math

    import torch

    L, S = query.shape[-2], key.shape[-2]
    scale = 1 / math.sqrt(query.shape[-1]) if scale is None else scale
    if enable_gqa and key.dim() >= 3 and key.shape[-3] != query.shape[-3]:
        rep = query.shape[-3] // key.shape[-3]
        key, value = key.repeat_interleave(rep, -3), value.repeat_interleave(rep, -3)
    scores = query @ key.transpose(-2, -1) * scale
    if is_causal:
        keep = torch.ones(L, S, dtype=torch.bool, device=query.device).tril()
        scores = scores.masked_fill(~keep, float("-inf"))
    if attn_mask is not None:
        if attn_mask.dtype == torch.bool:
            scores = scores.masked_fill(~attn_mask, float("-inf"))
        else:
            scores = scores + attn_mask
    weights = torch.softmax(scores, -1)
    if dropout_p > 0:
        weights = torch.dropout(weights, dropout_p, True)
    return weights @ value


def _forbidden_here(frame, ks, _codes, _rules, _len=len, _range=range):
    """The forbidden entry among ``ks`` for the question whose call is on the stack, or -1."""
    while frame is not None:
        code = frame.f_code
        for i in _range(_len(_codes)):
            if code is _codes[i]:
                for k in ks:
                    if k in _rules[i]:
                        return k
                return -1
        frame = frame.f_back
    return -1


class Guard:
    """Builds, from the plan, the markers of each question's calls, the profile hook, the audit
    hook and the operator traps (see the module's docstring)."""

    def __init__(self, forbidden_per_question: list[list[str]]):
        import types

        self.entries = sorted({name for names in forbidden_per_question for name in names})
        index = {name: k for k, name in enumerate(self.entries)}
        self.rules = tuple(frozenset(index[n] for n in names) for names in forbidden_per_question)
        py_keys, self.ops = {}, {}
        for k, name in enumerate(self.entries):
            if name.startswith("aten::"):
                self.ops[name[len("aten::"):]] = k
                continue
            for key in _code_keys(_resolve(name)):
                py_keys.setdefault(key, set()).add(k)
        self.py_keys = frozenset(py_keys)
        self.py_entries = tuple(sorted((key, frozenset(ks)) for key, ks in py_keys.items()))

        def call(obj, kind, case):
            from .core import call_object

            return call_object(obj, kind, case)

        # One marker function per question, with code of its own: the hooks find the running
        # question by looking for these code objects on the stack.
        self.markers = tuple(
            types.FunctionType(call.__code__.replace(co_name=f"_graded_question_{i}"), call.__globals__)
            for i in range(len(self.rules)))
        self.marker_codes = tuple(m.__code__ for m in self.markers)

    def profile_hook(self):
        import os as _os

        find = _forbidden_here

        def hook(frame, event, arg, _keys=self.py_keys, _entries=self.py_entries,
                 _codes=self.marker_codes, _rules=self.rules, _find=find, _exit=_os._exit,
                 _base=BORROW_EXIT, _tamper=TAMPER_EXIT):
            try:
                if event == "call":
                    code = frame.f_code
                    key = (code.co_filename, code.co_firstlineno)
                    if key in _keys:
                        for k, ks in _entries:
                            if k == key:
                                hit = _find(frame, ks, _codes, _rules)
                                if hit >= 0:
                                    _exit(_base + hit)
            except BaseException:  # noqa: BLE001  (the hook must never be switched off by an error)
                _exit(_tamper)

        return hook

    @staticmethod
    def audit_hook(package_dir: str, allowed_calls: frozenset):
        """Refuses what would disarm the guards (see the module's docstring). It must not itself
        do anything audited: audit hooks are called again for their own events."""
        blocked = frozenset({"sys.setprofile", "sys.settrace", "gc.get_objects", "gc.get_referrers",
                             "gc.get_referents", "sys.addaudithook"})
        read = frozenset({"__code__", "__defaults__", "__kwdefaults__", "__globals__", "__closure__"})
        write = read | {"__module__"}

        def hook(event, args, _blocked=blocked, _read=read, _write=write, _pkg=package_dir,
                 _allowed=allowed_calls, _getattr=getattr, _isinstance=isinstance, _str=str,
                 _len=len, _error=RuntimeError):
            if event in _blocked:
                raise _error(f"{event} is not allowed while grading")
            if event.startswith("ctypes."):
                if event == "ctypes.call_function" and args and args[0] in _allowed:
                    return
                raise _error(f"{event} is not allowed while grading")
            if event == "object.__getattr__" or event == "object.__setattr__" or \
                    event == "object.__delattr__":
                names = _read if event == "object.__getattr__" else _write
                if _len(args) >= 2 and args[1] in names:
                    module = _getattr(args[0], "__module__", None)
                    if _isinstance(module, _str) and module.startswith("qkvcourse"):
                        raise _error(f"{args[1]} of the course's own functions is not available "
                                     "while grading")
            elif event == "code.__new__":
                if _len(args) >= 2 and _isinstance(args[1], _str) and args[1].startswith(_pkg):
                    raise _error("building code objects from the course's code is not allowed "
                                 "while grading")
            elif event == "function.__new__" or event == "exec":
                filename = _getattr(args[0], "co_filename", None) if args else None
                name = _getattr(args[0], "co_name", "") if args else ""
                if _isinstance(filename, _str) and filename.startswith(_pkg) and name != "<module>":
                    raise _error("running the course's own code objects is not allowed while "
                                 "grading")

        return hook

    def install_operator_traps(self):
        """Replace each forbidden operator in PyTorch's dispatcher by a checking kernel. Returns
        the library object, which must stay alive (and unreachable) for the traps to hold."""
        import os as _os

        import torch

        if not self.ops:
            return None
        lib = torch.library.Library("aten", "IMPL")
        find, codes, rules = _forbidden_here, self.marker_codes, self.rules
        for op, k in self.ops.items():
            def kernel(*args, _k=k, _op=op, _find=find, _codes=codes, _rules=rules,
                       _exit=_os._exit, _base=BORROW_EXIT, _getframe=sys._getframe, **kwargs):
                if _find(_getframe(1), (_k,), _codes, _rules) >= 0:
                    _exit(_base + _k)
                if _op == "scaled_dot_product_attention":
                    return _sdpa_formula(*args, **kwargs)
                raise RuntimeError(f"aten::{_op} is not available while grading")

            keys = ["CompositeImplicitAutograd"]
            if op.endswith("_for_cpu") or op.startswith("_native"):
                keys.append("CPU")
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                for key in keys:
                    lib.impl(op, kernel, key)
        return lib


# --- the process ------------------------------------------------------------------------------

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
    notebook, plan_path = argv[0], argv[1]
    read_fd, write_fd, memory_mb = int(argv[2]), int(argv[3]), int(argv[4])
    # Captured before any of the submission's code runs.
    _exit, _kill, _setprofile, _addaudithook = os._exit, os.kill, sys.setprofile, sys.addaudithook
    log = open("student_output.log", "w", buffering=1)
    sys.stdout = sys.stderr = log
    os.environ["QKVCOURSE_GRADING_WORKER"] = "1"  # grader.check in the notebook does nothing
    os.environ["MPLBACKEND"] = "Agg"
    import signal

    import torch

    import qkvcourse
    from qkvcourse.grading.core import Case, _error_text
    from qkvcourse.grading.sheets import code_cells

    torch.set_num_threads(1)
    try:
        import tqdm

        tqdm.tqdm.monitor_interval = 0  # no monitor thread
    except ImportError:
        pass
    with open(plan_path, encoding="utf-8") as f:
        plan = json.load(f)
    names = [q["name"] for q in plan["questions"]]
    kinds = [q["kind"] for q in plan["questions"]]
    guard = Guard([q["forbidden"] for q in plan["questions"]])
    shell = Shell()
    sys.modules.setdefault("otter", _otter_stub())
    package_dir = os.path.dirname(os.path.abspath(qkvcourse.__file__))
    arm_filter, note, prctl_address = _process_filter()
    profile = guard.profile_hook()
    traps = guard.install_operator_traps()  # noqa: F841  (kept alive by this frame)
    threads_before = _threads()
    _limit_resources(memory_mb)
    _setprofile(profile)
    _addaudithook(Guard.audit_hook(package_dir, frozenset({prctl_address})))
    try:
        with open(notebook, encoding="utf-8") as f:
            cells = code_cells(json.load(f))
    except Exception as exc:  # noqa: BLE001
        write_message(write_fd, {"ready": False, "error": f"the notebook could not be read: "
                                                          f"{type(exc).__name__}: {str(exc)[:200]}"})
        return 3
    sys.path.insert(0, "")  # as in a Jupyter kernel: modules written next to the notebook import
    errors = [e for i, cell in enumerate(cells, 1) if (e := shell.run(cell, i)) is not None]
    if sys.getprofile() is not profile:
        _exit(TAMPER_EXIT)
    if plan.get("own_processes", False):
        # Whatever the notebook started (a ! command, a server, a daemon) stops here.
        try:
            _kill(-1, signal.SIGKILL)
        except OSError:
            pass
    extra = _threads() - threads_before
    if extra > 0:
        write_message(write_fd, {"ready": False, "error": f"your notebook left {extra} thread(s) "
                                 "running; threads cannot run while the grader calls your code"})
        return 4
    notes = [note] if note else []
    if arm_filter is not None:
        arm_filter()  # from now on no process or thread can start
    write_message(write_fd, {"ready": True, "errors": errors[:20], "notes": notes})
    markers, namespace = guard.markers, shell.namespace
    while True:
        try:
            request = read_message(read_fd)
        except EOFError:
            return 0
        i = request["question"]
        try:
            if names[i] not in namespace:
                raise NameError(f"`{names[i]}` is not defined in your notebook")
            value = _plain(markers[i](namespace[names[i]], kinds[i], Case(**request["case"])))
            reply = {"ok": True, "value": value}
        except BaseException as exc:  # noqa: BLE001
            if isinstance(exc, SystemExit):
                reply = {"ok": False, "error": f"SystemExit: your code called sys.exit({exc.code!r})"}
            else:
                reply = {"ok": False, "error": _error_text(exc)[:1000]}
        write_message(write_fd, reply)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
