"""server/static/msgpack.js, the browser client's MessagePack codec, run by Node.js and checked
against ormsgpack (the server's codec): the same bytes for the same JSON values, each decoding
the other's, and JSON.stringify's treatment of values JSON has no place for."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import ormsgpack
import pytest

ROOT = Path(__file__).resolve().parent.parent
MODULE = (ROOT / "server" / "static" / "msgpack.js").as_uri()

# JSON values whose MessagePack encoding has one shortest form, which both codecs must choose.
CORPUS: list[Any] = [
    None,
    True,
    False,
    0,
    1,
    127,
    128,
    255,
    256,
    65535,
    65536,
    2**32 - 1,
    2**32,
    2**53 - 1,
    -1,
    -32,
    -33,
    -128,
    -129,
    -32768,
    -32769,
    -(2**31),
    -(2**31) - 1,
    -(2**53) + 1,
    0.5,
    -2.75,
    1e300,
    5e-324,
    "",
    "a" * 31,
    "a" * 32,
    "b" * 255,
    "c" * 256,
    "d" * 65536,
    "naïve ☃ 𝄞",
    [],
    list(range(15)),
    list(range(16)),
    list(range(65536)),
    {},
    {f"k{i}": i for i in range(15)},
    {f"k{i}": i for i in range(16)},
    {"nested": [1, {"deep": [None, "x", 2.5, {"": []}]}]},
]


def node(script: str, stdin: str = "") -> str:
    exe = shutil.which("node")
    assert exe, "node not found: install Node.js 20"
    done = subprocess.run(
        [exe, "--input-type=module", "-e", f"import * as mp from {json.dumps(MODULE)};\n{script}"],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


READ = (
    "const input = JSON.parse(await new Promise((r) => { let s = '';"
    " process.stdin.on('data', (d) => (s += d)).on('end', () => r(s)); }));"
)


def test_encodes_json_values_to_the_bytes_ormsgpack_makes() -> None:
    out = node(
        READ
        + "const hex = (v) => Buffer.from(mp.encode(v)).toString('hex');"
        + "console.log(JSON.stringify(input.map(hex)));",
        json.dumps(CORPUS),
    )
    got = json.loads(out)
    for value, hexed in zip(CORPUS, got, strict=True):
        assert bytes.fromhex(hexed) == ormsgpack.packb(value), repr(value)[:80]


def test_decodes_what_ormsgpack_encodes() -> None:
    hexed = [ormsgpack.packb(v).hex() for v in CORPUS]
    hexed.append(ormsgpack.packb(2**64 - 1).hex())
    hexed.append(ormsgpack.packb(-(2**63)).hex())
    hexed.append(b"\xca\x3f\xc0\x00\x00".hex())  # float32 1.5, which ormsgpack never sends
    out = node(
        READ + "console.log(JSON.stringify(input.map((h) => mp.decode(Buffer.from(h, 'hex')))));",
        json.dumps(hexed),
    )
    got = json.loads(out)
    assert got[: len(CORPUS)] == CORPUS
    # JSON.parse's precision: the nearest double, as JSON would give a browser.
    assert [float(x) for x in got[len(CORPUS) :]] == [float(2**64), float(-(2**63)), 1.5]


def test_values_json_has_no_place_for_are_treated_as_json_stringify_does() -> None:
    script = """
    const cases = [
      { a: undefined, b: () => 1, c: 1 },
      [undefined, () => 1, NaN, Infinity, -0],
      { when: new Date(0) },
      { toJSON: () => ({ replaced: true }) },
      new String("boxed"),
    ];
    console.log(JSON.stringify(cases.map((v) => [
      Buffer.from(mp.encode(v)).toString("hex"), JSON.stringify(v),
    ])));
    """
    for hexed, as_json in json.loads(node(script)):
        assert ormsgpack.unpackb(bytes.fromhex(hexed)) == json.loads(as_json)


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"\xd4\x01\x00", "not a JSON value"),  # ext
        (b"\xc1", "not a JSON value"),
        (b"\x92\x01", "unexpected end"),
        (b"\x01\x02", "bytes after"),
        (b"\x81\x01\x02", "keys must be strings"),
        (b"\xa2\xff\xfe", "encoded data was not valid"),  # invalid UTF-8
        (b"\x91" * 1100 + b"\xc0", "deeper than 1024"),
    ],
)
def test_refuses_what_is_not_one_json_value(data: bytes, error: str) -> None:
    script = """
    try { mp.decode(Buffer.from(input, "hex")); console.log("decoded"); }
    catch (err) { console.log(err.message); }
    """
    assert error in node(READ + script, json.dumps(data.hex()))


def test_keys_cannot_pollute_prototypes() -> None:
    data = ormsgpack.packb({"__proto__": {"polluted": 1}})
    script = """
    const obj = mp.decode(Buffer.from(input, "hex"));
    console.log(JSON.stringify([Object.keys(obj), ({}).polluted ?? null, obj.polluted ?? null]));
    """
    assert json.loads(node(READ + script, json.dumps(data.hex()))) == [["__proto__"], None, None]
