//! Plain data crossing the runtime boundary. Everything here is serde data so a
//! later step can move isolates into a sandboxed worker process and send these
//! over a pipe unchanged.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// One request handed to an edge function.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct InvocationRequest {
    pub method: String,
    /// Absolute URL (`https://site.example/path?q`).
    pub url: String,
    /// Header pairs in arrival order; names are compared case-insensitively.
    pub headers: Vec<(String, String)>,
    #[serde(with = "bytes_b64")]
    pub body: Vec<u8>,
    /// Shared: the steps of a request's chain (and their worker frames)
    /// read one context; [`InvocationRequest::context_mut`] to change it.
    pub context: std::sync::Arc<RequestContext>,
}

impl InvocationRequest {
    /// The context, to change (copied first if it is shared).
    pub fn context_mut(&mut self) -> &mut RequestContext {
        std::sync::Arc::make_mut(&mut self.context)
    }
}

/// What the function sees as `context` (minus the methods).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RequestContext {
    pub ip: String,
    pub request_id: String,
    pub geo: Geo,
    /// `site`, `deploy`, `server` and `account`: shared, as the edge builds
    /// them once for the requests to a deploy through one host (and sends
    /// them to a worker once for many invocations).
    #[serde(flatten)]
    pub fixed: std::sync::Arc<FixedContext>,
    /// Named groups of the matched `path` URLPattern.
    pub params: BTreeMap<String, String>,
    /// The site's environment (Functions scope), seen as `Netlify.env`;
    /// shared, so that a request copies a pointer, not the variables.
    pub env: std::sync::Arc<BTreeMap<String, String>>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Geo {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub city: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub country: Option<CodeName>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subdivision: Option<CodeName>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub postal_code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latitude: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub longitude: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
}

/// The members of a function's `context` that are the same for every
/// request to a deploy through one host.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct FixedContext {
    pub site: SiteInfo,
    pub deploy: DeployInfo,
    pub server: ServerInfo,
    pub account: AccountInfo,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct CodeName {
    pub code: String,
    pub name: String,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct SiteInfo {
    pub id: String,
    pub name: String,
    pub url: String,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct DeployInfo {
    pub id: String,
    /// `production`, `deploy-preview`, `branch-deploy`, `dev`.
    pub context: String,
    pub published: bool,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct ServerInfo {
    pub region: String,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct AccountInfo {
    pub id: String,
}

/// A request the function sends out through the [`crate::Host`]
/// (`context.next(...)` or `fetch(...)`).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HostRequest {
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    #[serde(with = "bytes_b64")]
    pub body: Vec<u8>,
    /// `context.next({sendConditionalRequest: true})`: keep conditional headers.
    #[serde(default)]
    pub send_conditional_request: bool,
}

/// An HTTP response: from the host to the function, or the function's answer.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct HttpResponse {
    pub status: u16,
    /// Header pairs; `set-cookie` appears once per cookie.
    pub headers: Vec<(String, String)>,
    #[serde(with = "bytes_b64")]
    pub body: Vec<u8>,
    /// A body the host kept (`body` is then empty): from the host, the
    /// function reads it with [`crate::Host::read_body`] only if it looks at
    /// it; in the function's answer, the function handed that body back
    /// unread, so the host sends its own stream, of any size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_handle: Option<u32>,
}

impl HttpResponse {
    /// First value of a header (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// How an invocation ended.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum InvocationOutcome {
    /// The function answered; the chain stops here.
    Response(HttpResponse),
    /// The function returned a `URL`: rewrite internally to it (the edge checks
    /// it is same-site).
    Rewrite { url: String },
    /// The function returned `undefined`: continue as if it was not declared.
    PassThrough,
    /// The function failed; the edge applies `onError`.
    Error(InvocationError),
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct InvocationError {
    pub kind: ErrorKind,
    pub message: String,
}

/// Why an invocation failed.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The module did not compile, an import could not be resolved, or the
    /// module threw while it was evaluated.
    Module,
    /// The entry module has no default export function.
    NoHandler,
    /// The handler threw or its promise rejected.
    Uncaught,
    /// The handler returned something other than `Response`, `URL` or `undefined`.
    InvalidReturn,
    /// The handler's promise can never settle (nothing left to wait for).
    NoResponse,
    /// The CPU-time budget of the invocation was used up.
    CpuLimit,
    /// The isolate's memory limit was reached.
    MemoryLimit,
    /// The JS stack limit was reached (runaway recursion).
    StackOverflow,
    /// The wall-clock limit of the invocation passed.
    WallTimeout,
    /// A failure of the runtime itself.
    Internal,
    /// The worker process running the invocation died, hung or sent a
    /// malformed frame, so it was replaced; the function's own outcome is
    /// unknown. Only invocations on that worker see this.
    WorkerLost,
    /// Too many invocations of the same site were already waiting for a
    /// worker: this one was refused without running.
    Overloaded,
}

impl ErrorKind {
    /// Whether an isolate that saw this error may run another invocation.
    pub fn poisons_isolate(self) -> bool {
        !matches!(
            self,
            ErrorKind::Uncaught | ErrorKind::InvalidReturn | ErrorKind::NoHandler
        )
    }
}

/// One line written with `console.*`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ConsoleLine {
    /// `debug`, `log`, `info`, `warn` or `error`.
    pub level: String,
    pub message: String,
}

/// What the edge records for every invocation.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Telemetry {
    /// Wall-clock time from the start of the invocation to its end
    /// (including host calls and `waitUntil` work).
    pub duration: Duration,
    /// Time spent running JavaScript (the quantity limited by `cpu_limit`).
    pub cpu_time: Duration,
    /// Whether a fresh isolate was created for this invocation.
    pub cold_start: bool,
    /// Console output, capped by [`crate::Limits::max_console_lines`].
    pub console: Vec<ConsoleLine>,
    /// Console lines dropped beyond the cap.
    pub console_dropped: u32,
    /// Host calls made (`next` and `fetch`).
    pub host_calls: u32,
    /// An error after the outcome was fixed (in `waitUntil` work).
    pub late_error: Option<InvocationError>,
}

/// The result of [`crate::Engine::invoke`].
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Invocation {
    pub outcome: InvocationOutcome,
    /// `Set-Cookie` values from `context.cookies.set/delete`. Already added to
    /// a `Response` outcome; for `Rewrite` and `PassThrough` the edge adds
    /// them to whatever response the rest of the chain produces.
    pub set_cookies: Vec<String>,
    pub telemetry: Telemetry,
}

/// Inline `export const config` of an entry module (Netlify names).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FunctionConfig {
    #[serde(default, skip_serializing_if = "Vec::is_empty", with = "one_or_many")]
    pub path: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty", with = "one_or_many")]
    pub excluded_path: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty", with = "one_or_many")]
    pub pattern: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty", with = "one_or_many")]
    pub excluded_pattern: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty", with = "one_or_many")]
    pub method: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_error: Option<String>,
    /// Header conditions: `true` present, `false` absent, string = regex.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub header: BTreeMap<String, HeaderCondition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum HeaderCondition {
    Present(bool),
    Matches(String),
}

mod one_or_many {
    use serde::{Deserialize, Deserializer, Serializer};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }

    pub fn serialize<S: Serializer>(v: &[String], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
        Ok(match Option::<OneOrMany>::deserialize(d)? {
            None => Vec::new(),
            Some(OneOrMany::One(s)) => vec![s],
            Some(OneOrMany::Many(v)) => v,
        })
    }
}

/// Bodies travel as base64 in JSON (and as raw bytes in binary encodings).
mod bytes_b64 {
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(v))
        } else {
            s.serialize_bytes(v)
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        if d.is_human_readable() {
            let s = String::deserialize(d)?;
            base64::engine::general_purpose::STANDARD
                .decode(s.as_bytes())
                .map_err(serde::de::Error::custom)
        } else {
            serde_bytes_vec(d)
        }
    }

    fn serde_bytes_vec<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        Vec::<u8>::deserialize(d)
    }
}
