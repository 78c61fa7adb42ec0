// Ledge edge runtime glue. A module compiled once per process to bytecode and
// loaded into every isolate; Rust calls its default export with the native
// bindings (`N`) and keeps the object it returns (the internals) out of reach
// of tenant code. An isolate may get its glue before it knows its bundle (a
// blank made ahead of need): the deploy's env comes later (`deployEnv`).
export default function (N) {
  "use strict";
  const G = globalThis;
  // Kept: a global built on first use is defined after tenant code ran.
  const defineProperty = Object.defineProperty;
  const defineGlobal = (name, value) =>
    defineProperty(G, name, { value, writable: true, configurable: true, enumerable: false });
  const wellFormed = typeof String.prototype.toWellFormed === "function" ? (s) => s.toWellFormed() : (s) => s;
  const str = (v) => wellFormed(String(v));

  // ---------------------------------------------------------------- DOMException
  class DOMException extends Error {
    #name;
    constructor(message = "", name = "Error") {
      super(String(message));
      this.#name = String(name);
    }
    get name() { return this.#name; }
    get code() {
      const codes = { IndexSizeError: 1, NotFoundError: 8, NotSupportedError: 9, InvalidStateError: 11,
        SyntaxError: 12, InvalidAccessError: 15, TypeMismatchError: 17, AbortError: 20,
        QuotaExceededError: 22, TimeoutError: 23, DataCloneError: 25, InvalidCharacterError: 5 };
      return codes[this.#name] ?? 0;
    }
  }
  if (typeof G.DOMException !== "function") defineGlobal("DOMException", DOMException);
  const DOMEx = G.DOMException;

  // ---------------------------------------------------------------- invocation state
  // `inv` holds everything that belongs to the current invocation; reset by Rust.
  let inv = null;
  let nextTimerId = 1;
  let nextHostId = 1;
  const MAX_TIMERS = 10000;

  // ---------------------------------------------------------------- console
  function fmt(v, depth) {
    if (typeof v === "string") return v;
    if (v instanceof Error) return `${v.name}: ${v.message}`;
    if (typeof v === "function") return `[Function: ${v.name || "anonymous"}]`;
    if (typeof v === "symbol" || typeof v === "bigint") return v.toString();
    if (v === undefined) return "undefined";
    if (v === null || typeof v !== "object") return String(v);
    if (depth > 0 && typeof v.toString === "function" && v.toString !== Object.prototype.toString
        && !Array.isArray(v)) {
      try { return String(v); } catch (_) { /* fall through */ }
    }
    try {
      const seen = new Set();
      const out = JSON.stringify(v, (k, x) => {
        if (typeof x === "bigint") return `${x}n`;
        if (typeof x === "object" && x !== null) {
          if (seen.has(x)) return "[Circular]";
          seen.add(x);
        }
        return x;
      });
      return out === undefined ? String(v) : out;
    } catch (_) {
      return Object.prototype.toString.call(v);
    }
  }
  // Lines are cut here too, so a huge string is never copied out whole.
  const MAX_LINE = 64 * 1024;
  const format = (args) => {
    const line = args.map((a) => fmt(a, 1)).join(" ");
    return line.length > MAX_LINE ? line.slice(0, MAX_LINE) : line;
  };
  const consoleObj = {};
  for (const level of ["debug", "log", "info", "warn", "error"]) {
    consoleObj[level] = (...args) => { N.log(level, str(format(args))); };
  }
  consoleObj.trace = consoleObj.debug;
  consoleObj.assert = (cond, ...args) => {
    if (!cond) N.log("error", str(format(["Assertion failed", ...args])));
  };
  defineGlobal("console", consoleObj);

  // ---------------------------------------------------------------- encoding
  class TextEncoder {
    get encoding() { return "utf-8"; }
    encode(input = "") { return N.utf8Encode(str(input)); }
    encodeInto(source, destination) {
      if (!(destination instanceof Uint8Array)) throw new TypeError("destination must be a Uint8Array");
      const s = str(source);
      let read = 0, written = 0;
      for (const ch of s) {
        const cp = ch.codePointAt(0);
        const n = cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
        if (written + n > destination.length) break;
        if (n === 1) destination[written] = cp;
        else if (n === 2) { destination[written] = 0xc0 | (cp >> 6); destination[written + 1] = 0x80 | (cp & 63); }
        else if (n === 3) {
          destination[written] = 0xe0 | (cp >> 12); destination[written + 1] = 0x80 | ((cp >> 6) & 63);
          destination[written + 2] = 0x80 | (cp & 63);
        } else {
          destination[written] = 0xf0 | (cp >> 18); destination[written + 1] = 0x80 | ((cp >> 12) & 63);
          destination[written + 2] = 0x80 | ((cp >> 6) & 63); destination[written + 3] = 0x80 | (cp & 63);
        }
        written += n;
        read += ch.length;
      }
      return { read, written };
    }
  }

  function toBytes(input, what) {
    if (input instanceof ArrayBuffer) return new Uint8Array(input);
    if (ArrayBuffer.isView(input)) return new Uint8Array(input.buffer, input.byteOffset, input.byteLength);
    throw new TypeError(`${what} must be an ArrayBuffer or ArrayBufferView`);
  }
  const copyBytes = (u8) => new Uint8Array(u8);

  // Length of an incomplete UTF-8 sequence at the end of `b` (0 if none).
  function incompleteTail(b) {
    for (let i = 1; i <= Math.min(3, b.length); i++) {
      const c = b[b.length - i];
      if ((c & 0xc0) === 0x80) continue; // continuation byte
      const need = c >= 0xf0 && c <= 0xf4 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 && c < 0xe0 ? 2 : 1;
      return need > i ? i : 0;
    }
    return 0;
  }

  const DECODERS = new WeakMap();
  class TextDecoder {
    constructor(label = "utf-8", options = {}) {
      const l = String(label).trim().toLowerCase();
      if (l !== "utf-8" && l !== "utf8" && l !== "unicode-1-1-utf-8") {
        throw new RangeError(`The encoding label provided ('${label}') is not supported`);
      }
      DECODERS.set(this, { fatal: !!(options && options.fatal), ignoreBOM: !!(options && options.ignoreBOM),
        pending: null, started: false });
    }
    get encoding() { return "utf-8"; }
    get fatal() { return DECODERS.get(this).fatal; }
    get ignoreBOM() { return DECODERS.get(this).ignoreBOM; }
    decode(input, options = {}) {
      const st = DECODERS.get(this);
      if (!st) throw new TypeError("Illegal invocation");
      let bytes = input === undefined ? new Uint8Array(0) : toBytes(input, "input");
      if (st.pending) {
        const joined = new Uint8Array(st.pending.length + bytes.length);
        joined.set(st.pending); joined.set(bytes, st.pending.length);
        bytes = joined; st.pending = null;
      }
      const stream = !!(options && options.stream);
      if (stream) {
        const tail = incompleteTail(bytes);
        if (tail > 0) { st.pending = bytes.slice(bytes.length - tail); bytes = bytes.subarray(0, bytes.length - tail); }
      }
      const skipBOM = !st.ignoreBOM && !st.started;
      if (bytes.length > 0) st.started = true;
      const out = N.utf8Decode(bytes, st.fatal, skipBOM);
      if (out === null || out === undefined) {
        st.pending = null; st.started = false;
        throw new TypeError("The encoded data was not valid UTF-8");
      }
      if (!stream) { st.started = false; }
      return out;
    }
  }
  defineGlobal("TextEncoder", TextEncoder);
  defineGlobal("TextDecoder", TextDecoder);
  const encoder = new TextEncoder();
  const utf8 = (s) => encoder.encode(s);
  const fromUtf8 = (b) => N.utf8Decode(b, false, true);

  defineGlobal("btoa", function btoa(data) {
    if (arguments.length < 1) throw new TypeError("btoa requires 1 argument");
    const out = N.b64encode(String(data));
    if (out === null || out === undefined) throw new DOMEx("The string contains characters outside of the Latin1 range", "InvalidCharacterError");
    return out;
  });
  defineGlobal("atob", function atob(data) {
    if (arguments.length < 1) throw new TypeError("atob requires 1 argument");
    const out = N.b64decode(str(data));
    if (out === null || out === undefined) throw new DOMEx("The string to be decoded is not correctly encoded", "InvalidCharacterError");
    return out;
  });

  // ---------------------------------------------------------------- URLSearchParams
  const QS = new WeakMap(); // params -> { list: [[k, v]], url: URL | null }
  function qsUpdate(p) {
    const st = QS.get(p);
    if (st.url) urlSetSearchFromParams(st.url, qsSerialize(st.list));
  }
  function qsSerialize(list) {
    const flat = [];
    for (const [k, v] of list) flat.push(k, v);
    return N.formSerialize(flat);
  }
  function qsParse(s) {
    const flat = N.formParse(s);
    const list = [];
    for (let i = 0; i + 1 < flat.length; i += 2) list.push([flat[i], flat[i + 1]]);
    return list;
  }
  class URLSearchParams {
    constructor(init = "") {
      let list = [];
      if (init instanceof URLSearchParams) {
        list = QS.get(init).list.map(([k, v]) => [k, v]);
      } else if (init !== null && typeof init === "object" || typeof init === "function") {
        if (typeof init[Symbol.iterator] === "function") {
          for (const pair of init) {
            const p = [...pair];
            if (p.length !== 2) throw new TypeError("Each query pair must be an iterable [name, value] tuple");
            list.push([str(p[0]), str(p[1])]);
          }
        } else {
          for (const k of Object.keys(init)) list.push([str(k), str(init[k])]);
        }
      } else {
        let s = str(init);
        if (s.startsWith("?")) s = s.slice(1);
        list = qsParse(s);
      }
      QS.set(this, { list, url: null });
    }
    get size() { return QS.get(this).list.length; }
    append(name, value) { QS.get(this).list.push([str(name), str(value)]); qsUpdate(this); }
    delete(name, value) {
      const st = QS.get(this); const n = str(name);
      const v = value === undefined ? undefined : str(value);
      st.list = st.list.filter(([k, x]) => !(k === n && (v === undefined || x === v)));
      qsUpdate(this);
    }
    get(name) { const n = str(name); const e = QS.get(this).list.find(([k]) => k === n); return e ? e[1] : null; }
    getAll(name) { const n = str(name); return QS.get(this).list.filter(([k]) => k === n).map(([, v]) => v); }
    has(name, value) {
      const n = str(name); const v = value === undefined ? undefined : str(value);
      return QS.get(this).list.some(([k, x]) => k === n && (v === undefined || x === v));
    }
    set(name, value) {
      const st = QS.get(this); const n = str(name); const v = str(value);
      const i = hIndex(st.list, n);
      if (i < 0) st.list.push([n, v]);
      else { st.list[i][1] = v; st.list = st.list.filter(([k], j) => j <= i || k !== n); }
      qsUpdate(this);
    }
    sort() {
      const st = QS.get(this);
      // Stable sort by UTF-16 code units (Array.prototype.sort is stable).
      st.list.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
      qsUpdate(this);
    }
    forEach(cb, thisArg) {
      if (typeof cb !== "function") throw new TypeError("callback is not a function");
      for (const [k, v] of this) cb.call(thisArg, v, k, this);
    }
    *entries() { const st = QS.get(this); for (let i = 0; i < st.list.length; i++) yield [st.list[i][0], st.list[i][1]]; }
    *keys() { for (const [k] of this.entries()) yield k; }
    *values() { for (const [, v] of this.entries()) yield v; }
    [Symbol.iterator]() { return this.entries(); }
    toString() { return qsSerialize(QS.get(this).list); }
    get [Symbol.toStringTag]() { return "URLSearchParams"; }
  }
  defineGlobal("URLSearchParams", URLSearchParams);

  // ---------------------------------------------------------------- URL
  // parts: [href, origin, protocol, username, password, host, hostname, port, pathname, search, hash]
  const URLS = new WeakMap();
  const PARTS = ["href", "origin", "protocol", "username", "password", "host", "hostname", "port", "pathname", "search", "hash"];
  function urlSet(u, prop, value) {
    const st = URLS.get(u);
    const parts = N.urlSet(st.parts[0], prop, str(value));
    if (!parts) {
      if (prop === "href") throw new TypeError(`Invalid URL: ${value}`);
      return;
    }
    st.parts = parts;
    if (prop !== "hash" && st.params) QS.get(st.params).list = qsParse(parts[9].slice(1));
  }
  function urlSetSearchFromParams(u, serialized) {
    const st = URLS.get(u);
    const parts = N.urlSet(st.parts[0], "search", serialized);
    if (parts) st.parts = parts;
  }
  class URL {
    constructor(url, base) {
      if (arguments.length < 1) throw new TypeError("URL requires at least 1 argument");
      const parts = base === undefined ? N.urlParse(str(url)) : N.urlParse(str(url), str(base));
      if (!parts) throw new TypeError(`Invalid URL: ${String(url)}`);
      URLS.set(this, { parts, params: null });
    }
    static canParse(url, base) {
      return !!(base === undefined ? N.urlParse(str(url)) : N.urlParse(str(url), str(base)));
    }
    static parse(url, base) {
      try { return base === undefined ? new URL(url) : new URL(url, base); } catch (_) { return null; }
    }
    get searchParams() {
      const st = URLS.get(this);
      if (!st.params) {
        st.params = new URLSearchParams(st.parts[9]);
        QS.get(st.params).url = this;
      }
      return st.params;
    }
    toString() { return URLS.get(this).parts[0]; }
    toJSON() { return URLS.get(this).parts[0]; }
    get [Symbol.toStringTag]() { return "URL"; }
  }
  PARTS.forEach((name, i) => {
    const desc = { get() { const st = URLS.get(this); if (!st) throw new TypeError("Illegal invocation"); return st.parts[i]; },
      enumerable: true, configurable: true };
    if (name !== "origin") desc.set = function (v) { urlSet(this, name, v); };
    Object.defineProperty(URL.prototype, name, desc);
  });
  defineGlobal("URL", URL);

  // ---------------------------------------------------------------- Headers
  const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
  const HDRS = new WeakMap(); // headers -> { list: [[lowername, value]], immutable }
  // Names and values already validated, so that the usual ones skip the
  // regular expressions (a test costs a match object). Bounded: few and short.
  const NAMES_SEEN = new Map(); // name -> lowercase name
  const VALUES_SEEN = new Set();
  const SEEN_MAX = 256;
  function hName(n) {
    if (typeof n === "string") {
      const seen = NAMES_SEEN.get(n);
      if (seen !== undefined) return seen;
    }
    const s = String(n);
    if (!TOKEN.test(s)) throw new TypeError(`Invalid header name: "${s}"`);
    const lower = s.toLowerCase();
    if (typeof n === "string" && s.length <= 64 && NAMES_SEEN.size < SEEN_MAX) NAMES_SEEN.set(s, lower);
    return lower;
  }
  // Already trimmed, no NUL/CR/LF, only code points <= 0xFF: the usual case.
  const VALUE_FAST = /^(?:[\x21-\x7e\x80-\xff](?:[\t\x20-\x7e\x80-\xff]*[\x21-\x7e\x80-\xff])?)?$/;
  function hValue(v) {
    if (typeof v === "string") {
      if (VALUES_SEEN.has(v)) return v;
      if (VALUE_FAST.test(v)) {
        if (v.length <= 128 && VALUES_SEEN.size < SEEN_MAX) VALUES_SEEN.add(v);
        return v;
      }
    }
    const s = String(v).replace(/^[\t\n\r ]+|[\t\n\r ]+$/g, "");
    if (/[\0\r\n]/.test(s)) throw new TypeError(`Invalid header value: "${s}"`);
    // Header values are bytes; keep code points <= 0xFF only.
    if (/[^\x00-\xff]/.test(s)) throw new TypeError(`Invalid header value: "${s}"`);
    return s;
  }
  function hWritable(h) {
    const st = HDRS.get(h);
    if (!st) throw new TypeError("Illegal invocation");
    if (st.immutable) throw new TypeError("Headers are immutable");
    return st;
  }
  function hIndex(list, n) {
    for (let i = 0; i < list.length; i++) if (list[i][0] === n) return i;
    return -1;
  }
  // The validated [name, value] list of a `HeadersInit` (undefined or null
  // give an empty one).
  function headerList(init) {
    const list = [];
    if (init === undefined || init === null) return list;
    if (HDRS.has(init)) {
      const from = HDRS.get(init).list;
      for (let i = 0; i < from.length; i++) list.push([from[i][0], from[i][1]]);
      return list;
    }
    // A record (the usual `{ "content-type": ... }`) is read in Rust.
    const record = N.objectHeaders(init, hName, hValue);
    if (record !== undefined) return record;
    if (typeof init === "object" || typeof init === "function") {
      if (typeof init[Symbol.iterator] === "function") {
        for (const pair of init) {
          const p = [...pair];
          if (p.length !== 2) throw new TypeError("Each header pair must be an iterable [name, value] tuple");
          list.push([hName(p[0]), hValue(p[1])]);
        }
      } else {
        const keys = Object.keys(init);
        for (let i = 0; i < keys.length; i++) list.push([hName(keys[i]), hValue(init[keys[i]])]);
      }
    } else {
      throw new TypeError("Headers init must be an object or iterable");
    }
    return list;
  }
  // A Headers object over `list` (kept, not copied).
  function headersOver(list, immutable) {
    const h = { __proto__: HEADERS_PROTO };
    HDRS.set(h, { list, immutable });
    return h;
  }
  class Headers {
    constructor(init) {
      HDRS.set(this, { list: headerList(init), immutable: false });
    }
    append(name, value) { const st = hWritable(this); st.list.push([hName(name), hValue(value)]); }
    delete(name) { const st = hWritable(this); const n = hName(name); st.list = st.list.filter(([k]) => k !== n); }
    get(name) {
      const n = hName(name);
      const vs = HDRS.get(this).list.filter(([k]) => k === n).map(([, v]) => v);
      return vs.length ? vs.join(", ") : null;
    }
    getSetCookie() { return HDRS.get(this).list.filter(([k]) => k === "set-cookie").map(([, v]) => v); }
    has(name) { return hIndex(HDRS.get(this).list, hName(name)) >= 0; }
    set(name, value) {
      const st = hWritable(this); const n = hName(name); const v = hValue(value);
      const i = hIndex(st.list, n);
      if (i < 0) st.list.push([n, v]);
      else { st.list[i] = [n, v]; st.list = st.list.filter(([k], j) => j <= i || k !== n); }
    }
    forEach(cb, thisArg) {
      if (typeof cb !== "function") throw new TypeError("callback is not a function");
      for (const [k, v] of this) cb.call(thisArg, v, k, this);
    }
    *entries() {
      const list = HDRS.get(this).list;
      const names = [...new Set(list.map(([k]) => k))].sort();
      for (const n of names) {
        if (n === "set-cookie") { for (const [k, v] of list) if (k === n) yield [n, v]; }
        else yield [n, this.get(n)];
      }
    }
    *keys() { for (const [k] of this.entries()) yield k; }
    *values() { for (const [, v] of this.entries()) yield v; }
    [Symbol.iterator]() { return this.entries(); }
    get [Symbol.toStringTag]() { return "Headers"; }
  }
  defineGlobal("Headers", Headers);
  const HEADERS_PROTO = Headers.prototype;
  const copyPairs = (list) => list.map((e) => [e[0], e[1]]);
  const headerPairs = (h) => copyPairs(HDRS.get(h).list);
  const freezeHeaders = (h) => { HDRS.get(h).immutable = true; return h; };

  // ---------------------------------------------------------------- Blob
  const BLOBS = new WeakMap();
  class Blob {
    constructor(parts = [], options = {}) {
      const chunks = [];
      for (const p of parts) {
        if (p instanceof Blob) chunks.push(BLOBS.get(p).bytes);
        else if (p instanceof ArrayBuffer || ArrayBuffer.isView(p)) chunks.push(copyBytes(toBytes(p, "part")));
        else chunks.push(utf8(str(p)));
      }
      const type = options && options.type !== undefined ? String(options.type) : "";
      BLOBS.set(this, { bytes: concat(chunks), type: /^[\x20-\x7e]*$/.test(type) ? type.toLowerCase() : "" });
    }
    get size() { return BLOBS.get(this).bytes.length; }
    get type() { return BLOBS.get(this).type; }
    async text() { return fromUtf8(BLOBS.get(this).bytes); }
    async arrayBuffer() { return copyBytes(BLOBS.get(this).bytes).buffer; }
    async bytes() { return copyBytes(BLOBS.get(this).bytes); }
    stream() { return streams().fromBytes(copyBytes(BLOBS.get(this).bytes)); }
    slice(start = 0, end, type = "") {
      const b = BLOBS.get(this).bytes;
      const out = new Blob([], { type });
      BLOBS.get(out).bytes = b.slice(start, end === undefined ? b.length : end);
      return out;
    }
    get [Symbol.toStringTag]() { return "Blob"; }
  }
  defineGlobal("Blob", Blob);
  function concat(chunks) {
    let n = 0;
    for (const c of chunks) n += c.length;
    const out = new Uint8Array(n);
    let o = 0;
    for (const c of chunks) { out.set(c, o); o += c.length; }
    return out;
  }

  // ---------------------------------------------------------------- streams (built on first use)
  // `S` stays null until a stream is needed: until then no value can be a
  // ReadableStream, and bodies are plain bytes.
  let S = null;
  const streams = () => S || (S = N.lazyGlue("streams")({
    get AbortSignal() { return aborts().AbortSignal; },
    get AbortController() { return aborts().AbortController; },
    TextDecoder, utf8, toBytes, concat,
  }));
  const isStream = (x) => S !== null && typeof x === "object" && x !== null && S.isReadable(x);
  // A global built on first access (then a plain data property).
  const lazyGlobal = (name, make) => Object.defineProperty(G, name, {
    get() { const v = make(); defineGlobal(name, v); return v; },
    set(v) { defineGlobal(name, v); },
    configurable: true, enumerable: false,
  });
  for (const name of ["ReadableStream", "ReadableStreamDefaultController", "ReadableStreamDefaultReader",
    "WritableStream", "WritableStreamDefaultController", "WritableStreamDefaultWriter", "TransformStream",
    "TransformStreamDefaultController", "CountQueuingStrategy", "ByteLengthQueuingStrategy", "TextEncoderStream",
    "TextDecoderStream"]) {
    lazyGlobal(name, () => streams()[name]);
  }
  lazyGlobal("URLPattern", () => N.lazyGlue("urlpattern")({
    urlParse: (s, base) => (base === undefined ? N.urlParse(str(s)) : N.urlParse(str(s), str(base))),
    urlSet: (href, prop, value) => N.urlSet(href, prop, str(value)),
    isURL: (x) => x instanceof URL,
  }).URLPattern);
  // Largest body drained from a stream (a returned Response, a request sent
  // with fetch): a stream that never ends is stopped here or by the limits.
  const MAX_BODY = N.maxBodyBytes;

  // ---------------------------------------------------------------- bodies
  // Request/Response -> { bytes: Uint8Array|string|null, used, stream: ReadableStream|null,
  // held, and the Request's or Response's own fields }. A body is known
  // bytes (`bytes`, or text until `bodyBytes` encodes it; `stream` made on
  // demand by `.body`) or a stream (`bytes` null): streams are read when the
  // body is consumed.
  const RECS = new WeakMap();
  // Hot records start from prototypes that hold their usual values, so a
  // record gets own properties only for what differs (adding a property
  // costs QuickJS several times what reading one through a prototype
  // does). The prototypes are never written: an assignment to a record
  // makes an own property.
  //
  // A Request's or Response's record holds its body's fields too (one
  // record and one WeakMap entry per object: each costs QuickJS about as
  // much as the object itself): `RECS` holds them all.
  const BODY_FIELDS = { bytes: null, used: false, stream: null, held: undefined };
  const REQ_PROTO = { ...BODY_FIELDS, req: true, url: "", method: "GET", headers: null, raw: "", signal: null, redirect: "follow" };
  const RESP_PROTO = { ...BODY_FIELDS, req: false, status: 200, statusText: "", headers: null, list: null, type: "default", url: "",
    redirected: false };
  // An invocation's record is also its `context`'s (`request`, and what is
  // made on first use: the context's data `c`, `url`, the cookie `jar`);
  // `cookies` are the Set-Cookie values set so far.
  const INV_PROTO = { cookies: null, waitCount: 0, host: null, timers: null, envJson: "{}", envObj: null,
    request: null, c: null, url: null, jar: null };
  // The record of `o` (a Request or a Response), or undefined. The
  // invocation's Request and the usual Response are made in Rust (see
  // `run`, `Response` and quick.rs) and get their record the first time
  // JavaScript looks at them.
  function recOf(o) {
    const st = RECS.get(o);
    return st !== undefined ? st : takeQuick(o);
  }
  function takeQuick(o) {
    // [false, status, list, text | null] or [true, method, url, raw headers, body]
    const q = N.take(o);
    if (q === undefined) return undefined;
    let rec;
    if (q[0]) {
      rec = q[1] === "GET" ? { __proto__: REQ_PROTO, url: q[2], raw: q[3] }
        : { __proto__: REQ_PROTO, url: q[2], method: q[1], raw: q[3] };
      if (q[4] !== undefined) rec.bytes = q[4];
    } else {
      rec = { __proto__: RESP_PROTO, list: q[2] };
      if (q[1] !== 200) rec.status = q[1];
      if (q[3] !== null) rec.bytes = q[3];
    }
    RECS.set(o, rec);
    return rec;
  }
  // The record of a Request (a Response) `o`, or a TypeError: the two share
  // one map, so the getters check which kind they were given.
  function reqRec(o) {
    const st = recOf(o);
    if (st === undefined || st.req !== true) throw new TypeError("Illegal invocation");
    return st;
  }
  function respRec(o) {
    const st = recOf(o);
    if (st === undefined || st.req !== false) throw new TypeError("Illegal invocation");
    return st;
  }
  const unusable = () => new TypeError("Body is unusable: Body has already been read");
  // [bytes, content-type, stream] (read by index: destructuring an array
  // runs the iterator protocol, which costs several objects).
  const NO_BODY = Object.freeze([null, null, null]);
  function extractBody(body) {
    if (body === undefined || body === null) return NO_BODY;
    // Text stays text until its bytes are needed (see bodyBytes).
    if (typeof body === "string") return [body, "text/plain;charset=UTF-8", null];
    if (body instanceof ArrayBuffer || ArrayBuffer.isView(body)) return [copyBytes(toBytes(body, "body")), null, null];
    if (body instanceof URLSearchParams) return [utf8(body.toString()), "application/x-www-form-urlencoded;charset=UTF-8", null];
    if (body instanceof Blob) { const b = BLOBS.get(body); return [copyBytes(b.bytes), b.type || null, null]; }
    if (isStream(body)) {
      if (S.isLocked(body) || S.isDisturbed(body)) throw new TypeError("The body ReadableStream is locked or disturbed");
      const known = S.takeKnownBytes(body);
      return known !== null ? [known, null, null] : [null, null, body];
    }
    if (isFormData(body)) return FD.formDataBody(body);
    return [utf8(str(body)), "text/plain;charset=UTF-8", null];
  }
  const hasBody = (b) => b.bytes !== null || b.stream !== null || b.held !== undefined;
  // The known bytes of a body record (null if none). A body given as a
  // string keeps it as `bytes` until they are needed: the usual answer
  // reaches Rust as text, and is never encoded here.
  function bodyBytes(b) {
    const x = b.bytes;
    if (typeof x !== "string") return x;
    // Rust encodes a well-formed string as it is (undefined for one with a
    // lone surrogate, made well-formed first).
    const u = N.utf8Encode(x);
    return (b.bytes = u !== undefined ? u : N.utf8Encode(wellFormed(x)));
  }

  // A body the host kept (a response of context.next() or fetch): `held` =
  // { h: handle, owner: the invocation, returned }. Its bytes cross only if
  // JavaScript reads them (host calls "read", chunk by chunk); handed back
  // unread as the function's response, the host sends its own stream.
  const HELD = new WeakMap(); // ReadableStream over a kept body -> held
  function hostRead(held) {
    if (!inv || held.owner !== inv) {
      return Promise.reject(new TypeError("a response body of context.next() or fetch can only be read while handling its request"));
    }
    if (held.returned) return Promise.reject(new TypeError("the body was handed back as the function's response"));
    const id = nextHostId++;
    return new Promise((resolve, reject) => {
      (inv.host || (inv.host = new Map())).set(id, { resolve, reject, kind: "read", url: "" });
      N.hostCall("read", id, String(held.h), new Uint8Array(0));
    });
  }
  async function drainHeld(held, cap, what) {
    const chunks = [];
    let total = 0;
    for (;;) {
      const u = await hostRead(held);
      if (u === null) return concat(chunks);
      total += u.length;
      if (total > cap) throw new RangeError(`${what}: the body is larger than ${cap} bytes`);
      chunks.push(u);
    }
  }
  // Gives a kept body its stream (when JavaScript asks for one).
  function openHeld(b) {
    if (b.held !== undefined && b.stream === null && !b.used) {
      const held = b.held;
      b.stream = streams().fromPull(() => hostRead(held));
      HELD.set(b.stream, held);
    }
  }
  // The kept body of `b` if it is still unread, or undefined.
  function unreadHeld(b) {
    if (b.used) return undefined;
    if (b.stream === null) return b.held;
    const held = HELD.get(b.stream);
    return held !== undefined && !S.isDisturbed(b.stream) && !S.isLocked(b.stream) ? held : undefined;
  }
  // Takes the body for consumption: a promise of its bytes.
  function consume(o) {
    const b = recOf(o);
    if (!b) return Promise.reject(new TypeError("Illegal invocation"));
    if (b.used) return Promise.reject(unusable());
    if (b.held !== undefined && b.stream === null) {
      b.used = true;
      return drainHeld(b.held, MAX_BODY, "body");
    }
    if (b.stream !== null) {
      if (S.isDisturbed(b.stream)) return Promise.reject(unusable());
      if (S.isLocked(b.stream)) return Promise.reject(new TypeError("Body is unusable: its stream is locked"));
      b.used = true;
      const known = S.takeKnownBytes(b.stream);
      return known !== null ? Promise.resolve(known) : S.readAll(b.stream, MAX_BODY, "body");
    }
    b.used = true;
    return Promise.resolve(bodyBytes(b) || new Uint8Array(0));
  }
  // Moves the body out of `o` (new Request(request)): [bytes, stream].
  function takeBody(o) {
    const b = recOf(o);
    openHeld(b);
    if (b.used || (b.stream !== null && (S.isDisturbed(b.stream) || S.isLocked(b.stream)))) throw unusable();
    b.used = true;
    if (b.stream !== null) {
      const known = S.takeKnownBytes(b.stream);
      return known !== null ? [known, null] : [null, b.stream];
    }
    return [b.bytes, null];
  }
  // A second copy of the body for clone(): [bytes, stream]; a stream is teed.
  function cloneBody(o) {
    const b = recOf(o);
    openHeld(b);
    if (b.used || (b.stream !== null && (S.isDisturbed(b.stream) || S.isLocked(b.stream)))) {
      throw new TypeError("Body is unusable: it has already been read or is locked");
    }
    if (b.bytes === null && b.stream !== null) {
      const [x, y] = S.teeStream(b.stream);
      b.stream = x;
      return [null, y];
    }
    return [b.bytes === null ? null : copyBytes(bodyBytes(b)), null];
  }
  const bodyMixin = {
    get body() {
      const b = recOf(this);
      if (!b) throw new TypeError("Illegal invocation");
      openHeld(b);
      if (b.stream === null) {
        if (b.bytes === null) return null;
        b.stream = streams().fromBytes(bodyBytes(b));
      }
      return b.stream;
    },
    get bodyUsed() {
      const b = recOf(this);
      return !!b && (b.used || (b.stream !== null && S.isDisturbed(b.stream)));
    },
    async text() { return fromUtf8(await consume(this)); },
    async json() { return JSON.parse(fromUtf8(await consume(this))); },
    async arrayBuffer() { return copyBytes(await consume(this)).buffer; },
    async bytes() { return copyBytes(await consume(this)); },
    async blob() {
      const bytes = await consume(this);
      return new Blob([bytes], { type: this.headers.get("content-type") || "" });
    },
    async formData() {
      const ctype = this.headers.get("content-type") || "";
      return forms().parseFormData(await consume(this), ctype);
    },
  };
  function mixBody(cls) {
    for (const k of Object.getOwnPropertyNames(bodyMixin)) {
      Object.defineProperty(cls.prototype, k, Object.getOwnPropertyDescriptor(bodyMixin, k));
    }
  }
  // Bytes of a body without consuming it (host calls, the outcome); a
  // promise when the body is a stream, which is read (and so consumed).
  function peekBytes(o, what) {
    const b = recOf(o);
    if (b.held !== undefined && b.stream === null && !b.used) {
      b.used = true;
      return drainHeld(b.held, MAX_BODY, what);
    }
    if (b.stream !== null) {
      if (S.isDisturbed(b.stream)) throw new TypeError(`${what}: the body's stream has already been read`);
      if (S.isLocked(b.stream)) throw new TypeError(`${what}: the body's stream is locked`);
      if (b.bytes === null) { b.used = true; return S.readAll(b.stream, MAX_BODY, what); }
    }
    return bodyBytes(b);
  }

  // ---------------------------------------------------------------- File / FormData (built on first use)
  let FD = null;
  const forms = () => FD || (FD = N.lazyGlue("formdata")({ N, Blob, BLOBS, str, utf8, concat, fromUtf8, qsParse }));
  // Until it is built, no value can be a FormData.
  const isFormData = (x) => FD !== null && FD.isFormData(x);
  lazyGlobal("File", () => forms().File);
  lazyGlobal("FormData", () => forms().FormData);

  // ---------------------------------------------------------------- AbortController / events (built on first use)
  let AB = null;
  const aborts = () => AB || (AB = N.lazyGlue("abort")({ N, G, DOMEx, str, fmt }));
  for (const name of ["Event", "EventTarget", "AbortSignal", "AbortController"]) lazyGlobal(name, () => aborts()[name]);

  // ---------------------------------------------------------------- Request
  const METHOD_NORM = ["DELETE", "GET", "HEAD", "OPTIONS", "POST", "PUT"];
  function normMethod(m) {
    const s = String(m);
    if (!TOKEN.test(s)) throw new TypeError(`Invalid method: "${s}"`);
    const up = s.toUpperCase();
    if (up === "CONNECT" || up === "TRACE" || up === "TRACK") throw new TypeError(`Forbidden method: "${s}"`);
    return METHOD_NORM.includes(up) ? up : s;
  }
  // A request's Headers; the invocation's request gets them from the raw
  // "name\nvalue\n..." string Rust validated, on first use.
  function reqHeaders(st) {
    if (st.headers === null) {
      const h = Object.create(Headers.prototype);
      const list = [];
      if (st.raw !== "") {
        const flat = st.raw.split("\n");
        for (let i = 0; i + 1 < flat.length; i += 2) list.push([flat[i], flat[i + 1]]);
      }
      HDRS.set(h, { list, immutable: false });
      st.headers = h; st.raw = "";
    }
    return st.headers;
  }
  class Request {
    constructor(input, init = {}) {
      if (arguments.length < 1) throw new TypeError("Request requires at least 1 argument");
      init = init ?? {};
      let url, method = "GET", headers, bytes = null, signal = null, redirect = "follow", srcBody = null;
      if (input instanceof Request) {
        const src = recOf(input);
        url = src.url; method = src.method; headers = input.headers; signal = src.signal; redirect = src.redirect;
        srcBody = input;
      } else {
        const u = URL.parse(str(input));
        if (!u) throw new TypeError(`Invalid URL: ${String(input)}`);
        if (u.username || u.password) throw new TypeError("Request URL must not include credentials");
        url = u.href;
      }
      if (init.method !== undefined) method = normMethod(init.method);
      if (init.headers !== undefined) headers = init.headers;
      if (init.signal !== undefined && init.signal !== null) signal = init.signal;
      if (init.redirect !== undefined) redirect = String(init.redirect);
      let ctype = null, stream = null;
      if (init.body !== undefined && init.body !== null) {
        const b = extractBody(init.body);
        bytes = b[0]; ctype = b[1]; stream = b[2];
      } else if (srcBody && hasBody(recOf(srcBody))) {
        [bytes, stream] = takeBody(srcBody);
      }
      if ((bytes !== null || stream !== null) && (method === "GET" || method === "HEAD")) {
        throw new TypeError("Request with GET/HEAD method cannot have body");
      }
      const h = new Headers(headers);
      if (ctype && !h.has("content-type")) h.set("content-type", ctype);
      RECS.set(this, { __proto__: REQ_PROTO, url, method, headers: h, signal, redirect, bytes, stream });
    }
    get method() { return reqRec(this).method; }
    get url() { return reqRec(this).url; }
    get headers() { return reqHeaders(reqRec(this)); }
    get signal() {
      const st = reqRec(this);
      return st.signal || (st.signal = new (aborts().AbortController)().signal);
    }
    get redirect() { return reqRec(this).redirect; }
    get cache() { return "default"; }
    get credentials() { return "same-origin"; }
    get mode() { return "cors"; }
    get destination() { return ""; }
    get referrer() { return "about:client"; }
    get integrity() { return ""; }
    get keepalive() { return false; }
    clone() {
      if (this.bodyUsed) throw new TypeError("Request body is already used");
      const st = reqRec(this);
      const [bytes, stream] = cloneBody(this);
      const r = new Request(st.url, { method: st.method, headers: reqHeaders(st), signal: st.signal, redirect: st.redirect });
      Object.assign(recOf(r), { bytes, stream });
      return r;
    }
    get [Symbol.toStringTag]() { return "Request"; }
  }
  mixBody(Request);
  defineGlobal("Request", Request);

  // ---------------------------------------------------------------- Response
  const nullBodyStatus = (s) => s === 204 || s === 304 || s === 101 || s === 103 || s === 205;
  const REDIRECTS = [301, 302, 303, 307, 308];
  const JSON_TYPE = "application/json";
  let internalResponse = false;
  // A response's Headers object is made when JavaScript asks for it; until
  // then its record holds the validated list (`list`), which is what the
  // outcome reads: most functions never look at the headers they return.
  const respList = (st) => (st.headers === null ? st.list : HDRS.get(st.headers).list);
  // The rest of `new Response(body, init)` where Rust (`N.response`,
  // quick.rs) stopped: `r` = [the new object, stage, a, b]. Stage 0: `init`
  // is not an object, nothing was read; 1: `a` is `init.status`; 2: `a` is
  // the status, `b` is `init.statusText`; 3: `a` is the status, `b` is
  // `init.headers`; 4: `a` is the status, `b` the header list (only the
  // body is left). Each member of `init` is read once, in this order.
  // `bodyType` replaces the body's own content type (Response.json).
  function finishResponse(r, body, init, bodyType) {
    const o = r[0], stage = r[1];
    let status = 200, statusText = "", list;
    if (stage === 4) {
      status = r[2]; list = r[3];
    } else {
      const s = stage === 0 ? init.status : r[2];
      if (stage >= 2) status = s;
      else if (s !== undefined) {
        status = Number(s);
        if (!internalResponse && (!Number.isInteger(status) || status < 200 || status > 599)) {
          throw new RangeError(`The status provided (${s}) is outside the range [200, 599]`);
        }
      }
      const t = stage <= 1 ? init.statusText : stage === 2 ? r[3] : undefined;
      if (t !== undefined) {
        statusText = String(t);
        if (statusText !== "" && /[^\t\x20-\x7e\x80-\xff]/.test(statusText)) throw new TypeError("Invalid statusText");
      }
      list = headerList(stage === 3 ? r[3] : init.headers);
    }
    const b = extractBody(body);
    const bytes = b[0], ctype = bodyType === undefined ? b[1] : bodyType, stream = b[2];
    if ((bytes !== null || stream !== null) && status !== 200 && nullBodyStatus(status)) {
      throw new TypeError(`Response with null body status (${status}) cannot have body`);
    }
    if (ctype && hIndex(list, "content-type") < 0) list.push(["content-type", ctype]);
    const rec = { __proto__: RESP_PROTO, list };
    if (status !== 200) rec.status = status;
    if (statusText !== "") rec.statusText = statusText;
    if (bytes !== null) rec.bytes = bytes;
    if (stream !== null) rec.stream = stream;
    RECS.set(o, rec);
    return o;
  }
  // `extends Object` only so that the constructor makes no `this` of its
  // own: it returns the object Rust made (its prototype is `new.target`'s,
  // so subclasses work). The constructor's own prototype is set back to
  // Function.prototype below.
  class Response extends Object {
    constructor(body, init) {
      const r = N.response(new.target, body, init, hName, hValue);
      return Array.isArray(r) ? finishResponse(r, body, init) : r;
    }
    get status() { return respRec(this).status; }
    get statusText() { return respRec(this).statusText; }
    get ok() { const s = respRec(this).status; return s >= 200 && s <= 299; }
    get headers() {
      const st = respRec(this);
      if (st.headers === null) { st.headers = headersOver(st.list, false); st.list = null; }
      return st.headers;
    }
    get type() { return respRec(this).type; }
    get url() { return respRec(this).url; }
    get redirected() { return respRec(this).redirected; }
    clone() {
      if (this.bodyUsed) throw new TypeError("Response body is already used");
      const st = respRec(this);
      const [bytes, stream] = cloneBody(this);
      const r = makeResponse(st.status, copyPairs(respList(st)), bytes);
      recOf(r).stream = stream;
      Object.assign(recOf(r), { statusText: st.statusText, type: st.type, url: st.url, redirected: st.redirected });
      return r;
    }
    static json(data, init = {}) {
      const text = JSON.stringify(data);
      if (text === undefined) throw new TypeError("Value is not JSON serializable");
      // `new Response(text, init)` with a JSON body's type.
      const r = N.response(Response, text, init, hName, hValue, JSON_TYPE);
      return Array.isArray(r) ? finishResponse(r, text, init, JSON_TYPE) : r;
    }
    static redirect(url, status = 302) {
      const u = URL.parse(str(url));
      if (!u) throw new TypeError(`Invalid URL: ${String(url)}`);
      if (!REDIRECTS.includes(Number(status))) throw new RangeError(`Invalid redirect status: ${status}`);
      const r = new Response(null, { status: Number(status), headers: { location: u.href } });
      freezeHeaders(r.headers);
      return r;
    }
    static error() {
      const r = makeResponse(0, [], null);
      recOf(r).type = "error";
      freezeHeaders(r.headers);
      return r;
    }
    get [Symbol.toStringTag]() { return "Response"; }
  }
  Object.setPrototypeOf(Response, Function.prototype);
  // Both arguments are optional (WebIDL): the constructor's length is 0.
  Object.defineProperty(Response, "length", { value: 0 });
  mixBody(Response);
  defineGlobal("Response", Response);
  function makeResponse(status, pairs, bytes) {
    internalResponse = true;
    try {
      const r = new Response(null, { status, headers: pairs });
      recOf(r).bytes = bytes;
      return r;
    } finally { internalResponse = false; }
  }

  // ---------------------------------------------------------------- timers
  function addTimer(cb, delay, args, repeat) {
    if (!inv) throw new Error("Timers can only be used while handling a request");
    if (inv.timers === null) inv.timers = new Map();
    if (inv.timers.size >= MAX_TIMERS) throw new RangeError("Too many timers");
    const id = nextTimerId++;
    const ms = Math.max(0, Number(delay) || 0);
    inv.timers.set(id, { cb, args, due: N.now() + ms, every: repeat ? Math.max(1, ms) : 0, seq: id });
    return id;
  }
  defineGlobal("setTimeout", (cb, delay = 0, ...args) => addTimer(cb, delay, args, false));
  defineGlobal("setInterval", (cb, delay = 0, ...args) => addTimer(cb, delay, args, true));
  const clear = (id) => { if (inv && inv.timers) inv.timers.delete(Number(id)); };
  defineGlobal("clearTimeout", clear);
  defineGlobal("clearInterval", clear);
  defineGlobal("queueMicrotask", (cb) => {
    if (typeof cb !== "function") throw new TypeError("callback is not a function");
    Promise.resolve().then(() => cb());
  });
  defineGlobal("performance", { now: () => N.now(), timeOrigin: Date.now() - N.now() });

  // ---------------------------------------------------------------- crypto
  const INT_ARRAYS = [Int8Array, Uint8Array, Uint8ClampedArray, Int16Array, Uint16Array, Int32Array, Uint32Array,
    BigInt64Array, BigUint64Array];
  const cryptoObj = {
    getRandomValues(array) {
      if (!INT_ARRAYS.some((T) => array instanceof T)) {
        throw new DOMEx("The data argument must be an integer-type TypedArray", "TypeMismatchError");
      }
      if (array.byteLength > 65536) {
        throw new DOMEx(`The ArrayBufferView's byte length (${array.byteLength}) exceeds 65536`, "QuotaExceededError");
      }
      new Uint8Array(array.buffer, array.byteOffset, array.byteLength).set(N.randomBytes(array.byteLength));
      return array;
    },
    randomUUID() { return N.randomUUID(); },
  };
  // crypto.subtle and CryptoKey are built on first use.
  let CR = null;
  const subtleGlue = () => CR || (CR = N.lazyGlue("subtle")({ N, DOMEx, toBytes, copyBytes, concat }));
  Object.defineProperty(cryptoObj, "subtle", { get() { return subtleGlue().subtle; }, enumerable: true, configurable: true });
  lazyGlobal("CryptoKey", () => subtleGlue().CryptoKey);
  defineGlobal("crypto", cryptoObj);

  // ---------------------------------------------------------------- structuredClone (built on first use)
  lazyGlobal("structuredClone", () => N.lazyGlue("clone")({ DOMEx }));

  // ---------------------------------------------------------------- host calls (fetch, next)
  function hostCall(kind, request, options) {
    if (!inv) return Promise.reject(new Error(`${kind}() can only be used while handling a request`));
    const st = recOf(request);
    const what = kind === "next" ? "context.next()" : "fetch";
    let bytes;
    try { bytes = peekBytes(request, what); } catch (e) { return Promise.reject(e); }
    if (bytes instanceof Promise) return bytes.then((b) => hostSend(kind, st, b, options));
    return hostSend(kind, st, bytes, options);
  }
  function hostSend(kind, st, bytes, options) {
    if (!inv) return Promise.reject(new Error(`${kind}() can only be used while handling a request`));
    const meta = JSON.stringify({
      method: st.method, url: st.url, headers: headerPairs(reqHeaders(st)),
      sendConditionalRequest: !!(options && options.sendConditionalRequest),
    });
    const id = nextHostId++;
    return new Promise((resolve, reject) => {
      (inv.host || (inv.host = new Map())).set(id, { resolve, reject, kind, url: st.url });
      const signal = st.signal;
      if (signal && signal.aborted) { inv.host.delete(id); reject(signal.reason); return; }
      if (signal) signal.addEventListener("abort", () => {
        if (inv && inv.host && inv.host.delete(id)) reject(signal.reason);
      }, { once: true });
      if (!N.hostCall(kind, id, meta, bytes === null ? new Uint8Array(0) : bytes)) {
        inv.host.delete(id);
        reject(new TypeError(`${kind === "next" ? "context.next()" : "fetch"} failed: the request body is too large`));
      }
    });
  }
  defineGlobal("fetch", function fetch(input, init) {
    try {
      return hostCall("fetch", new Request(input, init), null);
    } catch (e) {
      return Promise.reject(e);
    }
  });

  // ---------------------------------------------------------------- cookies
  const COOKIE_NAME = TOKEN;
  const COOKIE_VALUE = /^[\x21\x23-\x2b\x2d-\x3a\x3c-\x5b\x5d-\x7e]*$/;
  function parseCookies(header) {
    const out = new Map();
    if (!header) return out;
    for (const part of header.split(";")) {
      const i = part.indexOf("=");
      if (i < 0) continue;
      const k = part.slice(0, i).trim();
      let v = part.slice(i + 1).trim();
      if (v.length >= 2 && v.startsWith('"') && v.endsWith('"')) v = v.slice(1, -1);
      if (k && !out.has(k)) out.set(k, v);
    }
    return out;
  }
  function serializeCookie(c) {
    const name = String(c.name ?? "");
    const value = String(c.value ?? "");
    if (!COOKIE_NAME.test(name)) throw new TypeError(`Invalid cookie name: "${name}"`);
    if (!COOKIE_VALUE.test(value)) throw new TypeError(`Invalid cookie value: "${value}"`);
    const out = [`${name}=${value}`];
    if (c.secure || name.startsWith("__Secure-") || name.startsWith("__Host-")) out.push("Secure");
    if (c.httpOnly) out.push("HttpOnly");
    if (c.maxAge !== undefined) {
      const n = Number(c.maxAge);
      if (!Number.isInteger(n)) throw new TypeError("maxAge must be an integer");
      out.push(`Max-Age=${n}`);
    }
    const checkAttr = (what, v) => {
      const s = String(v);
      if (/[;\x00-\x1f\x7f]/.test(s)) throw new TypeError(`Invalid cookie ${what}: "${s}"`);
      return s;
    };
    if (c.domain) out.push(`Domain=${checkAttr("domain", c.domain)}`);
    if (c.sameSite) {
      const ss = String(c.sameSite);
      if (!["Strict", "Lax", "None"].includes(ss)) throw new TypeError(`Invalid sameSite: "${ss}"`);
      out.push(`SameSite=${ss}`);
    }
    if (c.path) out.push(`Path=${checkAttr("path", c.path)}`);
    if (c.expires !== undefined && c.expires !== null) {
      const d = c.expires instanceof Date ? c.expires : new Date(c.expires);
      if (isNaN(d.getTime())) throw new TypeError("Invalid cookie expires");
      out.push(`Expires=${d.toUTCString()}`);
    }
    if (c.unparsed) for (const u of c.unparsed) out.push(checkAttr("attribute", u));
    return out.join("; ");
  }
  function makeCookies(reqHeaders) {
    const jar = parseCookies(reqHeaders.get("cookie"));
    return Object.freeze({
      get(name) {
        const n = typeof name === "object" && name !== null ? String(name.name) : String(name);
        return jar.get(n);
      },
      set(a, b) {
        const c = typeof a === "object" && a !== null ? a : { name: a, value: b };
        (inv.cookies || (inv.cookies = [])).push(serializeCookie(c));
      },
      delete(a) {
        const c = typeof a === "object" && a !== null ? a : { name: a };
        // As Netlify's runtime: the path defaults to "/", so a cookie set for
        // the whole site is removed from any page.
        (inv.cookies || (inv.cookies = [])).push(serializeCookie({ name: c.name, value: "", domain: c.domain,
          path: c.path ?? "/", expires: new Date(0) }));
      },
    });
  }

  // ---------------------------------------------------------------- Netlify global
  let currentContext = null;
  // The invocation's env, parsed on first use; set/delete stay in this invocation.
  // Outside a handler (module top level, late timers): the deploy's env.
  let deployEnvJson = "{}";
  let deployEnv = null;
  const envOf = () => (inv ? inv.envObj || (inv.envObj = JSON.parse(inv.envJson))
    : deployEnv || (deployEnv = JSON.parse(deployEnvJson || "{}")));
  const envObj = Object.freeze({
    get(k) { const e = envOf(); return e && Object.prototype.hasOwnProperty.call(e, k) ? e[k] : undefined; },
    has(k) { const e = envOf(); return !!e && Object.prototype.hasOwnProperty.call(e, k); },
    set(k, v) { const e = envOf(); if (e) e[String(k)] = String(v); },
    delete(k) { const e = envOf(); if (e) delete e[String(k)]; },
    toObject() { const e = envOf(); return e ? { ...e } : {}; },
  });
  defineGlobal("Netlify", Object.freeze({
    env: envObj,
    get context() { return currentContext; },
  }));

  // The per-request `context`. A class, so that requests share one shape and
  // one set of methods; `run` makes its objects, and the request each
  // belongs to is kept in a WeakMap.
  const CTX = new WeakMap();
  class Context {
    get account() { return ctxData(this).account; }
    get deploy() { return ctxData(this).deploy; }
    get geo() { return ctxData(this).geo; }
    get ip() { return ctxData(this).ip; }
    get params() { return ctxData(this).params; }
    get requestId() { return ctxData(this).requestId; }
    get server() { return ctxData(this).server; }
    get site() { return ctxData(this).site; }
    get url() { const st = CTX.get(this); return st.url || (st.url = new URL(st.request.url)); }
    get cookies() { const st = CTX.get(this); return st.jar || (st.jar = makeCookies(st.request.headers)); }
    json(v, init) { return Response.json(v, init); }
    log(...args) { consoleObj.log(...args); }
    next(a, b) {
      if (a instanceof Request) return hostCall("next", a, b);
      return hostCall("next", CTX.get(this).request, a);
    }
    waitUntil(p) {
      const state = inv;
      if (!state) return;
      N.waits(++state.waitCount);
      Promise.resolve(p).then(() => {}, (e) => {
        N.log("error", str(`Uncaught (in waitUntil) ${fmt(e, 0)}`));
      }).then(() => { state.waitCount--; if (state === inv) N.waits(state.waitCount); });
    }
    rewrite(url) {
      const request = CTX.get(this).request;
      const u = new URL(String(url), request.url);
      return hostCall("next", new Request(u.href, { method: "GET", headers: request.headers }), undefined);
    }
  }
  // The context data is parsed on first use: most functions read little of it.
  function ctxData(ctx) {
    const st = CTX.get(ctx);
    if (!st) throw new TypeError("Illegal invocation");
    // (Rust keeps the JSON until then: the context is a quick object.)
    if (st.c === null) {
      const json = N.takeContext(ctx);
      st.c = json === undefined ? {} : JSON.parse(json);
    }
    return st.c;
  }

  // ---------------------------------------------------------------- outcome
  function describe(e) {
    if (e instanceof Error) return { name: e.name, message: `${e.name}: ${e.message}`, stack: String(e.stack || "") };
    let m;
    try { m = fmt(e, 0); } catch (_) { m = "a value"; }
    return { name: "", message: `Uncaught ${m}`, stack: "" };
  }
  // Hands the Response `v` the handler returned to Rust (`N.answer`) when
  // `settleValue` could not at once, or a promise of that when its body is
  // a stream, drained here (up to MAX_BODY bytes). Throws if it cannot be
  // sent.
  function answer(v, state) {
    const st = respRec(v); // (its body's record too)
    if (st.type === "error") throw new TypeError("The function returned Response.error()");
    if (st.used) throw new TypeError("The returned Response's body has already been read");
    const held = unreadHeld(st);
    if (held !== undefined && held.owner === state) {
      held.returned = true;
      N.answer(st.status, respList(st), null, state.cookies, held.h);
      return undefined;
    }
    const bytes = peekBytes(v, "The returned Response");
    if (bytes instanceof Promise) {
      return bytes.then((b) => { if (state === inv) N.answer(st.status, respList(st), b, state.cookies, null); });
    }
    N.answer(st.status, respList(st), bytes, state.cookies, null);
    return undefined;
  }

  // Hands a failed invocation `state` to Rust (once; nothing if the
  // invocation is over): done 2 rejected, 3 invalid return, with the
  // cookies set so far.
  function settle(state, done, error) {
    if (state !== inv) return;
    N.settled(done, JSON.stringify(describe(error)), state.cookies);
  }

  const PENDING = Object.freeze({});
  // Settles the invocation `state` with the handler's value `v`: each kind
  // of answer reaches Rust in one native call.
  function settleValue(state, v) {
    if (state !== inv) return;
    if (v === undefined || v === null) { N.passed(state.cookies); return; }
    if (v instanceof Response) {
      // The usual answer goes at once: a quick Response JavaScript never
      // looked at (its fields are still in Rust), or one whose body is
      // known bytes or text (N.answer is false for text that is not
      // well-formed, which `answer` makes so).
      if (N.answerQuick(v, state.cookies)) return;
      const st = RECS.get(v); // (its body's record too)
      if (st !== undefined && st.req === false && st.stream === null && st.held === undefined && !st.used
        && st.type !== "error" && N.answer(st.status, respList(st), st.bytes, state.cookies, null)) return;
      let r;
      try {
        r = answer(v, state);
      } catch (e) {
        settle(state, 3, e);
        return;
      }
      // A body stream that errored is the tenant's error; a body too large
      // or of the wrong type is an invalid return value.
      if (r !== undefined) r.then(undefined, (e) => settle(state, S !== null && S.isBodyError(e) ? 3 : 2, e));
      return;
    }
    if (v instanceof URL) { N.rewrote(v.href, state.cookies); return; }
    settle(state, 3, new TypeError(
      `The function must return a Response, a URL or undefined (got ${Object.prototype.toString.call(v)})`));
  }

  // ---------------------------------------------------------------- unhandled rejections
  // QuickJS reports a rejection without handlers, and again if a handler is
  // attached later; what is still unhandled when the invocation ends is logged.
  const unhandled = new Map();
  Object.defineProperty(G, "__ledgeRejection", {
    value: (promise, reason, handled) => {
      if (handled) unhandled.delete(promise);
      else if (unhandled.size < 100) unhandled.set(promise, reason);
    },
    writable: false, configurable: false, enumerable: false,
  });
  function flushRejections() {
    if (unhandled.size === 0) return;
    for (const reason of unhandled.values()) N.log("error", str(`Uncaught (in promise) ${fmt(reason, 0)}`));
    unhandled.clear();
  }

  const REQUEST_PROTO = Request.prototype;
  const CONTEXT_PROTO = Context.prototype;
  // ---------------------------------------------------------------- object shapes
  // QuickJS frees an object shape, and with it the cached transition to it,
  // as soon as no object has that shape; every invocation would then build
  // the shapes of its records again, property by property. One live object
  // per prefix of each hot record's keys (in the order the code adds them)
  // and per hot prototype keeps them.
  const SHAPES = [];
  function keepShapes(proto, keys) {
    for (let n = 0; n <= keys.length; n++) {
      const o = Object.create(proto);
      for (let i = 0; i < n; i++) o[keys[i]] = null;
      SHAPES.push(o);
    }
  }
  keepShapes(INV_PROTO, ["request", "c"]); // inv (and CTX)
  keepShapes(INV_PROTO, ["request", "envJson", "cookies", "envObj"]);
  keepShapes(REQ_PROTO, ["url", "raw", "headers"]); // Requests' records
  keepShapes(REQ_PROTO, ["url", "method", "raw", "bytes", "used"]);
  keepShapes(Object.prototype, ["list", "immutable"]); // HDRS
  keepShapes(RESP_PROTO, ["list", "status", "bytes", "used"]); // Responses' records
  keepShapes(RESP_PROTO, ["list", "bytes", "used"]);
  for (const proto of [Request.prototype, Response.prototype, Headers.prototype, Context.prototype]) {
    keepShapes(proto, []);
  }
  SHAPES.push(new Uint8Array(0), Promise.resolve());

  // ---------------------------------------------------------------- internals (for Rust only)
  return {
    // Held here: a local nothing refers to would die with this call.
    shapes: SHAPES,
    // Made by Rust with the invocation's request (validated and
    // normalised), which gets its record on first use (`takeQuick`).
    requestProto: REQUEST_PROTO,
    // The same for the invocation's `context`, which holds the context's
    // JSON until its data is first read (`ctxData`).
    contextProto: CONTEXT_PROTO,
    // Start an invocation of `handler` for `req` and `context` (quick
    // objects). The outcome reaches Rust through N.answerQuick, N.answer,
    // N.passed, N.rewrote or (a failure) N.settled; pending waitUntil work
    // through N.waits.
    run(handler, req, context, envJson) {
      // Records get own properties only where they differ from their
      // prototype's: QuickJS pays for each, and more for a third (it grows
      // the object's property array). (A literal with `__proto__` costs
      // less than a constructor call or Object.create.)
      const state = { __proto__: INV_PROTO, request: req };
      if (envJson !== "{}") state.envJson = envJson;
      inv = state;
      internalResponse = false;
      CTX.set(context, state);
      currentContext = context;
      let v;
      try { v = handler(req, context); } catch (e) { settle(state, 2, e); return; }
      // A handler that answers at once (a Response, a URL or nothing), or
      // an async one whose promise is already fulfilled (it returned
      // without waiting), settles now: no reaction, no job. Microtasks it
      // queued still run before the invocation ends, but what they do to
      // the outcome (a cookie set) comes too late: the answer is taken as
      // the handler gave it.
      if (v === undefined || v === null) { N.passed(state.cookies); return; }
      if (v instanceof Response) {
        // The usual answer: a quick Response JavaScript never looked at.
        if (!N.answerQuick(v, state.cookies)) settleValue(state, v);
        return;
      }
      if (v instanceof URL) { settleValue(state, v); return; }
      if (v instanceof Promise) {
        const x = N.fulfilled(v, PENDING);
        if (x !== PENDING) { settleValue(state, x); return; }
      }
      Promise.resolve(v).then((x) => settleValue(state, x), (e) => settle(state, 2, e));
    },
    resolveHost(id, ok, metaJson, body) {
      if (!inv || !inv.host) return;
      const p = inv.host.get(id);
      if (!p) return;
      inv.host.delete(id);
      if (p.kind === "read") {
        if (ok) p.resolve(body === null || body === undefined ? null : body);
        else p.reject(new TypeError(`reading the response body failed: ${metaJson}`));
        return;
      }
      if (!ok) { p.reject(new TypeError(`${p.kind === "next" ? "context.next()" : "fetch"} failed: ${metaJson}`)); return; }
      try {
        const meta = JSON.parse(metaJson);
        const kept = typeof meta.handle === "number" && !nullBodyStatus(meta.status);
        const bytes = nullBodyStatus(meta.status) || kept ? null : body;
        const r = makeResponse(meta.status, meta.headers, bytes);
        if (kept) recOf(r).held = { h: meta.handle, owner: inv, returned: false };
        if (p.kind === "fetch") recOf(r).url = p.url;
        p.resolve(r);
      } catch (e) {
        p.reject(e);
      }
    },
    nextTimer() {
      if (!inv || !inv.timers || inv.timers.size === 0) return -1;
      let best = Infinity;
      for (const t of inv.timers.values()) if (t.due < best) best = t.due;
      return best;
    },
    fireTimers() {
      if (!inv || !inv.timers) return;
      const now = N.now();
      const due = [...inv.timers.entries()].filter(([, t]) => t.due <= now).sort((a, b) => a[1].due - b[1].due || a[1].seq - b[1].seq);
      for (const [id, t] of due) {
        if (!inv.timers.has(id)) continue;
        if (t.every) t.due = now + t.every; else inv.timers.delete(id);
        try {
          if (typeof t.cb === "function") t.cb(...t.args);
        } catch (e) {
          N.log("error", str(`Uncaught (in timer) ${fmt(e, 0)}`));
        }
      }
    },
    end() {
      flushRejections();
      inv = null; currentContext = null;
    },
    // The deploy's env, for code outside a handler (set before the
    // bundle's modules are evaluated).
    deployEnv(json) {
      deployEnvJson = json;
      deployEnv = null;
    },
    config(ns) {
      const c = ns.config;
      if (c === undefined || c === null) return null;
      return JSON.stringify(c);
    },
  };
}
