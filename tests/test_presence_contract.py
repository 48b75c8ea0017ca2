"""The presence contract: the same test bodies over the in-memory and the Redis presences."""

from __future__ import annotations

import pytest

from server.presence.base import Presence


@pytest.mark.asyncio
async def test_added_clients_are_listed_until_removed(any_presence: Presence) -> None:
    assert await any_presence.get("room") == {}
    await any_presence.add("room", "c1", {"user": "u1", "name": "Ada"})
    await any_presence.add("room", "c2", {"user": None, "name": None})
    await any_presence.add("other", "c3", {"user": "u3", "name": "Cy"})
    assert await any_presence.get("room") == {
        "c1": {"user": "u1", "name": "Ada"},
        "c2": {"user": None, "name": None},
    }
    await any_presence.remove("room", "c1")
    await any_presence.remove("room", "never-added")
    assert await any_presence.get("room") == {"c2": {"user": None, "name": None}}
    assert await any_presence.get("other") == {"c3": {"user": "u3", "name": "Cy"}}


@pytest.mark.asyncio
async def test_adding_again_updates_the_entry(any_presence: Presence) -> None:
    await any_presence.add("room", "c1", {"user": "u1", "name": "Ada"})
    await any_presence.add("room", "c1", {"user": "u1", "name": "Ada L."})
    assert await any_presence.get("room") == {"c1": {"user": "u1", "name": "Ada L."}}


@pytest.mark.asyncio
async def test_removing_the_last_client_empties_the_channel(any_presence: Presence) -> None:
    await any_presence.add("room", "c1", {"user": "u1", "name": None})
    await any_presence.remove("room", "c1")
    assert await any_presence.get("room") == {}
