"""Client frames (RFC 6455, server side) parsed from a byte stream fed in arbitrary pieces.

Stricter than Tornado's reader, and as cheap on the common path (a whole frame in one read):
every violation fails with a close code (1002, 1007 for invalid UTF-8, 1009 for size), lengths
must be in their shortest form, and the UTF-8 of a text message is checked as it arrives, so
an invalid fragment (or the invalid part of a frame still arriving) fails the connection at
once instead of when the message ends.
"""

from __future__ import annotations

import codecs

from server.ws.frame import ProtocolViolation
from server.ws.seam import unmask

_Utf8 = codecs.getincrementaldecoder("utf-8")


class FrameParser:
    """`next()` returns whole messages: control frames as they come, data messages once whole.

    A data message longer than `max_size` fails as soon as the header saying so is in, before
    its payload is buffered.

    >>> p = FrameParser(1024)
    >>> p.feed(b"\\x81\\x82\\x00\\x00\\x00\\x00h")
    >>> p.next() is None  # one payload byte still missing
    True
    >>> p.feed(b"i")
    >>> p.next()
    (1, b'hi')
    """

    __slots__ = ("max_size", "_buf", "_pos", "_frag", "_frag_opcode", "_utf8", "_checked")

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        self._buf: bytes | bytearray = b""
        self._pos = 0
        self._frag: bytearray | None = None  # the fragments of a message so far
        self._frag_opcode = 0
        #: UTF-8 state of a text message checked piece by piece (fragments, or a frame arriving
        #: over several reads); None on the common path, where the reader decodes it whole.
        self._utf8: codecs.IncrementalDecoder | None = None
        self._checked = 0  # payload bytes of the frame in progress already checked

    @property
    def buffered(self) -> int:
        """Bytes received and not yet returned as part of a message."""
        return len(self._buf) - self._pos

    def feed(self, data: bytes) -> None:
        pos = self._pos
        buf = self._buf
        if pos >= len(buf):
            self._buf = data  # the common case: nothing left over, no copy
            self._pos = 0
        elif pos or type(buf) is bytes:
            rest = bytearray(memoryview(buf)[pos:])  # the partial frame, copied once
            rest += data
            self._buf = rest
            self._pos = 0
        else:
            buf += data  # a long frame arriving piece by piece: amortised appends

    def next(self) -> tuple[int, bytes] | None:
        """The next whole message as (opcode, unmasked payload), or None until more bytes come.

        Raises ProtocolViolation when the stream breaks the protocol; the parser is unusable after.
        """
        while True:
            buf = self._buf
            pos = self._pos
            end = len(buf)
            if end - pos < 2:
                return None
            b0 = buf[pos]
            b1 = buf[pos + 1]
            opcode = b0 & 0x0F
            if b0 & 0x70:
                raise ProtocolViolation("reserved bits set")  # no extension was negotiated
            if not b1 & 0x80:
                raise ProtocolViolation("client frames must be masked")
            n = b1 & 0x7F
            head = pos + 2
            if opcode >= 0x8:
                if opcode > 0xA:
                    raise ProtocolViolation(f"reserved opcode {opcode}")
                if n > 125:
                    raise ProtocolViolation("control frame payload over 125 bytes")
                if not b0 & 0x80:
                    raise ProtocolViolation("fragmented control frame")
            else:
                if opcode > 0x2:
                    raise ProtocolViolation(f"reserved opcode {opcode}")
                if opcode:
                    if self._frag is not None:
                        raise ProtocolViolation("new message inside a fragmented one")
                elif self._frag is None:
                    raise ProtocolViolation("continuation frame without a message")
                if n == 126:
                    if end - head < 2:
                        return None
                    n = int.from_bytes(buf[head : head + 2], "big")
                    head += 2
                    if n < 126:
                        raise ProtocolViolation("payload length not in its shortest form")
                elif n == 127:
                    if end - head < 8:
                        return None
                    n = int.from_bytes(buf[head : head + 8], "big")
                    head += 8
                    if n >> 63:
                        raise ProtocolViolation("64-bit payload length with its top bit set")
                    if n < 65536:
                        raise ProtocolViolation("payload length not in its shortest form")
                if n + (len(self._frag) if self._frag is not None else 0) > self.max_size:
                    raise ProtocolViolation("message too big", 1009)
            start = head + 4
            stop = start + n
            if stop > end:  # the mask or payload is still to come
                if start < end and (opcode == 1 or (opcode == 0 and self._frag_opcode == 1)):
                    self._check_partial(buf, head, start, end)
                return None
            if type(buf) is bytes:
                payload = unmask(buf[head:start], buf[start:stop])
            else:
                view = memoryview(buf)
                payload = unmask(bytes(view[head:start]), bytes(view[start:stop]))
                view.release()
            if stop == end:
                self._buf = b""  # an idle connection holds no buffer
                self._pos = 0
            else:
                self._pos = stop
            if opcode >= 0x8:
                return opcode, payload
            if b0 & 0x80 and opcode and self._utf8 is None:
                return opcode, payload  # a message in one frame: the common case
            message = self._fragment(opcode, b0 & 0x80, payload)
            if message is not None:
                return message

    def _fragment(self, opcode: int, fin: int, payload: bytes) -> tuple[int, bytes] | None:
        """A data frame of a fragmented message, or a text frame that arrived over several reads."""
        checked = self._checked
        self._checked = 0
        if opcode:
            self._frag_opcode = opcode
            if opcode == 0x1:
                self._check(payload[checked:] if checked else payload, bool(fin))
            if fin:
                return opcode, payload
            self._frag = bytearray(payload)
            return None
        if self._frag_opcode == 0x1:
            self._check(payload[checked:] if checked else payload, bool(fin))
        frag = self._frag
        assert frag is not None  # checked with the header
        frag += payload
        if not fin:
            return None
        self._frag = None
        return self._frag_opcode, bytes(frag)

    def _check_partial(self, buf: bytes | bytearray, head: int, start: int, end: int) -> None:
        """Check the UTF-8 of the part of a text frame received so far (after the last check)."""
        checked = self._checked
        begin = start + checked
        if begin >= end:
            return
        view = memoryview(buf)
        key = bytes(view[head:start])
        if checked & 3:  # the mask continues where the last check stopped
            key = key[checked & 3 :] + key[: checked & 3]
        data = bytes(view[begin:end])
        view.release()
        self._check(unmask(key, data), False)
        self._checked = end - start

    def _check(self, data: bytes, final: bool) -> None:
        decoder = self._utf8
        if decoder is None:
            decoder = self._utf8 = _Utf8()
        try:
            decoder.decode(data, final)
        except UnicodeDecodeError:
            raise ProtocolViolation("invalid UTF-8", 1007) from None
        if final:
            self._utf8 = None
            return
        # CPython's decoder waits for the third byte of a surrogate (ED A0-BF): none is valid.
        pending = decoder.getstate()[0]
        if len(pending) > 1 and pending[0] == 0xED and pending[1] >= 0xA0:
            raise ProtocolViolation("invalid UTF-8", 1007)
