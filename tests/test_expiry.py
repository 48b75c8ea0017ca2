"""Token expiries by the whole second: never early, at most a second late, one timer a second."""

from __future__ import annotations

import asyncio
import time

import pytest

from server.expiry import Expiries


class Watched:
    def __init__(self) -> None:
        self.at: float | None = None

    def expired(self) -> None:
        self.at = time.time()


@pytest.mark.asyncio
async def test_each_expires_within_the_second_after_its_time_never_before() -> None:
    expiries = Expiries()
    now = time.time()
    early, late = Watched(), Watched()
    due = now + 0.2
    expiries.watch(early, due)
    expiries.watch(late, now + 1.2)
    await asyncio.sleep(0.05)
    assert early.at is None and late.at is None
    deadline = time.monotonic() + 4
    while late.at is None and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    assert early.at is not None and late.at is not None
    assert due <= early.at < due + 1.2
    assert now + 1.2 <= late.at < now + 2.4
    assert len(expiries) == 0


@pytest.mark.asyncio
async def test_forgotten_never_expire_and_a_second_shares_one_timer() -> None:
    expiries = Expiries()
    at = time.time() + 0.1
    kept, dropped = Watched(), Watched()
    second = expiries.watch(kept, at)
    assert expiries.watch(dropped, at) == second
    assert len(asyncio.get_running_loop()._scheduled) == 1  # type: ignore[attr-defined]
    expiries.forget(dropped, second)
    assert len(expiries) == 1
    await asyncio.sleep(second - time.time() + 0.1)
    assert kept.at is not None and dropped.at is None
    expiries.forget(kept, second)  # after it fired: nothing to do


@pytest.mark.asyncio
async def test_forgetting_the_last_of_a_second_cancels_its_timer() -> None:
    expiries = Expiries()
    w = Watched()
    second = expiries.watch(w, time.time() + 30)
    expiries.forget(w, second)
    assert len(expiries) == 0
    assert all(h.cancelled() for h in asyncio.get_running_loop()._scheduled)  # type: ignore[attr-defined]
