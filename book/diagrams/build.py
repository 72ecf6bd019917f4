"""Write every course diagram to notebooks/figures/, or check that the committed ones are current.

    python book/diagrams/build.py           # (re)write notebooks/figures/*.svg
    python book/diagrams/build.py --check   # exit 1 if a committed SVG differs or is missing
    python book/diagrams/build.py --png DIR # also render PNGs with rsvg-convert, for a look

Each ``chNN.py`` module beside this file defines ``DIAGRAMS``: a dict from file name (without
``.svg``) to a function that returns a :class:`svg.Diagram`.
"""
from __future__ import annotations

import argparse
import importlib
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE.parent.parent / "notebooks" / "figures"
MAX_BYTES = 200_000


def all_diagrams() -> dict:
    """``{name: Diagram}`` over every ``chNN.py`` module, in chapter order."""
    sys.path.insert(0, str(HERE))
    found = {}
    for path in sorted(HERE.glob("ch[0-9][0-9].py")):
        module = importlib.import_module(path.stem)
        for name, draw in module.DIAGRAMS.items():
            if name in found:
                raise ValueError(f"diagram name {name!r} defined twice (second in {path.name})")
            found[name] = draw()
    return found


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare, do not write")
    parser.add_argument("--png", metavar="DIR", help="also write PNG renderings into DIR")
    args = parser.parse_args(argv)
    stale = []
    OUT.mkdir(parents=True, exist_ok=True)
    for name, diagram in all_diagrams().items():
        text = diagram.svg()
        if len(text.encode()) > MAX_BYTES:
            raise ValueError(f"{name}.svg is {len(text.encode())} bytes, over {MAX_BYTES}")
        path = OUT / f"{name}.svg"
        if args.check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(path.name)
        else:
            path.write_text(text, encoding="utf-8")
        if args.png:
            if shutil.which("rsvg-convert") is None:
                raise SystemExit("--png needs rsvg-convert (Debian package librsvg2-bin)")
            Path(args.png).mkdir(parents=True, exist_ok=True)
            subprocess.run(["rsvg-convert", "-z", "1.5", "-o", str(Path(args.png) / f"{name}.png"),
                            str(path)], check=True)
    if stale:
        print("stale or missing diagrams (run `python book/diagrams/build.py`):", ", ".join(stale))
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
