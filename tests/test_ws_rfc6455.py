"""RFC 6455 over raw sockets, against the echo endpoint on the production transport.

The case list of an independent conformance suite (tools/conformance.py runs one), written out
here so that it runs with the suite: framing, lengths, masking, reserved bits and opcodes,
control frames, fragmentation, UTF-8, close codes and the closing handshake.
"""

from __future__ import annotations

import os
import struct

import pytest

from tests.test_ws_parser import CLOSE_CODES, KOSME
from tests.ws_support import Echo, close_frame, echo_server, frame, send

pytestmark = pytest.mark.asyncio


async def echoes(echo: Echo, data: bytes, expected: list[tuple[int, bytes]]) -> None:
    """Send `data`, read `expected` back, then close cleanly."""
    sock, frames = await echo.open()
    try:
        await send(sock, data)
        for want in expected:
            assert await frames.next() == want
        await send(sock, close_frame(1000))
        assert await frames.close() == b"\x03\xe8"
    finally:
        sock.close()


async def fails(
    echo: Echo, data: bytes, code: int, before: list[tuple[int, bytes]] | None = None
) -> bytes:
    """Send `data`; the server echoes `before`, then closes with `code` and ends TCP."""
    sock, frames = await echo.open()
    try:
        await send(sock, data)
        for want in before or []:
            assert await frames.next() == want
        payload = await frames.close()
        assert struct.unpack("!H", payload[:2])[0] == code, payload
        return payload[2:]
    finally:
        sock.close()


async def test_text_and_binary_echo_and_every_mask() -> None:
    async with echo_server() as echo:
        text = "κόσμε €".encode()
        await echoes(
            echo,
            frame(0x1, text)
            + frame(0x2, bytes(range(256)), mask=b"\0\0\0\0")
            + frame(0x2, b"\xff" * 9, mask=b"\xff\xff\xff\xff")
            + frame(0x1, b""),
            [(0x1, text), (0x2, bytes(range(256))), (0x2, b"\xff" * 9), (0x1, b"")],
        )


async def test_unmasked_client_frames_fail_with_1002() -> None:
    async with echo_server() as echo:
        await fails(echo, frame(0x1, b"hi", mask=None), 1002)
        await fails(echo, frame(0x9, b"", mask=None), 1002)


# -- lengths -------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [125, 126, 65535, 65536])
async def test_lengths_at_each_encoding_boundary(n: int) -> None:
    payload = os.urandom(n)
    async with echo_server() as echo:
        await echoes(echo, frame(0x2, payload), [(0x2, payload)])


async def test_a_message_of_exactly_the_limit_passes_and_one_byte_more_fails_on_its_header() -> (
    None
):
    async with echo_server(65536) as echo:
        await echoes(echo, frame(0x2, b"x" * 65536), [(0x2, b"x" * 65536)])
        await fails(echo, frame(0x2, b"x" * 65537)[:10], 1009)
        await fails(echo, frame(0x1, b"x" * 40000, fin=False) + frame(0x0, b"y" * 25537)[:10], 1009)


@pytest.mark.parametrize(
    "length, code",
    [
        (b"\x7e" + struct.pack("!H", 100), 1002),  # not the shortest form
        (b"\x7f" + struct.pack("!Q", 60000), 1002),
        (b"\x7f" + struct.pack("!Q", 1 << 63), 1002),  # the top bit must be 0
        (b"\x7f" + struct.pack("!Q", (1 << 63) - 1), 1009),
        (b"\x7f" + struct.pack("!Q", 1 << 32), 1009),
    ],
)
async def test_64_bit_and_16_bit_length_edges(length: bytes, code: int) -> None:
    async with echo_server() as echo:
        await fails(echo, frame(0x2, b"", length=length), code)


async def test_16_mib_messages_in_one_frame_and_in_fragments() -> None:
    size = 16 << 20
    payload = os.urandom(size)
    async with echo_server(size) as echo:
        sock, frames = await echo.open()
        try:
            await send(sock, frame(0x2, payload))
            assert await frames.next(timeout=30) == (0x2, payload)
            quarter = size // 4
            parts = [payload[i : i + quarter] for i in range(0, size, quarter)]
            await send(
                sock,
                frame(0x2, parts[0], fin=False)
                + frame(0x0, parts[1], fin=False)
                + frame(0x9, b"in between")
                + frame(0x0, parts[2], fin=False)
                + frame(0x0, parts[3]),
            )
            assert await frames.next(timeout=30) == (0xA, b"in between")
            assert await frames.next(timeout=30) == (0x2, payload)
            await send(sock, frame(0x2, b"x" * (size + 1))[:10])
            assert await frames.close() == struct.pack("!H", 1009) + b"message too big"
        finally:
            sock.close()


# -- reserved bits and opcodes -------------------------------------------------------------------


@pytest.mark.parametrize("rsv", [0x40, 0x20, 0x10, 0x70])
async def test_reserved_bits_fail_with_1002(rsv: int) -> None:
    async with echo_server() as echo:
        await fails(echo, frame(0x1, b"hi", rsv=rsv), 1002)
        await fails(echo, frame(0x9, b"", rsv=rsv), 1002)


@pytest.mark.parametrize("opcode", [0x3, 0x4, 0x5, 0x6, 0x7, 0xB, 0xC, 0xD, 0xE, 0xF])
async def test_reserved_opcodes_fail_with_1002(opcode: int) -> None:
    async with echo_server() as echo:
        data = frame(0x1, b"before") + frame(opcode, b"x") + frame(0x1, b"after")
        reason = await fails(echo, data, 1002, before=[(0x1, b"before")])
        assert reason == f"reserved opcode {opcode}".encode()


# -- control frames ----------------------------------------------------------------------------


async def test_control_frames_carry_up_to_125_bytes() -> None:
    async with echo_server() as echo:
        await echoes(echo, frame(0x9, b"p" * 125) + frame(0xA, b"q" * 125), [(0xA, b"p" * 125)])
        await fails(echo, frame(0x9, b"p" * 126), 1002)
        await fails(echo, frame(0xA, b"q" * 126), 1002)
        await fails(echo, frame(0x8, b"\x03\xe8" + b"r" * 124), 1002)
        sock, frames = await echo.open()
        await send(sock, frame(0x8, b"\x03\xe8" + b"r" * 123))  # 125 bytes: a valid close
        assert await frames.close() == b"\x03\xe8"
        sock.close()


async def test_fragmented_control_frames_fail_with_1002() -> None:
    async with echo_server() as echo:
        await fails(echo, frame(0x9, b"a", fin=False) + frame(0x0, b"b"), 1002)


async def test_fragments_with_control_frames_between_them() -> None:
    async with echo_server() as echo:
        await echoes(
            echo,
            frame(0x1, b"frag", fin=False)
            + frame(0x9, b"1")
            + frame(0x0, b"men", fin=False)
            + frame(0xA, b"unsolicited")
            + frame(0x0, b"", fin=False)
            + frame(0x9, b"2")
            + frame(0x0, b"ted"),
            [(0xA, b"1"), (0xA, b"2"), (0x1, b"fragmented")],
        )


@pytest.mark.parametrize(
    "data",
    [
        frame(0x0, b"nothing to continue"),
        frame(0x1, b"a", fin=False) + frame(0x1, b"b"),
        frame(0x2, b"a", fin=False) + frame(0x2, b"b", fin=False),
    ],
    ids=["lone-continuation", "text-inside-text", "binary-inside-binary"],
)
async def test_broken_fragmentation_fails_with_1002(data: bytes) -> None:
    async with echo_server() as echo:
        await fails(echo, data, 1002)


async def test_a_close_inside_a_fragmented_message_ends_it() -> None:
    async with echo_server() as echo:
        sock, frames = await echo.open()
        await send(sock, frame(0x1, b"never", fin=False) + close_frame(1000))
        assert await frames.close() == b"\x03\xe8"
        sock.close()


# -- UTF-8 (§8.1): invalid text fails with 1007 as soon as it arrives --------------------------


async def fails_at_once(echo: Echo, first: bytes, second: bytes, rest: bytes) -> None:
    """After `second`, and before `rest` is sent, the server closes with 1007."""
    sock, frames = await echo.open()
    try:
        await send(sock, first)
        with pytest.raises(TimeoutError):
            await frames.next(timeout=0.2)  # a valid prefix: nothing happens yet
        await send(sock, second)
        payload = await frames.close(timeout=2)
        assert payload[:2] == struct.pack("!H", 1007), payload
        await send(sock, rest)  # too late: the connection is gone (or goes)
    except (BrokenPipeError, ConnectionResetError):
        pass
    finally:
        sock.close()


async def test_invalid_utf8_in_a_fragment_fails_before_the_message_ends() -> None:
    async with echo_server() as echo:
        await fails_at_once(
            echo,
            frame(0x1, KOSME, fin=False),
            frame(0x0, b"\xf4\x90\x80\x80", fin=False),
            frame(0x0, b"edited"),
        )
        await fails_at_once(
            echo,
            frame(0x1, KOSME + b"\xf4", fin=False),
            frame(0x0, b"\x90", fin=False),
            frame(0x0, b"\x80\x80edited"),
        )


async def test_invalid_utf8_fails_before_its_frame_is_complete() -> None:
    payload = KOSME + b"\xf4\x90\x80\x80" + b"edited"
    data = frame(0x1, payload)
    valid = len(data) - len(payload) + len(KOSME)
    async with echo_server() as echo:
        await fails_at_once(echo, data[:valid], data[valid : valid + 2], data[valid + 2 :])


async def test_invalid_utf8_in_one_frame_and_in_a_close_reason() -> None:
    async with echo_server() as echo:
        await fails(echo, frame(0x1, KOSME + b"\xed\xa0\x80edited"), 1007)
        await fails(echo, close_frame(1000, b"\xce\xba\xff"), 1007)


async def test_valid_utf8_split_anywhere_passes() -> None:
    text = ("κόσμε € 𝄞 " * 10).encode()
    async with echo_server() as echo:
        await echoes(
            echo,
            b"".join(
                frame(0x1 if i == 0 else 0x0, text[i : i + 1], fin=i == len(text) - 1)
                for i in range(len(text))
            ),
            [(0x1, text)],
        )


# -- close codes (§7.4.1, §7.4.2) and the closing handshake --------------------------------------


@pytest.mark.parametrize("code, allowed", CLOSE_CODES)
async def test_close_codes(code: int, allowed: bool) -> None:
    async with echo_server() as echo:
        sock, frames = await echo.open()
        try:
            await send(sock, close_frame(code, b"why"))
            answer = await frames.close()
            assert struct.unpack("!H", answer[:2])[0] == (code if allowed else 1002)
        finally:
            sock.close()


async def test_close_payloads_of_0_and_1_bytes() -> None:
    async with echo_server() as echo:
        sock, frames = await echo.open()
        await send(sock, close_frame())
        assert await frames.close() == b""  # no code in, no code out
        sock.close()
        await fails(echo, frame(0x8, b"\x03"), 1002)


async def test_nothing_after_the_close_frame_is_processed() -> None:
    async with echo_server() as echo:
        sock, frames = await echo.open()
        await send(sock, frame(0x1, b"a") + close_frame(1000) + frame(0x1, b"b") + frame(0x9, b""))
        assert await frames.next() == (0x1, b"a")
        assert await frames.close() == b"\x03\xe8"
        sock.close()
