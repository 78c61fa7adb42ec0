// crypto.subtle (digest; HMAC and ECDSA keys: import, export, generate,
// sign, verify) and CryptoKey, over the natives. Built lazily by the glue
// on first use; `E` carries what the glue shares.
function ledgeSubtle(E) {
  "use strict";
  const { N, DOMEx, toBytes, copyBytes, concat } = E;
  const DIGESTS = { "SHA-1": "sha1", "SHA-256": "sha256", "SHA-384": "sha384", "SHA-512": "sha512" };
  const algName = (a) => (typeof a === "string" ? a : a && a.name ? String(a.name) : "");
  const hashName = (a) => {
    const n = DIGESTS[algName(a).toUpperCase()];
    if (!n) throw new DOMEx(`Unrecognized algorithm name: ${algName(a)}`, "NotSupportedError");
    return n;
  };
  const KEYS = new WeakMap();
  class CryptoKey {
    constructor() { throw new TypeError("Illegal constructor"); }
    get type() { return KEYS.get(this).type; }
    get extractable() { return KEYS.get(this).extractable; }
    get algorithm() { return { ...KEYS.get(this).algorithm }; }
    get usages() { return [...KEYS.get(this).usages]; }
  }
  const CURVES = { "P-256": 32, "P-384": 48 };
  const HASH_NAMES = { sha1: "SHA-1", sha256: "SHA-256", sha384: "SHA-384", sha512: "SHA-512" };
  const HMAC_BLOCK = { sha1: 512, sha256: 512, sha384: 1024, sha512: 1024 };
  const binary = (u8) => { let s = ""; for (let i = 0; i < u8.length; i += 8192) s += String.fromCharCode(...u8.subarray(i, i + 8192)); return s; };
  const b64url = (u8) => N.b64encode(binary(u8)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  function unb64url(v, what) {
    if (typeof v !== "string" || !/^[A-Za-z0-9_-]*$/.test(v)) throw new DOMEx(`Invalid JWK member "${what}"`, "DataError");
    const bin = N.b64decode(v.replace(/-/g, "+").replace(/_/g, "/"));
    if (bin === null || bin === undefined) throw new DOMEx(`Invalid JWK member "${what}"`, "DataError");
    const out = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out;
  }
  function checkUsages(usages, allowed, what) {
    const use = [...usages].map(String);
    for (const u of use) if (!allowed.includes(u)) throw new DOMEx(`Invalid key usage "${u}" for ${what}`, "SyntaxError");
    return [...new Set(use)];
  }
  function newKey(slots) {
    const key = Object.create(CryptoKey.prototype);
    KEYS.set(key, slots);
    return key;
  }
  function keySlots(key, name, usage) {
    const k = KEYS.get(key);
    if (!k) throw new TypeError("key is not a CryptoKey");
    if (k.algorithm.name !== name) throw new DOMEx(`The key is not a ${name} key`, "InvalidAccessError");
    if (!k.usages.includes(usage)) throw new DOMEx(`The key does not allow "${usage}"`, "InvalidAccessError");
    return k;
  }
  function curveOf(algorithm) {
    const c = algorithm && algorithm.namedCurve !== undefined ? String(algorithm.namedCurve) : "";
    if (!CURVES[c]) throw new DOMEx(`Unsupported namedCurve: ${c}`, "NotSupportedError");
    return c;
  }
  const ecKey = (type, curve, extractable, usages, parts) => newKey({
    type, extractable: !!extractable, usages, curve, pkcs8: parts.pkcs8 || null, d: parts.d || null, point: parts.point,
    algorithm: { name: "ECDSA", namedCurve: curve },
  });
  const ecPrivate = (curve, extractable, usages, arr) =>
    ecKey("private", curve, extractable, usages, { pkcs8: arr[0], d: arr[1], point: arr[2] });
  function importEcdsa(format, keyData, algorithm, extractable, usages) {
    const curve = curveOf(algorithm);
    const size = CURVES[curve];
    const isPoint = (p) => p.length === 1 + 2 * size && p[0] === 4;
    if (format === "raw" || format === "spki") {
      const use = checkUsages(usages, ["verify"], "an ECDSA public key");
      const bytes = copyBytes(toBytes(keyData, "keyData"));
      const point = format === "raw" ? bytes : N.ecSpkiToPoint(curve, bytes);
      if (!point || !isPoint(point)) throw new DOMEx(`Invalid ${format} ECDSA public key for ${curve}`, "DataError");
      return ecKey("public", curve, extractable, use, { point });
    }
    if (format === "pkcs8") {
      const use = checkUsages(usages, ["sign"], "an ECDSA private key");
      if (use.length === 0) throw new DOMEx("A private key needs a usage", "SyntaxError");
      const arr = N.ecFromPkcs8(curve, copyBytes(toBytes(keyData, "keyData")));
      if (!arr) throw new DOMEx(`Invalid pkcs8 ECDSA private key for ${curve}`, "DataError");
      return ecPrivate(curve, extractable, use, arr);
    }
    if (format === "jwk") {
      const jwk = keyData;
      if (jwk === null || typeof jwk !== "object") throw new TypeError("keyData must be a JWK object");
      if (jwk.kty !== "EC") throw new DOMEx("The JWK kty must be \"EC\"", "DataError");
      if (jwk.crv !== curve) throw new DOMEx(`The JWK crv (${jwk.crv}) does not match ${curve}`, "DataError");
      if (jwk.ext === false && extractable) throw new DOMEx("The JWK is not extractable", "DataError");
      if (jwk.alg !== undefined && jwk.alg !== (curve === "P-256" ? "ES256" : "ES384")) {
        throw new DOMEx(`The JWK alg (${jwk.alg}) does not match ${curve}`, "DataError");
      }
      const x = unb64url(jwk.x, "x"), y = unb64url(jwk.y, "y");
      if (x.length !== size || y.length !== size) throw new DOMEx("Invalid JWK coordinates", "DataError");
      const point = concat([new Uint8Array([4]), x, y]);
      if (jwk.d !== undefined) {
        const use = checkUsages(usages, ["sign"], "an ECDSA private key");
        if (use.length === 0) throw new DOMEx("A private key needs a usage", "SyntaxError");
        const arr = N.ecFromParts(curve, unb64url(jwk.d, "d"), point);
        if (!arr) throw new DOMEx("Invalid JWK private key", "DataError");
        return ecPrivate(curve, extractable, use, arr);
      }
      const use = checkUsages(usages, ["verify"], "an ECDSA public key");
      return ecKey("public", curve, extractable, use, { point });
    }
    throw new DOMEx(`Unsupported key format: ${format}`, "NotSupportedError");
  }
  function exportEcdsa(format, k) {
    if (format === "jwk") {
      const size = CURVES[k.curve];
      const jwk = { kty: "EC", crv: k.curve, x: b64url(k.point.subarray(1, 1 + size)), y: b64url(k.point.subarray(1 + size)),
        ext: k.extractable, key_ops: [...k.usages] };
      if (k.type === "private") jwk.d = b64url(k.d);
      return jwk;
    }
    if (k.type === "public" && format === "raw") return copyBytes(k.point).buffer;
    if (k.type === "public" && format === "spki") return N.ecPointToSpki(k.curve, k.point).buffer;
    if (k.type === "private" && format === "pkcs8") return copyBytes(k.pkcs8).buffer;
    if (["raw", "spki", "pkcs8"].includes(format)) {
      throw new DOMEx(`A ${k.type} key cannot be exported as ${format}`, "InvalidAccessError");
    }
    throw new DOMEx(`Unsupported key format: ${format}`, "NotSupportedError");
  }
  const hmacKey = (h, hashAlg, bytes, extractable, use) => newKey({ type: "secret", extractable: !!extractable, usages: use,
    hash: h, bytes, algorithm: { name: "HMAC", hash: { name: HASH_NAMES[h] }, length: bytes.length * 8 } });
  function importHmac(format, keyData, algorithm, extractable, usages) {
    const h = hashName(algorithm.hash);
    const use = checkUsages(usages, ["sign", "verify"], "HMAC");
    if (use.length === 0) throw new DOMEx("A secret key needs a usage", "SyntaxError");
    let bytes;
    if (format === "raw") bytes = copyBytes(toBytes(keyData, "keyData"));
    else if (format === "jwk") {
      if (keyData === null || typeof keyData !== "object") throw new TypeError("keyData must be a JWK object");
      if (keyData.kty !== "oct") throw new DOMEx("The JWK kty must be \"oct\"", "DataError");
      if (keyData.ext === false && extractable) throw new DOMEx("The JWK is not extractable", "DataError");
      bytes = unb64url(keyData.k, "k");
    } else throw new DOMEx(`Unsupported key format: ${format}`, "NotSupportedError");
    if (bytes.length === 0) throw new DOMEx("An HMAC key cannot be empty", "DataError");
    return hmacKey(h, algorithm.hash, bytes, extractable, use);
  }
  const subtle = {
    async digest(algorithm, data) {
      const h = hashName(algorithm);
      return N.digest(h, copyBytes(toBytes(data, "data"))).buffer;
    },
    async importKey(format, keyData, algorithm, extractable, usages) {
      const name = algName(algorithm).toUpperCase();
      if (name === "HMAC") return importHmac(String(format), keyData, algorithm, extractable, usages);
      if (name === "ECDSA") return importEcdsa(String(format), keyData, algorithm, extractable, usages);
      throw new DOMEx(`Unsupported algorithm: ${algName(algorithm)}`, "NotSupportedError");
    },
    async generateKey(algorithm, extractable, usages) {
      const name = algName(algorithm).toUpperCase();
      if (name === "ECDSA") {
        const curve = curveOf(algorithm);
        const use = checkUsages(usages, ["sign", "verify"], "ECDSA");
        const privUse = use.filter((u) => u === "sign");
        if (privUse.length === 0) throw new DOMEx("The private key needs the \"sign\" usage", "SyntaxError");
        const arr = N.ecGenerate(curve);
        if (!arr) throw new DOMEx("Key generation failed", "OperationError");
        return {
          privateKey: ecPrivate(curve, extractable, privUse, arr),
          publicKey: ecKey("public", curve, true, use.filter((u) => u === "verify"), { point: arr[2] }),
        };
      }
      if (name === "HMAC") {
        const h = hashName(algorithm.hash);
        const use = checkUsages(usages, ["sign", "verify"], "HMAC");
        if (use.length === 0) throw new DOMEx("A secret key needs a usage", "SyntaxError");
        const bits = algorithm.length === undefined ? HMAC_BLOCK[h] : Number(algorithm.length);
        if (!Number.isInteger(bits) || bits <= 0 || bits % 8 !== 0 || bits > 8192) {
          throw new DOMEx("Unsupported HMAC key length", "OperationError");
        }
        return hmacKey(h, algorithm.hash, N.randomBytes(bits / 8), extractable, use);
      }
      throw new DOMEx(`Unsupported algorithm: ${algName(algorithm)}`, "NotSupportedError");
    },
    async exportKey(format, key) {
      const k = KEYS.get(key);
      if (!k) throw new TypeError("key is not a CryptoKey");
      if (!k.extractable) throw new DOMEx("key is not extractable", "InvalidAccessError");
      if (k.algorithm.name === "ECDSA") return exportEcdsa(String(format), k);
      if (format === "raw") return copyBytes(k.bytes).buffer;
      if (format === "jwk") {
        const alg = { sha1: "HS1", sha256: "HS256", sha384: "HS384", sha512: "HS512" }[k.hash];
        return { kty: "oct", k: b64url(k.bytes), alg, ext: k.extractable, key_ops: [...k.usages] };
      }
      throw new DOMEx(`Unsupported key format: ${format}`, "NotSupportedError");
    },
    async sign(algorithm, key, data) {
      const name = algName(algorithm).toUpperCase();
      const bytes = copyBytes(toBytes(data, "data"));
      if (name === "HMAC") {
        const k = keySlots(key, "HMAC", "sign");
        return N.hmacSign(k.hash, k.bytes, bytes).buffer;
      }
      if (name === "ECDSA") {
        const h = hashName(algorithm.hash);
        const k = keySlots(key, "ECDSA", "sign");
        if (k.type !== "private") throw new DOMEx("Signing needs a private key", "InvalidAccessError");
        const sig = N.ecSign(k.curve, h, k.pkcs8, bytes);
        if (!sig) throw new DOMEx(`ECDSA ${k.curve} with ${HASH_NAMES[h]} is not supported`, "NotSupportedError");
        return sig.buffer;
      }
      throw new DOMEx(`Unsupported algorithm: ${algName(algorithm)}`, "NotSupportedError");
    },
    async verify(algorithm, key, signature, data) {
      const name = algName(algorithm).toUpperCase();
      const bytes = copyBytes(toBytes(data, "data"));
      const sig = copyBytes(toBytes(signature, "signature"));
      if (name === "HMAC") {
        const k = keySlots(key, "HMAC", "verify");
        return N.hmacVerify(k.hash, k.bytes, bytes, sig);
      }
      if (name === "ECDSA") {
        const h = hashName(algorithm.hash);
        const k = keySlots(key, "ECDSA", "verify");
        if (k.type !== "public") throw new DOMEx("Verifying needs a public key", "InvalidAccessError");
        const ok = N.ecVerify(k.curve, h, k.point, sig, bytes);
        if (ok === null || ok === undefined) {
          throw new DOMEx(`ECDSA ${k.curve} with ${HASH_NAMES[h]} is not supported`, "NotSupportedError");
        }
        return ok;
      }
      throw new DOMEx(`Unsupported algorithm: ${algName(algorithm)}`, "NotSupportedError");
    },
  };
  return { subtle, CryptoKey };
}
