// WHATWG Streams (https://streams.spec.whatwg.org/): ReadableStream (default
// controller; `type: "bytes"` sources are accepted and behave as default
// streams), WritableStream, TransformStream, the queuing strategies and the
// text encoding streams. Written from the spec's algorithms; built lazily by
// the glue on first use, so isolates that never touch a stream never pay for
// these classes. `E` carries what the glue shares (DOMException, encoders).
function ledgeStreams(E) {
  "use strict";
  const noop = () => {};
  const handled = (p) => { p.then(undefined, noop); return p; };
  function defer() {
    const d = { state: "pending", promise: null, resolve: null, reject: null };
    d.promise = new Promise((res, rej) => {
      d.resolve = (v) => { if (d.state === "pending") { d.state = "fulfilled"; res(v); } };
      d.reject = (e) => { if (d.state === "pending") { d.state = "rejected"; rej(e); } };
    });
    return d;
  }
  const resolvedDefer = (v) => { const d = defer(); d.resolve(v); return d; };
  const rejectedDefer = (e) => { const d = defer(); handled(d.promise); d.reject(e); return d; };
  function promiseCall(f, thisArg, arg) {
    if (f === undefined) return Promise.resolve();
    try { return Promise.resolve(f.call(thisArg, arg)); } catch (e) { return Promise.reject(e); }
  }
  function method(obj, name) {
    if (obj === undefined || obj === null) return undefined;
    const m = obj[name];
    if (m === undefined || m === null) return undefined;
    if (typeof m !== "function") throw new TypeError(`${name} must be a function`);
    return m;
  }
  function strategyOf(s, defaultHwm) {
    let hwm = defaultHwm;
    let size = null;
    if (s !== undefined && s !== null) {
      if (s.highWaterMark !== undefined) {
        hwm = Number(s.highWaterMark);
        if (Number.isNaN(hwm) || hwm < 0) throw new RangeError("highWaterMark must be a non-negative number");
      }
      if (s.size !== undefined) {
        if (typeof s.size !== "function") throw new TypeError("size must be a function");
        const f = s.size;
        size = (c) => f(c);
      }
    }
    return { hwm, size };
  }
  function sizeOf(size, chunk) {
    if (size === null) return 1;
    const n = Number(size(chunk));
    if (!(n >= 0) || n === Infinity) throw new RangeError("The chunk size must be a finite, non-negative number");
    return n;
  }

  // A FIFO of [value, size] with a running total (the spec's queue-with-sizes).
  class Queue {
    constructor() { this.items = []; this.head = 0; this.total = 0; }
    get length() { return (this.items.length - this.head) / 2; }
    push(value, size) { this.items.push(value, size); this.total += size; }
    peek() { return this.items[this.head]; }
    shift() {
      const value = this.items[this.head];
      const size = this.items[this.head + 1];
      this.items[this.head] = undefined;
      this.head += 2;
      this.total -= size;
      if (this.total < 0) this.total = 0;
      if (this.head >= 1024 && this.head * 2 >= this.items.length) { this.items = this.items.slice(this.head); this.head = 0; }
      return value;
    }
    reset() { this.items = []; this.head = 0; this.total = 0; }
  }

  const STREAMS = new WeakMap(); // ReadableStream -> state
  const RCTRL = new WeakMap();   // ReadableStreamDefaultController -> state
  const READERS = new WeakMap(); // ReadableStreamDefaultReader -> state
  const WSTREAMS = new WeakMap();
  const WCTRL = new WeakMap();
  const WRITERS = new WeakMap();
  const TSTREAMS = new WeakMap();
  const TCTRL = new WeakMap();
  const illegal = () => { throw new TypeError("Illegal constructor"); };
  const slot = (map, o, what) => {
    const s = map.get(o);
    if (s === undefined) throw new TypeError(`Illegal invocation: not a ${what}`);
    return s;
  };

  // ------------------------------------------------------------ ReadableStream internals
  function newReadable(obj) {
    const rs = { obj, state: "readable", reader: null, storedError: undefined, disturbed: false, ctrl: null, bytes: null };
    STREAMS.set(obj, rs);
    return rs;
  }
  function rsSetup(rs, start, pull, cancel, hwm, size) {
    const c = { stream: rs, q: new Queue(), started: false, closeRequested: false, pullAgain: false,
      pulling: false, hwm, size, pull, cancel, obj: Object.create(ReadableStreamDefaultController.prototype) };
    RCTRL.set(c.obj, c);
    rs.ctrl = c;
    const r = start(c.obj);
    Promise.resolve(r).then(() => { c.started = true; rcPullIfNeeded(c); }, (e) => rcError(c, e));
  }
  // A stream made by internal code: start/pull/cancel take the controller state.
  function makeReadable(start, pull, cancel, hwm = 1, size = null) {
    const rs = newReadable(Object.create(ReadableStream.prototype));
    rsSetup(rs, (o) => start(RCTRL.get(o)), (o) => pull(RCTRL.get(o)), cancel, hwm, size);
    return rs;
  }
  const rcCanCloseOrEnqueue = (c) => !c.closeRequested && c.stream.state === "readable";
  function rcDesired(c) {
    const s = c.stream.state;
    if (s === "errored") return null;
    if (s === "closed") return 0;
    return c.hwm - c.q.total;
  }
  function rcShouldPull(c) {
    if (!rcCanCloseOrEnqueue(c) || !c.started) return false;
    const r = c.stream.reader;
    if (r !== null && r.requests.length > 0) return true;
    return rcDesired(c) > 0;
  }
  function rcPullIfNeeded(c) {
    if (!rcShouldPull(c)) return;
    if (c.pulling) { c.pullAgain = true; return; }
    c.pulling = true;
    c.pull(c.obj).then(() => {
      c.pulling = false;
      if (c.pullAgain) { c.pullAgain = false; rcPullIfNeeded(c); }
    }, (e) => rcError(c, e));
  }
  function rcClear(c) {
    c.pull = () => Promise.resolve();
    c.cancel = () => Promise.resolve();
    c.size = null;
  }
  function rcClose(c) {
    if (!rcCanCloseOrEnqueue(c)) return;
    c.closeRequested = true;
    if (c.q.length === 0) { rcClear(c); rsClose(c.stream); }
  }
  function rcEnqueue(c, chunk) {
    if (!rcCanCloseOrEnqueue(c)) return;
    const rs = c.stream;
    if (rs.reader !== null && rs.reader.requests.length > 0) {
      rs.reader.requests.shift().chunk(chunk);
    } else {
      let size;
      try { size = sizeOf(c.size, chunk); } catch (e) { rcError(c, e); throw e; }
      c.q.push(chunk, size);
    }
    rcPullIfNeeded(c);
  }
  function rcError(c, e) {
    if (c.stream.state !== "readable") return;
    c.q.reset();
    rcClear(c);
    rsError(c.stream, e);
  }
  function rcPullSteps(c, req) {
    const rs = c.stream;
    if (c.q.length > 0) {
      const chunk = c.q.shift();
      if (c.closeRequested && c.q.length === 0) { rcClear(c); rsClose(rs); } else rcPullIfNeeded(c);
      req.chunk(chunk);
    } else {
      rs.reader.requests.push(req);
      rcPullIfNeeded(c);
    }
  }
  function rsClose(rs) {
    rs.state = "closed";
    const r = rs.reader;
    if (r === null) return;
    r.closed.resolve(undefined);
    const reqs = r.requests;
    r.requests = [];
    for (const q of reqs) q.close();
  }
  function rsError(rs, e) {
    rs.state = "errored";
    rs.storedError = e;
    const r = rs.reader;
    if (r === null) return;
    handled(r.closed.promise);
    r.closed.reject(e);
    const reqs = r.requests;
    r.requests = [];
    for (const q of reqs) q.error(e);
  }
  function rsCancel(rs, reason) {
    rs.disturbed = true;
    if (rs.state === "closed") return Promise.resolve(undefined);
    if (rs.state === "errored") return Promise.reject(rs.storedError);
    rsClose(rs);
    const c = rs.ctrl;
    c.q.reset();
    const p = c.cancel(reason);
    rcClear(c);
    return p.then(() => undefined);
  }
  function acquireReader(rs) {
    if (rs.reader !== null) throw new TypeError("ReadableStream is locked");
    const rr = { stream: rs, requests: [], closed: defer() };
    rs.reader = rr;
    if (rs.state === "closed") rr.closed.resolve(undefined);
    else if (rs.state === "errored") { handled(rr.closed.promise); rr.closed.reject(rs.storedError); }
    return rr;
  }
  function readerRead(rr, req) {
    const rs = rr.stream;
    rs.disturbed = true;
    if (rs.state === "closed") req.close();
    else if (rs.state === "errored") req.error(rs.storedError);
    else rcPullSteps(rs.ctrl, req);
  }
  function readerReadPromise(rr) {
    const d = defer();
    readerRead(rr, {
      chunk: (value) => d.resolve({ value, done: false }),
      close: () => d.resolve({ value: undefined, done: true }),
      error: (e) => d.reject(e),
    });
    return d.promise;
  }
  function readerRelease(rr) {
    const rs = rr.stream;
    if (rs === null) return;
    const e = new TypeError("The reader's lock was released");
    if (rs.state === "readable") { handled(rr.closed.promise); rr.closed.reject(e); }
    else rr.closed = rejectedDefer(e);
    rs.reader = null;
    rr.stream = null;
    const reqs = rr.requests;
    rr.requests = [];
    for (const q of reqs) q.error(e);
  }

  // ------------------------------------------------------------ ReadableStream classes
  class ReadableStream {
    constructor(source = undefined, strategy = undefined) {
      if (source === null) source = undefined;
      if (source !== undefined && typeof source !== "object" && typeof source !== "function") {
        throw new TypeError("The underlying source must be an object");
      }
      const type = source === undefined ? undefined : source.type;
      if (type !== undefined && String(type) !== "bytes") throw new RangeError(`Invalid stream type: ${type}`);
      const { hwm, size } = strategyOf(strategy, type === undefined ? 1 : 0);
      if (type !== undefined && size !== null) throw new RangeError("A byte stream cannot have a size function");
      const start = method(source, "start");
      const pull = method(source, "pull");
      const cancel = method(source, "cancel");
      const rs = newReadable(this);
      rsSetup(rs, (c) => (start === undefined ? undefined : start.call(source, c)),
        (c) => promiseCall(pull, source, c), (r) => promiseCall(cancel, source, r), hwm, size);
    }
    get locked() { return slot(STREAMS, this, "ReadableStream").reader !== null; }
    cancel(reason) {
      const rs = STREAMS.get(this);
      if (!rs) return Promise.reject(new TypeError("Illegal invocation"));
      if (rs.reader !== null) return Promise.reject(new TypeError("Cannot cancel a locked ReadableStream"));
      return rsCancel(rs, reason);
    }
    getReader(options = undefined) {
      const rs = slot(STREAMS, this, "ReadableStream");
      const mode = options === undefined || options === null ? undefined : options.mode;
      if (mode !== undefined) {
        if (String(mode) !== "byob") throw new TypeError(`Invalid reader mode: ${mode}`);
        throw new TypeError("BYOB readers are not supported");
      }
      const r = Object.create(ReadableStreamDefaultReader.prototype);
      READERS.set(r, acquireReader(rs));
      return r;
    }
    pipeThrough(transform, options = undefined) {
      const rs = slot(STREAMS, this, "ReadableStream");
      const w = transform && transform.writable;
      const r = transform && transform.readable;
      if (!WSTREAMS.has(w)) throw new TypeError("pipeThrough: transform.writable must be a WritableStream");
      if (!STREAMS.has(r)) throw new TypeError("pipeThrough: transform.readable must be a ReadableStream");
      if (rs.reader !== null) throw new TypeError("pipeThrough: the ReadableStream is locked");
      const ws = WSTREAMS.get(w);
      if (ws.writer !== null) throw new TypeError("pipeThrough: the WritableStream is locked");
      handled(pipe(rs, ws, options));
      return r;
    }
    pipeTo(dest, options = undefined) {
      const rs = STREAMS.get(this);
      if (!rs) return Promise.reject(new TypeError("Illegal invocation"));
      const ws = WSTREAMS.get(dest);
      if (!ws) return Promise.reject(new TypeError("pipeTo: the destination must be a WritableStream"));
      if (rs.reader !== null) return Promise.reject(new TypeError("pipeTo: the ReadableStream is locked"));
      if (ws.writer !== null) return Promise.reject(new TypeError("pipeTo: the WritableStream is locked"));
      try { return pipe(rs, ws, options); } catch (e) { return Promise.reject(e); }
    }
    tee() { return tee(slot(STREAMS, this, "ReadableStream")).map((b) => b.obj); }
    values(options = undefined) {
      const rs = slot(STREAMS, this, "ReadableStream");
      return iterate(rs, !!(options && options.preventCancel));
    }
    static from(iterable) {
      if (iterable === null || iterable === undefined) throw new TypeError("ReadableStream.from requires an iterable");
      let it, next;
      const am = iterable[Symbol.asyncIterator];
      if (am !== undefined && am !== null) {
        it = am.call(iterable);
        if (it === null || typeof it !== "object") throw new TypeError("The async iterator is not an object");
        next = () => it.next();
      } else {
        const sm = iterable[Symbol.iterator];
        if (typeof sm !== "function") throw new TypeError("ReadableStream.from requires an iterable");
        it = sm.call(iterable);
        if (it === null || typeof it !== "object") throw new TypeError("The iterator is not an object");
        next = () => {
          const r = it.next();
          if (r === null || typeof r !== "object") throw new TypeError("The iterator result is not an object");
          return Promise.resolve(r.value).then((value) => ({ value, done: r.done }));
        };
      }
      const rs = makeReadable(noop, (c) => {
        let p;
        try { p = Promise.resolve(next()); } catch (e) { return Promise.reject(e); }
        return p.then((r) => {
          if (r === null || typeof r !== "object") throw new TypeError("The iterator result is not an object");
          if (r.done) rcClose(c); else rcEnqueue(c, r.value);
        });
      }, (reason) => {
        let ret;
        try { ret = it.return; } catch (e) { return Promise.reject(e); }
        if (ret === undefined || ret === null) return Promise.resolve();
        return promiseCall(ret, it, reason).then((r) => {
          if (r === null || typeof r !== "object") throw new TypeError("The iterator's return() result is not an object");
        });
      }, 0);
      return rs.obj;
    }
    get [Symbol.toStringTag]() { return "ReadableStream"; }
  }
  ReadableStream.prototype[Symbol.asyncIterator] = ReadableStream.prototype.values;

  class ReadableStreamDefaultController {
    constructor() { illegal(); }
    get desiredSize() { return rcDesired(slot(RCTRL, this, "ReadableStreamDefaultController")); }
    close() {
      const c = slot(RCTRL, this, "ReadableStreamDefaultController");
      if (!rcCanCloseOrEnqueue(c)) throw new TypeError("The stream is not in a state that permits close");
      rcClose(c);
    }
    enqueue(chunk) {
      const c = slot(RCTRL, this, "ReadableStreamDefaultController");
      if (!rcCanCloseOrEnqueue(c)) throw new TypeError("The stream is not in a state that permits enqueue");
      rcEnqueue(c, chunk);
    }
    error(e) { rcError(slot(RCTRL, this, "ReadableStreamDefaultController"), e); }
    get byobRequest() { return null; }
    get [Symbol.toStringTag]() { return "ReadableStreamDefaultController"; }
  }

  class ReadableStreamDefaultReader {
    constructor(stream) {
      const rs = STREAMS.get(stream);
      if (!rs) throw new TypeError("ReadableStreamDefaultReader needs a ReadableStream");
      READERS.set(this, acquireReader(rs));
    }
    get closed() { return slot(READERS, this, "ReadableStreamDefaultReader").closed.promise; }
    read() {
      const rr = READERS.get(this);
      if (!rr) return Promise.reject(new TypeError("Illegal invocation"));
      if (rr.stream === null) return Promise.reject(new TypeError("The reader has been released"));
      return readerReadPromise(rr);
    }
    releaseLock() { readerRelease(slot(READERS, this, "ReadableStreamDefaultReader")); }
    cancel(reason) {
      const rr = READERS.get(this);
      if (!rr) return Promise.reject(new TypeError("Illegal invocation"));
      if (rr.stream === null) return Promise.reject(new TypeError("The reader has been released"));
      return rsCancel(rr.stream, reason);
    }
    get [Symbol.toStringTag]() { return "ReadableStreamDefaultReader"; }
  }

  const AsyncIteratorPrototype = Object.getPrototypeOf(Object.getPrototypeOf((async function* () {}).prototype));
  const ITERS = new WeakMap();
  const ReadableStreamAsyncIteratorPrototype = Object.create(AsyncIteratorPrototype, {
    next: { writable: true, configurable: true, value: function next() {
      const st = ITERS.get(this);
      if (!st) return Promise.reject(new TypeError("Illegal invocation"));
      const step = () => st.next();
      st.ongoing = st.ongoing ? st.ongoing.then(step, step) : step();
      return st.ongoing;
    } },
    return: { writable: true, configurable: true, value: function (value) {
      const st = ITERS.get(this);
      if (!st) return Promise.reject(new TypeError("Illegal invocation"));
      const step = () => st.ret(value);
      st.ongoing = st.ongoing ? st.ongoing.then(step, step) : step();
      return st.ongoing;
    } },
    [Symbol.toStringTag]: { configurable: true, value: "ReadableStream AsyncIterator" },
  });
  function iterate(rs, preventCancel) {
    const rr = acquireReader(rs);
    let finished = false;
    const st = { ongoing: null };
    st.next = () => {
      if (finished) return Promise.resolve({ value: undefined, done: true });
      const d = defer();
      readerRead(rr, {
        chunk: (value) => d.resolve({ value, done: false }),
        close: () => { finished = true; readerRelease(rr); d.resolve({ value: undefined, done: true }); },
        error: (e) => { finished = true; readerRelease(rr); d.reject(e); },
      });
      return d.promise;
    };
    st.ret = (value) => {
      if (finished) return Promise.resolve({ value, done: true });
      finished = true;
      if (!preventCancel && rr.stream !== null) {
        const p = rsCancel(rr.stream, value);
        readerRelease(rr);
        return p.then(() => ({ value, done: true }));
      }
      readerRelease(rr);
      return Promise.resolve({ value, done: true });
    };
    const it = Object.create(ReadableStreamAsyncIteratorPrototype);
    ITERS.set(it, st);
    return it;
  }

  function tee(rs) {
    const rr = acquireReader(rs);
    let reading = false, readAgain = false, canceled1 = false, canceled2 = false, reason1, reason2;
    const cancelDone = defer();
    let b1, b2;
    function pull() {
      if (reading) { readAgain = true; return Promise.resolve(); }
      reading = true;
      readerRead(rr, {
        chunk: (v) => {
          queueMicrotask(() => {
            readAgain = false;
            if (!canceled1) rcEnqueue(b1.ctrl, v);
            if (!canceled2) rcEnqueue(b2.ctrl, v);
            reading = false;
            if (readAgain) pull();
          });
        },
        close: () => {
          reading = false;
          if (!canceled1) rcClose(b1.ctrl);
          if (!canceled2) rcClose(b2.ctrl);
          if (!canceled1 || !canceled2) cancelDone.resolve(undefined);
        },
        error: () => { reading = false; },
      });
      return Promise.resolve();
    }
    const cancelBoth = () => {
      if (canceled1 && canceled2) cancelDone.resolve(rsCancel(rs, [reason1, reason2]));
      return cancelDone.promise;
    };
    b1 = makeReadable(noop, pull, (r) => { canceled1 = true; reason1 = r; return cancelBoth(); });
    b2 = makeReadable(noop, pull, (r) => { canceled2 = true; reason2 = r; return cancelBoth(); });
    rr.closed.promise.then(noop, (e) => {
      rcError(b1.ctrl, e);
      rcError(b2.ctrl, e);
      if (!canceled1 || !canceled2) cancelDone.resolve(undefined);
    });
    return [b1, b2];
  }

  function pipe(rs, ws, options) {
    const o = options === undefined || options === null ? {} : options;
    const preventClose = !!o.preventClose, preventAbort = !!o.preventAbort, preventCancel = !!o.preventCancel;
    const signal = o.signal;
    if (signal !== undefined && !(signal instanceof E.AbortSignal)) throw new TypeError("pipeTo: signal must be an AbortSignal");
    const rr = acquireReader(rs);
    const ww = acquireWriter(ws);
    rs.disturbed = true;
    const done = defer();
    let shuttingDown = false;
    let currentWrite = Promise.resolve();
    let onAbort = null;
    const waitForWrites = () => {
      const last = currentWrite;
      return last.then(noop, noop).then(() => (last !== currentWrite ? waitForWrites() : undefined));
    };
    const finalize = (isError, error) => {
      writerRelease(ww);
      readerRelease(rr);
      if (onAbort !== null) signal.removeEventListener("abort", onAbort);
      if (isError) done.reject(error); else done.resolve(undefined);
    };
    const destWritable = () => ws.state === "writable" && !wsCloseQueuedOrInFlight(ws);
    const shutdown = (action, isError, error) => {
      if (shuttingDown) return;
      shuttingDown = true;
      const act = () => {
        if (action === null) { finalize(isError, error); return; }
        let p;
        try { p = Promise.resolve(action()); } catch (e) { p = Promise.reject(e); }
        p.then(() => finalize(isError, error), (e) => finalize(true, e));
      };
      if (destWritable()) waitForWrites().then(act); else act();
    };
    const onSourceError = (e) => shutdown(preventAbort ? null : () => wsAbort(ws, e), true, e);
    const onDestError = (e) => shutdown(preventCancel ? null : () => rsCancel(rs, e), true, e);
    const onSourceClosed = () => shutdown(preventClose ? null : () => writerCloseWithErrorPropagation(ww), false);
    if (signal !== undefined) {
      onAbort = () => {
        const error = signal.reason;
        shutdown(() => {
          const actions = [];
          if (!preventAbort && ws.state === "writable") actions.push(wsAbort(ws, error));
          if (!preventCancel && rs.state === "readable") actions.push(rsCancel(rs, error));
          return Promise.all(actions);
        }, true, error);
      };
      if (signal.aborted) { onAbort(); return done.promise; }
      signal.addEventListener("abort", onAbort);
    }
    // Errors and closes already there, in the spec's order.
    if (rs.state === "errored") onSourceError(rs.storedError);
    else if (ws.state === "errored" || ws.state === "erroring") onDestError(ws.storedError);
    else if (rs.state === "closed") onSourceClosed();
    else if (wsCloseQueuedOrInFlight(ws) || ws.state === "closed") {
      const e = new TypeError("The destination WritableStream is closed");
      shutdown(preventCancel ? null : () => rsCancel(rs, e), true, e);
    }
    if (shuttingDown) return done.promise;
    rr.closed.promise.then(onSourceClosed, onSourceError);
    ww.closed.promise.then(noop, onDestError);
    (async () => {
      while (!shuttingDown) {
        await ww.ready.promise;
        if (shuttingDown) return;
        const r = await readerReadPromise(rr);
        if (r.done) return;
        currentWrite = handled(writerWrite(ww, r.value));
      }
    })().then(noop, noop);
    return done.promise;
  }

  // ------------------------------------------------------------ WritableStream internals
  function newWritable(obj) {
    const ws = { obj, state: "writable", storedError: undefined, writer: null, ctrl: null, writeRequests: [],
      inFlightWrite: null, closeRequest: null, inFlightClose: null, pendingAbort: null, backpressure: false };
    WSTREAMS.set(obj, ws);
    return ws;
  }
  function wsSetup(ws, start, write, close, abort, hwm, size) {
    const c = { stream: ws, q: new Queue(), started: false, hwm, size, write, close, abort,
      abortController: new E.AbortController(), obj: Object.create(WritableStreamDefaultController.prototype) };
    WCTRL.set(c.obj, c);
    ws.ctrl = c;
    wsUpdateBackpressure(ws, wcBackpressure(c));
    const r = start(c.obj);
    Promise.resolve(r).then(() => { c.started = true; wcAdvance(c); }, (e) => { c.started = true; wsDealWithRejection(ws, e); });
  }
  const CLOSE = {};
  const wsCloseQueuedOrInFlight = (ws) => ws.closeRequest !== null || ws.inFlightClose !== null;
  const wsInFlight = (ws) => ws.inFlightWrite !== null || ws.inFlightClose !== null;
  function wsAbort(ws, reason) {
    if (ws.state === "closed" || ws.state === "errored") return Promise.resolve(undefined);
    ws.ctrl.abortController.abort(reason);
    if (ws.state === "closed" || ws.state === "errored") return Promise.resolve(undefined);
    if (ws.pendingAbort !== null) return ws.pendingAbort.d.promise;
    const wasAlreadyErroring = ws.state === "erroring";
    if (wasAlreadyErroring) reason = undefined;
    const d = defer();
    ws.pendingAbort = { d, reason, wasAlreadyErroring };
    if (!wasAlreadyErroring) wsStartErroring(ws, reason);
    return d.promise;
  }
  function wsClose(ws) {
    if (ws.state === "closed" || ws.state === "errored") {
      return Promise.reject(new TypeError("The WritableStream is closed or errored"));
    }
    const d = defer();
    ws.closeRequest = d;
    const w = ws.writer;
    if (w !== null && ws.backpressure && ws.state === "writable") w.ready.resolve(undefined);
    ws.ctrl.q.push(CLOSE, 0);
    wcAdvance(ws.ctrl);
    return d.promise;
  }
  function wsDealWithRejection(ws, e) {
    if (ws.state === "writable") { wsStartErroring(ws, e); return; }
    wsFinishErroring(ws);
  }
  function wsStartErroring(ws, reason) {
    const c = ws.ctrl;
    ws.state = "erroring";
    ws.storedError = reason;
    if (ws.writer !== null) writerEnsureReadyRejected(ws.writer, reason);
    if (!wsInFlight(ws) && c.started) wsFinishErroring(ws);
  }
  function wsFinishErroring(ws) {
    ws.state = "errored";
    ws.ctrl.q.reset();
    const e = ws.storedError;
    for (const d of ws.writeRequests) d.reject(e);
    ws.writeRequests = [];
    const ab = ws.pendingAbort;
    if (ab === null) { wsRejectCloseAndClosed(ws); return; }
    ws.pendingAbort = null;
    if (ab.wasAlreadyErroring) { ab.d.reject(e); wsRejectCloseAndClosed(ws); return; }
    const c = ws.ctrl;
    const p = c.abort(ab.reason);
    wcClear(c);
    p.then(() => { ab.d.resolve(undefined); wsRejectCloseAndClosed(ws); },
      (r) => { ab.d.reject(r); wsRejectCloseAndClosed(ws); });
  }
  function wsRejectCloseAndClosed(ws) {
    if (ws.closeRequest !== null) { ws.closeRequest.reject(ws.storedError); ws.closeRequest = null; }
    if (ws.writer !== null) { handled(ws.writer.closed.promise); ws.writer.closed.reject(ws.storedError); }
  }
  function wsUpdateBackpressure(ws, bp) {
    const w = ws.writer;
    if (w !== null && bp !== ws.backpressure) {
      if (bp) w.ready = defer(); else w.ready.resolve(undefined);
    }
    ws.backpressure = bp;
  }
  const wcDesired = (c) => c.hwm - c.q.total;
  const wcBackpressure = (c) => wcDesired(c) <= 0;
  function wcClear(c) {
    c.write = () => Promise.resolve();
    c.close = () => Promise.resolve();
    c.abort = () => Promise.resolve();
    c.size = null;
  }
  function wcError(c, e) {
    wcClear(c);
    wsStartErroring(c.stream, e);
  }
  function wcErrorIfNeeded(c, e) { if (c.stream.state === "writable") wcError(c, e); }
  function wcAdvance(c) {
    const ws = c.stream;
    if (!c.started || ws.inFlightWrite !== null) return;
    if (ws.state === "erroring") { wsFinishErroring(ws); return; }
    if (c.q.length === 0) return;
    const value = c.q.peek();
    if (value === CLOSE) {
      ws.inFlightClose = ws.closeRequest;
      ws.closeRequest = null;
      c.q.shift();
      const p = c.close();
      wcClear(c);
      p.then(() => {
        ws.inFlightClose.resolve(undefined);
        ws.inFlightClose = null;
        if (ws.state === "erroring") {
          ws.storedError = undefined;
          if (ws.pendingAbort !== null) { ws.pendingAbort.d.resolve(undefined); ws.pendingAbort = null; }
        }
        ws.state = "closed";
        if (ws.writer !== null) ws.writer.closed.resolve(undefined);
      }, (e) => {
        ws.inFlightClose.reject(e);
        ws.inFlightClose = null;
        if (ws.pendingAbort !== null) { ws.pendingAbort.d.reject(e); ws.pendingAbort = null; }
        wsDealWithRejection(ws, e);
      });
    } else {
      ws.inFlightWrite = ws.writeRequests.shift();
      c.write(value).then(() => {
        ws.inFlightWrite.resolve(undefined);
        ws.inFlightWrite = null;
        c.q.shift();
        if (!wsCloseQueuedOrInFlight(ws) && ws.state === "writable") wsUpdateBackpressure(ws, wcBackpressure(c));
        wcAdvance(c);
      }, (e) => {
        if (ws.state === "writable") wcClear(c);
        ws.inFlightWrite.reject(e);
        ws.inFlightWrite = null;
        wsDealWithRejection(ws, e);
      });
    }
  }
  function acquireWriter(ws) {
    if (ws.writer !== null) throw new TypeError("WritableStream is locked");
    const w = { stream: ws, ready: null, closed: defer() };
    ws.writer = w;
    const s = ws.state;
    if (s === "writable") {
      w.ready = !wsCloseQueuedOrInFlight(ws) && ws.backpressure ? defer() : resolvedDefer(undefined);
    } else if (s === "erroring") {
      w.ready = rejectedDefer(ws.storedError);
    } else if (s === "closed") {
      w.ready = resolvedDefer(undefined);
      w.closed.resolve(undefined);
    } else {
      w.ready = rejectedDefer(ws.storedError);
      handled(w.closed.promise);
      w.closed.reject(ws.storedError);
    }
    return w;
  }
  function writerEnsureReadyRejected(w, e) {
    if (w.ready.state === "pending") { handled(w.ready.promise); w.ready.reject(e); } else w.ready = rejectedDefer(e);
  }
  function writerEnsureClosedRejected(w, e) {
    if (w.closed.state === "pending") { handled(w.closed.promise); w.closed.reject(e); } else w.closed = rejectedDefer(e);
  }
  function writerRelease(w) {
    const ws = w.stream;
    if (ws === null) return;
    const e = new TypeError("The writer's lock was released");
    writerEnsureReadyRejected(w, e);
    writerEnsureClosedRejected(w, e);
    ws.writer = null;
    w.stream = null;
  }
  function writerWrite(w, chunk) {
    const ws = w.stream;
    const c = ws.ctrl;
    let size = 1;
    try { size = sizeOf(c.size, chunk); } catch (e) { wcErrorIfNeeded(c, e); }
    if (ws !== w.stream) return Promise.reject(new TypeError("The writer's lock was released"));
    if (ws.state === "errored") return Promise.reject(ws.storedError);
    if (wsCloseQueuedOrInFlight(ws) || ws.state === "closed") {
      return Promise.reject(new TypeError("The WritableStream is closing or closed"));
    }
    if (ws.state === "erroring") return Promise.reject(ws.storedError);
    const d = defer();
    ws.writeRequests.push(d);
    c.q.push(chunk, size);
    if (!wsCloseQueuedOrInFlight(ws) && ws.state === "writable") wsUpdateBackpressure(ws, wcBackpressure(c));
    wcAdvance(c);
    return d.promise;
  }
  function writerCloseWithErrorPropagation(w) {
    const ws = w.stream;
    if (wsCloseQueuedOrInFlight(ws) || ws.state === "closed") return Promise.resolve(undefined);
    if (ws.state === "errored") return Promise.reject(ws.storedError);
    return wsClose(ws);
  }

  // ------------------------------------------------------------ WritableStream classes
  class WritableStream {
    constructor(sink = undefined, strategy = undefined) {
      if (sink === null) sink = undefined;
      if (sink !== undefined && typeof sink !== "object" && typeof sink !== "function") {
        throw new TypeError("The underlying sink must be an object");
      }
      if (sink !== undefined && sink.type !== undefined) throw new RangeError("Invalid sink type");
      const { hwm, size } = strategyOf(strategy, 1);
      const start = method(sink, "start");
      const write = method(sink, "write");
      const close = method(sink, "close");
      const abort = method(sink, "abort");
      const ws = newWritable(this);
      wsSetup(ws, (c) => (start === undefined ? undefined : start.call(sink, c)),
        (chunk) => (write === undefined ? Promise.resolve() : (() => {
          try { return Promise.resolve(write.call(sink, chunk, ws.ctrl.obj)); } catch (e) { return Promise.reject(e); }
        })()),
        () => promiseCall(close, sink, undefined), (r) => promiseCall(abort, sink, r), hwm, size);
    }
    get locked() { return slot(WSTREAMS, this, "WritableStream").writer !== null; }
    abort(reason) {
      const ws = WSTREAMS.get(this);
      if (!ws) return Promise.reject(new TypeError("Illegal invocation"));
      if (ws.writer !== null) return Promise.reject(new TypeError("Cannot abort a locked WritableStream"));
      return wsAbort(ws, reason);
    }
    close() {
      const ws = WSTREAMS.get(this);
      if (!ws) return Promise.reject(new TypeError("Illegal invocation"));
      if (ws.writer !== null) return Promise.reject(new TypeError("Cannot close a locked WritableStream"));
      if (wsCloseQueuedOrInFlight(ws)) return Promise.reject(new TypeError("The WritableStream is already closing"));
      return wsClose(ws);
    }
    getWriter() {
      const w = Object.create(WritableStreamDefaultWriter.prototype);
      WRITERS.set(w, acquireWriter(slot(WSTREAMS, this, "WritableStream")));
      return w;
    }
    get [Symbol.toStringTag]() { return "WritableStream"; }
  }

  class WritableStreamDefaultController {
    constructor() { illegal(); }
    get signal() { return slot(WCTRL, this, "WritableStreamDefaultController").abortController.signal; }
    error(e) {
      const c = slot(WCTRL, this, "WritableStreamDefaultController");
      if (c.stream.state !== "writable") return;
      wcError(c, e);
    }
    get [Symbol.toStringTag]() { return "WritableStreamDefaultController"; }
  }

  const released = () => Promise.reject(new TypeError("The writer's lock was released"));
  class WritableStreamDefaultWriter {
    constructor(stream) {
      const ws = WSTREAMS.get(stream);
      if (!ws) throw new TypeError("WritableStreamDefaultWriter needs a WritableStream");
      WRITERS.set(this, acquireWriter(ws));
    }
    get closed() { return slot(WRITERS, this, "WritableStreamDefaultWriter").closed.promise; }
    get ready() { return slot(WRITERS, this, "WritableStreamDefaultWriter").ready.promise; }
    get desiredSize() {
      const w = slot(WRITERS, this, "WritableStreamDefaultWriter");
      const ws = w.stream;
      if (ws === null) throw new TypeError("The writer's lock was released");
      if (ws.state === "errored" || ws.state === "erroring") return null;
      if (ws.state === "closed") return 0;
      return wcDesired(ws.ctrl);
    }
    abort(reason) {
      const w = WRITERS.get(this);
      if (!w) return Promise.reject(new TypeError("Illegal invocation"));
      if (w.stream === null) return released();
      return wsAbort(w.stream, reason);
    }
    close() {
      const w = WRITERS.get(this);
      if (!w) return Promise.reject(new TypeError("Illegal invocation"));
      if (w.stream === null) return released();
      if (wsCloseQueuedOrInFlight(w.stream)) return Promise.reject(new TypeError("The WritableStream is already closing"));
      return wsClose(w.stream);
    }
    releaseLock() { writerRelease(slot(WRITERS, this, "WritableStreamDefaultWriter")); }
    write(chunk) {
      const w = WRITERS.get(this);
      if (!w) return Promise.reject(new TypeError("Illegal invocation"));
      if (w.stream === null) return released();
      return writerWrite(w, chunk);
    }
    get [Symbol.toStringTag]() { return "WritableStreamDefaultWriter"; }
  }

  // ------------------------------------------------------------ TransformStream
  function tsSetBackpressure(t, bp) {
    if (t.bpChange !== null) t.bpChange.resolve(undefined);
    t.bpChange = defer();
    t.backpressure = bp;
  }
  function tsErrorWritableAndUnblock(t, e) {
    tcClear(t);
    wcErrorIfNeeded(t.writable.ctrl, e);
    if (t.backpressure) tsSetBackpressure(t, false);
  }
  function tsError(t, e) {
    rcError(t.readable.ctrl, e);
    tsErrorWritableAndUnblock(t, e);
  }
  function tcClear(t) {
    t.transform = () => Promise.resolve();
    t.flush = () => Promise.resolve();
    t.cancelAlg = () => Promise.resolve();
  }
  function tcEnqueue(t, chunk) {
    const rc = t.readable.ctrl;
    if (!rcCanCloseOrEnqueue(rc)) throw new TypeError("The readable side is not in a state that permits enqueue");
    try { rcEnqueue(rc, chunk); } catch (e) {
      tsErrorWritableAndUnblock(t, e);
      throw t.readable.storedError;
    }
    const bp = !rcShouldPull(rc);
    if (bp !== t.backpressure && bp) tsSetBackpressure(t, true);
  }
  function tcTerminate(t) {
    rcClose(t.readable.ctrl);
    tsErrorWritableAndUnblock(t, new TypeError("The TransformStream was terminated"));
  }
  function tsPerform(t, chunk) {
    return t.transform(chunk).then(undefined, (e) => { tsError(t, e); throw e; });
  }

  class TransformStream {
    constructor(transformer = undefined, writableStrategy = undefined, readableStrategy = undefined) {
      if (transformer === null) transformer = undefined;
      if (transformer !== undefined && typeof transformer !== "object" && typeof transformer !== "function") {
        throw new TypeError("The transformer must be an object");
      }
      if (transformer !== undefined && transformer.readableType !== undefined) throw new RangeError("Invalid readableType");
      if (transformer !== undefined && transformer.writableType !== undefined) throw new RangeError("Invalid writableType");
      const ws = strategyOf(writableStrategy, 1);
      const rsS = strategyOf(readableStrategy, 0);
      const start = method(transformer, "start");
      const transform = method(transformer, "transform");
      const flush = method(transformer, "flush");
      const cancel = method(transformer, "cancel");
      const startD = defer();
      const t = { readable: null, writable: null, backpressure: false, bpChange: null, obj: this,
        ctrlObj: Object.create(TransformStreamDefaultController.prototype), transform: null, flush: null, cancelAlg: null,
        finish: null };
      TCTRL.set(t.ctrlObj, t);
      TSTREAMS.set(this, t);
      const w = newWritable(Object.create(WritableStream.prototype));
      t.writable = w;
      wsSetup(w, () => startD.promise, (chunk) => {
        if (t.backpressure) {
          return t.bpChange.promise.then(() => {
            if (w.state === "erroring") throw w.storedError;
            return tsPerform(t, chunk);
          });
        }
        return tsPerform(t, chunk);
      }, () => {
        if (t.finish !== null) return t.finish.promise;
        const d = t.finish = defer();
        const p = t.flush();
        tcClear(t);
        p.then(() => {
          const r = t.readable;
          if (r.state === "errored") { d.reject(r.storedError); return; }
          rcClose(r.ctrl);
          d.resolve(undefined);
        }, (e) => { rcError(t.readable.ctrl, e); d.reject(e); });
        return d.promise;
      }, (reason) => {
        if (t.finish !== null) return t.finish.promise;
        const d = t.finish = defer();
        const p = t.cancelAlg(reason);
        tcClear(t);
        p.then(() => {
          const r = t.readable;
          if (r.state === "errored") { d.reject(r.storedError); return; }
          rcError(r.ctrl, reason);
          d.resolve(undefined);
        }, (e) => { rcError(t.readable.ctrl, e); d.reject(e); });
        return d.promise;
      }, ws.hwm, ws.size);
      const r = newReadable(Object.create(ReadableStream.prototype));
      t.readable = r;
      rsSetup(r, () => startD.promise, () => {
        tsSetBackpressure(t, false);
        return t.bpChange.promise;
      }, (reason) => {
        if (t.finish !== null) return t.finish.promise;
        const d = t.finish = defer();
        const p = t.cancelAlg(reason);
        tcClear(t);
        p.then(() => {
          if (w.state === "errored") { d.reject(w.storedError); return; }
          wcErrorIfNeeded(w.ctrl, reason);
          if (t.backpressure) tsSetBackpressure(t, false);
          d.resolve(undefined);
        }, (e) => {
          wcErrorIfNeeded(w.ctrl, e);
          if (t.backpressure) tsSetBackpressure(t, false);
          d.reject(e);
        });
        return d.promise;
      }, rsS.hwm, rsS.size);
      tsSetBackpressure(t, true);
      t.transform = transform === undefined
        ? (chunk) => { try { tcEnqueue(t, chunk); return Promise.resolve(); } catch (e) { return Promise.reject(e); } }
        : (chunk) => {
          try { return Promise.resolve(transform.call(transformer, chunk, t.ctrlObj)); } catch (e) { return Promise.reject(e); }
        };
      t.flush = () => promiseCall(flush, transformer, t.ctrlObj);
      t.cancelAlg = (reason) => promiseCall(cancel, transformer, reason);
      if (start === undefined) startD.resolve(undefined);
      else startD.resolve(start.call(transformer, t.ctrlObj));
    }
    get readable() { return slot(TSTREAMS, this, "TransformStream").readable.obj; }
    get writable() { return slot(TSTREAMS, this, "TransformStream").writable.obj; }
    get [Symbol.toStringTag]() { return "TransformStream"; }
  }

  class TransformStreamDefaultController {
    constructor() { illegal(); }
    get desiredSize() { return rcDesired(slot(TCTRL, this, "TransformStreamDefaultController").readable.ctrl); }
    enqueue(chunk) { tcEnqueue(slot(TCTRL, this, "TransformStreamDefaultController"), chunk); }
    error(e) { tsError(slot(TCTRL, this, "TransformStreamDefaultController"), e); }
    terminate() { tcTerminate(slot(TCTRL, this, "TransformStreamDefaultController")); }
    get [Symbol.toStringTag]() { return "TransformStreamDefaultController"; }
  }

  // ------------------------------------------------------------ strategies
  // The `highWaterMark` both strategies require.
  function strategyHwm(init, name) {
    if (init === null || typeof init !== "object" || init.highWaterMark === undefined) {
      throw new TypeError(name + " needs { highWaterMark }");
    }
    return Number(init.highWaterMark);
  }
  class CountQueuingStrategy {
    #hwm;
    constructor(init) { this.#hwm = strategyHwm(init, "CountQueuingStrategy"); }
    get highWaterMark() { return this.#hwm; }
    get size() { return countSize; }
  }
  const countSize = function size() { return 1; };
  class ByteLengthQueuingStrategy {
    #hwm;
    constructor(init) { this.#hwm = strategyHwm(init, "ByteLengthQueuingStrategy"); }
    get highWaterMark() { return this.#hwm; }
    get size() { return byteSize; }
  }
  const byteSize = function size(chunk) { return chunk.byteLength; };

  // ------------------------------------------------------------ text streams
  class TextEncoderStream {
    #t;
    constructor() {
      let pending = "";
      this.#t = new TransformStream({
        transform(chunk, c) {
          let s = pending + String(chunk);
          pending = "";
          const last = s.charCodeAt(s.length - 1);
          if (last >= 0xd800 && last <= 0xdbff) { pending = s.slice(-1); s = s.slice(0, -1); }
          if (s.length > 0) c.enqueue(E.utf8(s));
        },
        flush(c) { if (pending) c.enqueue(new Uint8Array([0xef, 0xbf, 0xbd])); },
      });
    }
    get encoding() { return "utf-8"; }
    get readable() { return this.#t.readable; }
    get writable() { return this.#t.writable; }
    get [Symbol.toStringTag]() { return "TextEncoderStream"; }
  }
  class TextDecoderStream {
    #t; #d;
    constructor(label = "utf-8", options = {}) {
      const d = this.#d = new E.TextDecoder(label, options);
      this.#t = new TransformStream({
        transform(chunk, c) {
          const s = d.decode(E.toBytes(chunk, "chunk"), { stream: true });
          if (s) c.enqueue(s);
        },
        flush(c) { const s = d.decode(); if (s) c.enqueue(s); },
      });
    }
    get encoding() { return this.#d.encoding; }
    get fatal() { return this.#d.fatal; }
    get ignoreBOM() { return this.#d.ignoreBOM; }
    get readable() { return this.#t.readable; }
    get writable() { return this.#t.writable; }
    get [Symbol.toStringTag]() { return "TextDecoderStream"; }
  }

  // ------------------------------------------------------------ for the glue
  // A stream of known bytes (a body): one chunk, then closed.
  function fromBytes(bytes) {
    const rs = makeReadable((c) => { if (bytes.length) rcEnqueue(c, bytes); rcClose(c); }, () => Promise.resolve(),
      () => Promise.resolve(), 0);
    rs.bytes = bytes;
    return rs.obj;
  }
  // A stream read on demand (a body the host kept): `next()` is a promise of
  // the next chunk, or of null at the end; nothing is read before a reader asks.
  function fromPull(next) {
    const pull = (c) => next().then((u) => {
      if (u === null) rcClose(c);
      else if (u.length) rcEnqueue(c, u);
      else return pull(c);
    });
    return makeReadable(() => {}, pull, () => Promise.resolve(), 0).obj;
  }
  const isReadable = (x) => STREAMS.has(x);
  const isLocked = (x) => STREAMS.get(x).reader !== null;
  const isDisturbed = (x) => STREAMS.get(x).disturbed;
  // The bytes of an untouched `fromBytes` stream, taking it (locked and disturbed).
  function takeKnownBytes(x) {
    const rs = STREAMS.get(x);
    if (rs.bytes === null || rs.disturbed || rs.reader !== null) return null;
    acquireReader(rs);
    rs.disturbed = true;
    const c = rs.ctrl;
    c.q.reset();
    rcClear(c);
    if (rs.state === "readable") rsClose(rs);
    return rs.bytes;
  }
  // Reads a whole stream; chunks must be bytes (strings are taken as UTF-8).
  // Past `cap` bytes the stream is canceled and the promise rejects.
  function readAll(x, cap, what) {
    const rs = STREAMS.get(x);
    if (rs.reader !== null) return Promise.reject(new TypeError(`${what}: the ReadableStream is locked`));
    if (rs.disturbed) return Promise.reject(new TypeError(`${what}: the ReadableStream has already been read`));
    const rr = acquireReader(rs);
    const chunks = [];
    let total = 0;
    const d = defer();
    const fail = (e) => {
      const s = rr.stream;
      if (s !== null) { handled(rsCancel(s, e)); readerRelease(rr); }
      d.reject(e);
    };
    const step = () => readerRead(rr, {
      chunk: (v) => {
        let u;
        if (typeof v === "string") u = E.utf8(v);
        else if (v instanceof ArrayBuffer || ArrayBuffer.isView(v)) u = E.toBytes(v, "chunk");
        else { fail(bodyError(new TypeError(`${what}: a body stream chunk must be a Uint8Array`))); return; }
        total += u.length;
        if (total > cap) { fail(bodyError(new RangeError(`${what}: the body is larger than ${cap} bytes`))); return; }
        chunks.push(u);
        Promise.resolve().then(step);
      },
      close: () => { readerRelease(rr); d.resolve(E.concat(chunks)); },
      error: (e) => { readerRelease(rr); d.reject(e); },
    });
    step();
    return d.promise;
  }
  const BODY_ERRORS = new WeakSet();
  const bodyError = (e) => { BODY_ERRORS.add(e); return e; };
  const isBodyError = (e) => typeof e === "object" && e !== null && BODY_ERRORS.has(e);
  const teeStream = (x) => tee(STREAMS.get(x)).map((b) => b.obj);

  return {
    ReadableStream, ReadableStreamDefaultController, ReadableStreamDefaultReader, WritableStream,
    WritableStreamDefaultController, WritableStreamDefaultWriter, TransformStream, TransformStreamDefaultController,
    CountQueuingStrategy, ByteLengthQueuingStrategy, TextEncoderStream, TextDecoderStream,
    fromBytes, fromPull, isReadable, isLocked, isDisturbed, takeKnownBytes, readAll, teeStream, isBodyError,
  };
}
