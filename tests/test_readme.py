"""Every curl example of the README, run against gunicorn serving the committed
model, answers what the README prints under it.

The format read (```console blocks, as a terminal shows them):

    ```console
    $ curl -X POST localhost:5000/api -H 'Content-Type: application/json' \\
           -d '{"text": "I love Paris"}'
    {"input": ...}
    ```

- A command is a line that starts with `$ curl`, continued over the lines that
  end with a backslash; it runs in bash as written, with `localhost:5000` (or
  `127.0.0.1:5000`) replaced by the test server's address.
- The lines after it, up to the next `$ ` line or the end of the block, are
  what it prints. Blank lines around them do not count. A block may hold
  several commands; a command with nothing under it is only run.
- What it prints is compared as JSON when it parses as JSON: exactly, except
  that a number printed with N decimals is the service's number printed with N
  decimals (a score of 0.9264 is any score that rounds to it).
- With `curl -i` (or `--include`, or `-i` among other short options: `-si`), the printing starts with the status line and headers: the
  status line must be the same, and each header printed must be sent with the
  value printed (any value for Date and Connection); the service may send more. The body after
  the blank line is compared as above.
"""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest

from nerserve import settings
from tests.launcher import ROOT

README = ROOT / "README.md"
CONSOLE_BLOCK = re.compile(r"^```console[ \t]*\n(.*?)^```", flags=re.MULTILINE | re.DOTALL)
# Headers whose value is the moment's: the date, and whether gunicorn keeps the
# connection open (it depends on how many it holds).
ANY_VALUE_HEADERS = {"date", "connection"}


@dataclass(frozen=True)
class Example:
    command: str  # as bash reads it: continuation lines kept
    printed: str  # what the README shows under it, stripped


def examples(markdown: str) -> list[Example]:
    found = []
    for block in CONSOLE_BLOCK.findall(markdown):
        lines = block.splitlines()
        i = 0
        while i < len(lines):
            if not lines[i].startswith("$ "):
                i += 1
                continue
            command = [lines[i][2:]]
            while command[-1].endswith("\\") and i + 1 < len(lines):
                i += 1
                command.append(lines[i])
            i += 1
            start = i
            while i < len(lines) and not lines[i].startswith("$ "):
                i += 1
            if command[0].startswith("curl"):
                found.append(Example("\n".join(command), "\n".join(lines[start:i]).strip()))
    return found


EXAMPLES = examples(README.read_text(encoding="utf-8"))


SAMPLE = """
```console
$ make serve
gunicorn starting
$ curl -si localhost:5000/api -d '"Paris"' \\
       -H 'Content-Type: application/json'
HTTP/1.1 200 OK
Date: Sun, 29 Nov 2026 20:00:00 GMT

{"entities": [{"score": 0.93}]}

$ curl localhost:5000/healthz
```
"""


def test_the_format_is_read_as_the_docstring_says():
    assert examples(SAMPLE) == [
        Example("curl -si localhost:5000/api -d '\"Paris\"' \\\n       -H 'Content-Type: application/json'",
                'HTTP/1.1 200 OK\nDate: Sun, 29 Nov 2026 20:00:00 GMT\n\n{"entities": [{"score": 0.93}]}'),
        Example("curl localhost:5000/healthz", ""),
    ]
    assert includes_headers(examples(SAMPLE)[0].command) and not includes_headers("curl -d 'x' -H 'a: b' u")
    assert same_json(json.loads('{"score": 0.93}', parse_float=Decimal), {"score": 0.9271})
    assert not same_json(json.loads('{"score": 0.93}', parse_float=Decimal), {"score": 0.9249})
    assert not same_json(json.loads('{"members": 3}', parse_float=Decimal), {"members": 4})


def test_the_readme_has_examples_with_answers():
    assert any(e.printed.startswith("{") for e in EXAMPLES), "no curl example with a JSON answer in README.md"


def includes_headers(command: str) -> bool:
    """Whether curl prints the status line and headers before the body."""
    return any(word == "--include" or re.fullmatch(r"-[a-zA-Z]*i[a-zA-Z]*", word) for word in command.split())


def same_json(printed: Any, actual: Any) -> bool:
    """Whether the service's JSON is the README's, numbers to the printed digits."""
    if isinstance(printed, Decimal):
        digits = max(0, -printed.as_tuple().exponent)
        return isinstance(actual, int | float) and Decimal(f"{actual:.{digits}f}") == printed
    if isinstance(printed, dict):
        return (isinstance(actual, dict) and printed.keys() == actual.keys()
                and all(same_json(printed[k], actual[k]) for k in printed))
    if isinstance(printed, list):
        return (isinstance(actual, list) and len(printed) == len(actual)
                and all(same_json(p, a) for p, a in zip(printed, actual, strict=True)))
    return type(printed) is type(actual) and printed == actual


def check_body(printed: str, actual: str) -> None:
    try:
        expected = json.loads(printed, parse_float=Decimal)
    except ValueError:
        assert actual.strip() == printed
        return
    assert same_json(expected, json.loads(actual)), f"README:\n{printed}\nservice:\n{actual}"


def check_head(printed: str, actual: str) -> None:
    printed_status, *printed_headers = printed.splitlines()
    actual_status, *actual_headers = actual.splitlines()
    assert actual_status.strip() == printed_status.strip()
    sent = {name.lower(): value.strip() for name, _, value in (h.partition(":") for h in actual_headers)}
    for name, _, value in (h.partition(":") for h in printed_headers):
        assert name.lower() in sent, f"{name} is not sent"
        if name.lower() not in ANY_VALUE_HEADERS:
            assert sent[name.lower()] == value.strip(), f"{name}: the README says {value.strip()!r}"


@pytest.mark.parametrize("example", EXAMPLES, ids=[e.command.split("\n")[0][:70] for e in EXAMPLES])
def test_the_readme_example_answers_what_it_prints(example, server):
    address = server.url.removeprefix("http://")
    command = example.command.replace("localhost:5000", address).replace("127.0.0.1:5000", address)
    result = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    if not example.printed:
        return
    if includes_headers(example.command):
        printed_head, _, printed_body = example.printed.partition("\n\n")
        actual_head, _, actual_body = result.stdout.replace("\r\n", "\n").partition("\n\n")
        check_head(printed_head, actual_head)
        check_body(printed_body.strip(), actual_body)
    else:
        check_body(example.printed, result.stdout)


def test_every_address_the_readme_gives_is_where_make_serve_listens():
    # The first example once said port 8000: copied as written, it found nothing there.
    ports = set(re.findall(r"(?:localhost|127\.0\.0\.1):(\d+)", README.read_text()))
    assert ports == {str(settings.defaults()["PORT"])}
