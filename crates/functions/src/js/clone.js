// structuredClone for the values a function can clone here (no transfer).
// Built lazily by the glue on first use; `E` carries what the glue shares.
function ledgeClone(E) {
  "use strict";
  const { DOMEx } = E;
  function clone(v, seen) {
    if (v === null || (typeof v !== "object" && typeof v !== "function" && typeof v !== "symbol")) return v;
    if (typeof v === "function" || typeof v === "symbol") {
      throw new DOMEx(`${typeof v === "function" ? "function" : "Symbol"} could not be cloned`, "DataCloneError");
    }
    if (seen.has(v)) return seen.get(v);
    let out;
    if (v instanceof Date) out = new Date(v.getTime());
    else if (v instanceof RegExp) out = new RegExp(v.source, v.flags);
    else if (v instanceof Boolean || v instanceof Number || v instanceof String) out = Object(v.valueOf());
    else if (v instanceof ArrayBuffer) out = v.slice(0);
    else if (ArrayBuffer.isView(v)) {
      const buf = clone(v.buffer, seen);
      out = v instanceof DataView ? new DataView(buf, v.byteOffset, v.byteLength)
        : new v.constructor(buf, v.byteOffset, v.length);
    } else if (v instanceof Map) {
      out = new Map(); seen.set(v, out);
      for (const [k, x] of v) out.set(clone(k, seen), clone(x, seen));
      return out;
    } else if (v instanceof Set) {
      out = new Set(); seen.set(v, out);
      for (const x of v) out.add(clone(x, seen));
      return out;
    } else if (v instanceof Error) {
      const ctors = { EvalError, RangeError, ReferenceError, SyntaxError, TypeError, URIError };
      out = new (ctors[v.name] || Error)(v.message);
      seen.set(v, out);
      if (v.stack !== undefined) out.stack = String(v.stack);
      return out;
    } else if (Array.isArray(v)) {
      out = new Array(v.length); seen.set(v, out);
      for (const k of Object.keys(v)) out[k] = clone(v[k], seen);
      return out;
    } else {
      const proto = Object.getPrototypeOf(v);
      if (proto !== Object.prototype && proto !== null) {
        const tag = Object.prototype.toString.call(v);
        if (v instanceof Promise || v instanceof WeakMap || v instanceof WeakSet || tag === "[object Request]"
            || tag === "[object Response]" || tag === "[object Headers]" || tag === "[object URL]") {
          throw new DOMEx(`${tag} could not be cloned`, "DataCloneError");
        }
      }
      out = {}; seen.set(v, out);
      for (const k of Object.keys(v)) out[k] = clone(v[k], seen);
      return out;
    }
    seen.set(v, out);
    return out;
  }
  return function structuredClone(value) {
    if (arguments.length < 1) throw new TypeError("structuredClone requires 1 argument");
    return clone(value, new Map());
  };
}
