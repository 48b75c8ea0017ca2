"""The store contract: the same test bodies over the in-memory and the MongoDB store."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from server.position import Position
from server.store.base import VOID, Store, StoreConflict

pytestmark = pytest.mark.asyncio


def body(n: int) -> bytes:
    return orjson.dumps({"channel": "c", "data": n, "ts": 1})


async def fill(
    store: Store, channel: str, epoch: str, offsets: range, size: int = 100, ttl_s: float = 600
) -> None:
    await asyncio.gather(*(store.append(channel, epoch, o, body(o), size, ttl_s) for o in offsets))


async def test_history_forward_reverse_since_limit(any_store: Store) -> None:
    await fill(any_store, "c", "e1", range(1, 11))
    h = any_store.history
    assert [o for o, _ in await h("c", "e1", None, 100, False)] == list(range(1, 11))
    assert [o for o, _ in await h("c", "e1", None, 3, False)] == [1, 2, 3]
    assert [o for o, _ in await h("c", "e1", 7, 100, False)] == [8, 9, 10]
    assert [o for o, _ in await h("c", "e1", 4, 2, False)] == [5, 6]
    assert [o for o, _ in await h("c", "e1", None, 3, True)] == [10, 9, 8]
    assert [o for o, _ in await h("c", "e1", 4, 2, True)] == [10, 9]
    assert await h("c", "e1", 10, 100, False) == []
    assert await h("c", "other-epoch", None, 100, False) == []
    assert await h("unknown", "e1", None, 100, False) == []
    assert (await h("c", "e1", 2, 1, False))[0] == (3, body(3))


async def test_position_is_newest_stored(any_store: Store) -> None:
    assert await any_store.position("c") is None
    await fill(any_store, "c", "e1", range(1, 6))
    assert await any_store.position("c") == Position(5, "e1")
    assert await any_store.position("d") is None


async def test_any_json_body_survives_byte_for_byte(any_store: Store) -> None:
    raw = (
        b'{"channel":"c","data":{"$set":{"a.b":1},"big":123456789012345678901234567890,'
        b'"f":1.5e300,"s":"\\u0000\xc3\xa9"},"ts":1}'
    )
    await any_store.append("c", "e1", 1, raw, 10, 600)
    assert await any_store.history("c", "e1", None, 10, False) == [(1, raw)]


async def test_trimmed_to_history_size(any_store: Store) -> None:
    for o in range(1, 13):  # one by one and then in one burst: both paths trim
        await any_store.append("c", "e1", o, body(o), 5, 600)
    await fill(any_store, "c", "e1", range(13, 31), size=5)
    assert [o for o, _ in await any_store.history("c", "e1", None, 100, False)] == [
        26,
        27,
        28,
        29,
        30,
    ]
    assert await any_store.position("c") == Position(30, "e1")


async def test_expired_after_ttl(any_store: Store) -> None:
    await fill(any_store, "c", "e1", range(1, 4), ttl_s=0.4)
    await fill(any_store, "c", "e1", range(4, 6), ttl_s=600)
    await asyncio.sleep(0.6)
    assert [o for o, _ in await any_store.history("c", "e1", None, 100, False)] == [4, 5]
    await fill(any_store, "d", "e1", range(1, 3), ttl_s=0.3)
    await asyncio.sleep(0.5)
    assert await any_store.history("d", "e1", None, 100, False) == []
    assert await any_store.position("d") is None


async def test_new_epoch_drops_old(any_store: Store) -> None:
    await fill(any_store, "c", "e1", range(1, 8))
    await any_store.append("c", "e2", 1, body(100), 100, 600)
    assert await any_store.position("c") == Position(1, "e2")
    assert await any_store.history("c", "e1", None, 100, False) == []
    assert await any_store.history("c", "e2", None, 100, False) == [(1, body(100))]
    await fill(any_store, "c", "e2", range(2, 4))
    assert [o for o, _ in await any_store.history("c", "e2", None, 100, False)] == [1, 2, 3]


async def test_channels_are_independent(any_store: Store) -> None:
    await fill(any_store, "a", "e1", range(1, 4), size=2)
    await fill(any_store, "b", "e9", range(1, 6), size=10)
    assert [o for o, _ in await any_store.history("a", "e1", None, 10, False)] == [2, 3]
    assert [o for o, _ in await any_store.history("b", "e9", None, 10, False)] == [1, 2, 3, 4, 5]


async def test_void_offsets_are_kept_apart_from_history(any_store: Store) -> None:
    await fill(any_store, "c", "e1", range(1, 4))
    await fill(any_store, "c", "e1", range(6, 8))
    await any_store.void("c", "e1", [2, 4, 5], 600)  # 2 is stored already: it stays
    assert await any_store.span("c", "e1", 1, 7) == [
        (1, body(1)),
        (2, body(2)),
        (3, body(3)),
        (4, VOID),
        (5, VOID),
        (6, body(6)),
        (7, body(7)),
    ]
    assert await any_store.span("c", "e1", 4, 6) == [(4, VOID), (5, VOID), (6, body(6))]
    assert [o for o, _ in await any_store.history("c", "e1", None, 100, False)] == [1, 2, 3, 6, 7]
    assert [o for o, _ in await any_store.history("c", "e1", 2, 2, False)] == [3, 6]
    assert await any_store.lowest("c", "e1") == 1
    assert await any_store.lowest("c", "other") is None
    assert await any_store.position("c") == Position(7, "e1")


async def test_a_void_offset_refuses_its_late_publication(any_store: Store) -> None:
    await fill(any_store, "c", "e1", range(1, 3))
    await any_store.void("c", "e1", [3], 600)
    with pytest.raises(StoreConflict):
        await any_store.append("c", "e1", 3, body(3), 100, 600)
    await any_store.append("c", "e1", 4, body(4), 100, 600)  # the batch's others are kept
    await any_store.append("c", "e1", 2, body(2), 100, 600)  # a retried one still succeeds
    assert [o for o, _ in await any_store.history("c", "e1", None, 100, False)] == [1, 2, 4]


async def test_a_run_appended_together_refuses_only_its_void_offsets(any_store: Store) -> None:
    """append_many (the sequencer stores a run of publications at once): the void offsets are
    refused by their index in the run, the others kept, a retried one among them too."""
    await fill(any_store, "c", "e1", range(1, 3))
    await any_store.void("c", "e1", [4, 6], 600)
    run = [(o, body(o)) for o in range(2, 8)]  # 2 is stored already
    refused = await any_store.append_many("c", "e1", run, 100, 600)
    assert sorted(refused) == [2, 4]  # offsets 4 and 6
    assert all(isinstance(error, StoreConflict) for error in refused.values())
    kept = await any_store.history("c", "e1", None, 100, False)
    assert [o for o, _ in kept] == [1, 2, 3, 5, 7]
    assert dict(kept)[5] == body(5)


async def test_a_void_and_a_publication_racing_keep_exactly_one(any_store: Store) -> None:
    await fill(any_store, "c", "e1", range(1, 2))
    outcomes = await asyncio.gather(
        *(any_store.append("c", "e1", o, body(o), 100, 600) for o in range(2, 40)),
        any_store.void("c", "e1", list(range(2, 40, 3)), 600),
        return_exceptions=True,
    )
    acked = {o for o, r in zip(range(2, 40), outcomes, strict=False) if r is None}
    refused = {o for o, r in zip(range(2, 40), outcomes, strict=False) if r is not None}
    assert all(isinstance(outcomes[o - 2], StoreConflict) for o in refused)
    kept = dict(await any_store.span("c", "e1", 2, 39))
    assert sorted(kept) == list(range(2, 40))
    assert {o for o, b in kept.items() if b is not VOID} == acked


async def test_a_claim_reserves_then_voids_or_is_given_up(any_store: Store) -> None:
    """A seed's claim: the reservation holds at once; settling it True makes the offsets still
    unstored void, False leaves them free for publications."""
    await fill(any_store, "c", "e1", range(1, 3))
    settle = await any_store.claim("c", "e1", [3, 4, 5], 600)
    assert await any_store.position("c") == Position(5, "e1")
    await any_store.append("c", "e1", 3, body(3), 100, 600)  # stored before the void is made
    await settle(True)
    assert await any_store.span("c", "e1", 1, 5) == [
        (o, VOID if o in (4, 5) else body(o)) for o in range(1, 6)
    ]
    given_up = await any_store.claim("c", "e1", [6, 7], 600)
    await given_up(False)
    await any_store.append("c", "e1", 6, body(6), 100, 600)
    assert [o for o, _ in await any_store.history("c", "e1", None, 10, False)] == [1, 2, 3, 6]
    assert await any_store.position("c") == Position(7, "e1")


async def test_position_counts_reservations_of_its_epoch(any_store: Store) -> None:
    assert await any_store.position("c") is None
    await fill(any_store, "c", "e1", range(1, 4))
    await any_store.reserve("c", "e1", 50)
    await any_store.reserve("c", "e1", 20)  # never lowers it
    await any_store.reserve("c", "e2", 90)  # not the channel's epoch
    assert await any_store.position("c") == Position(50, "e1")
    await any_store.append("c", "e1", 60, body(60), 100, 600)
    assert await any_store.position("c") == Position(60, "e1")


async def test_users_upsert_and_get(any_store: Store) -> None:
    u1 = await any_store.upsert_user("github", "42", "Ada", None)
    u2 = await any_store.upsert_user("github", "42", "Ada L.", "https://a/x.png")
    other = await any_store.upsert_user("google", "42", "Someone", None)
    assert u1.id == u2.id != other.id
    assert await any_store.get_user(u1.id) == u2
    assert u2.name == "Ada L." and u2.avatar == "https://a/x.png" and u2.provider == "github"
    assert await any_store.get_user("nobody") is None


async def test_concurrent_upserts_of_one_identity_make_one_user(any_store: Store) -> None:
    users = await asyncio.gather(
        *(any_store.upsert_user("oidc", "sub-1", f"n{i}", None) for i in range(20))
    )
    assert len({u.id for u in users}) == 1


async def test_sessions(any_store: Store) -> None:
    user = await any_store.upsert_user("github", "7", "Bo", None)
    s = await any_store.create_session(user.id, 600)
    got = await any_store.get_session(s.id)
    assert got is not None and got.user_id == user.id
    assert got.expires_at == pytest.approx(s.expires_at, abs=0.01)
    assert await any_store.get_session("nope") is None
    deleted = await any_store.delete_session(s.id)
    assert deleted is not None and deleted.id == s.id
    assert await any_store.get_session(s.id) is None
    assert await any_store.delete_session(s.id) is None


async def test_session_expires(any_store: Store) -> None:
    s = await any_store.create_session("u1", 0.3)
    assert await any_store.get_session(s.id) is not None
    await asyncio.sleep(0.5)
    assert await any_store.get_session(s.id) is None


async def test_check_passes_when_reachable(any_store: Store) -> None:
    await any_store.check()
