"""The files Heroku reads agree with each other and with what the tests run on."""

import sys

from tests.launcher import ROOT


def test_runtime_txt_and_python_version_name_the_same_python():
    python_version = (ROOT / ".python-version").read_text().strip()
    assert (ROOT / "runtime.txt").read_text().strip() == f"python-{python_version}"
    assert f"{sys.version_info.major}.{sys.version_info.minor}" == python_version


def test_procfile_runs_gunicorn_on_the_app():
    assert (ROOT / "Procfile").read_text().strip() == "web: gunicorn app:app"


def test_web_requirements_are_pinned_and_lean():
    lines = [line for line in (ROOT / "requirements.txt").read_text().splitlines() if line and line[0] != "#"]
    assert all("==" in line for line in lines)
    assert not {line.split("==")[0] for line in lines} & {"tensorflow", "keras", "onnx", "tf2onnx"}
