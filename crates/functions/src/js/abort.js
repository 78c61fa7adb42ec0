// Event, EventTarget, AbortSignal and AbortController. Built lazily by the
// glue on first use (one of these globals, a Request's signal, a stream
// that needs a controller); `E` carries what the glue shares.
function ledgeAbort(E) {
  "use strict";
  const { N, G, DOMEx, str, fmt } = E;
  class Event {
    #type;
    constructor(type) { this.#type = String(type); this.target = null; this.defaultPrevented = false; }
    get type() { return this.#type; }
    preventDefault() { this.defaultPrevented = true; }
  }
  const LISTENERS = new WeakMap();
  class EventTarget {
    constructor() { LISTENERS.set(this, []); }
    addEventListener(type, cb, options) {
      if (typeof cb !== "function" && !(cb && typeof cb.handleEvent === "function")) return;
      const l = LISTENERS.get(this);
      if (l.some((e) => e.type === type && e.cb === cb)) return;
      l.push({ type: String(type), cb, once: !!(options && typeof options === "object" && options.once) });
    }
    removeEventListener(type, cb) {
      LISTENERS.set(this, LISTENERS.get(this).filter((e) => !(e.type === type && e.cb === cb)));
    }
    dispatchEvent(ev) {
      ev.target = this;
      const handler = this["on" + ev.type];
      for (const e of LISTENERS.get(this).slice()) {
        if (e.type !== ev.type) continue;
        if (e.once) this.removeEventListener(e.type, e.cb);
        try { typeof e.cb === "function" ? e.cb.call(this, ev) : e.cb.handleEvent(ev); }
        catch (err) { N.log("error", str(`Uncaught (in event listener) ${fmt(err, 0)}`)); }
      }
      if (typeof handler === "function") {
        try { handler.call(this, ev); } catch (err) { N.log("error", str(`Uncaught (in event listener) ${fmt(err, 0)}`)); }
      }
      return !ev.defaultPrevented;
    }
  }

  const SIGNALS = new WeakMap();
  let signalKey = false;
  class AbortSignal extends EventTarget {
    constructor(key) {
      if (key !== signalKey || !signalKey) throw new TypeError("Illegal constructor");
      super();
      SIGNALS.set(this, { aborted: false, reason: undefined });
      this.onabort = null;
    }
    get aborted() { return SIGNALS.get(this).aborted; }
    get reason() { return SIGNALS.get(this).reason; }
    throwIfAborted() { const st = SIGNALS.get(this); if (st.aborted) throw st.reason; }
    static abort(reason) { const s = newSignal(); signalAbort(s, reason); return s; }
    static timeout(ms) {
      const s = newSignal();
      G.setTimeout(() => signalAbort(s, new DOMEx("The operation timed out.", "TimeoutError")), ms);
      return s;
    }
    static any(signals) {
      const s = newSignal();
      for (const x of signals) if (x.aborted) { signalAbort(s, x.reason); return s; }
      for (const x of signals) x.addEventListener("abort", () => signalAbort(s, x.reason), { once: true });
      return s;
    }
  }
  function newSignal() {
    signalKey = {};
    try { return new AbortSignal(signalKey); } finally { signalKey = false; }
  }
  function signalAbort(s, reason) {
    const st = SIGNALS.get(s);
    if (st.aborted) return;
    st.aborted = true;
    st.reason = reason === undefined ? new DOMEx("This operation was aborted", "AbortError") : reason;
    s.dispatchEvent(new Event("abort"));
  }
  class AbortController {
    #signal = newSignal();
    get signal() { return this.#signal; }
    abort(reason) { signalAbort(this.#signal, reason); }
  }
  return { Event, EventTarget, AbortSignal, AbortController };
}
