"""A Gradescope autograder bundle for one sheet.

The zip holds everything the grader needs, fixed when the bundle is built: this exact copy of
``qkvcourse`` (instructor package included), the sheet's source, a private seed drawn for this
bundle, the exact versions of torch and the other packages, and two scripts with their execute
bit set:

- ``setup.sh`` (once, when Gradescope builds the image; Ubuntu 22.04/24.04): installs Python,
  ``venv``, ``git``, ``bubblewrap`` and ``util-linux`` with apt, creates a virtual environment
  in ``/autograder/venv`` (Ubuntu 24.04's system Python refuses ``pip install``, PEP 668) and
  installs the pinned packages into it; then makes ``/autograder/source`` readable by root
  only.
- ``run_autograder`` (per submission, as root): grades the submitted notebook with
  ``grade-one``. The notebook's code runs in the sandbox (bubblewrap where the container allows
  namespaces, otherwise as a user id of its own), which can write neither the grader, nor
  ``/autograder/source``, nor ``/autograder/results``; the grader alone writes
  ``results.json``.
"""
from __future__ import annotations

import secrets
import shutil
import subprocess
import tempfile
import zipfile
from importlib import metadata
from pathlib import Path

from ..sheets import read_sheet
from .sandbox import PACKAGE

__all__ = ["write_gradescope_bundle", "SETUP", "RUN"]

SETUP = r"""#!/usr/bin/env bash
# Gradescope runs this once, as root, when it builds the autograder image.
set -euo pipefail
SRC=/autograder/source
VENV=/autograder/venv
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# git: for requirements given as git URLs; bubblewrap and util-linux: the submission's sandbox.
apt-get install -y -qq python3 python3-venv python3-pip git bubblewrap util-linux
python3 -m venv "$VENV"  # Ubuntu 24.04's own Python refuses pip installs (PEP 668)
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q --index-url https://download.pytorch.org/whl/cpu "torch==__TORCH__"
"$VENV/bin/python" -m pip install -q -r "$SRC/requirements.txt"
chmod -R a+rX "$VENV"
# The grader's code, the sheet's solutions and the private seed: root only.
chown -R root:root "$SRC"
chmod -R go-rwx "$SRC"
chmod 600 "$SRC/seed"
"$VENV/bin/python" -c "import torch, numpy, IPython; print('torch', torch.__version__)"
"""

RUN = r"""#!/usr/bin/env bash
# Gradescope runs this once per submission, as root. The submission's code runs in a sandbox
# (another user id, no access to /autograder/source or /autograder/results); this grader alone
# writes results.json.
set -uo pipefail
ROOT="${AUTOGRADER_ROOT:-/autograder}"
PY="${QKV_PYTHON:-$ROOT/venv/bin/python}"
SRC="$ROOT/source"
mkdir -p "$ROOT/results"
sub=$(find "$ROOT/submission" -name '*.ipynb' -not -path '*/.ipynb_checkpoints/*' 2>/dev/null | sort | head -n 1)
site=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
exec "$PY" -I -S -c "import sys; sys.path[:0] = [sys.argv.pop(1), sys.argv.pop(1)]; from qkvcourse.grading.instructor.cli import main; sys.exit(main(sys.argv[1:]))" \
    "$SRC" "$site" grade-one "${sub:-$ROOT/submission/no-notebook-submitted.ipynb}" \
    --sheet "$SRC/sheet.ipynb" --sources "$SRC" --seed-file "$SRC/seed" \
    --out "$ROOT/results/results.json"
"""


def _version(dist: str) -> str:
    return metadata.version(dist).split("+")[0]


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=PACKAGE.parent, capture_output=True,
                              text=True, timeout=10).stdout.strip() or "unknown"
    except OSError:
        return "unknown"


def _add(z: zipfile.ZipFile, name: str, data: bytes | str, mode: int = 0o644) -> None:
    """A regular file with its permission bits (0o755 for the scripts: the execute bit)."""
    info = zipfile.ZipInfo(name)
    info.external_attr = (0o100000 | mode) << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    z.writestr(info, data)


def write_gradescope_bundle(sheet_path: str | Path, out: str | Path) -> Path:
    """Write the autograder zip for one source sheet; returns its path. The zip holds the
    sheet's solutions and a private seed: do not share it."""
    sheet = read_sheet(sheet_path)
    out = Path(out)
    requirements = "".join(f"{d}=={_version(d)}\n" for d in ("numpy", "matplotlib", "tqdm", "ipython"))
    version = (f"qkvcourse {_version('qkvcourse')} (commit {_commit()}), sheet {sheet.slug}, "
               f"torch {_version('torch')}\n")
    with tempfile.TemporaryDirectory(prefix="qkv-bundle-") as tmp:
        code = Path(tmp) / "qkvcourse"
        shutil.copytree(PACKAGE, code, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        with zipfile.ZipFile(out, "w") as z:
            _add(z, "setup.sh", SETUP.replace("__TORCH__", _version("torch")), 0o755)
            _add(z, "run_autograder", RUN, 0o755)
            _add(z, "requirements.txt", requirements)
            _add(z, "VERSION", version)
            _add(z, "seed", f"{secrets.randbelow(2**31 - 1) + 1}\n", 0o600)
            _add(z, "sheet.ipynb", Path(sheet.path).read_bytes())
            for path in sorted(code.rglob("*")):
                if path.is_file():
                    _add(z, str(path.relative_to(Path(tmp))), path.read_bytes())
    return out


def extract(bundle: str | Path, source: str | Path) -> None:
    """Unpack a bundle as Gradescope does, keeping each file's mode (for tests)."""
    with zipfile.ZipFile(bundle) as z:
        for info in z.infolist():
            target = Path(source) / info.filename
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(z.read(info))
            mode = (info.external_attr >> 16) & 0o777
            if mode:
                target.chmod(mode)

