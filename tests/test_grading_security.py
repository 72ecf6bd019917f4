"""A hostile class against the autograder: every attack that a class tried is a submission here.

One batch grades them all (chapter 3's sheet) beside honest submissions, in a private copy of
the package; each test checks one attack's outcome. No hostile submission may gain a point,
change another's result, stop the batch or leave a change behind, and honest answers written
differently (loops, float64 inside, IPython syntax) keep full marks.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from grading_support import ROOT, edition, fill, read_sheets, solutions, solved, with_cell, write
from test_autograde import by_question, copy_package, require_sandbox, run_batch, seed_file
from qkvcourse.grading.instructor.autograde import code_digest

SHEET = "ch03_scoring_functions"
SHEETS = read_sheets()
SEED = 777001  # the hidden cases' seed of this batch: it must not appear in any feedback
MARK = "SECRET-NOTEBOOK-CONTENT-5150"  # in an honest student's notebook: nobody else may read it


def _answers(**replace):
    answers = solutions(SHEETS[SHEET])
    answers.update(replace)
    return answers


def _sdpa(body: str) -> str:
    return ("import torch, torch.nn.functional as F\n"
            "def sdpa(query, key, value, attn_mask=None, scale=None):\n" + body)


def hostile_submissions(paths: dict[str, str]) -> dict[str, dict]:
    """name -> notebook. ``paths`` holds what a class could guess: the output folder, the
    submissions folder, the seed file and the package's location."""
    blank, good = edition(SHEET), solved(SHEETS[SHEET])
    wrong = {name: f"def {name}(*args, **kwargs):\n    return None" for name in _answers()}
    leak = ("def _leak(text):\n    raise RuntimeError('LEAK:' + text[:2000])\n")
    subs = {
        "solved": with_cell(good, f"# {MARK}"),
        "blank": blank,
        # --- free marks ---------------------------------------------------------------------
        "borrows-through-an-alias": fill(SHEET, _answers(masked_softmax_lens=(
            "import qkvcourse as qc\nms = qc.masked_softmax\n"
            "def masked_softmax_lens(X, valid_lens):\n    return ms(X, valid_lens)"))),
        "borrows-in-a-wrapper-module": fill(SHEET, _answers(sdpa=(
            "import qkvcourse as qc\nlayer = qc.DotProductAttention()\n"
            "def sdpa(query, key, value, attn_mask=None, scale=None):\n"
            "    return qc.scaled_dot_product_attention(query, key, value, attn_mask=attn_mask, "
            "scale=scale)"))),
        "borrows-torch-sdpa": fill(SHEET, _answers(sdpa=_sdpa(
            "    return F.scaled_dot_product_attention(query, key, value, attn_mask=attn_mask, "
            "scale=scale)"))),
        "borrows-torch-ops": fill(SHEET, _answers(sdpa=_sdpa(
            "    return torch.ops.aten.scaled_dot_product_attention(query, key, value, attn_mask, "
            "scale=scale)"))),
        "borrows-through-map": fill(SHEET, _answers(sdpa=_sdpa(
            "    return list(map(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, "
            "attn_mask=attn_mask, scale=scale), [query], [key], [value]))[0]"))),
        "borrows-a-reimport": fill(SHEET, _answers(masked_softmax_lens=(
            "import importlib.util, qkvcourse.masking as m\n"
            "spec = importlib.util.spec_from_file_location('qkvcourse.copy_of_masking', m.__file__)\n"
            "mod = importlib.util.module_from_spec(spec)\nspec.loader.exec_module(mod)\n"
            "def masked_softmax_lens(X, valid_lens):\n    return mod.masked_softmax(X, valid_lens)"))),
        "borrows-the-code-object": fill(SHEET, _answers(masked_softmax_lens=(
            "import types, qkvcourse.masking as m\n"
            "f = types.FunctionType(m.masked_softmax.__code__, m.__dict__)\n"
            "def masked_softmax_lens(X, valid_lens):\n    return f(X, valid_lens)"))),
        "switches-off-the-profiler": fill(SHEET, _answers(masked_softmax_lens=(
            "import sys, qkvcourse as qc\n"
            "def masked_softmax_lens(X, valid_lens):\n    sys.setprofile(None)\n"
            "    return qc.masked_softmax(X, valid_lens)"))),
        "uses-ctypes": with_cell(fill(SHEET, _answers(masked_softmax_lens=(
            "import qkvcourse as qc\n"
            "def masked_softmax_lens(X, valid_lens):\n    return qc.masked_softmax(X, valid_lens)"))),
            "import ctypes\nctypes.pythonapi.PyEval_SetProfile(None, None)"),
        "fetches-the-reference": fill(SHEET, {name: (
            "from qkvcourse.grading.instructor.questions import ch03\n"
            f"{name} = getattr(ch03, '_{name}', None) or ch03._sdpa") for name in _answers()}),
        "fetches-the-old-api": fill(SHEET, {name: (
            "import qkvcourse.grading.core as core\n"
            f"{name} = core.get_question('ch03.{'sdpa' if name == 'sdpa' else name}').reference")
            for name in _answers()}),
        # --- secrets ----------------------------------------------------------------------------
        "reads-the-seed": with_cell(blank, leak + (
            "import glob, os\ntext = ''\n"
            "for p in glob.glob('/proc/*/environ') + glob.glob('/proc/*/cmdline'):\n"
            "    try:\n        text += open(p, 'rb').read().decode(errors='replace')\n"
            "    except OSError:\n        pass\n"
            f"for p in [{paths['seed']!r}]:\n"
            "    try:\n        text += open(p).read()\n    except OSError as e:\n        text += str(e)\n"
            "_leak(text)")),
        "reads-other-submissions": with_cell(blank, leak + (
            "import glob\ntext = ''\n"
            f"for p in glob.glob({paths['submissions']!r} + '/*') + glob.glob('/tmp/**/*.ipynb', recursive=True):\n"
            "    try:\n        text += open(p).read()\n    except OSError:\n        pass\n"
            "_leak(text or 'nothing')")),
        "leaks-hidden-inputs": fill(SHEET, _answers(masked_softmax_lens=(
            "def masked_softmax_lens(X, valid_lens):\n"
            "    raise ValueError('X=' + repr(X.tolist()) + ' lens=' + repr(valid_lens))"))),
        "long-error-message": fill(SHEET, _answers(additive_scores=(
            "def additive_scores(*args):\n    raise ValueError('A' * 5000)"))),
        # --- processes and files ----------------------------------------------------------------
        "plants-sitecustomize": with_cell(fill(SHEET, wrong), (
            "import site, sys, pathlib, qkvcourse\nfor d in site.getsitepackages() + sys.path:\n"
            "    for name in ('sitecustomize.py', 'usercustomize.py'):\n"
            "        try:\n            pathlib.Path(d, name).write_text('import builtins\\n')\n"
            "        except OSError:\n            pass\n"
            "p = pathlib.Path(qkvcourse.__file__)\n"
            "try:\n    p.write_text(p.read_text() + '\\nHACKED = 1\\n')\nexcept OSError:\n    pass")),
        "edits-the-repository": with_cell(fill(SHEET, wrong), (
            f"import pathlib\nfor p in pathlib.Path({paths['package']!r}).rglob('*.py'):\n"
            "    try:\n        p.write_text(p.read_text().replace('atol', 'atol * 1e9 +'))\n"
            "    except OSError:\n        pass")),
        "rewrites-another-notebook": with_cell(blank, (
            f"import pathlib, json\nfor p in pathlib.Path({paths['submissions']!r}).glob('*.ipynb'):\n"
            "    try:\n        p.write_text(json.dumps({'cells': []}))\n    except OSError:\n        pass")),
        "writes-results": with_cell(blank, (
            f"import json, pathlib\nout = pathlib.Path({paths['out']!r})\n"
            "for student in ['writes-results', 'blank', 'solved']:\n"
            "    try:\n"
            "        (out / 'students' / student).mkdir(parents=True, exist_ok=True)\n"
            "        (out / 'students' / student / 'results.json').write_text(json.dumps({'score': 100.0, 'tests': []}))\n"
            "    except OSError:\n        pass\n"
            "pathlib.Path('results.json').write_text(json.dumps({'score': 100.0}))")),
        "leaves-a-daemon": with_cell(blank, (
            "import subprocess, sys\n"
            "code = ('import time, pathlib, json\\n'\n"
            f"        'out = pathlib.Path({paths['out']!r})\\n'\n"
            "        'for _ in range(400):\\n'\n"
            "        '    for p in out.rglob(\"results.json\"):\\n'\n"
            "        '        try: p.write_text(json.dumps({\"score\": 100.0, \"tests\": []}))\\n'\n"
            "        '        except OSError: pass\\n'\n"
            "        '    time.sleep(0.05)\\n')\n"
            "subprocess.Popen([sys.executable, '-c', code], start_new_session=True)")),
        "kills-everything": with_cell(blank, "import os, signal\nos.kill(-1, signal.SIGKILL)"),
        "kills-its-grader": with_cell(blank, "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)"),
        "starts-a-thread": with_cell(fill(SHEET, _answers()),
                                     "import threading, time\nthreading.Thread(target=time.sleep, args=(60,), daemon=True).start()"),
        "forks-in-a-call": fill(SHEET, _answers(additive_scores=(
            "import os\ndef additive_scores(*args):\n    os.fork()\n    return None"))),
        # --- the grader's memory ----------------------------------------------------------------
        "stride0-forged-reply": with_cell(fill(SHEET, _answers(sdpa=_sdpa(
            "    return torch.zeros(1).expand(2**34)"))),
            "import qkvcourse.grading.worker as w\nw._plain = lambda value: value"),
        "huge-reply": fill(SHEET, _answers(sdpa=_sdpa("    return torch.zeros(30_000_000)"))),
        # --- honest answers written differently -------------------------------------------------
        "honest-loops-and-float64": fill(SHEET, _answers(
            masked_softmax_lens=(
                "import math, torch\n"
                "def masked_softmax_lens(X, valid_lens):\n"
                "    out = torch.zeros_like(X)\n    B, L, S = X.shape\n"
                "    for b in range(B):\n        for i in range(L):\n"
                "            n = S if valid_lens is None else int(valid_lens[b] if valid_lens.dim() == 1 else valid_lens[b, i])\n"
                "            if n == 0:\n                continue\n"
                "            row = X[b, i, :n].double()\n            e = (row - row.max()).exp()\n"
                "            out[b, i, :n] = (e / e.sum()).to(X.dtype)\n"
                "    return out"),
            sdpa=_sdpa(
                "    import math\n    q, k, v = query.double(), key.double(), value.double()\n"
                "    s = q @ k.transpose(-2, -1) * (1 / math.sqrt(q.shape[-1]) if scale is None else scale)\n"
                "    if attn_mask is not None:\n        s = s.masked_fill(~attn_mask, float('-inf'))\n"
                "    w = torch.softmax(s, -1).nan_to_num(0.0)\n    return (w @ v).to(query.dtype)"))),
        "honest-ipython-syntax": _ipython_notebook(),
    }
    return subs


def _ipython_notebook() -> dict:
    """The solved sheet, with q2's answer written to a file by %%writefile and imported, and
    shell lines and magics around it, all valid in Jupyter."""
    answers = _answers()
    nb = fill(SHEET, {**answers, "additive_scores": (
        "%%writefile my_scores.py\nimport torch\n" + answers["additive_scores"])})
    nb = with_cell(nb, "from my_scores import additive_scores\n!echo shell works\n"
                       "files = !ls\nassert 'my_scores.py' in files\n%time x = 1")
    return with_cell(nb, "%matplotlib inline\nimport matplotlib.pyplot as plt", at=4)


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hostile")
    root, sources = copy_package(tmp)
    seed = seed_file(tmp, SEED)
    out, subs = tmp / "out", tmp / "submissions"
    paths = {"out": str(out), "submissions": str(subs), "seed": str(seed),
             "package": str(root / "qkvcourse")}
    for name, nb in hostile_submissions(paths).items():
        write(nb, subs / f"{name}.ipynb")
    (subs / "invalid-json.ipynb").write_text('{"cells": [ this is not json', encoding="utf-8")
    # Batch handling: a name that was the summary's, two notebooks of one student, a .py, a
    # notebook whose metadata names another sheet.
    write(solved(SHEETS[SHEET]), subs / "summary.csv.ipynb")
    write(solved(SHEETS[SHEET]), subs / "eve" / "answers.ipynb")
    write(edition(SHEET), subs / "eve" / "scratch.ipynb")
    (subs / "mallory.py").write_text("print('not a notebook')\n")
    other = solved(SHEETS["ch01_queries_keys_values"])
    other["metadata"]["otter"] = {"assignment_name": "ch01_queries_keys_values"}
    write(other, subs / "names-another-sheet.ipynb")
    site_before = _site_files()
    digest_before = code_digest(sources, root / "qkvcourse")
    result = run_batch(root, sources, subs, out, SHEET, seed, jobs=2)
    results_before = {p: p.read_bytes() for p in out.rglob("results.json")}
    time.sleep(3)  # a daemon left by a submission would rewrite results now
    result.update(out=out, subs=subs, digest_before=digest_before, site_before=site_before,
                  digest_after=code_digest(sources, root / "qkvcourse"), site_after=_site_files(),
                  results_before=results_before,
                  results_after={p: p.read_bytes() for p in out.rglob("results.json")})
    return result


def _site_files() -> set[str]:
    import site

    found = set()
    for d in site.getsitepackages() + [site.getusersitepackages()]:
        for name in ("sitecustomize.py", "usercustomize.py"):
            if Path(d, name).exists():
                found.add(str(Path(d, name)))
    return found


def score(hostile, student):
    r = hostile["results"][student]
    return r["score"], {q: v["score"] for q, v in by_question(r).items()}, r


def text(hostile, student) -> str:
    return json.dumps(hostile["results"][student])


def test_every_file_gets_a_row_and_the_batch_finishes(hostile):
    files = {str(p.relative_to(hostile["subs"])) for p in hostile["subs"].rglob("*") if p.is_file()}
    assert set(hostile["rows"]) == files


def test_honest_submissions_are_graded_correctly_despite_the_others(hostile):
    full = SHEETS[SHEET].max_score
    for student in ["solved", "honest-loops-and-float64", "honest-ipython-syntax", "summary.csv"]:
        total, _, r = score(hostile, student)
        assert total == full, (student, json.dumps(r, indent=1)[:3000])
    assert score(hostile, "blank")[0] == 0


@pytest.mark.parametrize("student", [
    "blank", "fetches-the-reference", "fetches-the-old-api", "reads-the-seed",
    "reads-other-submissions", "plants-sitecustomize", "edits-the-repository",
    "rewrites-another-notebook", "writes-results", "leaves-a-daemon", "kills-everything",
    "kills-its-grader", "invalid-json"])
def test_hostile_submission_gains_nothing(hostile, student):
    total, _, r = score(hostile, student)
    assert total == 0, json.dumps(r, indent=1)[:2000]
    assert r["tests"], "a zero score must still list the questions"


@pytest.mark.parametrize("student, question, called", [
    ("borrows-through-an-alias", "q1", "qkvcourse.masking.masked_softmax"),
    ("borrows-in-a-wrapper-module", "q3", "qkvcourse.attention"),
    ("borrows-torch-sdpa", "q3", "scaled_dot_product_attention"),
    ("borrows-torch-ops", "q3", "scaled_dot_product_attention"),
    ("borrows-through-map", "q3", "scaled_dot_product_attention"),
    ("borrows-a-reimport", "q1", "qkvcourse.masking.masked_softmax"),
])
def test_borrowing_the_implementation_scores_zero_on_that_question_only(hostile, student, question, called):
    total, by_q, r = score(hostile, student)
    assert by_q[question] == 0, r
    assert all(s == SHEETS[SHEET].questions[int(q[1:]) - 1].points
               for q, s in by_q.items() if q != question), (student, by_q)
    output = by_question(r)[question]["output"]
    assert "does not allow" in output and called in output, output


@pytest.mark.parametrize("student", ["borrows-the-code-object", "switches-off-the-profiler", "uses-ctypes"])
def test_disarming_the_guard_gains_nothing(hostile, student):
    _, by_q, r = score(hostile, student)
    assert by_q["q1"] == 0, json.dumps(r, indent=1)[:2000]


def test_no_feedback_carries_the_seed_or_another_students_work(hostile):
    for student, r in hostile["results"].items():
        blob = json.dumps(r)
        if student != "solved":
            assert MARK not in blob, student
        assert str(SEED) not in blob, student
    assert "LEAK:" in text(hostile, "reads-the-seed")  # its own message is shown, trimmed


def test_hidden_inputs_do_not_leak_through_error_messages(hostile):
    r = hostile["results"]["leaks-hidden-inputs"]
    hidden = [t for t in r["tests"] if t["visibility"] != "visible"]
    assert hidden and all("X=" not in t["output"] for t in hidden), hidden
    public = [t for t in r["tests"] if t["visibility"] == "visible" and t["name"].startswith("q1")]
    assert "X=" in public[0]["output"]  # the public case's message is the student's own


def test_student_text_is_trimmed_and_labelled(hostile):
    output = by_question(hostile["results"]["long-error-message"])["q2"]["output"]
    assert "your code's own message, trimmed" in output
    assert "A" * 400 not in output and "A" * 250 in output


def test_installed_code_and_site_are_unchanged(hostile):
    assert hostile["digest_before"] == hostile["digest_after"]
    assert hostile["site_before"] == hostile["site_after"]
    assert not (hostile["out"] / "tampering.log").exists(), (hostile["out"] / "tampering.log").read_text()


def test_results_are_not_rewritten_after_the_batch(hostile):
    assert hostile["results_before"] == hostile["results_after"]


def test_threads_and_forks_are_refused(hostile):
    assert score(hostile, "starts-a-thread")[0] == 0
    assert "thread" in text(hostile, "starts-a-thread")
    _, by_q, _ = score(hostile, "forks-in-a-call")
    assert by_q["q2"] == 0 and by_q["q1"] > 0


def test_forged_and_oversized_replies_are_rejected(hostile):
    for student in ["stride0-forged-reply", "huge-reply"]:
        _, by_q, r = score(hostile, student)
        assert by_q["q3"] == 0 and by_q["q1"] > 0, r
        assert "too large" in text(hostile, student) or "far more" in text(hostile, student)


def test_batch_rows_for_collisions_non_notebooks_and_the_named_sheet(hostile):
    rows = hostile["rows"]
    assert rows["mallory.py"]["note"] == "not a notebook"
    for f in ["eve/answers.ipynb", "eve/scratch.ipynb"]:
        assert rows[f]["note"].startswith("refused: eve has 2 notebooks"), rows[f]
    assert rows["names-another-sheet.ipynb"]["sheet"] == SHEET
    assert float(rows["names-another-sheet.ipynb"]["score"]) == 0  # graded as the sheet named
    assert float(rows["summary.csv.ipynb"]["score"]) == SHEETS[SHEET].max_score
    assert (hostile["out"] / "summary.csv").read_text().startswith("student,")


def test_grading_time_per_submission_is_reported(hostile):
    print(f"sandboxed grading: {hostile['per_submission']:.2f} s per submission")
    assert 0 < hostile["per_submission"] < 60


# --- what students install ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    project = out / "project"  # a copy: building in the repository would leave build/ there
    project.mkdir()
    for name in ["pyproject.toml", "README.md"]:
        shutil.copy(ROOT / name, project / name)
    shutil.copytree(ROOT / "qkvcourse", project / "qkvcourse", ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(out), str(project)], check=True, capture_output=True, timeout=600)
    (path,) = out.glob("qkvcourse-*.whl")
    return path


def test_the_student_package_holds_no_grading_secrets(wheel):
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        assert "qkvcourse/grading/public_cases.pt" in names and "qkvcourse/grading/sheets.json" in names
        assert not [n for n in names if "instructor" in n], names
        source = "\n".join(z.read(n).decode() for n in names if n.endswith(".py"))
    for secret in ["def _sdpa(", "def _masked_softmax_cases", "Mistake(", "grading-seed",
                   "20261121", "register(Question"]:
        assert secret not in source, secret


def test_the_student_checker_works_from_the_wheel_alone(wheel, tmp_path):
    with zipfile.ZipFile(wheel) as z:
        z.extractall(tmp_path / "site")
    code = ("import sys; sys.path.insert(0, sys.argv[1])\n"
            "import qkvcourse.grading as g, torch\n"
            "def sdpa(q, k, v, attn_mask=None, scale=None):\n"
            "    return torch.softmax(q @ k.transpose(-2, -1), -1) @ v\n"
            "try:\n    g.check('ch03.sdpa', sdpa)\nexcept AssertionError as e:\n    print(e)\n"
            "import importlib.util\nprint('instructor:', importlib.util.find_spec('qkvcourse.grading.instructor'))\n")
    proc = subprocess.run([sys.executable, "-I", "-c", code, str(tmp_path / "site")],
                          capture_output=True, text=True, timeout=120)
    assert "Likely mistake: missing 1/sqrt(d) scaling" in proc.stdout, proc.stdout + proc.stderr
    assert "instructor: None" in proc.stdout
    assert "Input:" in proc.stdout and "expected:" in proc.stdout  # public cases show their values


def test_python_requirement_matches_the_sheets():
    """The sheets and the package use ``X | None`` outside annotations-as-strings, which Python
    3.9 rejects: requires-python must say 3.10 or later."""
    import re
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    low = tuple(int(x) for x in re.match(r">=\s*(\d+)\.(\d+)", project["requires-python"]).groups())
    uses_union = any(re.search(r"\w+ \| None", p.read_text())
                     for p in (ROOT / "notebooks" / "exercises").glob("*.ipynb"))
    assert uses_union and low >= (3, 10), (project["requires-python"], uses_union)


# --- the Gradescope bundle -----------------------------------------------------------------------

def _stand_in_autograder(tmp: Path, notebook: dict) -> Path:
    """An /autograder tree as Gradescope lays it out, with the bundle unpacked in source/."""
    from qkvcourse.grading.instructor.gradescope import extract, write_gradescope_bundle

    root = tmp / "autograder"
    bundle = write_gradescope_bundle(ROOT / "notebooks" / "exercises" / "sources" / f"{SHEET}.ipynb",
                                     tmp / "autograder.zip")
    extract(bundle, root / "source")
    (root / "run_autograder").write_bytes((root / "source" / "run_autograder").read_bytes())
    (root / "run_autograder").chmod(0o755)
    (root / "source").chmod(0o700)
    (root / "results").mkdir()
    write(notebook, root / "submission" / "notebook.ipynb")
    return root


def _run_autograder(root: Path) -> dict:
    require_sandbox()
    env = {"PATH": "/usr/bin:/bin", "HOME": str(root), "AUTOGRADER_ROOT": str(root),
           "QKV_PYTHON": sys.executable}
    proc = subprocess.run(["bash", str(root / "run_autograder")], env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((root / "results" / "results.json").read_text())


def test_gradescope_bundle_scripts_are_executable_and_pinned(tmp_path):
    from qkvcourse.grading.instructor.gradescope import write_gradescope_bundle

    source = ROOT / "notebooks" / "exercises" / "sources" / f"{SHEET}.ipynb"
    a = write_gradescope_bundle(source, tmp_path / "a.zip")
    b = write_gradescope_bundle(source, tmp_path / "b.zip")
    with zipfile.ZipFile(a) as za, zipfile.ZipFile(b) as zb:
        for name in ["setup.sh", "run_autograder"]:
            assert (za.getinfo(name).external_attr >> 16) & 0o111 == 0o111, name
            script = za.read(name).decode()
            assert subprocess.run(["bash", "-n"], input=script, text=True).returncode == 0, name
        setup = za.read("setup.sh").decode()
        import torch

        assert f'"torch=={torch.__version__.split("+")[0]}"' in setup
        assert "python3 -m venv" in setup and " git " in setup and "bubblewrap" in setup
        assert all("==" in line for line in za.read("requirements.txt").decode().split())
        assert za.read("seed") != zb.read("seed"), "each bundle draws its own private seed"
        assert "qkvcourse/grading/instructor/registry.py" in za.namelist()
        assert za.read("qkvcourse/grading/core.py") == (ROOT / "qkvcourse/grading/core.py").read_bytes()


def test_gradescope_bundle_holds_against_a_hostile_submission(tmp_path):
    hostile = with_cell(edition(SHEET), (
        "import json, os, pathlib, subprocess, sys\n"
        f"root = pathlib.Path({str(tmp_path / 'autograder')!r})\n"
        "found = []\n"
        "for attempt in [lambda: open(root / 'run_autograder', 'a').write('\\necho hacked\\n'),\n"
        "                lambda: (root / 'results' / 'results.json').write_text(json.dumps({'score': 100})),\n"
        "                lambda: found.append((root / 'source' / 'seed').read_text()),\n"
        "                lambda: (root / 'source' / 'sheet.ipynb').write_text('{}')]:\n"
        "    try:\n        attempt()\n    except OSError:\n        pass\n"
        "code = ('import json, pathlib, time\\n'\n"
        "        f'p = pathlib.Path({str(root / \"results\" / \"results.json\")!r})\\n'\n"
        "        'for _ in range(200):\\n'\n"
        "        '    try: p.write_text(json.dumps({\"score\": 100}))\\n'\n"
        "        '    except OSError: pass\\n'\n"
        "        '    time.sleep(0.05)\\n')\n"
        "subprocess.Popen([sys.executable, '-c', code], start_new_session=True)\n"
        "raise RuntimeError('seed: ' + ''.join(found))"))
    root = _stand_in_autograder(tmp_path, hostile)
    run_before = (root / "run_autograder").read_bytes()
    source_before = code_digest(root / "source", root / "source" / "qkvcourse")
    sheet_before = (root / "source" / "sheet.ipynb").read_bytes()
    seed = (root / "source" / "seed").read_text().strip()
    results = _run_autograder(root)
    time.sleep(2)  # a surviving daemon would overwrite the results now
    after = json.loads((root / "results" / "results.json").read_text())
    assert results == after and results["score"] == 0, results
    assert seed not in json.dumps(results)
    assert (root / "run_autograder").read_bytes() == run_before
    assert (root / "source" / "sheet.ipynb").read_bytes() == sheet_before
    assert code_digest(root / "source", root / "source" / "qkvcourse") == source_before
    assert all(t["visibility"] in ("visible", "after_published") for t in results["tests"])
    assert any(t["visibility"] == "after_published" for t in results["tests"])
    assert "extra_data" in results and "extra" not in results


def test_gradescope_bundle_gives_full_marks_to_a_solution(tmp_path):
    root = _stand_in_autograder(tmp_path, solved(SHEETS[SHEET]))
    results = _run_autograder(root)
    assert results["score"] == SHEETS[SHEET].max_score, json.dumps(results, indent=1)[:2000]
