//! Per-site settings: one place for everything later phases need per tenant.
//!
//! Secrets (`jwt_secret`, `signed_proxy_secret`) are write-only through the API:
//! [`SiteSettings::view`] reports only whether each is set.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

/// Longest accepted settings value, in bytes.
pub const MAX_SETTING_VALUE_LEN: usize = 16 * 1024;
/// Most environment variables per site.
pub const MAX_ENV_VARS: usize = 256;

/// Why a settings patch was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct SettingsError(pub String);

/// How a site treats plain-HTTP requests once it has a certificate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HttpsPolicy {
    /// Serve HTTP and HTTPS alike.
    #[default]
    Off,
    /// Redirect HTTP to HTTPS and send HSTS.
    Redirect,
}

/// Where the edge takes the visitor's country from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GeoSource {
    /// The operator's default (a MaxMind database if configured).
    #[default]
    Default,
    /// The trusted header set by a front load balancer.
    Header,
    /// No country: `Country` conditions never match.
    None,
}

/// A site's settings, secrets included (never serialised to API clients whole).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SiteSettings {
    /// Environment variables for the site's edge functions (shared: every
    /// function invocation of the site refers to this map, none copies it).
    pub env: std::sync::Arc<BTreeMap<String, String>>,
    /// HS256 secret for `Role` conditions (JWT in the `nf_jwt` cookie). Secret.
    pub jwt_secret: Option<String>,
    /// Dotted path of the roles claim; default `app_metadata.authorization.roles`.
    pub jwt_role_claim: Option<String>,
    /// Secret used to sign proxied requests (`X-Nf-Sign`). Secret.
    pub signed_proxy_secret: Option<String>,
    /// HTTPS policy.
    pub https: HttpsPolicy,
    /// Country source.
    pub geo_source: GeoSource,
    /// Log drain URLs.
    pub log_drains: Vec<String>,
}

const SECRETS: [&str; 2] = ["jwt_secret", "signed_proxy_secret"];

impl SiteSettings {
    /// The API view: everything but secret values, which show as set or not.
    pub fn view(&self) -> Value {
        json!({
            "env": self.env,
            "jwt_role_claim": self.jwt_role_claim,
            "https": self.https,
            "geo_source": self.geo_source,
            "log_drains": self.log_drains,
            "secrets": {
                "jwt_secret": self.jwt_secret.is_some(),
                "signed_proxy_secret": self.signed_proxy_secret.is_some(),
            },
        })
    }

    /// Applies a JSON merge patch (RFC 7396 style: `null` removes). Unknown keys and
    /// wrongly typed values are refused with a message naming the key.
    pub fn apply_patch(&mut self, patch: &Value) -> Result<(), SettingsError> {
        let Value::Object(map) = patch else {
            return Err(SettingsError("settings patch must be a JSON object".into()));
        };
        let mut next = self.clone();
        for (key, value) in map {
            match key.as_str() {
                "env" => next.patch_env(value)?,
                "jwt_secret" | "signed_proxy_secret" | "jwt_role_claim" => {
                    let v = opt_string(key, value)?;
                    match key.as_str() {
                        "jwt_secret" => next.jwt_secret = v,
                        "signed_proxy_secret" => next.signed_proxy_secret = v,
                        _ => next.jwt_role_claim = v,
                    }
                }
                "https" => next.https = enum_value(key, value, "\"off\" or \"redirect\"")?,
                "geo_source" => {
                    next.geo_source = enum_value(key, value, "\"default\", \"header\" or \"none\"")?
                }
                "log_drains" => next.log_drains = drains(value)?,
                "secrets" => {
                    return Err(SettingsError(
                        "\"secrets\" is read-only: set jwt_secret or signed_proxy_secret directly"
                            .into(),
                    ))
                }
                other => {
                    return Err(SettingsError(format!(
                        "unknown setting {other:?}: known settings are env, jwt_secret, jwt_role_claim, signed_proxy_secret, https, geo_source, log_drains"
                    )))
                }
            }
        }
        *self = next;
        Ok(())
    }

    fn patch_env(&mut self, value: &Value) -> Result<(), SettingsError> {
        let env = std::sync::Arc::make_mut(&mut self.env);
        match value {
            Value::Null => env.clear(),
            Value::Object(vars) => {
                for (name, v) in vars {
                    if name.is_empty()
                        || name.len() > 256
                        || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                    {
                        return Err(SettingsError(format!(
                            "environment variable name {name:?} is not valid: use letters, digits and '_'"
                        )));
                    }
                    match opt_string(&format!("env.{name}"), v)? {
                        Some(s) => {
                            env.insert(name.clone(), s);
                        }
                        None => {
                            env.remove(name);
                        }
                    }
                }
                if env.len() > MAX_ENV_VARS {
                    return Err(SettingsError(format!(
                        "too many environment variables (at most {MAX_ENV_VARS})"
                    )));
                }
            }
            _ => return Err(SettingsError("\"env\" must be an object of strings".into())),
        }
        Ok(())
    }

    /// True when `key` names a secret.
    pub fn is_secret(key: &str) -> bool {
        SECRETS.contains(&key)
    }
}

fn opt_string(key: &str, value: &Value) -> Result<Option<String>, SettingsError> {
    match value {
        Value::Null => Ok(None),
        Value::String(s) if s.len() <= MAX_SETTING_VALUE_LEN => Ok(Some(s.clone())),
        Value::String(_) => Err(SettingsError(format!(
            "{key:?} is longer than {MAX_SETTING_VALUE_LEN} bytes"
        ))),
        _ => Err(SettingsError(format!("{key:?} must be a string or null"))),
    }
}

fn enum_value<T: serde::de::DeserializeOwned + Default>(
    key: &str,
    value: &Value,
    expected: &str,
) -> Result<T, SettingsError> {
    if value.is_null() {
        return Ok(T::default());
    }
    serde_json::from_value(value.clone())
        .map_err(|_| SettingsError(format!("{key:?} must be {expected}")))
}

fn drains(value: &Value) -> Result<Vec<String>, SettingsError> {
    let list: Vec<Value> = match value {
        Value::Null => return Ok(Vec::new()),
        Value::Array(a) => a.clone(),
        // `ledge sites set blog log_drains=https://a,https://b`
        Value::String(s) if s.is_empty() => return Ok(Vec::new()),
        Value::String(s) => s.split(',').map(|x| Value::String(x.into())).collect(),
        _ => {
            return Err(SettingsError(
                "\"log_drains\" must be a list of drain URLs (https://, nats://, kafka://)".into(),
            ))
        }
    };
    let mut out = Vec::with_capacity(list.len());
    for v in list {
        match v {
            Value::String(s)
                if ["http://", "https://", "nats://", "kafka://"]
                    .iter()
                    .any(|p| s.starts_with(p))
                    && s.len() <= 2048 =>
            {
                out.push(s)
            }
            other => {
                return Err(SettingsError(format!(
                    "log drain {other} is not a drain URL: use https://HOST/PATH, nats://HOST:PORT/SUBJECT or kafka://HOST:PORT/TOPIC"
                )))
            }
        }
    }
    Ok(out)
}

/// Turns `KEY=VALUE` pairs from the command line into a settings patch:
/// `env.NAME=v` sets one variable, an empty value removes a setting.
pub fn patch_from_pairs<'a>(
    pairs: impl IntoIterator<Item = &'a str>,
) -> Result<Value, SettingsError> {
    let mut root = Map::new();
    for pair in pairs {
        let (key, value) = pair
            .split_once('=')
            .ok_or_else(|| SettingsError(format!("{pair:?} is not KEY=VALUE")))?;
        let value = if value.is_empty() {
            Value::Null
        } else {
            Value::String(value.to_owned())
        };
        match key.split_once('.') {
            Some(("env", name)) => {
                let env = root
                    .entry("env")
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Value::Object(env) = env {
                    env.insert(name.to_owned(), value);
                }
            }
            Some(_) => return Err(SettingsError(format!("unknown setting {key:?}"))),
            None => {
                root.insert(key.to_owned(), value);
            }
        }
    }
    Ok(Value::Object(root))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patch_and_view_hide_secrets() {
        let mut s = SiteSettings::default();
        s.apply_patch(&json!({"jwt_secret": "hunter2", "env": {"A": "1"}, "https": "redirect"}))
            .unwrap();
        assert_eq!(s.jwt_secret.as_deref(), Some("hunter2"));
        let view = s.view().to_string();
        assert!(!view.contains("hunter2"), "{view}");
        assert!(view.contains("\"jwt_secret\":true"));
        s.apply_patch(&json!({"env": {"A": null}})).unwrap();
        assert!(s.env.is_empty());
    }

    #[test]
    fn bad_patches_change_nothing() {
        let mut s = SiteSettings::default();
        let before = s.clone();
        assert!(s
            .apply_patch(&json!({"env": {"A": "1"}, "nope": 1}))
            .is_err());
        assert!(s.apply_patch(&json!({"https": "sometimes"})).is_err());
        assert!(s.apply_patch(&json!({"env": {"A B": "1"}})).is_err());
        assert_eq!(s, before);
    }

    #[test]
    fn pairs() {
        let p = patch_from_pairs(["env.X=1", "jwt_secret=s", "https="]).unwrap();
        assert_eq!(
            p,
            json!({"env": {"X": "1"}, "jwt_secret": "s", "https": null})
        );
        assert!(patch_from_pairs(["novalue"]).is_err());
    }
}
