"""Who may call POST /api, and how much: API keys and per-client quotas.

Keys. NER_API_KEYS holds the SHA-256 digests of the keys, never the keys, so
that the configuration can be read, shared and pasted into a dashboard without
giving a key away. A request's key (`Authorization: Bearer KEY` or
`X-API-Key: KEY`) is hashed and its digest compared with each in constant
time. The digest's first 8 hex digits are the key's id: the access log's
key_id and the client the quotas count for. The key itself is never logged.

Quotas. NER_RATE_LIMIT counts a client's requests, NER_TOKEN_RATE_LIMIT the
tokens it has sent, each in a fixed window that starts at its first hit
(the notation and the counting are those of `limits`, the library beneath
Flask-Limiter). Flask-Limiter itself checks its limits before the view, at a
cost known then; tokens are known only once the body is parsed, so both
quotas are counted here, together, in one Redis round trip a request when
REDIS_URL is set (every worker of every dyno), else in each worker's memory.

A request is charged the tokens it was tokenized to, or a token per
CHARACTERS_PER_TOKEN characters where that is more, and nothing is ever given
back, not even for a request refused (413 or 429): tokenizing is what the
quota must bound too. So a count only grows within its window, and a client
that has used up a quota stays so until that window ends: a worker that has
seen so refuses it at once, before its body is read, so that the texts of a
client over its quota are not tokenized to be counted. A request with more
tokens than the whole token quota could never be served: 413
over_token_quota_size, not a 429 forever. When Redis fails, a worker warns
once, counts in its own memory, and asks Redis again every REDIS_RETRY_S
seconds.

The client, without keys, is the address that the last trusted proxy appended
to X-Forwarded-For (on Heroku, its router: NER_TRUSTED_PROXIES=1 there, 0
elsewhere), in one spelling a client. What a client writes there itself comes
before, and is never taken.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import math
import threading
import time
from collections import OrderedDict
from typing import Any, NoReturn

import redis
from flask import Flask, Response, current_app, g, request
from limits import RateLimitItem
from redis.backoff import NoBackoff
from redis.retry import Retry
from werkzeug.datastructures import WWWAuthenticate
from werkzeug.exceptions import TooManyRequests, Unauthorized

from nerserve.web import metrics
from nerserve.web.contract import ApiError

log = logging.getLogger(__name__)

# The routes that cost: keys and quotas apply to them only. The page, the docs,
# /healthz, /readyz and /metrics stay open.
GUARDED_ENDPOINTS = frozenset({"api"})
KEY_ID_DIGITS = 8
# A Redis that stopped answering costs a request at most this, twice at most
# (one retry on a fresh connection, after a ConnectionError only: see QuotaStore).
REDIS_TIMEOUT_S = 0.5
REDIS_RETRY_S = 5.0
# The most entries a worker keeps in memory in each of its maps of clients (its
# own windows, the clients it knows have used up a quota): ~0.3 kB each.
LOCAL_WINDOWS_KEPT = 10_000
# Tokenizing costs ~2 µs a character whatever the text, and English has ~5
# characters a token; a text of few long tokens ("a-a-a-...", 10,000
# characters, 1 token, 21 ms) is charged a token per this many characters.
CHARACTERS_PER_TOKEN = 10
# Where a forwarded address is not an IP address (a port, a name), the most of it kept.
MAX_ADDRESS_CHARS = 64
# An IPv6 client is its /64: a subscriber gets at least that many addresses
# (RFC 6177) and a host may take any of them (privacy addresses, RFC 8981),
# so one address a quota would give a client 2^64 quotas.
IPV6_CLIENT_PREFIX = 64
QUOTAS = ("Requests", "Tokens")
REDIS_KEY_PREFIX = "ner-quota:"
# Fixed windows counted as limits counts them (its incr_expire.lua), several
# at once: KEYS[i] gets ARGV[2i] added, and a key new in its window expires
# after ARGV[2i-1] seconds. Amounts are never negative and a zero is only
# read, so a key is new exactly when its count is its amount. Returns the
# counts, in order.
ADD_SCRIPT = """
local counts = {}
for i, key in ipairs(KEYS) do
    local amount = tonumber(ARGV[2 * i])
    if amount > 0 then
        counts[i] = redis.call("incrby", key, amount)
        if counts[i] == amount then
            redis.call("expire", key, ARGV[2 * i - 1])
        end
    else
        counts[i] = tonumber(redis.call("get", key) or 0)
    end
end
return counts
"""
# What a browser page may read of an answer (CORS): each quota's headers, and when to retry.
QUOTA_HEADERS = [f"X-RateLimit-{what}-{quota}" for quota in QUOTAS for what in ("Limit", "Remaining")]
EXPOSED_HEADERS = [*QUOTA_HEADERS, "Retry-After"]


class ExpiringMap:
    """Values by key that each hold until a time (time.time()), at most
    LOCAL_WINDOWS_KEPT of them, kept in the order they were put. That is
    nearly the order they end (a quota's windows all last as long), so the
    ended ones are dropped from the front, each once: O(1) a put, amortised,
    however many clients (a scan of every window at each new client cost a
    request 29 ms past 10,000). An entry that ends before one put earlier
    waits behind it, one window at most. Past LOCAL_WINDOWS_KEPT, the oldest
    go first, ended or not: a client dropped early starts afresh, as one with
    a new address does. Not thread-safe: its owner holds a lock."""

    def __init__(self) -> None:
        self._entries: OrderedDict[str, list] = OrderedDict()  # key: [until, value]

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> list | None:
        """`key`'s entry, [until, value], while it holds; else None."""
        entry = self._entries.get(key)
        return entry if entry is not None and entry[0] > time.time() else None

    def put(self, key: str, until: float, value: Any) -> list:
        """A new entry for `key`, at the back; its [until, value], to update in place."""
        self._entries.pop(key, None)
        now = time.time()
        while self._entries and (len(self._entries) >= LOCAL_WINDOWS_KEPT or self._first_until() <= now):
            self._entries.popitem(last=False)
        entry = self._entries[key] = [until, value]
        return entry

    def _first_until(self) -> float:
        return next(iter(self._entries.values()))[0]


class LocalWindows:
    """Fixed windows counted in this worker's memory, as limits' storages count
    them (a window begins at its first add). limits' own MemoryStorage starts a
    timer thread at an add that comes over 10 ms after the last one, which cost
    0.24 ms an add on the shared 2-core machine."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._windows = ExpiringMap()  # key: [when it ends, count]

    def incr(self, key: str, window_s: int, amount: int) -> int:
        """Add `amount` (0 or more) to `key`'s window; its count. A zero begins no window."""
        with self._lock:
            window = self._windows.get(key)
            if window is None:
                if amount == 0:
                    return 0
                window = self._windows.put(key, time.time() + window_s, 0)
            window[1] += amount
            return int(window[1])

    def get_expiry(self, key: str) -> float:
        with self._lock:
            window = self._windows.get(key)
        return window[0] if window else time.time()

    def __len__(self) -> int:
        return len(self._windows)


# A charge to a quota: its key, its window in seconds, and the amount to add.
Charge = tuple[str, int, int]


class QuotaStore:
    """Quota counts: in Redis when there is one, in this worker's memory while it fails."""

    def __init__(self, redis_url: str):
        self.local = LocalWindows()
        self.redis: redis.Redis | None = None
        if redis_url:
            # One retry, on a ConnectionError only: a connection that Redis closed
            # while it idled, where the command never ran. redis-py's Retry also
            # retries a TimeoutError by default, where the command may have run:
            # during a 2 s stall, that counted a request twice.
            retry = Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,))
            options: dict[str, Any] = {"socket_timeout": REDIS_TIMEOUT_S, "socket_connect_timeout": REDIS_TIMEOUT_S,
                                       "retry": retry}
            if redis_url.startswith("rediss://"):
                # Heroku Key-Value Store's certificate is self-signed: the link is
                # encrypted, but the server is not authenticated (Heroku's advice).
                options["ssl_cert_reqs"] = "none"
            self.redis = redis.Redis.from_url(redis_url, **options)
            self.add_script = self.redis.register_script(ADD_SCRIPT)
        self._lock = threading.Lock()
        self.counting_locally = False  # while Redis fails
        self._next_try = 0.0  # when to ask Redis again (time.monotonic())

    def add(self, charges: list[Charge]) -> list[int]:
        """Add each charge's amount (0 or more) to its key's count in its window
        (begun at its first add), all in one round trip; the new counts."""
        if self._redis_answers():
            keys = [REDIS_KEY_PREFIX + key for key, _, _ in charges]
            try:
                arguments = [n for _, window_s, amount in charges for n in (window_s, amount)]
                return [int(count) for count in self.add_script(keys, arguments)]
            except redis.RedisError as error:
                self._count_locally(error)
        return [self.local.incr(*charge) for charge in charges]

    def window_end(self, key: str) -> float:
        """When `key`'s window ends (time.time()); now if it has none. In
        milliseconds: TTL's whole seconds would keep a client refused up to
        half a second into its next window."""
        if self._redis_answers():
            try:
                return time.time() + max(0, self.redis.pttl(REDIS_KEY_PREFIX + key)) / 1000
            except redis.RedisError as error:
                self._count_locally(error)
        return self.local.get_expiry(key)

    def _redis_answers(self) -> bool:
        """Whether to count in Redis: there is one, and it has not failed (or answers again)."""
        if self.redis is None:
            return False
        if self.counting_locally and self._time_to_try_redis() and self._pings():
            self.counting_locally = False
            metrics.QUOTA_COUNTED_LOCALLY.set(0)
            log.warning("quotas: Redis answers again; counting in Redis")
        return not self.counting_locally

    def _pings(self) -> bool:
        try:
            return bool(self.redis.ping())
        except redis.RedisError:
            return False

    def _time_to_try_redis(self) -> bool:
        """Whether this thread asks Redis now: once every REDIS_RETRY_S seconds, whatever the threads."""
        with self._lock:
            now = time.monotonic()
            if now < self._next_try:
                return False
            self._next_try = now + REDIS_RETRY_S
            return True

    def _count_locally(self, error: redis.RedisError) -> None:
        with self._lock:
            if self.counting_locally:
                return  # one warning a failure, not one a request
            self.counting_locally = True
            self._next_try = time.monotonic() + REDIS_RETRY_S
        metrics.QUOTA_REDIS_FAILURES.inc()
        metrics.QUOTA_COUNTED_LOCALLY.set(1)
        log.warning("quotas: Redis failed (%s); counting in this worker until it answers", type(error).__name__)


class Access:
    """The keys and quotas of one app."""

    def __init__(self, config: dict[str, Any]):
        self.digests: tuple[str, ...] = config["NER_API_KEYS"]
        configured = zip(QUOTAS, (config["NER_RATE_LIMIT"], config["NER_TOKEN_RATE_LIMIT"]), strict=True)
        self.quotas: dict[str, RateLimitItem] = {quota: item for quota, item in configured if item is not None}
        self.trusted_proxies: int = config["NER_TRUSTED_PROXIES"]
        self.store = QuotaStore(config["REDIS_URL"])
        # The quota keys (a quota of a client) that this worker has seen used up,
        # until their windows end: counts only grow within a window, so this is exact.
        self._lock = threading.Lock()
        self.used_up = ExpiringMap()

    def check_request(self) -> None:
        """Before a guarded route: the key (401), then whether the client is
        known to have used up a quota (429, its body unread)."""
        if request.endpoint not in GUARDED_ENDPOINTS or request.method == "OPTIONS":
            return  # a CORS preflight carries no key
        g.ner_client = self.client()
        for quota in self.quotas:
            if self.used_up_until(quota) is not None:
                self.refuse(quota)  # counted as it is answered (add_headers)

    def client(self) -> str:
        """The key's id with keys on (401 without a valid one); else the client's address."""
        if not self.digests:
            return "address:" + client_address(request.environ, self.trusted_proxies)
        key = presented_key()
        if key is None:
            raise Unauthorized("an API key is required: Authorization: Bearer KEY, or X-API-Key: KEY",
                               www_authenticate=WWWAuthenticate("Bearer", {"realm": "ner"}))
        key_id = matching_key_id(key, self.digests)
        if key_id is None:
            raise Unauthorized("the API key is not valid", www_authenticate=WWWAuthenticate(
                "Bearer", {"realm": "ner", "error": "invalid_token"}))
        request.environ["ner.key_id"] = key_id  # for the access log (nerserve/server/gunicorn_config.py)
        return "key:" + key_id

    def quota_key(self, quota: str) -> str:
        return self.quotas[quota].key_for(quota.lower(), g.ner_client)

    def charge(self, tokens: int) -> str | None:
        """Count the request, and `tokens`, against the client's quotas, in one
        round trip; the quota that this takes it over, or None. Once a request:
        when app.py has counted the texts, else as it is answered (add_headers).
        Nothing is given back (the module's docstring says why)."""
        amounts = {"Requests": 1, "Tokens": tokens}
        charges = [(self.quota_key(quota), item.get_expiry(), amounts[quota]) for quota, item in self.quotas.items()]
        counts = dict(zip(self.quotas, self.store.add(charges), strict=True))
        g.ner_remaining = {quota: max(0, item.amount - counts[quota]) for quota, item in self.quotas.items()}
        for quota, item in self.quotas.items():
            if counts[quota] >= item.amount:
                self.remember_used_up(quota)
        return next((quota for quota, item in self.quotas.items()
                     if counts[quota] > item.amount and amounts[quota] > 0), None)

    def remember_used_up(self, quota: str) -> None:
        """Note that the client has nothing left of `quota` until its window ends
        (one more round trip, once a client, quota and window in a worker)."""
        if self.used_up_until(quota) is not None:
            return
        key = self.quota_key(quota)
        until = self.store.window_end(key)
        if until > time.time():  # else the window has just ended
            with self._lock:
                self.used_up.put(key, until, None)

    def used_up_until(self, quota: str) -> float | None:
        """When the window of a quota that the client has used up ends; None if not known used up."""
        with self._lock:
            entry = self.used_up.get(self.quota_key(quota))
        return entry[0] if entry else None

    def refuse(self, quota: str) -> NoReturn:
        """429 for a request over `quota`, with the seconds until its window ends."""
        until = self.used_up_until(quota) or self.store.window_end(self.quota_key(quota))
        raise TooManyRequests(f"over the {quota.lower()} quota of {self.quotas[quota]}",
                              retry_after=max(1, math.ceil(until - time.time())))

    def token_budget(self, max_tokens: int, chars: int) -> int:
        """The most tokens the request may be tokenized to: `max_tokens`, or the
        whole token quota where less. 413 over_token_quota_size, before any
        tokenizing, for texts whose `chars` alone cost more than the whole quota."""
        item = self.quotas.get("Tokens")
        if item is None:
            return max_tokens
        if tokens_charged(0, chars) > item.amount:
            self.refuse_over_token_quota_size(tokens_charged(0, chars))
        return min(max_tokens, item.amount)

    def refuse_over_token_quota_size(self, tokens: int) -> NoReturn:
        item = self.quotas["Tokens"]
        raise ApiError(413, "over_token_quota_size",
                       f"the request costs at least {tokens} tokens, more than the whole token quota of {item}, "
                       "so it can never be served; split it into smaller requests", tokens=tokens, limit=item.amount)

    def add_headers(self, response: Response) -> Response:
        """Each quota's limit and what is left of it, on every answer of a guarded
        route; a request that app.py did not count (an error before) is counted here."""
        if "ner_client" not in g:
            return response  # not guarded, or refused before a client was known (401)
        if "ner_remaining" not in g and self.quotas:
            self.charge(0)
        for quota, item in self.quotas.items():
            response.headers[f"X-RateLimit-Limit-{quota}"] = str(item.amount)
            response.headers[f"X-RateLimit-Remaining-{quota}"] = str(g.ner_remaining[quota])
        return response


def tokens_charged(tokens: int, chars: int) -> int:
    """What texts of `tokens` tokens and `chars` characters cost the token
    quota: their tokens, or a token per CHARACTERS_PER_TOKEN characters if more."""
    return max(tokens, chars // CHARACTERS_PER_TOKEN)


def presented_key() -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return request.headers.get("X-API-Key") or None


def matching_key_id(key: str, digests: tuple[str, ...]) -> str | None:
    """The id of the configured digest that `key` hashes to; every digest is compared, in constant time."""
    digest = hashlib.sha256(key.encode()).hexdigest()
    matched = None
    for known in digests:
        if hmac.compare_digest(digest, known):
            matched = known
    return matched[:KEY_ID_DIGITS] if matched else None


def client_address(environ: dict[str, Any], trusted_proxies: int) -> str:
    """The address that the last of `trusted_proxies` appended to X-Forwarded-For, as one client (normalised_address).

    Each proxy appends the address it was connected from, so the last
    `trusted_proxies` values were written by them; anything before, by the
    client. With fewer values than proxies, every value is a proxy's.
    """
    forwarded = [a.strip() for a in environ.get("HTTP_X_FORWARDED_FOR", "").split(",") if a.strip()]
    if trusted_proxies == 0 or not forwarded:
        return normalised_address(environ.get("REMOTE_ADDR", ""))
    return normalised_address(forwarded[-min(trusted_proxies, len(forwarded))])


def normalised_address(text: str) -> str:
    """One spelling a client, so that one client is one quota: an IPv4 address;
    an IPv4-mapped IPv6 address as IPv4 ("::ffff:192.0.2.1" is "192.0.2.1");
    other IPv6 addresses as their IPV6_CLIENT_PREFIX network, in its short
    lower-case form ("2001:DB8:0::1" and "2001:db8::2" are "2001:db8::/64").
    What is no IP address (a proxy that appends a port) is kept as written,
    cut short."""
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return text[:MAX_ADDRESS_CHARS]
    if isinstance(address, ipaddress.IPv4Address):
        return str(address)
    if address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(ipaddress.IPv6Network((address, IPV6_CLIENT_PREFIX), strict=False))


def init_app(app: Flask) -> None:
    access = Access(app.config)
    app.extensions["ner_access"] = access
    app.before_request(access.check_request)
    app.after_request(access.add_headers)


def _guarded_access() -> Access | None:
    """The app's Access where the request is a guarded one with quotas; else None."""
    access: Access = current_app.extensions["ner_access"]
    return access if access.quotas and "ner_client" in g else None


def token_budget(max_tokens: int, chars: int) -> int:
    """The most tokens the request's texts (`chars` characters) may be
    tokenized to: `max_tokens`, or the client's whole token quota where less;
    413 over_token_quota_size for texts whose characters cost more than that quota."""
    access = _guarded_access()
    return max_tokens if access is None else access.token_budget(max_tokens, chars)


def charge(tokens: int, chars: int) -> None:
    """Count the request and its texts (`tokens`, `chars`: tokens_charged)
    against its client's quotas: 429 over either. app.py calls it once the
    texts are tokenized, before they are tagged."""
    access = _guarded_access()
    if access is not None:
        over = access.charge(tokens_charged(tokens, chars))
        if over is not None:
            access.refuse(over)


def charge_refused(tokens: int, chars: int) -> None:
    """Count a request refused for its size once at least `tokens` tokens were
    counted in its texts (and `chars` read), with no 429: its 413 says more."""
    access = _guarded_access()
    if access is not None:
        access.charge(tokens_charged(tokens, chars))


def refuse_over_token_quota_size(tokens: int) -> NoReturn:
    """413 over_token_quota_size: the request costs at least `tokens`, more than the whole token quota."""
    access: Access = current_app.extensions["ner_access"]
    access.refuse_over_token_quota_size(tokens)
