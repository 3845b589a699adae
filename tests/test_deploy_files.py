"""The files Heroku reads agree with each other. (What the Procfile's web
process does is tested by running it: tests/test_gunicorn.py.)"""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import settings
from tests.launcher import ROOT


def test_the_python_version_is_in_python_version_only():
    # The buildpack reads runtime.txt before .python-version, and deprecates it.
    assert re.fullmatch(r"3\.\d+", (ROOT / ".python-version").read_text().strip())
    assert not (ROOT / "runtime.txt").exists()


def test_web_requirements_are_pinned_and_lean():
    lines = [line for line in (ROOT / "requirements.txt").read_text().splitlines() if line and line[0] != "#"]
    assert all("==" in line for line in lines)
    assert not {line.split("==")[0] for line in lines} & {"tensorflow", "keras", "onnx", "tf2onnx"}


# Heroku's classic buildpacks in the order its detection tries them, and the
# files at the app's root that make each one's bin/detect say yes (heroku/
# heroku-buildpack-ruby, -nodejs, -clojure, -python). The first that says yes
# builds the app; the buildpacks after Python cannot win once Python does.
DETECTION_ORDER = [
    ("Ruby", ["Gemfile"]),
    ("Node.js", ["package.json", "server.js"]),
    ("Clojure", ["project.clj"]),
    ("Python", ["requirements.txt", "setup.py", "Pipfile", "pyproject.toml"]),
]


def detected_language(root: Path) -> str | None:
    for language, files in DETECTION_ORDER:
        if any((root / name).is_file() for name in files):
            return language
    return None


def test_heroku_detects_python_at_the_repository_root():
    assert detected_language(ROOT) == "Python"


def test_the_detection_picks_the_first_language_that_matches(tmp_path):
    (tmp_path / "requirements.txt").write_text("flask\n")
    assert detected_language(tmp_path) == "Python"
    (tmp_path / "package.json").write_text("{}\n")  # what the root held before: Node.js won
    assert detected_language(tmp_path) == "Node.js"


def test_app_json_lists_every_variable_the_app_reads_with_its_default():
    app_json = json.loads((ROOT / "app.json").read_text())
    assert app_json["name"] and app_json["description"]
    assert app_json["buildpacks"] == [{"url": "heroku/python"}]
    assert app_json["formation"] == {"web": {"quantity": 1, "size": "basic"}}
    env = app_json["env"]
    # Heroku assigns PORT itself, and sets WEB_CONCURRENCY from the dyno size
    # unless the app does: app.json leaves both to it.
    assert set(env) == {variable.name for variable in settings.VARIABLES} - {"PORT"}
    assert "value" not in env["WEB_CONCURRENCY"]
    for variable in settings.VARIABLES:
        if variable.name in env and variable.name != "WEB_CONCURRENCY":
            assert env[variable.name]["value"] == variable.default, variable.name
        assert variable.name == "PORT" or env[variable.name]["description"]


def test_only_settings_py_reads_the_environment():
    # Every variable the service reads is in settings.VARIABLES, so in app.json.
    service = [ROOT / "app.py", ROOT / "serve.py", ROOT / "gunicorn.conf.py", *(ROOT / "model").glob("*.py")]
    reading = re.compile(r"os\.environ|getenv\(")
    assert [path.name for path in service if reading.search(path.read_text())] == []
    assert reading.search((ROOT / "settings.py").read_text())


def slug_files() -> list[str]:
    """The repository's files less those .slugignore names (git reads its patterns as Heroku does)."""
    def git_files(*options: str) -> set[str]:
        command = ["git", "ls-files", "--cached", "--others", "--exclude-standard", *options]
        return set(subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True).stdout.split())

    return sorted(git_files() - git_files("--ignored", "--exclude-from=.slugignore"))


def test_the_slug_keeps_out_tests_bench_data_and_training_files():
    files = slug_files()
    assert "app.py" in files and "results/crf/tagger.onnx" in files
    kept_out = ("tests/", "bench/", "data/", "results/crf/saved_model/", "requirements-train.txt")
    assert [name for name in files if name.startswith(kept_out)] == []


def test_the_slug_alone_serves_the_model(tmp_path):
    # The files Heroku would keep, copied apart, answer a request with the real model.
    for name in slug_files():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, tmp_path / name)
    code = (
        "import json, app\n"
        "client = app.app.test_client()\n"
        "app.model_loader(app.app).wait(120)\n"
        "print(json.dumps(client.post('/api', json='Angela Merkel visited Washington.').get_json()['entities']))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                            timeout=300, check=False, env={**os.environ, "PYTHONPATH": ""})
    assert result.returncode == 0, result.stderr[-2000:]
    entities = json.loads(result.stdout.splitlines()[-1])
    assert [(e["text"], e["type"]) for e in entities] == [("Angela Merkel", "PER"), ("Washington", "LOC")]
