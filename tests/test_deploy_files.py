"""The files Heroku reads: the Procfile names the app, .python-version the
Python the tests run on, app.json every variable nerserve/settings.py reads, and the
files .slugignore leaves serve the model alone. (What the Procfile's web
process does is tested by running it: tests/test_gunicorn.py.)"""

import importlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys

import flask

from nerserve import settings
from tests.launcher import ROOT, slug_files


def tracked_files() -> list[str]:
    return subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()


def test_the_procfile_runs_gunicorn_on_the_flask_app():
    processes = dict(line.split(":", 1) for line in (ROOT / "Procfile").read_text().splitlines() if line.strip())
    assert list(processes) == ["web"]
    command = shlex.split(processes["web"])
    assert command[0] == "gunicorn" and command[1:] == ["app:app"]  # gunicorn.conf.py holds every setting
    module, name = command[-1].split(":")
    assert isinstance(getattr(importlib.import_module(module), name), flask.Flask)


def test_python_version_names_the_python_the_tests_run_on_in_the_buildpacks_form():
    # Heroku's Python buildpack takes "3.11" (the latest 3.11 patch release: the form it
    # recommends) or an exact "3.11.7"; runtime.txt, read before it, is deprecated.
    version = (ROOT / ".python-version").read_text().strip()
    assert re.fullmatch(r"3\.\d+(\.\d+)?", version), version
    assert version.split(".")[:2] == [str(part) for part in sys.version_info[:2]]
    assert not (ROOT / "runtime.txt").exists()


def test_no_npm_packages_or_runtime_txt_in_the_repository():
    assert [name for name in tracked_files() if name.startswith("node_modules/") or name == "runtime.txt"] == []


def test_web_requirements_are_pinned_and_lean():
    lines = [line for line in (ROOT / "requirements.txt").read_text().splitlines() if line and line[0] != "#"]
    assert all("==" in line for line in lines)
    assert not {line.split("==")[0] for line in lines} & {"tensorflow", "keras", "onnx", "tf2onnx"}


def test_app_json_lists_every_variable_the_app_reads_with_its_default():
    app_json = json.loads((ROOT / "app.json").read_text())
    assert app_json["name"] and app_json["description"]
    assert app_json["buildpacks"] == [{"url": "heroku/python"}]
    assert app_json["formation"] == {"web": {"quantity": 1, "size": "basic"}}
    env = app_json["env"]
    # Heroku assigns PORT itself, sets WEB_CONCURRENCY from the dyno size
    # unless the app does, and its Key-Value Store add-on sets REDIS_URL (an
    # add-on cannot set a variable the app already has): app.json leaves them to it.
    assert set(env) == {variable.name for variable in settings.VARIABLES} - {"PORT"}
    assert "value" not in env["WEB_CONCURRENCY"] and "value" not in env["REDIS_URL"]
    for variable in settings.VARIABLES:
        if variable.name in env and variable.name not in ("WEB_CONCURRENCY", "REDIS_URL"):
            assert env[variable.name]["value"] == variable.default, variable.name
        assert variable.name == "PORT" or env[variable.name]["description"]


def test_only_settings_py_reads_the_environment():
    # Every variable the service reads is in settings.VARIABLES, so in app.json.
    service = [*ROOT.glob("*.py"), *(ROOT / "nerserve").rglob("*.py")]
    # (gunicorn.conf.py sets prometheus_client's directory, and reads back the
    # marks it leaves for itself across a HUP: state of the master's, not settings.)
    reading = re.compile(r"os\.environ(?!\[[^]]*\]\s*=)|getenv\(")
    own_marks = re.compile(r".*(METRICS_OWNER_VARIABLE|PROMETHEUS_MULTIPROC_DIR).*")
    readers = [path.relative_to(ROOT).as_posix() for path in service if reading.search(own_marks.sub("", path.read_text()))]
    assert readers == ["nerserve/settings.py"]


def test_the_slug_keeps_out_tests_bench_data_and_training_files():
    files = slug_files()
    assert "app.py" in files and "nerserve/web/app.py" in files and "results/crf/tagger.onnx" in files
    kept_out = ("tests/", "bench/", "data/", "results/crf/saved_model/", "requirements-train.txt",
                "nerserve/tagger/training/", "nerserve/corpus/")
    assert [name for name in files if name.startswith(kept_out)] == []


def test_the_slug_alone_serves_the_model(tmp_path):
    # The files Heroku would keep, copied apart, answer a request with the real model.
    for name in slug_files():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, tmp_path / name)
    code = (
        "import json, app\n"
        "from nerserve.web.app import model_loader\n"
        "client = app.app.test_client()\n"
        "model_loader(app.app).wait(120)\n"
        "print(json.dumps(client.post('/api', json='Angela Merkel visited Washington.').get_json()['entities']))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                            timeout=300, check=False, env={**os.environ, "PYTHONPATH": ""})
    assert result.returncode == 0, result.stderr[-2000:]
    entities = json.loads(result.stdout.splitlines()[-1])
    assert [(e["text"], e["type"]) for e in entities] == [("Angela Merkel", "PER"), ("Washington", "LOC")]
