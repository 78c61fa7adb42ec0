// URLPattern (https://urlpattern.spec.whatwg.org/), written from the spec's
// algorithms: the tokenizer, the pattern parser, regular expression and
// pattern string generation, the constructor string parser and the init
// processing. Components are canonicalized with the URL parser (`E.urlParse`,
// `E.urlSet`, the natives behind URL). Built lazily by the glue.
function ledgeURLPattern(E) {
  "use strict";
  const COMPONENTS = ["protocol", "username", "password", "hostname", "port", "pathname", "search", "hash"];
  const SPECIAL = { "ftp": "21", "file": "", "http": "80", "https": "443", "ws": "80", "wss": "443" };
  const ID_START = /[$_\p{ID_Start}]/u;
  const ID_CONTINUE = /[$\u200c\u200d\p{ID_Continue}]/u;
  const validName = (cp, first) => (first ? ID_START : ID_CONTINUE).test(cp);
  const isAscii = (c) => c.charCodeAt(0) < 0x80;

  // ------------------------------------------------------------ tokenizer
  // Token: { type, index, value }.
  function tokenize(input, strict) {
    const tokens = [];
    const cps = Array.from(input); // code points
    const offsets = [];
    { let o = 0; for (const c of cps) { offsets.push(o); o += c.length; } offsets.push(o); }
    let i = 0;
    const add = (type, start, next, value) => {
      tokens.push({ type, index: offsets[start], value });
      i = next;
    };
    const fail = (start, next, msg) => {
      if (strict) throw new TypeError(`Invalid URLPattern: ${msg} at ${offsets[start]} in "${input}"`);
      add("invalid-char", start, next, cps.slice(start, next).join(""));
    };
    while (i < cps.length) {
      const c = cps[i];
      if (c === "*") { add("asterisk", i, i + 1, c); continue; }
      if (c === "+" || c === "?") { add("other-modifier", i, i + 1, c); continue; }
      if (c === "\\") {
        if (i === cps.length - 1) { fail(i, i + 1, "trailing escape"); continue; }
        add("escaped-char", i, i + 2, cps[i + 1]);
        continue;
      }
      if (c === "{") { add("open", i, i + 1, c); continue; }
      if (c === "}") { add("close", i, i + 1, c); continue; }
      if (c === ":") {
        let p = i + 1;
        while (p < cps.length && validName(cps[p], p === i + 1)) p++;
        if (p <= i + 1) { fail(i, i + 1, "missing name after ':'"); continue; }
        add("name", i, p, cps.slice(i + 1, p).join(""));
        continue;
      }
      if (c === "(") {
        let depth = 1, p = i + 1, bad = null;
        const start = p;
        while (p < cps.length) {
          const d = cps[p];
          if (!isAscii(d)) { bad = "non-ASCII character in a regexp group"; break; }
          if (p === start && d === "?") { bad = "a regexp group cannot start with '?'"; break; }
          if (d === "\\") {
            if (p === cps.length - 1) { bad = "trailing escape in a regexp group"; break; }
            if (!isAscii(cps[p + 1])) { bad = "non-ASCII character in a regexp group"; break; }
            p += 2;
            continue;
          }
          if (d === ")") {
            depth--;
            if (depth === 0) { p++; break; }
          } else if (d === "(") {
            depth++;
            if (p === cps.length - 1) { bad = "unterminated regexp group"; break; }
            if (cps[p + 1] !== "?") { bad = "capturing groups are not allowed inside a regexp group"; break; }
          }
          p++;
        }
        if (bad === null && depth !== 0) bad = "unbalanced regexp group";
        if (bad === null && p - start - 1 === 0) bad = "empty regexp group";
        if (bad !== null) { fail(i, i + 1, bad); continue; }
        add("regexp", i, p, cps.slice(start, p - 1).join(""));
        continue;
      }
      add("char", i, i + 1, c);
    }
    tokens.push({ type: "end", index: offsets[cps.length], value: "" });
    return tokens;
  }

  // ------------------------------------------------------------ pattern parser
  const escapeRegexp = (s) => s.replace(/[.+*?^${}()[\]|/\\]/g, "\\$&");
  const escapePattern = (s) => s.replace(/[+*?:{}()\\]/g, "\\$&");
  const segmentWildcard = (o) => `[^${escapeRegexp(o.delimiter)}]+?`;
  const MOD = { "?": "optional", "*": "zero-or-more", "+": "one-or-more" };
  const modString = (m) => (m === "optional" ? "?" : m === "zero-or-more" ? "*" : m === "one-or-more" ? "+" : "");

  function parsePattern(input, options, encode) {
    const tokens = tokenize(input, true);
    const parts = [];
    const segWild = segmentWildcard(options);
    let pending = "", index = 0, nextNumeric = 0;
    const tryConsume = (type) => {
      const t = tokens[index];
      if (t.type !== type) return null;
      index++;
      return t;
    };
    const tryRegexpOrWildcard = (name) => {
      const t = tryConsume("regexp");
      if (name === null && t === null) return tryConsume("asterisk");
      return t;
    };
    const tryModifier = () => tryConsume("other-modifier") || tryConsume("asterisk");
    const consumeText = () => {
      let r = "";
      for (;;) {
        const t = tryConsume("char") || tryConsume("escaped-char");
        if (t === null) return r;
        r += t.value;
      }
    };
    const required = (type) => {
      const t = tryConsume(type);
      if (t === null) {
        const at = tokens[index];
        throw new TypeError(`Invalid URLPattern: unexpected ${at.type === "end" ? "end" : `"${at.value}"`} at ${at.index} in "${input}"`);
      }
      return t;
    };
    const flushPending = () => {
      if (pending === "") return;
      const value = encode(pending);
      pending = "";
      parts.push({ type: "fixed-text", value, modifier: "none", name: "", prefix: "", suffix: "" });
    };
    const addPart = (prefix, nameTok, reTok, suffix, modTok) => {
      const modifier = modTok === null ? "none" : MOD[modTok.value];
      if (nameTok === null && reTok === null && modifier === "none") { pending += prefix; return; }
      flushPending();
      if (nameTok === null && reTok === null) {
        if (prefix === "") return;
        parts.push({ type: "fixed-text", value: encode(prefix), modifier, name: "", prefix: "", suffix: "" });
        return;
      }
      let re = reTok === null ? segWild : reTok.type === "asterisk" ? ".*" : reTok.value;
      let type = "regexp";
      if (re === segWild) { type = "segment-wildcard"; re = ""; } else if (re === ".*") { type = "full-wildcard"; re = ""; }
      let name = "";
      if (nameTok !== null) name = nameTok.value;
      else name = String(nextNumeric++);
      if (parts.some((p) => p.name === name && p.type !== "fixed-text")) {
        throw new TypeError(`Invalid URLPattern: duplicate group name "${name}" in "${input}"`);
      }
      parts.push({ type, value: re, modifier, name, prefix: encode(prefix), suffix: encode(suffix) });
    };
    while (index < tokens.length) {
      const charTok = tryConsume("char");
      let nameTok = tryConsume("name");
      let reTok = tryRegexpOrWildcard(nameTok);
      if (nameTok !== null || reTok !== null) {
        let prefix = charTok === null ? "" : charTok.value;
        if (prefix !== "" && prefix !== options.prefix) { pending += prefix; prefix = ""; }
        flushPending();
        addPart(prefix, nameTok, reTok, "", tryModifier());
        continue;
      }
      const fixed = charTok || tryConsume("escaped-char");
      if (fixed !== null) { pending += fixed.value; continue; }
      if (tryConsume("open") !== null) {
        const prefix = consumeText();
        nameTok = tryConsume("name");
        reTok = tryRegexpOrWildcard(nameTok);
        const suffix = consumeText();
        required("close");
        addPart(prefix, nameTok, reTok, suffix, tryModifier());
        continue;
      }
      flushPending();
      required("end");
    }
    return parts;
  }

  function generateRegexp(parts, options) {
    let r = "^";
    const names = [];
    for (const p of parts) {
      if (p.type === "fixed-text") {
        r += p.modifier === "none" ? escapeRegexp(p.value) : `(?:${escapeRegexp(p.value)})${modString(p.modifier)}`;
        continue;
      }
      names.push(p.name);
      const v = p.type === "segment-wildcard" ? segmentWildcard(options) : p.type === "full-wildcard" ? ".*" : p.value;
      const single = p.modifier === "none" || p.modifier === "optional";
      if (p.prefix === "" && p.suffix === "") {
        r += single ? `(${v})${modString(p.modifier)}` : `((?:${v})${modString(p.modifier)})`;
        continue;
      }
      const pre = escapeRegexp(p.prefix), suf = escapeRegexp(p.suffix);
      if (single) { r += `(?:${pre}(${v})${suf})${modString(p.modifier)}`; continue; }
      r += `(?:${pre}((?:${v})(?:${suf}${pre}(?:${v}))*)${suf})`;
      if (p.modifier === "zero-or-more") r += "?";
    }
    return [r + "$", names];
  }

  function generatePatternString(parts, options) {
    let r = "";
    for (let i = 0; i < parts.length; i++) {
      const p = parts[i], prev = i > 0 ? parts[i - 1] : null, next = i + 1 < parts.length ? parts[i + 1] : null;
      if (p.type === "fixed-text") {
        r += p.modifier === "none" ? escapePattern(p.value) : `{${escapePattern(p.value)}}${modString(p.modifier)}`;
        continue;
      }
      const custom = !/^[0-9]/.test(p.name);
      let group = p.suffix !== "" || (p.prefix !== "" && p.prefix !== options.prefix);
      if (!group && custom && p.type === "segment-wildcard" && p.modifier === "none" && next !== null
          && next.prefix === "" && next.suffix === "") {
        group = next.type === "fixed-text" ? validName(Array.from(next.value)[0] || "", false) : /^[0-9]/.test(next.name);
      }
      if (!group && p.prefix === "" && prev !== null && prev.type === "fixed-text" && prev.value.endsWith(options.prefix) && options.prefix !== "") {
        group = true;
      }
      if (group) r += "{";
      r += escapePattern(p.prefix);
      if (custom) r += ":" + p.name;
      if (p.type === "regexp") r += `(${p.value})`;
      else if (p.type === "segment-wildcard" && !custom) r += `(${segmentWildcard(options)})`;
      else if (p.type === "full-wildcard") {
        r += !custom && (prev === null || prev.type === "fixed-text" || prev.modifier !== "none" || group || p.prefix !== "")
          ? "*" : "(.*)";
      }
      if (p.type === "segment-wildcard" && custom && p.suffix !== "" && validName(Array.from(p.suffix)[0], false)) r += "\\";
      r += escapePattern(p.suffix);
      if (group) r += "}";
      r += modString(p.modifier);
    }
    return r;
  }

  const DEFAULT_OPTS = { delimiter: "", prefix: "" };
  const HOST_OPTS = { delimiter: ".", prefix: "" };
  const PATH_OPTS = { delimiter: "/", prefix: "/" };
  function compile(input, encode, options, ignoreCase) {
    const parts = parsePattern(input, options, encode);
    const [source, names] = generateRegexp(parts, options);
    let regexp;
    try { regexp = new RegExp(source, ignoreCase ? "ui" : "u"); } catch (e) {
      throw new TypeError(`Invalid URLPattern: the regular expression of "${input}" is invalid: ${e.message}`);
    }
    return { pattern: generatePatternString(parts, options), regexp, names,
      hasRegExpGroups: parts.some((p) => p.type === "regexp") };
  }
  const matchesSpecial = (c) => Object.keys(SPECIAL).some((s) => c.regexp.test(s));

  // ------------------------------------------------------------ canonicalization
  // parts: [href, origin, protocol, username, password, host, hostname, port, pathname, search, hash]
  const DUMMY = "fake://dummy.test";
  function setOn(base, prop, value, what) {
    const parts = E.urlSet(base, prop, value);
    if (!parts) throw new TypeError(`Invalid URLPattern: invalid ${what} "${value}"`);
    return parts;
  }
  function canonProtocol(v) {
    if (v === "") return v;
    const parts = E.urlParse(`${v}://dummy.test`);
    if (!parts) throw new TypeError(`Invalid URLPattern: invalid protocol "${v}"`);
    return parts[2].slice(0, -1);
  }
  const canonUsername = (v) => (v === "" ? v : setOn(DUMMY, "username", v, "username")[3]);
  const canonPassword = (v) => (v === "" ? v : setOn(DUMMY, "password", v, "password")[4]);
  function canonHostname(v) {
    if (v === "") return v;
    if (/[/?#@:\\]/.test(v) && !/^\[[0-9a-fA-F:.]*\]$/.test(v)) {
      throw new TypeError(`Invalid URLPattern: invalid hostname "${v}"`);
    }
    return setOn("https://dummy.test", "hostname", v, "hostname")[6];
  }
  function canonPort(v, protocol) {
    if (v === "") return v;
    if (!/^[0-9]+$/.test(v)) throw new TypeError(`Invalid URLPattern: invalid port "${v}"`);
    const scheme = protocol !== undefined && protocol !== "" ? protocol : "fake";
    const base = E.urlParse(`${scheme}://dummy.test`) ? `${scheme}://dummy.test` : DUMMY;
    return setOn(base, "port", v, "port")[7];
  }
  function canonPathname(v) {
    if (v === "") return v;
    const lead = v[0] === "/";
    const out = setOn("https://dummy.test", "pathname", lead ? v : "/-" + v, "pathname")[8];
    return lead ? out : out.slice(2);
  }
  function canonOpaquePathname(v) {
    if (v === "") return v;
    const parts = E.urlParse(`fake:${v}`);
    if (!parts) throw new TypeError(`Invalid URLPattern: invalid pathname "${v}"`);
    return parts[8];
  }
  const canonSearch = (v) => (v === "" ? v : setOn(DUMMY, "search", v, "search")[9].slice(1));
  const canonHash = (v) => (v === "" ? v : setOn(DUMMY, "hash", v, "hash")[10].slice(1));

  // ------------------------------------------------------------ init processing
  function processInit(init, type, base) {
    const r = { ...base };
    const isPattern = type === "pattern";
    const baseStr = (s) => (isPattern ? escapePattern(s) : s);
    let baseURL = null;
    const has = (k) => init[k] !== undefined;
    if (has("baseURL")) {
      baseURL = E.urlParse(String(init.baseURL));
      if (!baseURL) throw new TypeError(`Invalid URLPattern: invalid baseURL "${init.baseURL}"`);
      const [, , protocol, username, password, , hostname, port, pathname, search, hash] = baseURL;
      if (!has("protocol")) r.protocol = baseStr(protocol.slice(0, -1));
      if (!isPattern && !has("protocol") && !has("hostname") && !has("port") && !has("username")) r.username = baseStr(username);
      if (!isPattern && !has("protocol") && !has("hostname") && !has("port") && !has("username") && !has("password")) {
        r.password = baseStr(password);
      }
      if (!has("protocol") && !has("hostname")) r.hostname = baseStr(hostname);
      if (!has("protocol") && !has("hostname") && !has("port")) r.port = baseStr(port);
      if (!has("protocol") && !has("hostname") && !has("port") && !has("pathname")) r.pathname = baseStr(pathname);
      if (!has("protocol") && !has("hostname") && !has("port") && !has("pathname") && !has("search")) {
        r.search = baseStr(search.slice(1));
      }
      if (!has("protocol") && !has("hostname") && !has("port") && !has("pathname") && !has("search") && !has("hash")) {
        r.hash = baseStr(hash.slice(1));
      }
    }
    const s = (k) => String(init[k]);
    if (has("protocol")) {
      const v = s("protocol").replace(/:$/, "");
      r.protocol = isPattern ? v : canonProtocol(v);
    }
    if (has("username")) r.username = isPattern ? s("username") : canonUsername(s("username"));
    if (has("password")) r.password = isPattern ? s("password") : canonPassword(s("password"));
    if (has("hostname")) r.hostname = isPattern ? s("hostname") : canonHostname(s("hostname"));
    if (has("port")) r.port = isPattern ? s("port") : canonPort(s("port"), r.protocol);
    if (has("pathname")) {
      let v = s("pathname");
      if (baseURL !== null && !/^[a-z][a-z0-9+.-]*:[^/]/i.test(baseURL[0])) {
        const absolute = isPattern ? /^(\/|\\\/|\{\/)/.test(v) : v.startsWith("/");
        if (!absolute) {
          const bp = baseStr(baseURL[8]);
          const slash = bp.lastIndexOf("/");
          if (slash >= 0) v = bp.slice(0, slash + 1) + v;
        }
      }
      if (!isPattern) v = r.protocol === undefined || r.protocol === "" || r.protocol in SPECIAL ? canonPathname(v) : canonOpaquePathname(v);
      r.pathname = v;
    }
    if (has("search")) {
      const v = s("search").replace(/^\?/, "");
      r.search = isPattern ? v : canonSearch(v);
    }
    if (has("hash")) {
      const v = s("hash").replace(/^#/, "");
      r.hash = isPattern ? v : canonHash(v);
    }
    return r;
  }

  // ------------------------------------------------------------ constructor string parser
  function parseConstructorString(input) {
    const tokens = tokenize(input, false);
    const result = {};
    let state = "init", componentStart = 0, tokenIndex = 0, tokenIncrement = 1, groupDepth = 0, ipv6Depth = 0;
    let special = false;
    const safe = (i) => (i < tokens.length ? tokens[i] : tokens[tokens.length - 1]);
    const nonSpecial = (i, v) => {
      const t = safe(i);
      return t.value === v && (t.type === "char" || t.type === "escaped-char" || t.type === "invalid-char");
    };
    const isSearchPrefix = () => {
      if (nonSpecial(tokenIndex, "?")) return true;
      if (tokens[tokenIndex].value !== "?") return false;
      if (tokenIndex - 1 < 0) return true;
      const prev = safe(tokenIndex - 1).type;
      return !(prev === "name" || prev === "regexp" || prev === "close" || prev === "asterisk");
    };
    const componentString = () => input.slice(safe(componentStart).index, tokens[tokenIndex].index);
    const EARLY = ["protocol", "authority", "username", "password"];
    const change = (next, skip) => {
      if (state !== "init" && state !== "authority" && state !== "done") result[state] = componentString();
      if (state !== "init" && next !== "done") {
        if (EARLY.includes(state) && ["port", "pathname", "search", "hash"].includes(next) && result.hostname === undefined) {
          result.hostname = "";
        }
        if ([...EARLY, "hostname", "port"].includes(state) && (next === "search" || next === "hash") && result.pathname === undefined) {
          result.pathname = special ? "/" : "";
        }
        if ([...EARLY, "hostname", "port", "pathname"].includes(state) && next === "hash" && result.search === undefined) {
          result.search = "";
        }
      }
      state = next;
      tokenIndex += skip;
      componentStart = tokenIndex;
      tokenIncrement = 0;
    };
    const rewind = () => { tokenIndex = componentStart; tokenIncrement = 0; };
    const rewindTo = (s) => { rewind(); state = s; };
    while (tokenIndex < tokens.length) {
      tokenIncrement = 1;
      const tok = tokens[tokenIndex];
      if (tok.type === "end") {
        if (state === "init") {
          rewind();
          if (nonSpecial(tokenIndex, "#")) change("hash", 1);
          else if (isSearchPrefix()) change("search", 1);
          else change("pathname", 0);
          tokenIndex += tokenIncrement;
          continue;
        }
        if (state === "authority") { rewindTo("hostname"); tokenIndex += tokenIncrement; continue; }
        change("done", 0);
        break;
      }
      if (tok.type === "open") { groupDepth++; tokenIndex += tokenIncrement; continue; }
      if (groupDepth > 0) {
        if (tok.type === "close") groupDepth--;
        else { tokenIndex += tokenIncrement; continue; }
      }
      switch (state) {
        case "init":
          if (nonSpecial(tokenIndex, ":")) rewindTo("protocol");
          break;
        case "protocol":
          if (nonSpecial(tokenIndex, ":")) {
            special = matchesSpecial(compile(componentString(), canonProtocol, DEFAULT_OPTS, false));
            let next = "pathname", skip = 1;
            if (nonSpecial(tokenIndex + 1, "/") && nonSpecial(tokenIndex + 2, "/")) { next = "authority"; skip = 3; } else if (special) next = "authority";
            change(next, skip);
          }
          break;
        case "authority":
          if (nonSpecial(tokenIndex, "@")) rewindTo("username");
          else if (nonSpecial(tokenIndex, "/") || isSearchPrefix() || nonSpecial(tokenIndex, "#")) rewindTo("hostname");
          break;
        case "username":
          if (nonSpecial(tokenIndex, ":")) change("password", 1);
          else if (nonSpecial(tokenIndex, "@")) change("hostname", 1);
          break;
        case "password":
          if (nonSpecial(tokenIndex, "@")) change("hostname", 1);
          break;
        case "hostname":
          if (nonSpecial(tokenIndex, "[")) ipv6Depth++;
          else if (nonSpecial(tokenIndex, "]")) ipv6Depth--;
          else if (nonSpecial(tokenIndex, ":") && ipv6Depth === 0) change("port", 1);
          else if (nonSpecial(tokenIndex, "/")) change("pathname", 0);
          else if (isSearchPrefix()) change("search", 1);
          else if (nonSpecial(tokenIndex, "#")) change("hash", 1);
          break;
        case "port":
          if (nonSpecial(tokenIndex, "/")) change("pathname", 0);
          else if (isSearchPrefix()) change("search", 1);
          else if (nonSpecial(tokenIndex, "#")) change("hash", 1);
          break;
        case "pathname":
          if (isSearchPrefix()) change("search", 1);
          else if (nonSpecial(tokenIndex, "#")) change("hash", 1);
          break;
        case "search":
          if (nonSpecial(tokenIndex, "#")) change("hash", 1);
          break;
        default:
          break;
      }
      tokenIndex += tokenIncrement;
    }
    if (result.hostname !== undefined && result.port === undefined) result.port = "";
    return result;
  }

  // ------------------------------------------------------------ URLPattern
  const PATTERNS = new WeakMap();
  class URLPattern {
    constructor(input = {}, baseURL = undefined, options = undefined) {
      if (baseURL !== undefined && baseURL !== null && typeof baseURL === "object") { options = baseURL; baseURL = undefined; }
      const ignoreCase = !!(options && options.ignoreCase);
      let init;
      if (typeof input === "string") {
        init = parseConstructorString(input);
        if (baseURL === undefined && init.protocol === undefined) {
          throw new TypeError(`Invalid URLPattern: "${input}" is relative and no base URL was given`);
        }
        if (baseURL !== undefined) init.baseURL = String(baseURL);
      } else {
        if (input === null || typeof input !== "object") throw new TypeError("URLPattern needs a string or an init object");
        if (baseURL !== undefined) throw new TypeError("URLPattern: a base URL is only allowed with a string pattern");
        init = input;
      }
      const p = processInit(init, "pattern", {});
      for (const k of COMPONENTS) if (p[k] === undefined) p[k] = "*";
      if (p.protocol in SPECIAL && p.port === SPECIAL[p.protocol]) p.port = "";
      const c = {};
      c.protocol = compile(p.protocol, canonProtocol, DEFAULT_OPTS, false);
      c.username = compile(p.username, canonUsername, DEFAULT_OPTS, false);
      c.password = compile(p.password, canonPassword, DEFAULT_OPTS, false);
      c.hostname = compile(p.hostname, canonHostname, HOST_OPTS, false);
      c.port = compile(p.port, (v) => canonPort(v, p.protocol), DEFAULT_OPTS, false);
      c.pathname = matchesSpecial(c.protocol)
        ? compile(p.pathname, canonPathname, PATH_OPTS, ignoreCase)
        : compile(p.pathname, canonOpaquePathname, DEFAULT_OPTS, ignoreCase);
      c.search = compile(p.search, canonSearch, DEFAULT_OPTS, ignoreCase);
      c.hash = compile(p.hash, canonHash, DEFAULT_OPTS, ignoreCase);
      PATTERNS.set(this, c);
    }
    test(input = {}, baseURL = undefined) { return match(this, input, baseURL) !== null; }
    exec(input = {}, baseURL = undefined) { return match(this, input, baseURL); }
    get hasRegExpGroups() {
      const c = PATTERNS.get(this);
      if (!c) throw new TypeError("Illegal invocation");
      return COMPONENTS.some((k) => c[k].hasRegExpGroups);
    }
    get [Symbol.toStringTag]() { return "URLPattern"; }
  }
  for (const k of COMPONENTS) {
    Object.defineProperty(URLPattern.prototype, k, {
      get() {
        const c = PATTERNS.get(this);
        if (!c) throw new TypeError("Illegal invocation");
        return c[k].pattern;
      },
      enumerable: true, configurable: true,
    });
  }

  function match(pattern, input, baseURL) {
    const c = PATTERNS.get(pattern);
    if (!c) throw new TypeError("Illegal invocation");
    const inputs = [input];
    let v;
    if (typeof input === "string" || (input !== null && typeof input === "object" && E.isURL(input))) {
      const s = String(input);
      if (baseURL !== undefined) inputs.push(String(baseURL));
      const parts = baseURL === undefined ? E.urlParse(s) : E.urlParse(s, String(baseURL));
      if (!parts) return null;
      v = { protocol: parts[2].slice(0, -1), username: parts[3], password: parts[4], hostname: parts[6], port: parts[7],
        pathname: parts[8], search: parts[9].slice(1), hash: parts[10].slice(1) };
    } else {
      if (input === null || typeof input !== "object") throw new TypeError("URLPattern input must be a string or an init object");
      if (baseURL !== undefined) throw new TypeError("URLPattern: a base URL is only allowed with a string input");
      try {
        v = processInit(input, "url", { protocol: "", username: "", password: "", hostname: "", port: "",
          pathname: "", search: "", hash: "" });
      } catch (_) { return null; }
    }
    const result = { inputs };
    for (const k of COMPONENTS) {
      const m = c[k].regexp.exec(v[k]);
      if (m === null) return null;
      const groups = {};
      c[k].names.forEach((name, i) => { groups[name] = m[i + 1]; });
      result[k] = { input: v[k], groups };
    }
    return result;
  }

  return { URLPattern };
}
