"""The files Heroku reads agree with each other. (What the Procfile's web
process does is tested by running it: tests/test_gunicorn.py.)"""

from tests.launcher import ROOT


def test_runtime_txt_and_python_version_name_the_same_python():
    python_version = (ROOT / ".python-version").read_text().strip()
    assert (ROOT / "runtime.txt").read_text().strip() == f"python-{python_version}"


def test_web_requirements_are_pinned_and_lean():
    lines = [line for line in (ROOT / "requirements.txt").read_text().splitlines() if line and line[0] != "#"]
    assert all("==" in line for line in lines)
    assert not {line.split("==")[0] for line in lines} & {"tensorflow", "keras", "onnx", "tf2onnx"}
