// File and FormData, with the multipart/form-data and urlencoded forms of
// a body. Built lazily by the glue on first use (`FormData`, `File`, or a
// body read with formData()); `E` carries what the glue shares.
function ledgeFormData(E) {
  "use strict";
  const { N, Blob, BLOBS, str, utf8, concat, fromUtf8, qsParse } = E;
  const FILES = new WeakMap();
  class File extends Blob {
    constructor(bits, name, options = {}) {
      if (arguments.length < 2) throw new TypeError("File requires 2 arguments");
      super(bits, options);
      const lm = options && options.lastModified !== undefined ? Number(options.lastModified) : Date.now();
      FILES.set(this, { name: str(name), lastModified: Number.isFinite(lm) ? Math.trunc(lm) : 0 });
    }
    get name() { return FILES.get(this).name; }
    get lastModified() { return FILES.get(this).lastModified; }
    get [Symbol.toStringTag]() { return "File"; }
  }

  const FORMS = new WeakMap(); // FormData -> [[name, string | File]]
  const isFormData = (x) => typeof x === "object" && x !== null && FORMS.has(x);
  function formEntry(name, value, filename, n) {
    if (n < 2) throw new TypeError("FormData.append/set requires 2 arguments");
    const k = str(name);
    if (value instanceof Blob) {
      if (filename !== undefined || !(value instanceof File)) {
        const fname = filename !== undefined ? str(filename) : value instanceof File ? value.name : "blob";
        const f = new File([], fname, { type: value.type, lastModified: value instanceof File ? value.lastModified : undefined });
        BLOBS.get(f).bytes = BLOBS.get(value).bytes;
        return [k, f];
      }
      return [k, value];
    }
    if (filename !== undefined) throw new TypeError("FormData: a filename is only allowed with a Blob value");
    return [k, str(value)];
  }
  const formList = (fd) => {
    const l = FORMS.get(fd);
    if (!l) throw new TypeError("Illegal invocation");
    return l;
  };
  class FormData {
    constructor(form = undefined) {
      if (form !== undefined) throw new TypeError("FormData: forms are not supported here");
      FORMS.set(this, []);
    }
    append(name, value, filename) { formList(this).push(formEntry(name, value, filename, arguments.length)); }
    set(name, value, filename) {
      const l = formList(this);
      const e = formEntry(name, value, filename, arguments.length);
      const i = l.findIndex(([k]) => k === e[0]);
      if (i < 0) { l.push(e); return; }
      l[i] = e;
      FORMS.set(this, l.filter(([k], j) => j <= i || k !== e[0]));
    }
    get(name) { const n = str(name); const e = formList(this).find(([k]) => k === n); return e ? e[1] : null; }
    getAll(name) { const n = str(name); return formList(this).filter(([k]) => k === n).map(([, v]) => v); }
    has(name) { const n = str(name); return formList(this).some(([k]) => k === n); }
    delete(name) { const n = str(name); FORMS.set(this, formList(this).filter(([k]) => k !== n)); }
    forEach(cb, thisArg) {
      if (typeof cb !== "function") throw new TypeError("callback is not a function");
      for (const [k, v] of this) cb.call(thisArg, v, k, this);
    }
    *entries() { formList(this); for (let i = 0; i < FORMS.get(this).length; i++) { const e = FORMS.get(this)[i]; yield [e[0], e[1]]; } }
    *keys() { for (const [k] of this.entries()) yield k; }
    *values() { for (const [, v] of this.entries()) yield v; }
    [Symbol.iterator]() { return this.entries(); }
    get [Symbol.toStringTag]() { return "FormData"; }
  }
  const escapeFormName = (s) => s.replace(/\r\n|\r|\n/g, "\r\n").replace(/\n/g, "%0A").replace(/\r/g, "%0D").replace(/"/g, "%22");
  // [bytes, content-type, null]: multipart/form-data with a random boundary.
  function formDataBody(fd) {
    const boundary = `----LedgeFormBoundary${N.randomUUID().replace(/-/g, "")}`;
    const chunks = [];
    for (const [name, value] of FORMS.get(fd)) {
      let head = `--${boundary}\r\nContent-Disposition: form-data; name="${escapeFormName(name)}"`;
      if (value instanceof File) {
        head += `; filename="${escapeFormName(value.name)}"\r\nContent-Type: ${value.type || "application/octet-stream"}\r\n\r\n`;
        chunks.push(utf8(head), BLOBS.get(value).bytes, utf8("\r\n"));
      } else {
        chunks.push(utf8(`${head}\r\n\r\n${value.replace(/\r\n|\r|\n/g, "\r\n")}\r\n`));
      }
    }
    chunks.push(utf8(`--${boundary}--\r\n`));
    return [concat(chunks), `multipart/form-data; boundary=${boundary}`, null];
  }
  function parseFormData(bytes, ctype) {
    const essence = ctype.split(";")[0].trim().toLowerCase();
    const fd = new FormData();
    const list = FORMS.get(fd);
    if (essence === "multipart/form-data") {
      const flat = N.multipartParse(bytes, ctype);
      if (!flat) throw new TypeError("Could not parse the body as multipart/form-data");
      for (let i = 0; i + 3 < flat.length; i += 4) {
        const [name, filename, type, data] = [flat[i], flat[i + 1], flat[i + 2], flat[i + 3]];
        if (filename === undefined || filename === null) list.push([name, fromUtf8(data)]);
        else {
          const f = new File([], filename, { type: type || "text/plain" });
          BLOBS.get(f).bytes = data;
          list.push([name, f]);
        }
      }
      return fd;
    }
    if (essence === "application/x-www-form-urlencoded") {
      for (const e of qsParse(fromUtf8(bytes))) list.push(e);
      return fd;
    }
    throw new TypeError(`Could not parse the body as FormData: unsupported content type "${ctype}"`);
  }
  return { File, FormData, isFormData, formDataBody, parseFormData };
}
