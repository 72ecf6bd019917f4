"""Strip volatile metadata (execution timestamps) from executed notebooks.

Run by ``make notebooks`` after execution so that re-running a chapter changes only
its outputs in git, not every cell's timestamps. ``test_repository`` checks it ran.
"""
import sys
from pathlib import Path

import nbformat


def clean(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
    nb.metadata.pop("widgets", None)
    nbformat.write(nb, path)


if __name__ == "__main__":
    for name in sys.argv[1:] or sorted(str(p) for p in Path("notebooks").glob("*.ipynb")):
        clean(Path(name))
