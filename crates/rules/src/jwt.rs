//! HS256 JSON Web Tokens: verifying the `nf_jwt` cookie for `Role`
//! conditions (spec §1.8) and signing the `X-Nf-Sign` JWS of signed proxies
//! (spec §1.10).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Longest token Ledge looks at; longer cookies count as "no token".
pub const MAX_JWT_BYTES: usize = 8 * 1024;

fn b64_json(part: &str) -> Option<Value> {
    let bytes = URL_SAFE_NO_PAD.decode(part.trim_end_matches('=')).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Decodes the payload without checking the signature (what Netlify's CLI
/// does for its role gate). `None` when it is not a JWT.
pub(crate) fn decode_unverified(token: &str) -> Option<Value> {
    if token.len() > MAX_JWT_BYTES {
        return None;
    }
    b64_json(token.split('.').nth(1)?)
}

/// Verifies an HS256 token and returns its payload when the signature is
/// right and `exp` (required) is not in the past.
pub(crate) fn verify(token: &str, secret: &[u8], now: u64) -> Option<Value> {
    if token.len() > MAX_JWT_BYTES {
        return None;
    }
    let mut parts = token.split('.');
    let (h, p, s) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let header = b64_json(h)?;
    if header.get("alg")?.as_str()? != "HS256" {
        return None;
    }
    let sig = URL_SAFE_NO_PAD.decode(s.trim_end_matches('=')).ok()?;
    let mut mac = HmacSha256::new_from_slice(secret).ok()?;
    mac.update(h.as_bytes());
    mac.update(b".");
    mac.update(p.as_bytes());
    mac.verify_slice(&sig).ok()?;
    let payload = b64_json(p)?;
    let exp = payload.get("exp")?.as_f64()?;
    #[expect(clippy::cast_precision_loss, reason = "unix seconds fit in f64")]
    if exp < now as f64 {
        return None;
    }
    Some(payload)
}

/// Follows a dotted claim path (`app_metadata.authorization.roles`).
pub(crate) fn claim<'v>(payload: &'v Value, path: &str) -> Option<&'v Value> {
    path.split('.').try_fold(payload, |v, k| v.get(k))
}

/// Roles at the claim path: a list of strings, or one string.
pub(crate) fn roles(payload: &Value, path: &str) -> Vec<String> {
    match claim(payload, path) {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    }
}

/// Claims of the `X-Nf-Sign` token of a signed proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignClaims<'a> {
    /// The site id (`netlify_id`).
    pub site_id: &'a str,
    /// The site's primary URL (`site_url`).
    pub site_url: &'a str,
    /// `production`, `deploy-preview`, `branch-deploy`…
    pub deploy_context: &'a str,
}

/// Signs the `X-Nf-Sign` JWS (HS256, `iss = "netlify"`, expires 5 minutes
/// after `now`).
pub fn sign_proxy(secret: &[u8], claims: &SignClaims<'_>, now: u64) -> String {
    let header = serde_json::json!({"alg": "HS256", "typ": "JWT"});
    let payload = serde_json::json!({
        "netlify_id": claims.site_id,
        "site_url": claims.site_url,
        "deploy_context": claims.deploy_context,
        "iss": "netlify",
        "iat": now,
        "exp": now + 300,
    });
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(payload.to_string())
    );
    // HMAC accepts keys of any length, so this cannot fail; an empty
    // signature would simply not verify.
    let sig = match HmacSha256::new_from_slice(secret) {
        Ok(mut mac) => {
            mac.update(signing_input.as_bytes());
            mac.finalize().into_bytes().to_vec()
        }
        Err(_) => Vec::new(),
    };
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_then_verify() {
        let c = SignClaims {
            site_id: "s1",
            site_url: "https://a.example",
            deploy_context: "production",
        };
        let t = sign_proxy(b"k", &c, 1000);
        let p = verify(&t, b"k", 1000).expect("valid");
        assert_eq!(p["iss"], "netlify");
        assert_eq!(p["exp"], 1300);
        assert!(verify(&t, b"other", 1000).is_none());
        assert!(verify(&t, b"k", 1301).is_none());
        assert!(verify("a.b", b"k", 0).is_none());
        assert!(verify("", b"k", 0).is_none());
    }
}
