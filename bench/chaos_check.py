"""The chaos scenario's checker: what each fault did to acknowledged publications.

Why a checker of its own: switchboard_load/checker.py follows one subscription in O(1) per
delivery; here a subscriber lives through reconnects and `recovered: false` reports, and every
loss must be told apart as reported (the client was told `recovered: false` for that gap) or
silent, and charged to the fault during which the publication was acknowledged. It works on
plain records, after the run, so a unit test can feed it exactly the history it wants.

Per window (one fault, from its injection until the next one) it counts: publish attempts,
acknowledgements, refusals (by code) and publications never acknowledged (which are not lost);
acknowledged publications lost, lost silently, duplicated, reordered, delivered with another
publication's data at their position (`mismatched`) and positions acknowledged twice
(`reused`); `recovered: false` reports; and how long it took every subscriber to be live again.
"""

from __future__ import annotations

import bisect
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

#: Faults whose target is the whole promise: nothing lost, doubled, reordered, or reported lost.
STRICT = ("steady", "kill", "hup", "redis-data", "mongo")
#: Every subscriber must be live again this soon after each time it was cut off.
LIVE_TARGET_S = 10.0

Key = tuple[str, str, int]  # channel, epoch, offset


@dataclass(frozen=True, slots=True)
class Attempt:
    """One publish through the HTTP API: acknowledged (epoch and offset) or `error`."""

    pid: int
    channel: str
    sent: float
    epoch: str | None = None
    offset: int | None = None
    error: str | None = None  # a refusal's code, or "no_reply"

    @property
    def acked(self) -> bool:
        return self.error is None and self.offset is not None and self.epoch is not None


@dataclass(frozen=True, slots=True)
class Delivered:
    channel: str
    epoch: str
    offset: int
    pid: int
    at: float


@dataclass(frozen=True, slots=True)
class Report:
    """A resubscribe with `since` answered: `index` deliveries on the channel preceded it."""

    channel: str
    recovered: bool
    at: float
    index: int


@dataclass
class SubscriberLog:
    name: str
    channels: list[str]
    deliveries: dict[str, list[Delivered]] = field(default_factory=lambda: defaultdict(list))
    reports: dict[str, list[Report]] = field(default_factory=lambda: defaultdict(list))
    #: when it stopped being live: its connection went, or the server ended a subscription
    downs: list[float] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Window:
    fault: str
    run: int
    start: float
    end: float
    injection_s: float = 0.0


@dataclass
class Tally:
    fault: str
    run: int
    start: float
    injection_s: float
    attempts: int = 0
    acknowledged: int = 0
    refused: Counter[str] = field(default_factory=Counter)
    unacknowledged: int = 0
    #: refused or unanswered, yet delivered live to some subscriber (broadcast before stored)
    unacked_delivered: int = 0
    lost: set[int] = field(default_factory=set)
    lost_silent: set[int] = field(default_factory=set)
    lost_deliveries: int = 0
    duplicated: int = 0
    reordered: int = 0
    mismatched: int = 0
    reused: int = 0
    recovered_false: int = 0
    disconnects: int = 0
    live_again_s: float = 0.0
    not_live: int = 0
    examples: list[str] = field(default_factory=list)

    def note(self, text: str) -> None:
        if len(self.examples) < 5:
            self.examples.append(text)

    def document(self, t0: float) -> dict[str, Any]:
        return {
            "fault": self.fault,
            "run": self.run,
            "at_s": round(self.start - t0, 3),
            "injection_s": round(self.injection_s, 3),
            "attempts": self.attempts,
            "acknowledged": self.acknowledged,
            "refused": dict(sorted(self.refused.items())),
            "unacknowledged": self.unacknowledged,
            "unacked_delivered": self.unacked_delivered,
            "lost": len(self.lost),
            "lost_silent": len(self.lost_silent),
            "lost_deliveries": self.lost_deliveries,
            "duplicated": self.duplicated,
            "reordered": self.reordered,
            "mismatched": self.mismatched,
            "reused": self.reused,
            "recovered_false": self.recovered_false,
            "disconnects": self.disconnects,
            "live_again_s": round(self.live_again_s, 3),
            "not_live": self.not_live,
            "examples": self.examples,
        }


class _Windows:
    def __init__(self, windows: list[Window]) -> None:
        self.windows = sorted(windows, key=lambda w: w.start)
        self._starts = [w.start for w in self.windows]
        self.tallies = [Tally(w.fault, w.run, w.start, w.injection_s) for w in self.windows]

    def at(self, t: float) -> Tally | None:
        """The window holding time `t`; times after the last window belong to it."""
        i = bisect.bisect_right(self._starts, t) - 1
        return self.tallies[i] if i >= 0 else None


def check(
    attempts: list[Attempt], subscribers: list[SubscriberLog], windows: list[Window]
) -> list[dict[str, Any]]:
    """One report per window, in time order."""
    ws = _Windows(windows)
    t0 = ws.windows[0].start if ws.windows else 0.0
    acked = _count_attempts(attempts, ws)
    sent = {a.pid: a.sent for a in attempts}
    _unacked_delivered(attempts, subscribers, ws)
    for sub in subscribers:
        for channel in sub.channels:
            _check_channel(sub, channel, acked.get(channel, {}), sent, ws)
        _live_again(sub, sent, ws)
    return [t.document(t0) for t in ws.tallies]


def _count_attempts(
    attempts: list[Attempt], ws: _Windows
) -> dict[str, dict[tuple[str, int], Attempt]]:
    """Attempts by window; the acknowledged ones by channel and position."""
    acked: dict[str, dict[tuple[str, int], Attempt]] = defaultdict(dict)
    for a in attempts:
        tally = ws.at(a.sent)
        if tally is None:
            continue
        tally.attempts += 1
        if not a.acked:
            if a.error == "no_reply":
                tally.unacknowledged += 1
            else:
                tally.refused[a.error or "?"] += 1
            continue
        assert a.epoch is not None and a.offset is not None
        tally.acknowledged += 1
        first = acked[a.channel].setdefault((a.epoch, a.offset), a)
        if first is not a:
            tally.reused += 1
            tally.note(f"{a.channel}@{a.offset} acknowledged to publications {first.pid}, {a.pid}")
    return acked


def _unacked_delivered(
    attempts: list[Attempt], subscribers: list[SubscriberLog], ws: _Windows
) -> None:
    """Publications whose publisher was told no (or nothing) but which subscribers got."""
    delivered = {d.pid for s in subscribers for ds in s.deliveries.values() for d in ds}
    for a in attempts:
        if not a.acked and a.pid in delivered and (tally := ws.at(a.sent)) is not None:
            tally.unacked_delivered += 1


def _check_channel(
    sub: SubscriberLog,
    channel: str,
    acked: dict[tuple[str, int], Attempt],
    sent: dict[int, float],
    ws: _Windows,
) -> None:
    deliveries = sub.deliveries.get(channel, [])
    seen: set[tuple[str, int]] = set()
    highest: dict[str, int] = {}
    for d in deliveries:
        key = (d.epoch, d.offset)
        ack = acked.get(key)
        tally = ws.at(ack.sent if ack is not None else sent.get(d.pid, d.at))
        if tally is None:
            continue
        if key in seen:
            tally.duplicated += 1
            tally.note(f"{sub.name}: {channel}@{d.offset} delivered twice")
            continue
        seen.add(key)
        if d.offset < highest.get(d.epoch, 0):
            tally.reordered += 1
            tally.note(f"{sub.name}: {channel}@{d.offset} after @{highest[d.epoch]}")
        highest[d.epoch] = max(highest.get(d.epoch, 0), d.offset)
        if ack is not None and ack.pid != d.pid:
            tally.mismatched += 1
            tally.note(f"{sub.name}: {channel}@{d.offset} carried {d.pid}, acked {ack.pid}")
    reports = sorted(sub.reports.get(channel, []), key=lambda r: r.index)
    report_at = [r.index for r in reports]
    for report in reports:
        if not report.recovered and (tally := ws.at(report.at)) is not None:
            tally.recovered_false += 1
            tally.note(f"{sub.name}: {channel} recovered: false")
    for (epoch, offset), ack in acked.items():
        if (epoch, offset) in seen:
            continue
        tally = ws.at(ack.sent)
        if tally is None:
            continue
        tally.lost.add(ack.pid)
        tally.lost_deliveries += 1
        # The gap sits before the first delivery that comes after it; the first resubscribe
        # answered at or after that point is the one that had to cover it.
        gap = _gap_index(deliveries, epoch, offset)
        i = bisect.bisect_left(report_at, gap)
        if i == len(reports) or reports[i].recovered:
            tally.lost_silent.add(ack.pid)
            tally.note(f"{sub.name}: {channel}@{offset} lost silently")


def _gap_index(deliveries: list[Delivered], epoch: str, offset: int) -> int:
    """How many deliveries came before the place where `offset` of `epoch` belonged."""
    later_epoch = False
    for i, d in enumerate(deliveries):
        if d.epoch == epoch and d.offset > offset:
            return i
        if d.epoch != epoch and later_epoch:
            return i
        later_epoch = later_epoch or d.epoch == epoch
    return len(deliveries)


def _live_again(sub: SubscriberLog, sent: dict[int, float], ws: _Windows) -> None:
    """For each window: the longest time this subscriber waited, after the fault began or
    after it was cut off, for a publication sent since then to reach it on every channel."""
    for d in sub.downs:
        tally = ws.at(d)
        if tally is not None:
            tally.disconnects += 1
    for w, tally in zip(ws.windows, ws.tallies, strict=True):
        for t in [w.start] + [d for d in sub.downs if w.start <= d < w.end]:
            worst = 0.0
            for channel in sub.channels:
                reached = _first_sent_after(sub.deliveries.get(channel, []), sent, t)
                if reached is None:
                    tally.not_live += 1
                    tally.note(f"{sub.name}: {channel} never live again after {t - w.start:.1f}s")
                    break
                worst = max(worst, reached - t)
            tally.live_again_s = max(tally.live_again_s, worst)


def _first_sent_after(
    deliveries: list[Delivered], sent: dict[int, float], t: float
) -> float | None:
    """When the first publication sent at or after `t` arrived, if one did."""
    for i in range(bisect.bisect_left(deliveries, t, key=lambda d: d.at), len(deliveries)):
        if sent.get(deliveries[i].pid, -1.0) >= t:
            return deliveries[i].at
    return None


def missed_targets(report: dict[str, Any], live_target_s: float = LIVE_TARGET_S) -> list[str]:
    """What this window's report misses of the issue's targets (empty when all are met)."""
    where = f"run {report['run']} {report['fault']}"
    out = []
    counts = ["lost_silent", "duplicated", "reordered", "mismatched", "reused", "not_live"]
    if report["fault"] in STRICT:
        counts += ["lost", "recovered_false"]
    for name in counts:
        if report[name]:
            out.append(f"{where}: {name} = {report[name]}")
    if report["live_again_s"] > live_target_s:
        out.append(f"{where}: live again after {report['live_again_s']} s > {live_target_s} s")
    if not report["acknowledged"]:
        out.append(f"{where}: nothing was acknowledged, so nothing was checked")
    return out
