//! crypto.subtle ECDSA (P-256, P-384), WPT-style: generateKey, importKey and
//! exportKey in every format, sign/verify with raw `r || s` signatures, and
//! the DOMException names of the errors. The fixed vector was made for these
//! tests with Python's `cryptography` (P-256, SHA-256).

mod common;
use common::*;

const VECTOR: &str = r#"
const V = {
  x: 'pA7ojS8JBb53keMXkXRDh_ScnQVqI8eUsWFGLt4WUkM',
  y: 'gXhT95LxGoCEK72gYOlFSWMaG7C48DdPGw_pQFYnCTw',
  d: 'Hg8kBbjJjwyQZJnC30KH3QcKKBSNHXSgDlP1ZH2Jai0',
  sig: '8574bc5df8f758c4c8b001674e2ff487765f019c3f30fd24ede097c7ce7019e4eb48f417c72e56d42b420916e33113553aec3b35cde2188aed45bd2bfe98251b',
  spki: 'MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEpA7ojS8JBb53keMXkXRDh/ScnQVqI8eUsWFGLt4WUkOBeFP3kvEagIQrvaBg6UVJYxobsLjwN08bD+lAVicJPA==',
  pkcs8: 'MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgHg8kBbjJjwyQZJnC30KH3QcKKBSNHXSgDlP1ZH2Jai2hRANCAASkDuiNLwkFvneR4xeRdEOH9JydBWojx5SxYUYu3hZSQ4F4U/eS8RqAhCu9oGDpRUljGhuwuPA3TxsP6UBWJwk8',
};
const unhex = (h) => new Uint8Array(h.match(/../g).map((b) => parseInt(b, 16)));
const unb64 = (s) => Uint8Array.from(atob(s), (c) => c.charCodeAt(0));
const b64 = (buf) => btoa(String.fromCharCode(...new Uint8Array(buf)));
const msg = bytes('ledge test vector');
const ES256 = { name: 'ECDSA', hash: 'SHA-256' };
const P256 = { name: 'ECDSA', namedCurve: 'P-256' };
const s = crypto.subtle;
"#;

async fn check_ec(script: &str) {
    check(&format!("{VECTOR}\n{script}")).await;
}

#[tokio::test]
async fn verify_external_vector() {
    check_ec(r#"
      const jwkPub = await s.importKey('jwk', { kty: 'EC', crv: 'P-256', x: V.x, y: V.y }, P256, true, ['verify']);
      eq([jwkPub.type, jwkPub.algorithm, jwkPub.usages, jwkPub.extractable], ['public', P256, ['verify'], true], 'key fields');
      ok(await s.verify(ES256, jwkPub, unhex(V.sig), msg), 'jwk public key verifies the vector');
      ok(!await s.verify(ES256, jwkPub, unhex(V.sig), bytes('other')), 'other message fails');
      const bad = unhex(V.sig); bad[5] ^= 1;
      ok(!await s.verify(ES256, jwkPub, bad, msg), 'flipped bit fails');
      ok(!await s.verify(ES256, jwkPub, unhex(V.sig).subarray(1), msg), 'short signature is false, not an error');
      const spkiPub = await s.importKey('spki', unb64(V.spki), P256, true, ['verify']);
      ok(await s.verify(ES256, spkiPub, unhex(V.sig), msg), 'spki public key verifies');
      const raw = await s.exportKey('raw', spkiPub);
      eq(new Uint8Array(raw).length, 65, 'raw export is an uncompressed point');
      const rawPub = await s.importKey('raw', raw, P256, false, ['verify']);
      ok(await s.verify(ES256, rawPub, unhex(V.sig), msg), 'raw public key verifies');
      eq(b64(await s.exportKey('spki', jwkPub)), V.spki, 'spki export matches the DER');
      eq(await s.exportKey('jwk', spkiPub), { kty: 'EC', crv: 'P-256', x: V.x, y: V.y, ext: true, key_ops: ['verify'] }, 'jwk export');

      const pkcs8Priv = await s.importKey('pkcs8', unb64(V.pkcs8), P256, true, ['sign']);
      eq(pkcs8Priv.type, 'private', 'private key');
      const sig = await s.sign(ES256, pkcs8Priv, msg);
      eq(new Uint8Array(sig).length, 64, 'r || s is 64 bytes');
      ok(await s.verify(ES256, jwkPub, sig, msg), 'signature from the imported pkcs8 verifies');
      const jwkPriv = await s.importKey('jwk', { kty: 'EC', crv: 'P-256', x: V.x, y: V.y, d: V.d }, P256, true, ['sign']);
      ok(await s.verify(ES256, spkiPub, await s.sign(ES256, jwkPriv, msg), msg), 'signature from a jwk private key verifies');
      const exported = await s.exportKey('jwk', jwkPriv);
      eq([exported.d, exported.x, exported.y], [V.d, V.x, V.y], 'private jwk export');
      const again = await s.importKey('pkcs8', await s.exportKey('pkcs8', jwkPriv), P256, true, ['sign']);
      eq((await s.exportKey('jwk', again)).d, V.d, 'pkcs8 export of a jwk import round-trips');
    "#).await;
}

#[tokio::test]
async fn generate_sign_verify() {
    check_ec(r#"
      for (const [curve, hash, len] of [['P-256', 'SHA-256', 64], ['P-384', 'SHA-384', 96]]) {
        const { privateKey, publicKey } = await s.generateKey({ name: 'ECDSA', namedCurve: curve }, false, ['sign', 'verify']);
        eq([privateKey.type, privateKey.usages, privateKey.extractable], ['private', ['sign'], false], `${curve} private`);
        eq([publicKey.type, publicKey.usages, publicKey.extractable], ['public', ['verify'], true], `${curve} public always extractable`);
        eq(publicKey.algorithm, { name: 'ECDSA', namedCurve: curve }, `${curve} algorithm`);
        const alg = { name: 'ECDSA', hash: { name: hash } };
        const sig = await s.sign(alg, privateKey, msg);
        eq(new Uint8Array(sig).length, len, `${curve} signature length`);
        ok(await s.verify(alg, publicKey, sig, msg), `${curve} verifies`);
        ok(!await s.verify(alg, publicKey, sig, bytes('x')), `${curve} rejects another message`);
        const s2 = await s.sign(alg, privateKey, msg);
        ok(b64(sig) !== b64(s2), `${curve} signatures are randomized`);
        const jwk = await s.exportKey('jwk', publicKey);
        const back = await s.importKey('jwk', jwk, { name: 'ECDSA', namedCurve: curve }, true, ['verify']);
        ok(await s.verify(alg, back, sig, msg), `${curve} jwk round trip`);
        await rejects(s.exportKey('jwk', privateKey), 'InvalidAccessError', `${curve} non-extractable private key`);
      }
    "#).await;
}

#[tokio::test]
async fn errors() {
    check_ec(r#"
      const pub = await s.importKey('spki', unb64(V.spki), P256, true, ['verify']);
      const priv = await s.importKey('pkcs8', unb64(V.pkcs8), P256, true, ['sign']);
      await rejects(s.generateKey({ name: 'ECDSA', namedCurve: 'P-521' }, true, ['sign']), 'NotSupportedError', 'P-521');
      await rejects(s.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, ['verify']), 'SyntaxError', 'no sign usage');
      await rejects(s.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, ['encrypt', 'sign']), 'SyntaxError', 'bad usage');
      await rejects(s.importKey('raw', new Uint8Array(65), P256, true, ['verify']), 'DataError', 'raw point without 0x04');
      await rejects(s.importKey('raw', new Uint8Array(33).fill(2), P256, true, ['verify']), 'DataError', 'compressed point');
      await rejects(s.importKey('raw', unb64(V.spki), P256, true, ['sign']), 'SyntaxError', 'sign usage on a public key');
      await rejects(s.importKey('spki', unb64(V.spki).subarray(2), P256, true, ['verify']), 'DataError', 'broken spki');
      await rejects(s.importKey('spki', unb64(V.spki), { name: 'ECDSA', namedCurve: 'P-384' }, true, ['verify']), 'DataError', 'spki of another curve');
      await rejects(s.importKey('pkcs8', new Uint8Array([48, 3, 2, 1, 0]), P256, true, ['sign']), 'DataError', 'broken pkcs8');
      await rejects(s.importKey('pkcs8', unb64(V.pkcs8), P256, true, []), 'SyntaxError', 'private key without usages');
      await rejects(s.importKey('jwk', { kty: 'RSA', crv: 'P-256', x: V.x, y: V.y }, P256, true, ['verify']), 'DataError', 'jwk kty');
      await rejects(s.importKey('jwk', { kty: 'EC', crv: 'P-384', x: V.x, y: V.y }, P256, true, ['verify']), 'DataError', 'jwk crv mismatch');
      await rejects(s.importKey('jwk', { kty: 'EC', crv: 'P-256', x: V.x, y: 'AAAA' }, P256, true, ['verify']), 'DataError', 'jwk short y');
      await rejects(s.importKey('jwk', { kty: 'EC', crv: 'P-256', x: V.x, y: V.y, d: V.x }, P256, true, ['sign']), 'DataError', 'jwk d not matching the point');
      await rejects(s.importKey('jwk', { kty: 'EC', crv: 'P-256', x: V.x, y: V.y, ext: false }, P256, true, ['verify']), 'DataError', 'jwk ext false');
      await rejects(s.importKey('jwk', { kty: 'EC', crv: 'P-256', x: '!!', y: V.y }, P256, true, ['verify']), 'DataError', 'jwk bad base64url');
      await rejects(s.importKey('foo', unb64(V.spki), P256, true, ['verify']), 'NotSupportedError', 'unknown format');
      await rejects(s.importKey('raw', unb64(V.spki), { name: 'ECDSA', namedCurve: 'nope' }, true, ['verify']), 'NotSupportedError', 'unknown curve');
      await rejects(s.importKey('raw', new Uint8Array(4), { name: 'RSA-PSS' }, true, ['verify']), 'NotSupportedError', 'unknown algorithm');
      await rejects(s.sign(ES256, pub, msg), 'InvalidAccessError', 'sign with a public key');
      await rejects(s.verify(ES256, priv, new Uint8Array(64), msg), 'InvalidAccessError', 'verify with a private key');
      await rejects(s.sign({ name: 'ECDSA', hash: 'SHA-384' }, priv, msg), 'NotSupportedError', 'P-256 with SHA-384');
      await rejects(s.sign({ name: 'ECDSA', hash: 'MD5' }, priv, msg), 'NotSupportedError', 'unknown hash');
      const hmac = await s.importKey('raw', bytes('k'), { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
      await rejects(s.sign(ES256, hmac, msg), 'InvalidAccessError', 'ECDSA with an HMAC key');
      await rejects(s.sign({ name: 'HMAC' }, priv, msg), 'InvalidAccessError', 'HMAC with an ECDSA key');
      await rejects(s.exportKey('pkcs8', pub), 'InvalidAccessError', 'pkcs8 of a public key');
      await rejects(s.exportKey('raw', priv), 'InvalidAccessError', 'raw of a private key');
      ok(await s.exportKey('raw', pub) instanceof ArrayBuffer, 'exports are ArrayBuffers');
    "#).await;
}

#[tokio::test]
async fn hmac_jwk_and_generate() {
    check_ec(r#"
      const k = await s.generateKey({ name: 'HMAC', hash: 'SHA-256' }, true, ['sign', 'verify']);
      eq(k.algorithm, { name: 'HMAC', hash: { name: 'SHA-256' }, length: 512 }, 'default length is the block size');
      const jwk = await s.exportKey('jwk', k);
      eq([jwk.kty, jwk.alg, jwk.key_ops], ['oct', 'HS256', ['sign', 'verify']], 'hmac jwk');
      const k2 = await s.importKey('jwk', jwk, { name: 'HMAC', hash: 'SHA-256' }, false, ['verify']);
      ok(await s.verify({ name: 'HMAC' }, k2, await s.sign({ name: 'HMAC' }, k, msg), msg), 'jwk round trip');
      await rejects(s.importKey('jwk', { kty: 'EC' }, { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']), 'DataError', 'hmac jwk kty');
    "#).await;
}
