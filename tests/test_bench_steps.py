"""bench/steps.py's steps: commits of this repository, each with a committed model to run, HEAD last."""

from __future__ import annotations

import runpy
import subprocess

from tests.launcher import ROOT

STEPS = runpy.run_path(str(ROOT / "bench" / "steps.py"))  # its functions; main() not run


def git(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)


def test_every_step_is_a_commit_with_its_model_committed():
    labels = [label for label, _ in STEPS["STEPS"]]
    assert len(set(labels)) == len(labels)
    for label, commit in STEPS["STEPS"]:
        for path in ("nerserve/tagger/pipeline.py", f"{STEPS['MODEL_DIR']}/tagger.onnx"):
            assert git("cat-file", "-e", f"{commit}:{path}").returncode == 0, f"{label}: {commit} has no {path}"


def test_head_is_the_last_step_unless_it_is_one_of_them():
    listed = [(label, git("rev-parse", "--short", commit).stdout.strip()) for label, commit in STEPS["STEPS"]]
    head = git("rev-parse", "--short", "HEAD").stdout.strip()
    expected = listed if head in {sha for _, sha in listed} else [*listed, ("now", head)]
    assert STEPS["steps"](ROOT, "now") == expected
