"""The hub on its own: registry and delivery rules, no server, no I/O."""

from __future__ import annotations

from dataclasses import dataclass, field

from server.hub import Hub


@dataclass(eq=False)
class FakeClient:
    id: str
    user: str | None = None
    frames: list[bytes] = field(default_factory=list)

    def send(self, frame: bytes) -> None:
        self.frames.append(frame)


def test_first_and_last_subscriber():
    hub, a, b = Hub(), FakeClient("a"), FakeClient("b")
    hub.add_client(a)
    hub.add_client(b)
    assert hub.subscribe("ch", a, buffer=False) is True
    assert hub.subscribe("ch", b, buffer=False) is False
    assert hub.unsubscribe("ch", a) is False
    assert hub.unsubscribe("ch", b) is True
    assert hub.channels() == [] and hub.channel_count == 0


def test_broadcast_sends_the_same_frame_object_to_all():
    hub = Hub()
    clients = [FakeClient(str(i)) for i in range(5)]
    for c in clients:
        hub.add_client(c)
        hub.subscribe("ch", c, buffer=False)
    frame = b"frame"
    assert hub.broadcast("ch", 1, frame) == 5
    assert all(c.frames == [frame] and c.frames[0] is frame for c in clients)
    assert hub.broadcast("other", 1, frame) == 0


def test_broadcast_exclude():
    hub, a, b = Hub(), FakeClient("a"), FakeClient("b")
    for c in (a, b):
        hub.add_client(c)
        hub.subscribe("ch", c, buffer=False)
    assert hub.broadcast("ch", -1, b"join", exclude="a") == 1
    assert a.frames == [] and b.frames == [b"join"]


def test_buffer_holds_frames_until_release():
    hub, a = Hub(), FakeClient("a")
    hub.add_client(a)
    assert hub.subscribe("ch", a, buffer=True) is True
    hub.broadcast("ch", 7, b"p7")
    hub.broadcast("ch", -1, b"join")
    assert a.frames == []
    assert hub.release("ch", a) == [(7, b"p7"), (-1, b"join")]
    hub.broadcast("ch", 8, b"p8")
    assert a.frames == [b"p8"]
    assert hub.release("ch", a) == []


def test_remove_client_reports_emptied_channels():
    hub, a, b = Hub(), FakeClient("a", "u1"), FakeClient("b", "u1")
    for c in (a, b):
        hub.add_client(c)
    hub.subscribe("x", a, buffer=False)
    hub.subscribe("y", a, buffer=True)
    hub.subscribe("y", b, buffer=False)
    assert hub.subscription_count == 3
    assert sorted(hub.remove_client(a)) == ["x"]
    assert hub.client_count == 1 and hub.channels() == ["y"]
    assert hub.user_clients("u1") == [b]


def test_users():
    hub, a = Hub(), FakeClient("a")
    hub.add_client(a)
    assert hub.user_clients("u") == []
    hub.set_user(a, "u")
    assert hub.user_clients("u") == [a] and a.user == "u"
    hub.set_user(a, "v")
    assert hub.user_clients("u") == [] and hub.user_clients("v") == [a]
    hub.remove_client(a)
    assert hub.user_clients("v") == [] and hub.client(a.id) is None


def test_unsubscribe_unknown_is_harmless():
    hub, a = Hub(), FakeClient("a")
    hub.add_client(a)
    assert hub.unsubscribe("nothing", a) is False
    assert hub.is_subscribed("nothing", a) is False
    assert hub.subscriber_count("nothing") == 0


def test_subscribers_include_buffering_ones():
    hub, a, b, c = Hub(), FakeClient("a"), FakeClient("b"), FakeClient("c")
    for x in (a, b, c):
        hub.add_client(x)
    hub.subscribe("ch", a, buffer=False)
    hub.subscribe("ch", b, buffer=True)
    hub.subscribe("other", c, buffer=False)
    assert sorted(x.id for x in hub.subscribers("ch")) == ["a", "b"]
    assert hub.subscribers("none") == []


def test_a_buffer_that_overflows_ends_in_a_release_of_none() -> None:
    hub, a, b = Hub(max_buffered_bytes=100), FakeClient("a"), FakeClient("b")
    hub.add_client(a)
    hub.add_client(b)
    hub.subscribe("c", a, buffer=True)
    hub.subscribe("c", b, buffer=True)
    for offset in range(1, 5):
        hub.broadcast("c", offset, b"x" * 30)  # 120 bytes: over the limit at the fourth
    assert hub.release("c", a) is None  # a must recover from history instead
    hub.subscribe("d", b, buffer=True)
    hub.broadcast("d", 1, b"y" * 30)
    assert hub.release("d", b) == [(1, b"y" * 30)]
    assert hub.is_subscribed("c", a)  # still subscribed: the node ends it with a push
