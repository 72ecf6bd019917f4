"""``python -m qkvcourse.grading ...``: the instructor's command line (from a course clone)."""
import sys

try:
    from .instructor.cli import main
except ImportError as exc:  # the student package has no instructor tools
    sys.exit("The grading commands are instructor tools: they are in a clone of the course "
             f"repository (`make grade`), not in the installed package ({exc}).")

sys.exit(main())
