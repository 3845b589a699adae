"""`pip install .` as a user of another project does it: the wheel built from
the clone, installed with its base dependencies into a fresh virtual
environment outside the clone, tags text from the Python API and from ner-tag
with the model it carries as package data."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.launcher import HOST, ROOT, free_port, wait_until_ready
from tests.service_fixtures import post_json

pytestmark = pytest.mark.slow
# Building and installing download the base dependencies once (pip's cache keeps them).
INSTALL_TIMEOUT_S = 600


def run(command: list, cwd: Path, stdin: str | None = None) -> str:
    result = subprocess.run(command, cwd=cwd, input=stdin, capture_output=True, text=True,
                            timeout=INSTALL_TIMEOUT_S, check=False)
    assert result.returncode == 0, f"{command}: {result.stderr[-3000:]}"
    return result.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, Path]:
    """(the wheel, the bin directory of a fresh venv it is installed into)."""
    # Built from a copy of the clone's files, as `pip install git+URL` builds from
    # a fresh clone: setuptools leaves build/ and an .egg-info where it builds.
    source = tmp_path_factory.mktemp("source")
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout.split()
    for name in listed:
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    build = tmp_path_factory.mktemp("wheel")
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", build, source], cwd=build)
    wheel = next(build.glob("nerserve-*.whl"))
    venv = tmp_path_factory.mktemp("venv")
    run([sys.executable, "-m", "venv", venv], cwd=venv)
    run([venv / "bin" / "python", "-m", "pip", "install", "-q", wheel], cwd=venv)
    return wheel, venv / "bin"


def test_the_wheel_carries_the_serving_files_of_the_model_and_no_more(installed):
    wheel, _ = installed
    names = set(zipfile.ZipFile(wheel).namelist())
    model = "nerserve/tagger/committed_model/"
    served = {"chars.onnx", "tagger.onnx", "crf.npz", "vocab.json", "word_vectors.npy", "calibration.json", "meta.json"}
    assert {name for name in names if name.startswith(model)} == {
        model + prefix + name for prefix in ("", "caseless/", "typed/") for name in served}
    assert {"nerserve/web/simple_client.html", "nerserve/web/static/jquery-3.7.1.min.js"} <= names
    assert not [name for name in names if "saved_model" in name or name.endswith("weights.npz")]


def test_the_installed_api_tags_outside_the_clone(installed, tmp_path):
    _, bin_dir = installed
    code = "from nerserve import get_model_api; import json; print(json.dumps(get_model_api()('I love Paris')))"
    result = json.loads(run([bin_dir / "python", "-c", code], cwd=tmp_path).splitlines()[-1])
    assert [(e["text"], e["type"]) for e in result["entities"]] == [("Paris", "LOC")]


def test_ner_tag_tags_stdin(installed, tmp_path):
    _, bin_dir = installed
    lines = run([bin_dir / "ner-tag", "-"], cwd=tmp_path, stdin="I love Paris\n").splitlines()
    assert len(lines) == 1
    assert [(e["text"], e["type"]) for e in json.loads(lines[0])["entities"]] == [("Paris", "LOC")]


def test_the_installed_base_has_no_tensorflow(installed):
    _, bin_dir = installed
    freeze = run([bin_dir / "python", "-m", "pip", "freeze"], cwd=bin_dir).lower()
    assert "nerserve" in freeze and "tensorflow" not in freeze and "pyspark" not in freeze


def test_ner_serve_serves_the_api_outside_the_clone(installed, tmp_path):
    _, bin_dir = installed
    port = free_port()
    environment = {**os.environ, "PORT": str(port), "WEB_CONCURRENCY": "1"}
    with (tmp_path / "ner-serve.log").open("wb") as log:
        server = subprocess.Popen([bin_dir / "ner-serve"], cwd=tmp_path, env=environment, stdout=log,
                                  stderr=subprocess.STDOUT)
    try:
        url = f"http://{HOST}:{port}"
        wait_until_ready(url, server)
        status, answer = post_json(url + "/api", "I love Paris")
        assert status == 200 and [(e["text"], e["type"]) for e in answer["entities"]] == [("Paris", "LOC")]
    finally:
        server.terminate()
        server.wait(timeout=60)
