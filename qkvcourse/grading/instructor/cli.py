"""Command line: ``python -m qkvcourse.grading {student,grade,grade-one,bundle,seed} ...``."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .registry import DEFAULT_SEED_FILE
from .sandbox import MODES


def _limits(args):
    from .autograde import Limits

    return Limits(total_s=args.timeout, call_s=args.call_timeout, memory_mb=args.memory_mb,
                  startup_s=min(args.startup_timeout, args.timeout),
                  grader_memory_mb=args.grader_memory_mb)


def _add_common(p):
    p.add_argument("--sources", type=Path, default=None,
                   help="source sheets (default notebooks/exercises/sources)")
    p.add_argument("--seed-file", type=Path, default=DEFAULT_SEED_FILE,
                   help=f"the private seed of the hidden cases, readable by you only (default "
                        f"{DEFAULT_SEED_FILE}; create it with the `seed` command)")
    p.add_argument("--sandbox", choices=MODES, default="auto",
                   help="where submissions run: bubblewrap, another uid (as root), or none "
                        "(default auto: the strongest available)")
    p.add_argument("--allow-same-user", action="store_true",
                   help="accept running submissions as your own user when no sandbox is available")
    p.add_argument("--timeout", type=float, default=180.0, help="seconds per submission (default 180)")
    p.add_argument("--startup-timeout", type=float, default=60.0,
                   help="seconds for the submission's notebook to run (default 60)")
    p.add_argument("--call-timeout", type=float, default=10.0, help="seconds per call of the student's code")
    p.add_argument("--memory-mb", type=int, default=4096, help="memory limit of the student's process")
    p.add_argument("--grader-memory-mb", type=int, default=6144, help="memory limit of the grader")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m qkvcourse.grading", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("student", help="generate the student editions, sheets.json and public_cases.pt")
    p.add_argument("--sources", type=Path, default=None)
    p.add_argument("--out", type=Path, default=None, help="output folder (default: the sources' parent)")
    p.add_argument("--check", action="store_true", help="only report files that are out of date")

    p = sub.add_parser("seed", help="create a private seed file for the hidden cases")
    p.add_argument("path", type=Path, nargs="?", default=DEFAULT_SEED_FILE)

    p = sub.add_parser("grade", help="grade a folder of submissions against one sheet")
    p.add_argument("submissions", type=Path)
    p.add_argument("--sheet", required=True, help="the sheet every submission answers (a name or a path)")
    p.add_argument("--out", type=Path, required=True, help="folder for summary.csv and students/")
    p.add_argument("--jobs", type=int, default=2, help="submissions graded in parallel")
    _add_common(p)

    p = sub.add_parser("grade-one", help="grade one submission (what each parallel job runs)")
    p.add_argument("notebook", type=Path)
    p.add_argument("--sheet", required=True, help="source sheet: a path, or a name in --sources")
    p.add_argument("--out", type=Path, required=True, help="where to write results.json")
    p.add_argument("--slot", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--expect-digest", default=None, help=argparse.SUPPRESS)
    _add_common(p)

    p = sub.add_parser("bundle", help="write a Gradescope autograder zip for one sheet")
    p.add_argument("sheet", type=Path)
    p.add_argument("--out", type=Path, required=True)

    args = parser.parse_args(argv)
    if args.command == "student":
        from .assign import write_student_editions

        changed = write_student_editions(args.sources, args.out, check=args.check)
        if args.check:
            for path in changed:
                print(f"out of date: {path}")
            if changed:
                print("run `make student` (python -m qkvcourse.grading student) and commit the result")
            return 1 if changed else 0
        print(f"wrote {len(changed)} file(s)" + "".join(f"\n  {p}" for p in changed))
        return 0

    if args.command == "seed":
        from .registry import new_seed_file

        if args.path.exists():
            print(f"{args.path} exists; keep it (the hidden cases depend on it) or delete it first")
            return 1
        new_seed_file(args.path)
        print(f"wrote a private seed to {args.path} (mode 600)")
        return 0

    if args.command == "grade":
        from .autograde import grade_folder
        from .sandbox import SandboxError

        _ensure_seed(args.seed_file)
        try:
            rows = grade_folder(args.submissions, args.out, args.sheet, args.seed_file, args.sources,
                                jobs=args.jobs, limits=_limits(args), sandbox=args.sandbox,
                                allow_same_user=args.allow_same_user)
        except (SandboxError, PermissionError, FileNotFoundError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        for row in rows:
            print(f"{row['student'][:24]:24} {row['score']:>6} / {row['max_score']}"
                  f"  {row['seconds']:>6} s  {row['note']}")
        print(f"{len(rows)} file(s); summary in {args.out / 'summary.csv'}")
        return 0

    if args.command == "grade-one":
        return _grade_one(args)

    if args.command == "bundle":
        from .gradescope import write_gradescope_bundle

        print(write_gradescope_bundle(args.sheet, args.out))
        return 0
    return 2


def _ensure_seed(path: Path) -> None:
    from .registry import new_seed_file

    if not path.exists() and path == DEFAULT_SEED_FILE:
        new_seed_file(path)
        print(f"created a private seed for the hidden cases: {path} (keep it; mode 600)")


def _grade_one(args) -> int:
    import resource

    from ..sheets import default_sources, read_sheet
    from .autograde import _failure, code_digest, grade_submission
    from .registry import read_seed
    from .sandbox import make_sandbox

    limit = args.grader_memory_mb * 2**20
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    sources = args.sources or default_sources()
    sheet_path = Path(args.sheet)
    if not sheet_path.exists():
        sheet_path = Path(sources) / (args.sheet if args.sheet.endswith(".ipynb") else f"{args.sheet}.ipynb")
    if args.expect_digest and code_digest(Path(sources)) != args.expect_digest:
        return 70  # the grading code changed on disk since the batch started: the batch restores it
    sheet = read_sheet(sheet_path)
    sandbox = None
    try:
        seed = read_seed(args.seed_file)
        sandbox = make_sandbox(args.sandbox, args.allow_same_user, [args.seed_file])
        results = grade_submission(args.notebook, sheet, seed, sandbox, _limits(args), args.slot)
    except Exception as exc:  # noqa: BLE001  (always write a results file)
        results = _failure(sheet, f"Not graded: the grader failed ({type(exc).__name__}: {exc})")
    finally:
        if sandbox is not None:
            sandbox.close()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(args.out.name + ".tmp")
    tmp.write_text(json.dumps(results, indent=2))
    tmp.replace(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
