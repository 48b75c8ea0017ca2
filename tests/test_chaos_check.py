"""The chaos checker on histories written by hand: each breach is counted once, in the window of
the fault during which the publication was acknowledged, and a loss is silent unless the
resubscribe that had to cover it said `recovered: false`."""

from __future__ import annotations

from typing import Any

from bench.chaos_check import (
    Attempt,
    Delivered,
    Report,
    SubscriberLog,
    Window,
    check,
    missed_targets,
)

CH = "chaos:0"
WINDOWS = [Window("steady", 1, 0.0, 10.0), Window("kill", 1, 10.0, 20.0, 0.1)]


def acks(offsets: list[int], sent_at: float = 1.0, epoch: str = "E") -> list[Attempt]:
    """Publication `o` acknowledged at `o` on channel CH, sent at `sent_at + o / 100`."""
    return [Attempt(o, CH, sent_at + o / 100, epoch, o) for o in offsets]


def sub(offsets: list[int], at: float = 2.0, epoch: str = "E", name: str = "s") -> SubscriberLog:
    log = SubscriberLog(name, [CH])
    for i, o in enumerate(offsets):
        log.deliveries[CH].append(Delivered(CH, epoch, o, o, at + i / 100))
    return log


def by_fault(reports: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["fault"]: r for r in reports}


def test_a_clean_history_meets_every_target() -> None:
    reports = check(acks([1, 2, 3]), [sub([1, 2, 3]), sub([1, 2, 3], name="t")], WINDOWS[:1])
    (r,) = reports
    assert (r["acknowledged"], r["lost"], r["duplicated"], r["reordered"]) == (3, 0, 0, 0)
    assert missed_targets(r) == []


def test_a_silent_loss_a_duplicate_and_a_reordering_are_each_counted_once() -> None:
    (r,) = check(acks([1, 2, 3, 4, 5]), [sub([1, 3, 3, 5, 4])], WINDOWS[:1])
    assert (r["lost"], r["lost_silent"], r["lost_deliveries"]) == (1, 1, 1)
    assert r["duplicated"] == 1 and r["reordered"] == 1
    assert "s: chaos:0@2 lost silently" in r["examples"]
    assert any("lost_silent = 1" in m for m in missed_targets(r))


def test_a_loss_covered_by_recovered_false_is_reported_not_silent() -> None:
    log = sub([1, 2, 4])
    log.reports[CH].append(Report(CH, False, 2.5, index=2))  # answered before offset 4 came
    (r,) = check(acks([1, 2, 3, 4]), [log], WINDOWS[:1])
    assert (r["lost"], r["lost_silent"], r["recovered_false"]) == (1, 0, 1)
    # Still a miss where the target is the whole promise.
    assert {m.split(": ")[1] for m in missed_targets(r)} == {"lost = 1", "recovered_false = 1"}
    assert missed_targets({**r, "fault": "redis-empty"}) == []


def test_a_recovered_true_after_the_gap_does_not_excuse_it() -> None:
    log = sub([1, 2, 4])
    log.reports[CH].append(Report(CH, False, 2.0, index=0))  # an older gap, before offset 1
    log.reports[CH].append(Report(CH, True, 2.5, index=2))
    (r,) = check(acks([1, 2, 3, 4]), [log], WINDOWS[:1])
    assert r["lost_silent"] == 1


def test_losses_are_charged_to_the_window_of_their_acknowledgement() -> None:
    attempts = acks([1, 2]) + [Attempt(3, CH, 12.0, "E", 3), Attempt(4, CH, 12.5, "E", 4)]
    (steady, kill) = check(attempts, [sub([1, 2, 4])], WINDOWS)
    assert steady["lost"] == 0 and steady["acknowledged"] == 2
    assert kill["lost"] == 1 and kill["acknowledged"] == 2


def test_refused_and_unanswered_publications_are_counted_but_not_lost() -> None:
    attempts = acks([1, 2]) + [
        Attempt(10, CH, 3.0, error="unavailable"),
        Attempt(11, CH, 3.1, error="no_reply"),
    ]
    log = sub([1, 2])
    log.deliveries[CH].append(Delivered(CH, "E", 3, 10, 3.05))  # refused, yet broadcast
    (r,) = check(attempts, [log], WINDOWS[:1])
    assert r["refused"] == {"unavailable": 1} and r["unacknowledged"] == 1
    assert r["lost"] == 0 and r["attempts"] == 4
    assert r["unacked_delivered"] == 1 and r["mismatched"] == 0


def test_a_position_acknowledged_twice_and_delivered_with_other_data() -> None:
    attempts = acks([1, 2]) + [Attempt(7, CH, 3.0, "E", 2)]  # pid 7 also got offset 2
    log = sub([1])
    log.deliveries[CH].append(Delivered(CH, "E", 2, 7, 3.1))
    (r,) = check(attempts, [log], WINDOWS[:1])
    assert r["reused"] == 1 and r["mismatched"] == 1


def test_offsets_of_a_new_epoch_are_not_reorderings() -> None:
    attempts = acks([1, 2]) + acks([1, 2], sent_at=5.0, epoch="F")
    attempts = [Attempt(i, a.channel, a.sent, a.epoch, a.offset) for i, a in enumerate(attempts)]
    log = SubscriberLog("s", [CH])
    for i, (epoch, offset) in enumerate([("E", 1), ("E", 2), ("F", 1), ("F", 2)]):
        log.deliveries[CH].append(Delivered(CH, epoch, offset, i, 6.0 + i))
    (r,) = check(attempts, [log], WINDOWS[:1])
    assert (r["lost"], r["duplicated"], r["reordered"], r["mismatched"]) == (0, 0, 0, 0)


def test_live_again_is_measured_from_each_cut_off_to_the_first_newer_publication() -> None:
    attempts = [Attempt(o, CH, 10.0 + o / 10, "E", o) for o in range(1, 40)]
    log = SubscriberLog("s", [CH])
    for o in range(1, 40):  # delivered 50 ms after sending, except around the cut-off
        at = 10.0 + o / 10 + (0.05 if o < 15 or o > 22 else 2.5 - (o - 15) / 10)
        log.deliveries[CH].append(Delivered(CH, "E", o, o, at))
    log.downs.append(11.45)  # cut off; offset 15 (sent at 11.5) arrives at 14.0
    (_, kill) = check(attempts, [log], WINDOWS)
    assert kill["disconnects"] == 1
    assert abs(kill["live_again_s"] - (14.0 - 11.45)) < 1e-6


def test_a_subscriber_that_never_hears_again_is_not_live() -> None:
    attempts = [Attempt(o, CH, 10.0 + o / 10, "E", o) for o in range(1, 10)]
    log = sub([1, 2, 3], at=10.2)
    log.downs.append(10.35)
    (_, kill) = check(attempts, [log], WINDOWS)
    assert kill["not_live"] == 1
    assert any("not_live = 1" in m for m in missed_targets(kill))


def test_a_window_without_acknowledgements_checked_nothing() -> None:
    (r,) = check([Attempt(1, CH, 1.0, error="unavailable")], [sub([])], WINDOWS[:1])
    assert any("nothing was acknowledged" in m for m in missed_targets(r))
