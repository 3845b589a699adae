"""Every environment variable the service reads: its default, what it accepts and what it means.

Read once a process, at start-up (current()): nerserve/server/gunicorn_config.py reads PORT and
WEB_CONCURRENCY, app.create_app() the rest, from the same parsed values. A
value the service cannot use stops start-up with one line that names the
variable and says what it accepts. app.json lists the same variables for
Heroku (tests/test_deploy_files.py checks that they agree).
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import limits

from nerserve.tagger import files
from nerserve.tagger.backends import BACKENDS

ROOT = files.REPOSITORY
# Heroku sets it in every dyno (web.1, run.4821...); nothing else does.
HEROKU_MARK = "DYNO"


class ConfigError(ValueError):
    """A variable set to a value the service cannot use; the message is one line."""


@dataclass(frozen=True)
class Variable:
    name: str
    default: str
    accepts: str  # what a value may be, for the error message
    description: str
    parse: Callable[[str], Any]  # raises ValueError on a value it does not accept
    secret: bool = False  # never echoed in an error message (it goes to the log)
    # The default where DYNO is unset (outside Heroku), if not `default`; app.json
    # and the README's table give `default`, Heroku's.
    default_outside_heroku: str | None = None

    def default_in(self, environ: Mapping[str, str]) -> str:
        """The default in `environ`: Heroku's where it sets DYNO (in every dyno), else the one outside."""
        if self.default_outside_heroku is None or HEROKU_MARK in environ:
            return self.default
        return self.default_outside_heroku


def whole_number(low: int, high: int | None = None) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = int(text)
        if value < low or (high is not None and value > high):
            raise ValueError(text)
        return value

    return parse


def seconds(text: str) -> float:
    value = float(text)
    if not 0 <= value < float("inf"):  # also refuses nan
        raise ValueError(text)
    return value


def one_of(choices: tuple[str, ...]) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text not in choices:
            raise ValueError(text)
        return text

    return parse


# An origin as browsers send it: scheme, host and an optional port; the host
# may begin with "*." for any subdomain of the rest (never the rest itself).
_ORIGIN = re.compile(r"(https?)://(\*\.)?([a-z0-9-]+(?:\.[a-z0-9-]+)*)(:\d{1,5})?")


def cors_origins(text: str) -> str | tuple[str | re.Pattern, ...]:
    """"*" (any origin), or comma-separated origins: each exact, or with a
    subdomain wildcard ("https://*.example.com" allows https://a.example.com
    and https://a.b.example.com, not https://example.com nor
    https://example.com.evil.net). Patterns for Flask-CORS, which matches a
    string with regular-expression characters from its start only, so the
    wildcards become anchored patterns here."""
    if text.strip() == "*":
        return "*"
    origins: list[str | re.Pattern] = []
    for item in (part.strip() for part in text.split(",")):
        match = _ORIGIN.fullmatch(item)
        if match is None:
            raise ValueError(item)
        scheme, wildcard, host, port = match.groups()
        if wildcard:
            origins.append(re.compile(rf"{scheme}://[a-z0-9-]+(?:\.[a-z0-9-]+)*\.{re.escape(host + (port or ''))}\Z",
                                      re.IGNORECASE))
        else:
            origins.append(item)
    return tuple(origins)


def directory(text: str) -> Path:
    """A relative path is taken from the repository root, whatever the working directory."""
    if not text:
        raise ValueError(text)
    return ROOT / text


def quota(text: str) -> limits.RateLimitItem | None:
    """One quota in the notation of `limits` (Flask-Limiter's), such as 600/minute; empty is none."""
    if not text:
        return None
    items = limits.parse_many(text)
    if len(items) != 1 or items[0].amount < 1:
        raise ValueError(text)
    return items[0]


def sha256_digests(text: str) -> tuple[str, ...]:
    """Comma-separated SHA-256 digests in hex; empty is none."""
    digests = tuple(digest.strip().lower() for digest in text.split(",") if digest.strip())
    if not all(re.fullmatch("[0-9a-f]{64}", digest) for digest in digests):
        raise ValueError(text)
    return digests


def redis_url(text: str) -> str:
    if text and not text.startswith(("redis://", "rediss://")):
        raise ValueError(text)
    return text


VARIABLES = (
    Variable("PORT", "5000", "a port number from 1 to 65535",
             "port gunicorn listens on (Heroku sets it)", whole_number(1, 65535)),
    Variable("WEB_CONCURRENCY", "2", "a whole number of 1 or more",
             "gunicorn worker processes", whole_number(1)),
    Variable("NER_MODEL_DIR", files.COMMITTED_MODEL_DIR.relative_to(ROOT).as_posix(), "a directory path",
             "the model directory (relative to the repository root)", directory),
    Variable("NER_BACKEND", "onnx", " or ".join(BACKENDS),
             "onnx (the lean runtime) or tensorflow (the reference; needs requirements-train.txt)",
             one_of(BACKENDS)),
    Variable("NER_CORS_ORIGINS", "*",
             "* or comma-separated origins such as https://app.example.com or https://*.example.com",
             "origins allowed to call the API from a browser; * is any, *. any subdomain", cors_origins),
    Variable("NER_MAX_BODY_BYTES", "1048576", "a whole number of 1 or more",
             "largest request body, in bytes", whole_number(1)),
    Variable("NER_MAX_TEXT_CHARS", "10000", "a whole number of 1 or more",
             "longest text, in characters", whole_number(1)),
    Variable("NER_MAX_TEXTS", "50", "a whole number of 1 or more",
             "most texts in one request", whole_number(1)),
    Variable("NER_MAX_TOKENS", "100000", "a whole number of 1 or more",
             "most tokens in one request, all texts together (what tagging costs follows)", whole_number(1)),
    Variable("NER_LOAD_WAIT_S", "10", "a number of seconds, 0 or more",
             "how long a request waits for a model still loading before a 503", seconds),
    Variable("NER_API_KEYS", "", "comma-separated SHA-256 digests of the keys, 64 hex digits each",
             "SHA-256 digests of the API keys POST /api accepts; empty leaves the API open", sha256_digests,
             secret=True),
    Variable("NER_RATE_LIMIT", "", "a quota such as 600/minute, or nothing",
             "requests a client may send to POST /api, such as 600/minute; empty is no quota", quota),
    Variable("NER_TOKEN_RATE_LIMIT", "", "a quota such as 200000/minute, or nothing",
             "tokens a client may send, such as 200000/minute: a request is charged its tokens (a token per "
             "10 characters at least), refused or not; empty is no quota", quota),
    Variable("REDIS_URL", "", "a redis:// or rediss:// URL, or nothing",
             "Redis that every worker and dyno count quotas in (Heroku Key-Value Store sets it); "
             "empty counts them in each worker", redis_url, secret=True),
    # Outside Heroku a client may connect straight to gunicorn and write
    # X-Forwarded-For itself: trusting it there would let it pick its address.
    Variable("NER_TRUSTED_PROXIES", "1", "a whole number of 0 or more",
             "proxies that append to X-Forwarded-For before the app: 1 (Heroku's router) where DYNO is set, "
             "else 0, the connection's address", whole_number(0), default_outside_heroku="0"),
    Variable("NER_METRICS", "on", "on or off",
             "GET /metrics in Prometheus format, summed over the workers", one_of(("on", "off"))),
    Variable("NER_METRICS_TOKEN", "", "any text",
             "a token GET /metrics requires as Authorization: Bearer; empty leaves it open", str, secret=True),
)


def load(environ: Mapping[str, str] = os.environ) -> dict[str, Any]:
    """Every variable's value, parsed; ConfigError names the first bad one."""
    values = {}
    for variable in VARIABLES:
        text = environ.get(variable.name, variable.default_in(environ))
        try:
            values[variable.name] = variable.parse(text)
        except ValueError:
            setting = variable.name if variable.secret else f"{variable.name}={text!r}"
            raise ConfigError(f"{setting} is not valid: it takes {variable.accepts}") from None
    return values


@functools.cache
def current() -> dict[str, Any]:
    """The process's settings, from its environment, parsed once."""
    return load()


def defaults() -> dict[str, Any]:
    """Every variable's default value outside Heroku, parsed."""
    return load({})
