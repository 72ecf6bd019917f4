"""Publishing: the GitHub workflow, Binder's environment and ``make serve``."""
from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
CHECK_JSONSCHEMA = Path(sys.executable).parent / "check-jsonschema"


def _schema_check(*paths: Path) -> subprocess.CompletedProcess:
    # the GitHub workflow schema ships with check-jsonschema: no network needed
    return subprocess.run([str(CHECK_JSONSCHEMA), "--builtin-schema", "vendor.github-workflows",
                           *map(str, paths)], capture_output=True, text=True)


def test_workflows_follow_githubs_schema():
    assert WORKFLOWS, "no workflow in .github/workflows"
    proc = _schema_check(*WORKFLOWS)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_schema_check_rejects_a_broken_workflow(tmp_path):
    broken = tmp_path / "broken.yml"
    text = (ROOT / ".github" / "workflows" / "ci.yml").read_text()
    broken.write_text(text.replace("runs-on: ubuntu-latest", "runs_on: ubuntu-latest", 1))
    assert _schema_check(broken).returncode != 0


def test_ci_runs_what_ci_run_does_and_publishes_the_tested_book():
    ci = yaml.safe_load((ROOT / ".github" / "workflows" / "ci.yml").read_text())
    triggers = ci[True]  # (YAML 1.1 reads the key `on` as true)
    assert "push" in triggers and "pull_request" in triggers
    test, pages = ci["jobs"]["test"], ci["jobs"]["pages"]
    assert test["container"]["image"].startswith("debian:")  # Debian's chromium, as .ci/run installs
    assert any(step.get("run", "").strip() == ".ci/run" for step in test["steps"])
    upload = next(s for s in test["steps"] if s.get("uses", "").startswith("actions/upload-pages-artifact@"))
    assert upload["with"]["path"] == "_build/html"
    assert pages["needs"] == "test"
    assert "refs/heads/main" in pages["if"] and "push" in pages["if"]
    assert any(s.get("uses", "").startswith("actions/deploy-pages@") for s in pages["steps"])
    assert pages["permissions"] == {"pages": "write", "id-token": "write"}


def test_binder_has_a_cpu_environment_and_a_launch_button():
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert config["launch_buttons"]["binderhub_url"] == "https://mybinder.org"
    requirements = (ROOT / "binder" / "requirements.txt").read_text()
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in requirements
    assert re.search(r"^torch\b", requirements, re.M)
    post_build = ROOT / "binder" / "postBuild"
    assert os.access(post_build, os.X_OK)
    assert "pip install --no-cache-dir -e ." in post_build.read_text()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_make_serve_serves_the_book_and_prints_its_url(tmp_path):
    (tmp_path / "index.html").write_text("<p>the book</p>")
    port = _free_port()
    proc = subprocess.Popen(["make", "-s", "serve", f"HTML={tmp_path}", f"PORT={port}", f"PYTHON={sys.executable}"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        line = proc.stdout.readline()
        assert f"http://127.0.0.1:{port}/" in line, line
        for _ in range(100):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
                    assert response.read() == b"<p>the book</p>"
                break
            except OSError:
                time.sleep(0.1)
        else:
            pytest.fail("make serve did not answer")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
