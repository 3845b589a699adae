"""The scheduler of one worker's tagging (nerserve/web/scheduler.py): a slice at a time,
the least work first, and a request dropped at its turn once it is no longer wanted."""

from __future__ import annotations

import threading

import pytest

from nerserve.web.scheduler import Abandoned, ShortestWorkFirst


def test_a_request_no_longer_wanted_is_dropped_at_its_turn_and_the_turn_passes_on():
    scheduler = ShortestWorkFirst()
    ran = []
    with pytest.raises(Abandoned, match="its client left"), scheduler.turn(10, abandoned=lambda: "its client left"):
        ran.append("dropped")
    with scheduler.turn(10):  # the turn was given back
        ran.append("next")
    assert ran == ["next"]


def test_the_waiting_request_with_the_least_work_left_goes_first():
    scheduler = ShortestWorkFirst()
    order = []
    waiting = threading.Event()  # only to sleep on

    def run(work: int) -> None:
        with scheduler.turn(work):
            order.append(work)

    with scheduler.turn(1):
        threads = [threading.Thread(target=run, args=(work,)) for work in (300, 100, 200)]
        for thread in threads:
            thread.start()
        for _ in range(1000):  # every one waits its turn (10 s at most)
            if len(scheduler._waiting) == 3:
                break
            waiting.wait(0.01)
    for thread in threads:
        thread.join(10)
    assert order == [100, 200, 300]
