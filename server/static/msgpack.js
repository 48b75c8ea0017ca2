// MessagePack for the `switchboard.msgpack` subprotocol: a small dependency-free codec for the
// values protocol v1 carries (JSON's), nothing more (docs/protocol.md, "Subprotocols").
//
//   encode(value) -> Uint8Array      as JSON.stringify would see `value`: toJSON() is called,
//                                    undefined and functions are left out of objects (null in
//                                    arrays), NaN and infinities become null
//   decode(bytes) -> value           nil, booleans, integers, floats, strings, arrays, maps;
//                                    bin comes back as a Uint8Array, ext is refused
//
// Integers beyond 2^53 lose precision, as JSON.parse's do; integers up to 2^64 are sent as
// floats when they are not safe integers (as JSON would send them).

const utf8Encoder = new TextEncoder();
const utf8Decoder = new TextDecoder("utf-8", { fatal: true });

class Writer {
  constructor() {
    this.buf = new Uint8Array(256);
    this.view = new DataView(this.buf.buffer);
    this.pos = 0;
  }

  reserve(n) {
    if (this.pos + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.pos + n) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.buf.subarray(0, this.pos));
    this.buf = next;
    this.view = new DataView(next.buffer);
  }

  u8(v) { this.reserve(1); this.buf[this.pos++] = v; }
  u16(v) { this.reserve(2); this.view.setUint16(this.pos, v); this.pos += 2; }
  u32(v) { this.reserve(4); this.view.setUint32(this.pos, v); this.pos += 4; }
  bytes(b) { this.reserve(b.length); this.buf.set(b, this.pos); this.pos += b.length; }

  head(fix, limit, c8, c16, c32, n) {
    if (n < limit) this.u8(fix | n);
    else if (c8 !== null && n < 0x100) { this.u8(c8); this.u8(n); }
    else if (n < 0x10000) { this.u8(c16); this.u16(n); }
    else { this.u8(c32); this.u32(n); }
  }
}

function writeNumber(w, n) {
  if (!Number.isFinite(n)) { w.u8(0xc0); return; }
  if (Number.isSafeInteger(n)) { // -0 too: JSON sends it as 0
    if (n >= 0) {
      if (n < 0x80) w.u8(n);
      else if (n < 0x100) { w.u8(0xcc); w.u8(n); }
      else if (n < 0x10000) { w.u8(0xcd); w.u16(n); }
      else if (n < 0x100000000) { w.u8(0xce); w.u32(n); }
      else { w.u8(0xcf); w.u32(Math.floor(n / 0x100000000)); w.u32(n >>> 0); }
    } else {
      if (n >= -32) w.u8(n & 0xff);
      else if (n >= -0x80) { w.u8(0xd0); w.reserve(1); w.view.setInt8(w.pos++, n); }
      else if (n >= -0x8000) { w.u8(0xd1); w.reserve(2); w.view.setInt16(w.pos, n); w.pos += 2; }
      else if (n >= -0x80000000) { w.u8(0xd2); w.reserve(4); w.view.setInt32(w.pos, n); w.pos += 4; }
      else { w.u8(0xd3); w.reserve(8); w.view.setBigInt64(w.pos, BigInt(n)); w.pos += 8; }
    }
    return;
  }
  w.u8(0xcb); w.reserve(8); w.view.setFloat64(w.pos, n); w.pos += 8;
}

function writeValue(w, value, key, holder, depth) {
  if (depth > 1024) throw new RangeError("MessagePack: nesting deeper than 1024 levels");
  if (value !== null && typeof value === "object" && typeof value.toJSON === "function") {
    value = value.toJSON(key);
  }
  switch (typeof value) {
    case "string": {
      const b = utf8Encoder.encode(value);
      w.head(0xa0, 32, 0xd9, 0xda, 0xdb, b.length);
      w.bytes(b);
      return;
    }
    case "number": writeNumber(w, value); return;
    case "boolean": w.u8(value ? 0xc3 : 0xc2); return;
    case "bigint": throw new TypeError("MessagePack: BigInt is not a JSON value");
    case "object": break;
    default: w.u8(0xc0); return; // undefined, functions, symbols in arrays: null, as JSON
  }
  if (value === null) { w.u8(0xc0); return; }
  if (value instanceof Number || value instanceof String || value instanceof Boolean) {
    writeValue(w, value.valueOf(), key, holder, depth);
    return;
  }
  if (Array.isArray(value)) {
    w.head(0x90, 16, null, 0xdc, 0xdd, value.length);
    for (let i = 0; i < value.length; i++) writeValue(w, value[i], String(i), value, depth + 1);
    return;
  }
  const keys = Object.keys(value).filter((k) => {
    const v = value[k];
    const t = typeof (v !== null && typeof v === "object" && typeof v.toJSON === "function"
      ? v.toJSON(k) : v);
    return t !== "undefined" && t !== "function" && t !== "symbol";
  });
  w.head(0x80, 16, null, 0xde, 0xdf, keys.length);
  for (const k of keys) {
    writeValue(w, k, "", null, depth + 1);
    writeValue(w, value[k], k, value, depth + 1);
  }
}

/** The MessagePack encoding of a JSON value. */
export function encode(value) {
  const w = new Writer();
  writeValue(w, value, "", null, 0);
  return w.buf.slice(0, w.pos);
}

class Reader {
  constructor(bytes) {
    this.buf = bytes;
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.pos = 0;
  }

  need(n) {
    if (this.pos + n > this.buf.length) throw new RangeError("MessagePack: unexpected end of data");
  }

  u8() { this.need(1); return this.buf[this.pos++]; }
  u16() { this.need(2); const v = this.view.getUint16(this.pos); this.pos += 2; return v; }
  u32() { this.need(4); const v = this.view.getUint32(this.pos); this.pos += 4; return v; }

  str(n) {
    this.need(n);
    const s = utf8Decoder.decode(this.buf.subarray(this.pos, this.pos + n));
    this.pos += n;
    return s;
  }

  bin(n) {
    this.need(n);
    const b = this.buf.slice(this.pos, this.pos + n);
    this.pos += n;
    return b;
  }

  array(n, depth) {
    const out = new Array(n);
    for (let i = 0; i < n; i++) out[i] = this.value(depth + 1);
    return out;
  }

  map(n, depth) {
    const out = {};
    for (let i = 0; i < n; i++) {
      const k = this.value(depth + 1);
      if (typeof k !== "string") throw new TypeError("MessagePack: map keys must be strings");
      const v = this.value(depth + 1);
      Object.defineProperty(out, k, { value: v, enumerable: true, writable: true, configurable: true });
    }
    return out;
  }

  value(depth = 0) {
    if (depth > 1024) throw new RangeError("MessagePack: nesting deeper than 1024 levels");
    const b = this.u8();
    if (b < 0x80) return b;
    if (b < 0x90) return this.map(b & 0x0f, depth);
    if (b < 0xa0) return this.array(b & 0x0f, depth);
    if (b < 0xc0) return this.str(b & 0x1f);
    if (b >= 0xe0) return b - 0x100;
    let v;
    switch (b) {
      case 0xc0: return null;
      case 0xc2: return false;
      case 0xc3: return true;
      case 0xc4: return this.bin(this.u8());
      case 0xc5: return this.bin(this.u16());
      case 0xc6: return this.bin(this.u32());
      case 0xca: this.need(4); v = this.view.getFloat32(this.pos); this.pos += 4; return v;
      case 0xcb: this.need(8); v = this.view.getFloat64(this.pos); this.pos += 8; return v;
      case 0xcc: return this.u8();
      case 0xcd: return this.u16();
      case 0xce: return this.u32();
      case 0xcf: this.need(8); v = this.view.getBigUint64(this.pos); this.pos += 8; return Number(v);
      case 0xd0: this.need(1); v = this.view.getInt8(this.pos); this.pos += 1; return v;
      case 0xd1: this.need(2); v = this.view.getInt16(this.pos); this.pos += 2; return v;
      case 0xd2: this.need(4); v = this.view.getInt32(this.pos); this.pos += 4; return v;
      case 0xd3: this.need(8); v = this.view.getBigInt64(this.pos); this.pos += 8; return Number(v);
      case 0xd9: return this.str(this.u8());
      case 0xda: return this.str(this.u16());
      case 0xdb: return this.str(this.u32());
      case 0xdc: return this.array(this.u16(), depth);
      case 0xdd: return this.array(this.u32(), depth);
      case 0xde: return this.map(this.u16(), depth);
      case 0xdf: return this.map(this.u32(), depth);
      default: throw new TypeError(`MessagePack: type 0x${b.toString(16)} is not a JSON value`);
    }
  }
}

/** Decode one MessagePack value (an ArrayBuffer, or a Uint8Array or other view of bytes). */
export function decode(data) {
  const bytes = data instanceof Uint8Array ? data
    : ArrayBuffer.isView(data) ? new Uint8Array(data.buffer, data.byteOffset, data.byteLength)
      : new Uint8Array(data);
  const r = new Reader(bytes);
  const value = r.value();
  if (r.pos !== bytes.length) throw new RangeError("MessagePack: bytes after the value");
  return value;
}
