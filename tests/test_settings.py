"""Configuration (nerserve/settings.py): each variable read in one place, bad values stop start-up with one line."""

from __future__ import annotations

import os
import runpy
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from nerserve import settings
from tests.launcher import ROOT, free_port, gunicorn, procfile_command
from tests.service_fixtures import http

BAD_VALUES = [
    ("NER_MAX_TEXTS", "abc", "NER_MAX_TEXTS='abc' is not valid: it takes a whole number of 1 or more"),
    ("NER_MAX_TEXTS", "-1", "NER_MAX_TEXTS='-1' is not valid: it takes a whole number of 1 or more"),
    ("NER_BACKEND", "pytorch", "NER_BACKEND='pytorch' is not valid: it takes onnx or tensorflow"),
    ("NER_LOAD_WAIT_S", "nan", "NER_LOAD_WAIT_S='nan' is not valid: it takes a number of seconds, 0 or more"),
    ("PORT", "70000", "PORT='70000' is not valid: it takes a port number from 1 to 65535"),
    ("WEB_CONCURRENCY", "0", "WEB_CONCURRENCY='0' is not valid: it takes a whole number of 1 or more"),
    ("NER_MAX_TOKENS", "0", "NER_MAX_TOKENS='0' is not valid: it takes a whole number of 1 or more"),
    *[("NER_CORS_ORIGINS", origins, (f"NER_CORS_ORIGINS={origins!r} is not valid: it takes * or comma-separated "
                                     "origins such as https://app.example.com or https://*.example.com"))
      for origins in ("https://*good.example", "*.good.example", "https://good.example/", "https://a.*.example",
                      "ftp://good.example", "https://good.example,", "https://good.example|https://evil.net")],
    ("NER_RATE_LIMIT", "600/minute;9000/hour",
     "NER_RATE_LIMIT='600/minute;9000/hour' is not valid: it takes a quota such as 600/minute, or nothing"),
    ("NER_TOKEN_RATE_LIMIT", "0/minute",
     "NER_TOKEN_RATE_LIMIT='0/minute' is not valid: it takes a quota such as 200000/minute, or nothing"),
    ("NER_METRICS", "yes", "NER_METRICS='yes' is not valid: it takes on or off"),
    # A secret's value is never echoed to the log: a plain key where its digest belongs, a URL with its password.
    ("NER_API_KEYS", "my-plain-key",
     "NER_API_KEYS is not valid: it takes comma-separated SHA-256 digests of the keys, 64 hex digits each"),
    ("REDIS_URL", "http://:password@host:6379", "REDIS_URL is not valid: it takes a redis:// or rediss:// URL, or nothing"),
]


@pytest.mark.parametrize(("origin", "allowed"), [
    ("https://a.good.example", True), ("https://a.b.good.example", True), ("https://A.Good.Example", True),
    ("https://good.example", False), ("https://xgood.example", False), ("https://good.example.evil.net", False),
    ("http://a.good.example", False), ("https://a.good.example:8443", False), ("https://a-good.example", False),
])
def test_a_subdomain_wildcard_allows_subdomains_only(origin, allowed):
    (pattern, exact) = settings.cors_origins("https://*.good.example, https://app.other.example")
    assert exact == "https://app.other.example"
    assert bool(pattern.match(origin)) == allowed  # re.match, as Flask-CORS matches


def test_every_default_is_a_value_its_variable_accepts():
    defaults = settings.defaults()
    assert list(defaults) == [variable.name for variable in settings.VARIABLES]
    assert defaults["NER_MAX_TEXTS"] == 50 and defaults["NER_LOAD_WAIT_S"] == 10.0
    assert defaults["NER_MODEL_DIR"] == ROOT / "results" / "crf"


def test_keys_and_quotas_are_parsed_once():
    digest = "AB" * 32
    values = settings.load({"NER_API_KEYS": f" {digest}, {'0' * 64}", "NER_RATE_LIMIT": "10 per second"})
    assert values["NER_API_KEYS"] == (digest.lower(), "0" * 64)
    assert (values["NER_RATE_LIMIT"].amount, values["NER_RATE_LIMIT"].get_expiry()) == (10, 1)
    assert settings.defaults()["NER_RATE_LIMIT"] is None and settings.defaults()["NER_API_KEYS"] == ()


def test_values_come_from_the_environment():
    values = settings.load({"NER_MAX_TEXTS": "7", "NER_MODEL_DIR": "/srv/model", "NER_LOAD_WAIT_S": "0.5"})
    assert (values["NER_MAX_TEXTS"], values["NER_MODEL_DIR"], values["NER_LOAD_WAIT_S"]) == (7, ROOT / "/srv/model", 0.5)
    assert str(values["NER_MODEL_DIR"]) == "/srv/model"


@pytest.mark.parametrize(("name", "value", "line"), BAD_VALUES)
def test_a_bad_value_is_refused_with_one_line_naming_the_variable(name, value, line):
    with pytest.raises(settings.ConfigError) as error:
        settings.load({name: value})
    assert str(error.value) == line


@pytest.mark.parametrize(("name", "value", "line"), BAD_VALUES[:3])
def test_gunicorn_refuses_to_start_with_a_bad_value(name, value, line):
    # The Procfile's command, as Heroku runs it: it exits at once, and the only
    # line on stderr names the variable. (gunicorn is the one beside this Python.)
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    env = {**os.environ, "PATH": path, "PORT": str(free_port()), name: value}
    result = subprocess.run(
        procfile_command(), cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode != 0
    assert result.stderr.splitlines() == [line]


def ipv6_available() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


def test_gunicorn_answers_on_ipv4_and_on_ipv6_where_the_machine_has_it(tmp_path):
    # The address left to gunicorn.conf.py, as on Heroku; the launcher checks /readyz on 127.0.0.1.
    with gunicorn(tmp_path / "output.log", workers=1, bind_loopback=False) as server:
        log = server.log.read_text()
        if ipv6_available():
            assert f"Listening at: http://[::]:{server.port}" in log
            assert http("GET", f"http://[::1]:{server.port}/healthz")[0] == 200
        else:
            assert f"Listening at: http://0.0.0.0:{server.port}" in log


def test_the_bind_falls_back_to_ipv4_on_a_machine_without_ipv6(monkeypatch, tmp_path):
    real_socket = socket.socket
    # Reading gunicorn.conf.py makes prometheus_client's directory and names it in
    # the environment: both are this test's, and go with it.
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "")

    def no_ipv6(family=socket.AF_INET, *args, **kwargs):
        if family == socket.AF_INET6:
            raise OSError(97, "Address family not supported by protocol")
        return real_socket(family, *args, **kwargs)

    monkeypatch.setenv("PORT", "5123")
    monkeypatch.setattr(settings, "current", settings.load)  # read anew each time, not the process's
    monkeypatch.setattr(socket, "socket", no_ipv6)
    assert read_gunicorn_conf(monkeypatch)["bind"] == "0.0.0.0:5123"
    monkeypatch.setattr(socket, "socket", real_socket)
    expected = "[::]:5123" if ipv6_available() else "0.0.0.0:5123"
    assert read_gunicorn_conf(monkeypatch)["bind"] == expected


def read_gunicorn_conf(monkeypatch) -> dict:
    """gunicorn.conf.py's settings, as a fresh gunicorn master reads them: the
    package module that holds them imported anew, not the one this process has."""
    monkeypatch.delitem(sys.modules, "nerserve.server.gunicorn_config", raising=False)
    return runpy.run_path(str(ROOT / "gunicorn.conf.py"))


def test_x_forwarded_for_is_trusted_by_default_on_heroku_only():
    # Outside Heroku a client may connect straight to gunicorn and write X-Forwarded-For itself.
    assert settings.load({})["NER_TRUSTED_PROXIES"] == 0
    assert settings.load({"DYNO": "web.1"})["NER_TRUSTED_PROXIES"] == 1
    assert settings.load({"NER_TRUSTED_PROXIES": "2"})["NER_TRUSTED_PROXIES"] == 2
    assert settings.load({"DYNO": "web.1", "NER_TRUSTED_PROXIES": "0"})["NER_TRUSTED_PROXIES"] == 0
