"""How the threads of one worker share its model: a slice of tagging at a time,
the request with the least work left first.

Shortest remaining work first gives the least mean waiting time of any order
(Schrage, 1968), and a small request never waits for a whole heavy one: only
for the slice running when it arrives (nerserve.tagger.pipeline.SLICE_TOKENS, ~0.1 s).
A heavy request yields to smaller ones between its slices; it waits for good
only if smaller work keeps arriving faster than the worker tags it, when the
worker is over capacity whatever the order (and quotas, not order, are the cure).
"""

from __future__ import annotations

import heapq
import itertools
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager


class Abandoned(Exception):
    """A request dropped at its turn, before its next slice is tagged: why (its client left...)."""


def never_abandoned() -> str | None:
    return None


class ShortestWorkFirst:
    """Lets one slice run at a time; the next goes to the waiting request with
    the least work left (ties: the first to ask)."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._waiting: list[tuple[int, int]] = []  # a heap of (work left, arrival)
        self._arrivals = itertools.count()
        self._busy = False

    @contextmanager
    def turn(self, work_left: int, abandoned: Callable[[], str | None] = never_abandoned) -> Iterator[None]:
        """Wait for this request's turn to run one slice; `work_left` counts the
        request's tokens still to tag, this slice's included. At its turn,
        `abandoned()` says why the slice is no longer wanted (Abandoned), or None."""
        ticket = (work_left, next(self._arrivals))
        with self._condition:
            heapq.heappush(self._waiting, ticket)
            self._condition.wait_for(lambda: not self._busy and self._waiting[0] == ticket)
            heapq.heappop(self._waiting)
            self._busy = True
        try:
            reason = abandoned()
            if reason is not None:
                raise Abandoned(reason)
            yield
        finally:
            with self._condition:
                self._busy = False
                self._condition.notify_all()
