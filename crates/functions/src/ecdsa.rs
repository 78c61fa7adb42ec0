//! ECDSA (P-256, P-384) for `crypto.subtle`, over `ring`: key generation,
//! PKCS#8 / SPKI / raw / JWK key material, and signatures in WebCrypto's
//! fixed-width `r || s` format. Malformed key material is `None` (a
//! `DataError` in JS), never a panic.

use ring::rand::SecureRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Curve {
    P256,
    P384,
}

const OID_EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const OID_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const OID_P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];

impl Curve {
    pub(crate) fn from_name(name: &str) -> Option<Curve> {
        match name {
            "P-256" => Some(Curve::P256),
            "P-384" => Some(Curve::P384),
            _ => None,
        }
    }
    /// Length of a scalar / coordinate in bytes.
    pub(crate) fn size(self) -> usize {
        match self {
            Curve::P256 => 32,
            Curve::P384 => 48,
        }
    }
    fn oid(self) -> &'static [u8] {
        match self {
            Curve::P256 => OID_P256,
            Curve::P384 => OID_P384,
        }
    }
    /// The signing algorithm for this curve with `hash`; ring pairs each
    /// curve with its own hash only.
    fn signing(self, hash: &str) -> Option<&'static signature::EcdsaSigningAlgorithm> {
        match (self, hash) {
            (Curve::P256, "sha256") => Some(&signature::ECDSA_P256_SHA256_FIXED_SIGNING),
            (Curve::P384, "sha384") => Some(&signature::ECDSA_P384_SHA384_FIXED_SIGNING),
            _ => None,
        }
    }
    fn verifying(self, hash: &str) -> Option<&'static signature::EcdsaVerificationAlgorithm> {
        match (self, hash) {
            (Curve::P256, "sha256") => Some(&signature::ECDSA_P256_SHA256_FIXED),
            (Curve::P384, "sha384") => Some(&signature::ECDSA_P384_SHA384_FIXED),
            _ => None,
        }
    }
    /// Any algorithm of the curve, to load and check key pairs.
    fn any_signing(self) -> &'static signature::EcdsaSigningAlgorithm {
        match self {
            Curve::P256 => &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            Curve::P384 => &signature::ECDSA_P384_SHA384_FIXED_SIGNING,
        }
    }
    /// Whether `point` has the shape of an uncompressed point on this curve.
    pub(crate) fn is_uncompressed_point(self, point: &[u8]) -> bool {
        point.len() == 1 + 2 * self.size() && point.first() == Some(&0x04)
    }
}

// ---------------------------------------------------------------- DER

/// Reads one TLV: (tag, contents, rest).
fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 3 {
            return None;
        }
        let mut len = 0usize;
        for _ in 0..n {
            let (&b, r) = rest.split_first()?;
            len = (len << 8) | usize::from(b);
            rest = r;
        }
        len
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

fn expect(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (t, contents, rest) = tlv(input)?;
    (t == tag).then_some((contents, rest))
}

fn der(tag: u8, contents: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = contents.len();
    if len < 0x80 {
        out.push(len as u8);
    } else if len < 0x100 {
        out.extend_from_slice(&[0x81, len as u8]);
    } else {
        out.extend_from_slice(&[0x82, (len >> 8) as u8, len as u8]);
    }
    out.extend_from_slice(contents);
    out
}

const SEQUENCE: u8 = 0x30;
const INTEGER: u8 = 0x02;
const BIT_STRING: u8 = 0x03;
const OCTET_STRING: u8 = 0x04;
const OID: u8 = 0x06;

fn algorithm_identifier(curve: Curve) -> Vec<u8> {
    let mut alg = der(OID, OID_EC_PUBLIC_KEY);
    alg.extend(der(OID, curve.oid()));
    der(SEQUENCE, &alg)
}

fn bit_string(bytes: &[u8]) -> Vec<u8> {
    let mut b = vec![0];
    b.extend_from_slice(bytes);
    der(BIT_STRING, &b)
}

/// Checks an AlgorithmIdentifier names id-ecPublicKey on `curve`.
fn check_algorithm(alg: &[u8], curve: Curve) -> Option<()> {
    let (oid, rest) = expect(alg, OID)?;
    let (named, rest) = expect(rest, OID)?;
    (oid == OID_EC_PUBLIC_KEY && named == curve.oid() && rest.is_empty()).then_some(())
}

/// SubjectPublicKeyInfo of an uncompressed point.
pub(crate) fn spki_from_point(curve: Curve, point: &[u8]) -> Vec<u8> {
    let mut body = algorithm_identifier(curve);
    body.extend(bit_string(point));
    der(SEQUENCE, &body)
}

/// The uncompressed point of a SubjectPublicKeyInfo on `curve`.
pub(crate) fn point_from_spki(curve: Curve, spki: &[u8]) -> Option<Vec<u8>> {
    let (body, rest) = expect(spki, SEQUENCE)?;
    if !rest.is_empty() {
        return None;
    }
    let (alg, body) = expect(body, SEQUENCE)?;
    check_algorithm(alg, curve)?;
    let (bits, rest) = expect(body, BIT_STRING)?;
    let (&unused, point) = bits.split_first()?;
    (unused == 0 && rest.is_empty() && curve.is_uncompressed_point(point)).then(|| point.to_vec())
}

/// PKCS#8 of a private scalar and its public point.
fn pkcs8_from_parts(curve: Curve, d: &[u8], point: &[u8]) -> Vec<u8> {
    let mut ec = der(INTEGER, &[1]);
    ec.extend(der(OCTET_STRING, d));
    ec.extend(der(0xa1, &bit_string(point)));
    let ec = der(SEQUENCE, &ec);
    let mut body = der(INTEGER, &[0]);
    body.extend(algorithm_identifier(curve));
    body.extend(der(OCTET_STRING, &ec));
    der(SEQUENCE, &body)
}

/// The private scalar inside a PKCS#8 document on `curve`.
fn scalar_from_pkcs8(curve: Curve, pkcs8: &[u8]) -> Option<Vec<u8>> {
    let (body, _) = expect(pkcs8, SEQUENCE)?;
    let (_version, body) = expect(body, INTEGER)?;
    let (alg, body) = expect(body, SEQUENCE)?;
    check_algorithm(alg, curve)?;
    let (ec, _) = expect(body, OCTET_STRING)?;
    let (ec, _) = expect(ec, SEQUENCE)?;
    let (_version, ec) = expect(ec, INTEGER)?;
    let (d, _) = expect(ec, OCTET_STRING)?;
    (d.len() == curve.size()).then(|| d.to_vec())
}

// ---------------------------------------------------------------- keys

/// A validated private key: its PKCS#8 document, scalar and public point.
pub(crate) struct PrivateKey {
    pub(crate) pkcs8: Vec<u8>,
    pub(crate) d: Vec<u8>,
    pub(crate) point: Vec<u8>,
}

fn load(curve: Curve, pkcs8: &[u8], rng: &dyn SecureRandom) -> Option<EcdsaKeyPair> {
    EcdsaKeyPair::from_pkcs8(curve.any_signing(), pkcs8, rng).ok()
}

pub(crate) fn generate(curve: Curve, rng: &dyn SecureRandom) -> Option<PrivateKey> {
    let doc = EcdsaKeyPair::generate_pkcs8(curve.any_signing(), rng).ok()?;
    from_pkcs8(curve, doc.as_ref(), rng)
}

pub(crate) fn from_pkcs8(curve: Curve, pkcs8: &[u8], rng: &dyn SecureRandom) -> Option<PrivateKey> {
    let pair = load(curve, pkcs8, rng)?;
    let d = scalar_from_pkcs8(curve, pkcs8)?;
    Some(PrivateKey {
        pkcs8: pkcs8.to_vec(),
        d,
        point: pair.public_key().as_ref().to_vec(),
    })
}

/// A private key from its JWK parts (`d`, and the point from `x`, `y`);
/// the point must belong to the scalar.
pub(crate) fn from_parts(
    curve: Curve,
    d: &[u8],
    point: &[u8],
    rng: &dyn SecureRandom,
) -> Option<PrivateKey> {
    if d.len() != curve.size() || !curve.is_uncompressed_point(point) {
        return None;
    }
    let pkcs8 = pkcs8_from_parts(curve, d, point);
    let pair = load(curve, &pkcs8, rng)?;
    (pair.public_key().as_ref() == point).then(|| PrivateKey {
        pkcs8,
        d: d.to_vec(),
        point: point.to_vec(),
    })
}

/// `None`: the curve and hash are not a supported pair, or the key is bad.
pub(crate) fn sign(
    curve: Curve,
    hash: &str,
    pkcs8: &[u8],
    data: &[u8],
    rng: &dyn SecureRandom,
) -> Option<Vec<u8>> {
    let pair = EcdsaKeyPair::from_pkcs8(curve.signing(hash)?, pkcs8, rng).ok()?;
    pair.sign(rng, data).ok().map(|s| s.as_ref().to_vec())
}

/// `None` when the curve and hash are not a supported pair.
pub(crate) fn verify(
    curve: Curve,
    hash: &str,
    point: &[u8],
    sig: &[u8],
    data: &[u8],
) -> Option<bool> {
    let alg = curve.verifying(hash)?;
    Some(
        signature::UnparsedPublicKey::new(alg, point)
            .verify(data, sig)
            .is_ok(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let rng = ring::rand::SystemRandom::new();
        for curve in [Curve::P256, Curve::P384] {
            let k = generate(curve, &rng).expect("generate");
            assert_eq!(k.d.len(), curve.size());
            assert!(curve.is_uncompressed_point(&k.point));
            let again = from_parts(curve, &k.d, &k.point, &rng).expect("from parts");
            assert_eq!(again.point, k.point);
            let reloaded = from_pkcs8(curve, &again.pkcs8, &rng).expect("our pkcs8 loads");
            assert_eq!(reloaded.d, k.d);
            let spki = spki_from_point(curve, &k.point);
            assert_eq!(point_from_spki(curve, &spki).as_deref(), Some(&k.point[..]));
            let hash = if curve == Curve::P256 {
                "sha256"
            } else {
                "sha384"
            };
            let sig = sign(curve, hash, &k.pkcs8, b"msg", &rng).expect("sign");
            assert_eq!(sig.len(), 2 * curve.size());
            assert_eq!(verify(curve, hash, &k.point, &sig, b"msg"), Some(true));
            assert_eq!(verify(curve, hash, &k.point, &sig, b"other"), Some(false));
        }
    }

    #[test]
    fn rejects_bad_material() {
        let rng = ring::rand::SystemRandom::new();
        let k = generate(Curve::P256, &rng).expect("generate");
        assert!(
            from_pkcs8(Curve::P384, &k.pkcs8, &rng).is_none(),
            "wrong curve"
        );
        assert!(
            from_pkcs8(Curve::P256, &k.pkcs8[..20], &rng).is_none(),
            "truncated"
        );
        let other = generate(Curve::P256, &rng).expect("generate");
        assert!(
            from_parts(Curve::P256, &k.d, &other.point, &rng).is_none(),
            "mismatched point"
        );
        let spki = spki_from_point(Curve::P256, &k.point);
        assert!(point_from_spki(Curve::P384, &spki).is_none());
        assert!(point_from_spki(Curve::P256, &spki[..spki.len() - 1]).is_none());
        assert!(tlv(&[0x30, 0x85, 1, 1, 1, 1, 1]).is_none());
        assert_eq!(sign(Curve::P256, "sha384", &k.pkcs8, b"m", &rng), None);
        assert_eq!(
            verify(Curve::P384, "sha256", &k.point, &[0; 96], b"m"),
            None
        );
    }
}
