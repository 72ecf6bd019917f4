"""Where a submission's code runs: a bubblewrap sandbox, another user id, or (on request) as us.

``bwrap`` (Debian's ``bubblewrap``): the worker sees, read-only, the system's programs and
libraries, Python and its installed packages, and a copy of ``qkvcourse`` *without* the
instructor package; its only writable directory is its own empty folder (and a private
``/tmp``). It runs as uid 65534 in its own user, PID, network, IPC and UTS namespaces, with an
empty environment; it cannot see other submissions, the output folder, the grader's files or
processes, or the private seed, and everything it starts dies with it.

``uid`` (no bubblewrap, grader running as root): the worker runs under a user id of its own
(one per parallel job, from :data:`UID_BASE`), with an empty environment and, where the kernel
allows, its own network and PID namespaces (``unshare``). It can read what is readable by
everybody, so the grader checks that the submissions, the output folder, the instructor package
and the seed are not.

``none``: the worker runs as the grader's own user. Only with ``--allow-same-user``, for
trusted submissions (a course's own tests).
"""
from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import sysconfig
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Sandbox", "make_sandbox", "SandboxError", "MODES", "UID_BASE", "python_paths",
           "student_package_copy", "isolated_python"]

MODES = ("auto", "bwrap", "uid", "none")
UID_BASE = 64000
SANDBOX_WORK = "/qkv-submission"  # the worker's folder, inside the sandbox
PACKAGE = Path(__file__).resolve().parents[2]  # .../qkvcourse
INSTRUCTOR = Path(__file__).resolve().parent

WORKER_BOOT = ("import sys; sys.path[:0] = {paths!r}; "
               "from qkvcourse.grading.worker import main; sys.exit(main(sys.argv[1:]))")


class SandboxError(RuntimeError):
    pass


def python_paths(extra_first: list[str] | None = None) -> list[str]:
    """The import path for an isolated (``-I -S``) Python: the installed packages of this
    interpreter, without the current directory, PYTHONPATH or the repository."""
    paths = []
    for key in ("purelib", "platlib"):
        p = sysconfig.get_paths().get(key)
        if p and p not in paths:
            paths.append(p)
    for p in sys.path:  # the standard library and any other site directory
        if p and Path(p).is_dir() and ("site-packages" in p or "dist-packages" in p) and p not in paths:
            paths.append(p)
    return list(extra_first or []) + paths


def isolated_python(code: str, args: list[str]) -> list[str]:
    """argv for a Python that ignores PYTHON* variables, user site and sitecustomize."""
    return [sys.executable, "-I", "-S", "-c", code, *args]


def student_package_copy(dest: Path) -> Path:
    """A copy of ``qkvcourse`` without the instructor package; returns the folder holding it."""
    target = dest / "qkvcourse"
    shutil.copytree(PACKAGE, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "instructor"))
    for root, dirs, files in os.walk(dest):
        os.chmod(root, 0o755)
        for name in files:
            os.chmod(os.path.join(root, name), 0o644)
    return dest


def _open_to_others(path: Path, bits: int) -> bool:
    """Whether a user with no special rights can reach ``path`` (every parent searchable by
    others) and has ``bits`` (of ``stat.S_IROTH | S_IXOTH``) on it; False if it is missing."""
    path = path.resolve()
    try:
        if any(not os.stat(parent).st_mode & stat.S_IXOTH for parent in path.parents):
            return False
        return bool(os.stat(path).st_mode & bits)
    except FileNotFoundError:
        return False


def _works(argv: list[str]) -> bool:
    try:
        return subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@dataclass
class Sandbox:
    """How to start workers; made once per batch by :func:`make_sandbox`."""

    mode: str
    code_root: Path  # holds the student copy of qkvcourse
    paths: list[str]
    unshare: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def own_processes(self) -> bool:
        """Whether the worker may kill every process it can signal (they are all its own)."""
        return self.mode in ("bwrap", "uid")

    def new_workdir(self) -> Path:
        work = Path(tempfile.mkdtemp(prefix="qkv-submission-"))
        os.chmod(work, 0o700)
        return work

    def command(self, workdir: Path, args: list[str], slot: int) -> tuple[list[str], dict]:
        """(argv, env) that runs the worker on ``args`` inside the sandbox."""
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "MPLBACKEND": "Agg",
               "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "",
               "PYTHONDONTWRITEBYTECODE": "1", "PYTHONHASHSEED": "0", "TQDM_DISABLE": "1"}
        boot = WORKER_BOOT.format(paths=self.paths)
        # The interpreter itself, not a virtual environment's link to it: the import path is
        # given explicitly, so the sandbox needs no venv.
        python = [str(Path(sys.executable).resolve()), "-I", "-S", "-c", boot]
        if self.mode == "bwrap":
            env.update(HOME=SANDBOX_WORK, TMPDIR="/tmp")
            argv = ["bwrap", "--unshare-all", "--unshare-user", "--uid", "65534", "--gid", "65534",
                    "--die-with-parent", "--new-session", "--clearenv", "--proc", "/proc",
                    "--dev", "/dev", "--tmpfs", "/tmp"]
            for name, value in env.items():
                argv += ["--setenv", name, value]
            for system in ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32",
                           "/etc/alternatives", "/etc/ld.so.cache", "/etc/ld.so.conf",
                           "/etc/ld.so.conf.d", "/etc/localtime", "/etc/passwd", "/etc/group",
                           "/etc/nsswitch.conf", "/etc/fonts", "/etc/matplotlibrc"):
                argv += ["--ro-bind-try", system, system]
            for path in self._read_only():
                argv += ["--ro-bind", path, path]
            argv += ["--bind", str(workdir), SANDBOX_WORK, "--chdir", SANDBOX_WORK, "--"]
            return argv + python + args, {}
        env.update(HOME=str(workdir), TMPDIR=str(workdir))
        if self.mode == "uid":
            uid = UID_BASE + slot
            os.chown(workdir, uid, uid)
            for p in workdir.iterdir():
                os.chown(p, uid, uid)
            prefix = ["unshare", "--net", "--pid", "--fork", "--kill-child", "--mount-proc"] \
                if self.unshare else []
            prefix += ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--"]
            return prefix + python + args, env
        return python + args, env

    def _read_only(self) -> list[str]:
        paths = {str(Path(sys.base_prefix).resolve()), str(Path(sys.prefix).resolve()),
                 str(Path(sys.executable).resolve().parent), str(self.code_root)}
        paths.update(str(Path(p).resolve()) for p in self.paths)
        ordered = sorted(paths, key=len)
        kept = []
        for p in ordered:  # a path inside an already bound one needs no bind of its own
            if Path(p).exists() and not any(p == k or p.startswith(k + os.sep) for k in kept):
                kept.append(p)
        return kept

    def close(self):
        shutil.rmtree(self.code_root, ignore_errors=True)


def make_sandbox(mode: str = "auto", allow_same_user: bool = False,
                 private: list[Path] | None = None) -> Sandbox:
    """Choose and prepare the sandbox. ``private``: paths the worker must not read (the
    submissions, the output folder, the seed file), checked in ``uid`` mode."""
    if mode not in MODES:
        raise SandboxError(f"sandbox must be one of {MODES}, got {mode!r}")
    root = os.geteuid() == 0
    bwrap_ok = shutil.which("bwrap") is not None and _works(
        ["bwrap", "--unshare-all", "--unshare-user", "--uid", "65534", "--ro-bind", "/", "/",
         "--proc", "/proc", "--dev", "/dev", "true"])
    if mode == "auto":
        mode = "bwrap" if bwrap_ok else "uid" if root else "none"
    if mode == "bwrap" and not bwrap_ok:
        raise SandboxError("bubblewrap (`bwrap`) is not installed or cannot create namespaces here; "
                           "install Debian's `bubblewrap`, or choose --sandbox uid (as root)")
    if mode == "uid" and not root:
        raise SandboxError("--sandbox uid needs the grader to run as root (to switch user ids)")
    if mode == "uid" and shutil.which("setpriv") is None:
        raise SandboxError("--sandbox uid needs `setpriv` (util-linux)")
    if mode == "none" and not allow_same_user:
        raise SandboxError(
            "no sandbox is available: bubblewrap is missing and the grader is not root, so "
            "submissions would run as your own user, able to read and change your files. Install "
            "Debian's `bubblewrap` (or grade as root), or pass --allow-same-user if you trust "
            "every submission")
    code_root = student_package_copy(Path(tempfile.mkdtemp(prefix="qkv-student-code-")))
    os.chmod(code_root, 0o755)
    sandbox = Sandbox(mode, code_root, python_paths([str(code_root)]))
    if mode == "uid":
        sandbox.unshare = shutil.which("unshare") is not None and _works(
            ["unshare", "--net", "--pid", "--fork", "--mount-proc", "true"])
        if not sandbox.unshare:
            sandbox.notes.append("the kernel refused new namespaces: workers share the network "
                                 "and see other processes (they cannot signal them)")
        problems = [str(p) for p in [Path(sys.executable), *map(Path, sandbox.paths)]
                    if p.exists() and not _open_to_others(p, stat.S_IROTH)]
        if problems:
            sandbox.close()
            raise SandboxError("--sandbox uid: the worker's user cannot read "
                               + ", ".join(problems) + " (make them readable by others, or use bwrap)")
        exposed = [str(p) for p in map(Path, [INSTRUCTOR, *(private or [])])
                   if _open_to_others(p, stat.S_IROTH | (stat.S_IXOTH if p.is_dir() else 0))]
        if exposed:
            sandbox.close()
            raise SandboxError("--sandbox uid: these are readable by other users, so a submission "
                               "could read them: " + ", ".join(exposed) + " (chmod o-rwx them)")
    if mode == "none":
        sandbox.notes.append("submissions ran as the grader's own user (--allow-same-user)")
    return sandbox
