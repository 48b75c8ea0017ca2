"""server/ws/parser.py and frame.py on crafted byte streams (RFC 6455 §5, §7.4, §8.1)."""

from __future__ import annotations

import os
import struct

import pytest

from server.ws import frame as wsframe
from server.ws.frame import ProtocolViolation
from server.ws.parser import FrameParser
from tests.ws_support import frame

MAX = 1000


def drain(parser: FrameParser) -> list[tuple[int, bytes]]:
    out = []
    while (msg := parser.next()) is not None:
        out.append(msg)
    return out


def parse_in_pieces(stream: bytes, cuts: list[int], max_size: int = MAX) -> list[tuple[int, bytes]]:
    parser = FrameParser(max_size)
    out: list[tuple[int, bytes]] = []
    last = 0
    for cut in [*cuts, len(stream)]:
        parser.feed(stream[last:cut])
        out += drain(parser)
        last = cut
    assert parser.buffered == 0
    return out


def violation(data: bytes, max_size: int = MAX) -> ProtocolViolation:
    parser = FrameParser(max_size)
    parser.feed(data)
    with pytest.raises(ProtocolViolation) as info:
        drain(parser)
    return info.value


# -- framing -----------------------------------------------------------------------------------

STREAM = (
    frame(0x1, b"hello")
    + frame(0x2, b"\x00\xff" * 100)  # 16-bit length
    + frame(0x9, b"ping!")
    + frame(0x1, b"")
    + frame(0xA, b"")
    + frame(0x1, "héllo".encode(), fin=False)
    + frame(0x9, b"between")
    + frame(0x0, b" wor", fin=False)
    + frame(0x0, b"ld")
    + frame(0x2, b"\x01", fin=False)
    + frame(0x0, b"\xff")
    + frame(0x8, b"\x03\xe8bye")
)
MESSAGES = [
    (0x1, b"hello"),
    (0x2, b"\x00\xff" * 100),
    (0x9, b"ping!"),
    (0x1, b""),
    (0xA, b""),
    (0x9, b"between"),
    (0x1, "héllo world".encode()),
    (0x2, b"\x01\xff"),
    (0x8, b"\x03\xe8bye"),
]


def test_all_frames_in_one_chunk() -> None:
    assert parse_in_pieces(STREAM, []) == MESSAGES


@pytest.mark.parametrize("cut", range(1, len(STREAM)))
def test_split_at_every_byte_boundary(cut: int) -> None:
    assert parse_in_pieces(STREAM, [cut]) == MESSAGES


def test_fed_one_byte_at_a_time() -> None:
    assert parse_in_pieces(STREAM, list(range(1, len(STREAM)))) == MESSAGES


def test_idle_parser_keeps_no_buffer() -> None:
    parser = FrameParser(MAX)
    parser.feed(frame(0x1, b"a") + frame(0x1, b"b")[:3])
    assert drain(parser) == [(0x1, b"a")]
    assert parser.buffered == 3
    parser.feed(frame(0x1, b"b")[3:])
    assert drain(parser) == [(0x1, b"b")]
    assert parser.buffered == 0 and parser._buf == b""


@pytest.mark.parametrize("mask", [b"\x00\x00\x00\x00", b"\xff\xff\xff\xff", os.urandom(4)])
def test_every_mask_unmasks(mask: bytes) -> None:
    payload = bytes(range(256)) * 3
    assert parse_in_pieces(frame(0x2, payload, mask=mask), [7, 100, 101]) == [(0x2, payload)]


def test_unmasked_frame_is_a_protocol_error() -> None:
    assert violation(frame(0x1, b"hi", mask=None)).code == 1002
    assert violation(b"\x81\x00").code == 1002  # even an empty one
    assert violation(frame(0x9, b"", mask=None)).code == 1002


# -- payload lengths: 7, 16 and 64 bits, shortest form only (§5.2) -----------------------------


@pytest.mark.parametrize("n", [0, 125, 126, 127, 65535, 65536, 65537, 100_000])
def test_lengths_at_each_encoding_boundary(n: int) -> None:
    payload = os.urandom(n)
    data = frame(0x2, payload)
    assert data[1] & 0x7F == (n if n < 126 else 126 if n < 65536 else 127)
    assert parse_in_pieces(data, [1, 2, 3, 5, 9, 11, 14], max_size=10**6) == [(0x2, payload)]


@pytest.mark.parametrize(
    "length",
    [
        b"\x7e" + struct.pack("!H", 125),  # 16 bits for what fits 7
        b"\x7e" + struct.pack("!H", 0),
        b"\x7f" + struct.pack("!Q", 65535),  # 64 bits for what fits 16
        b"\x7f" + struct.pack("!Q", 125),
    ],
)
def test_length_not_in_shortest_form_is_refused(length: bytes) -> None:
    n = int.from_bytes(length[1:], "big")
    exc = violation(frame(0x2, b"x" * n, length=length), max_size=10**6)
    assert exc.code == 1002 and "shortest" in exc.reason


def test_64_bit_length_with_its_top_bit_set_is_refused_on_the_header() -> None:
    head = frame(0x2, b"", length=b"\x7f" + struct.pack("!Q", 1 << 63))
    assert violation(head, max_size=2**64).code == 1002


def test_largest_64_bit_length_is_too_big_on_the_header() -> None:
    head = frame(0x2, b"", length=b"\x7f" + struct.pack("!Q", (1 << 63) - 1))
    assert violation(head).code == 1009


def test_oversize_fails_on_the_header_alone() -> None:
    header = frame(0x1, b"x" * (MAX + 1))[:4]  # 16-bit length, no mask, no payload yet
    assert violation(header).code == 1009


def test_oversize_counts_the_fragments_so_far() -> None:
    data = frame(0x1, b"x" * 600, fin=False) + frame(0x0, b"y" * 401)[:4]
    assert violation(data).code == 1009


def test_message_at_the_limit_passes() -> None:
    parser = FrameParser(MAX)
    parser.feed(frame(0x1, b"x" * 600, fin=False) + frame(0x0, b"y" * 400))
    assert drain(parser) == [(0x1, b"x" * 600 + b"y" * 400)]
    parser.feed(frame(0x2, b"z" * MAX))
    assert drain(parser) == [(0x2, b"z" * MAX)]


# -- reserved bits and opcodes, control frames, fragmentation ---------------------------------


@pytest.mark.parametrize(
    "data",
    [
        *(frame(0x1, b"x", rsv=rsv) for rsv in (0x40, 0x20, 0x10, 0x70)),
        *(frame(op, b"x") for op in (0x3, 0x4, 0x5, 0x6, 0x7)),  # reserved data opcodes
        *(frame(op, b"x") for op in (0xB, 0xC, 0xD, 0xE, 0xF)),  # reserved control opcodes
        frame(0x9, b"x", fin=False),  # fragmented control frame
        frame(0x9, b"x" * 126),  # control frame over 125 bytes
        frame(0x8, b"\x03\xe8" + b"x" * 124),  # close frame over 125 bytes
        frame(0x0, b"x"),  # continuation of nothing
        frame(0x1, b"a", fin=False) + frame(0x1, b"b"),  # a new message inside a fragmented one
        frame(0x2, b"a", fin=False) + frame(0x2, b"b", fin=False),
    ],
)
def test_malformed_frames_fail_with_1002(data: bytes) -> None:
    assert violation(data).code == 1002


def test_reserved_opcode_fails_on_the_header() -> None:
    assert violation(frame(0x3, b"x" * 500)[:2]).code == 1002


def test_control_frames_of_125_bytes_pass() -> None:
    stream = frame(0x9, b"p" * 125) + frame(0xA, b"q" * 125) + frame(0x8, b"\x03\xe8" + b"r" * 123)
    assert parse_in_pieces(stream, [3, 130]) == [
        (0x9, b"p" * 125),
        (0xA, b"q" * 125),
        (0x8, b"\x03\xe8" + b"r" * 123),
    ]


def test_control_frames_between_fragments_come_first() -> None:
    stream = (
        frame(0x2, b"a", fin=False)
        + frame(0x9, b"1")
        + frame(0x0, b"b", fin=False)
        + frame(0xA, b"2")
        + frame(0x0, b"", fin=False)
        + frame(0x9, b"3")
        + frame(0x0, b"c")
    )
    assert parse_in_pieces(stream, []) == [
        (0x9, b"1"),
        (0xA, b"2"),
        (0x9, b"3"),
        (0x2, b"abc"),
    ]


# -- UTF-8, checked as it arrives (§8.1) --------------------------------------------------------

KOSME = "κόσμε".encode()


def test_an_invalid_fragment_fails_before_the_message_ends() -> None:
    parser = FrameParser(MAX)
    parser.feed(frame(0x1, KOSME, fin=False))
    assert drain(parser) == []
    parser.feed(frame(0x0, b"\xf4\x90\x80\x80", fin=False))  # U+110000: out of range
    with pytest.raises(ProtocolViolation) as info:
        drain(parser)
    assert info.value.code == 1007


@pytest.mark.parametrize("second", [b"\x90", b"\xed\xa0", b"\xc0", b"\x80", b"\xe0\x80"], ids=repr)
def test_invalid_sequence_split_across_fragments(second: bytes) -> None:
    parser = FrameParser(MAX)
    parser.feed(frame(0x1, KOSME + b"\xf4" if second == b"\x90" else KOSME, fin=False))
    assert drain(parser) == []  # a valid prefix so far
    parser.feed(frame(0x0, second, fin=False))
    with pytest.raises(ProtocolViolation) as info:
        drain(parser)
    assert info.value.code == 1007


def test_a_sequence_split_across_fragments_is_valid() -> None:
    euro = "€".encode()  # three bytes
    stream = (
        frame(0x1, euro[:1], fin=False) + frame(0x0, euro[1:2], fin=False) + frame(0x0, euro[2:])
    )
    assert parse_in_pieces(stream, []) == [(0x1, euro)]


def test_a_message_ending_inside_a_sequence_fails() -> None:
    stream = frame(0x1, KOSME, fin=False) + frame(0x0, b"\xe2\x82")
    assert violation(stream).code == 1007


def test_invalid_utf8_fails_before_the_rest_of_its_frame_arrives() -> None:
    payload = KOSME + b"\xf4\x90\x80\x80" + b"x" * 200
    data = frame(0x1, payload)
    valid = len(data) - len(payload) + len(KOSME)  # header, mask and the valid part
    parser = FrameParser(MAX)
    parser.feed(data[:valid])
    assert drain(parser) == []
    parser.feed(data[valid : valid + 2])
    with pytest.raises(ProtocolViolation) as info:
        drain(parser)
    assert info.value.code == 1007


def test_text_arriving_in_pieces_keeps_the_mask_aligned() -> None:
    text = ("ascii, κόσμε, € and 𝄞 " * 40).encode()
    data = frame(0x1, text, fin=False) + frame(0x0, text)
    cuts = list(range(3, len(data), 7))
    assert parse_in_pieces(data, cuts, max_size=10**5) == [(0x1, text + text)]


def test_binary_is_not_checked() -> None:
    assert parse_in_pieces(frame(0x2, b"\xff\xfe", fin=False) + frame(0x0, b"\xc0"), [5]) == [
        (0x2, b"\xff\xfe\xc0")
    ]


# -- close frames (§5.5.1, §7.4) ------------------------------------------------------------------

#: Every range of §7.4.1 and §7.4.2 and the IANA registry: (code, may a peer send it).
CLOSE_CODES = [
    (0, False),
    (999, False),  # 0-999: not used
    (1000, True),
    (1001, True),
    (1002, True),
    (1003, True),
    (1004, False),  # reserved
    (1005, False),  # no status: never on the wire
    (1006, False),  # abnormal closure: never on the wire
    (1007, True),
    (1008, True),
    (1009, True),
    (1010, True),
    (1011, True),
    (1012, True),  # IANA: service restart
    (1013, True),  # IANA: try again later
    (1014, True),  # IANA: bad gateway
    (1015, False),  # TLS handshake: never on the wire
    (1016, False),
    (1100, False),
    (2000, False),
    (2999, False),  # 1016-2999: reserved for this protocol, unassigned
    (3000, True),
    (3999, True),  # registered with IANA
    (4000, True),
    (4999, True),  # private use
    (5000, False),
    (65535, False),
]


@pytest.mark.parametrize("code, allowed", CLOSE_CODES)
def test_close_code_ranges(code: int, allowed: bool) -> None:
    assert wsframe.valid_close_code(code) is allowed
    payload = struct.pack("!H", code) + b"reason"
    if allowed:
        assert wsframe.parse_close(payload) == (code, "reason")
    else:
        with pytest.raises(ProtocolViolation) as info:
            wsframe.parse_close(payload)
        assert info.value.code == 1002


def test_close_payloads() -> None:
    assert wsframe.parse_close(b"") == (None, None)
    assert wsframe.parse_close(b"\x03\xe8") == (1000, "")
    with pytest.raises(ProtocolViolation) as info:
        wsframe.parse_close(b"\x03")
    assert info.value.code == 1002
    with pytest.raises(ProtocolViolation) as info:
        wsframe.parse_close(b"\x03\xe8\xce\xba\xff")
    assert info.value.code == 1007


def test_close_frames_we_send() -> None:
    assert wsframe.close(None) == b"\x88\x00"
    assert wsframe.close(4009, "client too slow") == b"\x88\x11\x0f\xa9client too slow"
    long = wsframe.close(1000, "é" * 100)  # 200 bytes of reason: cut on a character boundary
    assert len(long) == 2 + 2 + 122 and long[4:].decode() == "é" * 61


@pytest.mark.parametrize("n", [0, 125, 126, 65535, 65536])
def test_frames_we_send_use_the_shortest_length(n: int) -> None:
    payload = b"x" * n
    for data, opcode in ((wsframe.text(payload), 0x1), (wsframe.encode(0x2, payload), 0x2)):
        parser = FrameParser(10**6)
        masked = bytes([data[0], data[1] | 0x80]) + data[2 : len(data) - n] + b"\0\0\0\0" + payload
        parser.feed(masked)
        assert drain(parser) == [(opcode, payload)]
