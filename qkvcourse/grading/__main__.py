"""Command line: ``python -m qkvcourse.grading {student,grade,grade-one,bundle} ...``."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _limits(args):
    from .autograde import Limits

    return Limits(total_s=args.timeout, call_s=args.call_timeout, memory_mb=args.memory_mb,
                  startup_s=min(args.startup_timeout, args.timeout))


def _add_limits(p):
    p.add_argument("--timeout", type=float, default=180.0, help="seconds per submission (default 180)")
    p.add_argument("--startup-timeout", type=float, default=60.0,
                   help="seconds for the submission's notebook to run (default 60)")
    p.add_argument("--call-timeout", type=float, default=10.0, help="seconds per call of the student's code")
    p.add_argument("--memory-mb", type=int, default=4096, help="memory limit of the student's process")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m qkvcourse.grading", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("student", help="generate the student editions (and sheets.json) from the sources")
    p.add_argument("--sources", type=Path, default=None, help="source sheets (default notebooks/exercises/sources)")
    p.add_argument("--out", type=Path, default=None, help="output folder (default: the sources' parent)")
    p.add_argument("--check", action="store_true", help="only report editions that are out of date")

    p = sub.add_parser("grade", help="grade a folder of submissions")
    p.add_argument("submissions", type=Path)
    p.add_argument("--out", type=Path, required=True, help="folder for results.json files and summary.csv")
    p.add_argument("--sources", type=Path, default=None)
    p.add_argument("--sheet", default=None, help="grade every submission against this sheet")
    p.add_argument("--jobs", type=int, default=2, help="submissions graded in parallel")
    _add_limits(p)

    p = sub.add_parser("grade-one", help="grade one submission (what each parallel job runs)")
    p.add_argument("notebook", type=Path)
    p.add_argument("--sheet", required=True, help="source sheet: a path, or a name in --sources")
    p.add_argument("--out", type=Path, required=True, help="where to write results.json")
    p.add_argument("--sources", type=Path, default=None)
    p.add_argument("--expect-digest", default=None, help=argparse.SUPPRESS)
    _add_limits(p)

    p = sub.add_parser("bundle", help="write a Gradescope autograder zip for one sheet")
    p.add_argument("sheet", type=Path)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--requirement", default="qkvcourse @ git+https://github.com/qkvcourse/qkvcourse")

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

    if args.command == "grade":
        from .autograde import grade_folder

        rows = grade_folder(args.submissions, args.out, args.sources, jobs=args.jobs,
                            limits=_limits(args), sheet=args.sheet)
        for row in rows:
            print(f"{row['student']:24} {row['sheet'] or '-':28} {row['score']:>6} / {row['max_score']}"
                  f"  {row['seconds']:>6} s  {row['note']}")
        print(f"{len(rows)} submission(s); summary in {args.out / 'summary.csv'}")
        return 0

    if args.command == "grade-one":
        return _grade_one(args)

    if args.command == "bundle":
        from .autograde import write_gradescope_bundle

        print(write_gradescope_bundle(args.sheet, args.out, args.requirement))
        return 0
    return 2


def _grade_one(args) -> int:
    from .autograde import _failure, code_digest, grade_submission
    from .sheets import default_sources, read_sheet

    sources = args.sources or default_sources()
    sheet_path = Path(args.sheet)
    if not sheet_path.exists():
        sheet_path = Path(sources) / (args.sheet if args.sheet.endswith(".ipynb") else f"{args.sheet}.ipynb")
    if args.expect_digest and code_digest(Path(sources)) != args.expect_digest:
        return 70  # the grading code changed on disk since the batch started: the batch restores it
    sheet = read_sheet(sheet_path)
    try:
        results = grade_submission(args.notebook, sheet, _limits(args))
    except Exception as exc:  # noqa: BLE001  (always write a results file)
        results = _failure(sheet, f"Not graded: the grader failed ({type(exc).__name__}: {exc})")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
