//! The frames between the node and a worker process.
//!
//! A frame is a little-endian `u32` payload length followed by the payload,
//! one postcard-encoded [`ToWorker`] or [`ToParent`]. Postcard is not
//! self-describing, so the types whose serde form relies on that
//! (`#[serde(tag)]`, `skip_serializing_if`) cross as the `*Wire` mirrors
//! below (serde remote derives: same fields, plain encoding, bodies as bytes).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::ser::SerializeStructVariant;
use serde::{Deserialize, Serialize, Serializer};

use crate::bundle::BundleSource;
use crate::engine::Limits;
use crate::types::{
    CodeName, FixedContext, Geo, HostRequest, HttpResponse, Invocation, InvocationError,
    InvocationOutcome, InvocationRequest, RequestContext, Telemetry,
};
use crate::worker::sandbox::SandboxReport;

/// Largest payload accepted from either side (bodies are capped far lower).
pub(crate) const MAX_FRAME: usize = 256 << 20;

/// Node → worker.
// Decoded and consumed at once, never stored in bulk: boxing would only add
// an allocation per invocation.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum ToWorker {
    /// First frame: the limits of the worker's engine.
    Init {
        #[serde(with = "LimitsWire")]
        limits: Limits,
        max_bundles: usize,
    },
    /// A bundle the next `Invoke`s refer to by `key` (its [`crate::Bundle::key`]).
    Load {
        key: String,
        source: BundleSource,
        /// `Some` when the bundle was made with [`crate::Bundle::with_env`].
        env: Option<BTreeMap<String, String>>,
    },
    /// Run one request (encoded without a copy by [`InvokeRef`]). The
    /// request travels without its environment and its context's
    /// [`FixedContext`]: each is `Some` when it is not the one this worker
    /// was last sent for `key` (or when `key` was just loaded), and the
    /// worker keeps them for the next ones.
    Invoke {
        id: u64,
        key: String,
        #[serde(with = "RequestWire")]
        request: InvocationRequest,
        env: Option<std::sync::Arc<BTreeMap<String, String>>>,
        fixed: Option<std::sync::Arc<FixedContext>>,
    },
    /// The answer to a [`ToParent::HostCall`].
    HostResult {
        id: u64,
        call: u32,
        result: HostOutcome,
    },
    /// Forget the bundles and warm isolates of this bundle id.
    Evict {
        bundle_id: String,
    },
    Ping {
        seq: u64,
    },
}

/// What goes beside the requests of a bundle key ([`ToWorker::Invoke`]'s
/// `env` and `fixed`), as the last `Invoke` that sent it left it: the node
/// keeps it to know what the worker has, the worker to fill in requests
/// that came without it. Requests to a site share both.
pub(crate) struct Beside {
    pub env: std::sync::Arc<BTreeMap<String, String>>,
    pub fixed: std::sync::Arc<FixedContext>,
}

/// Variant index of [`ToWorker::Invoke`] (declaration order above).
const INVOKE_VARIANT: u32 = 2;

/// [`ToWorker::Invoke`] by reference, so the request is not cloned.
pub(crate) struct InvokeRef<'a> {
    pub id: u64,
    pub key: &'a str,
    pub request: &'a InvocationRequest,
    /// The request's environment, if the worker needs it sent ...
    pub env: Option<&'a BTreeMap<String, String>>,
    /// ... and its context's fixed members.
    pub fixed: Option<&'a FixedContext>,
}

impl Serialize for InvokeRef<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        struct Req<'a>(&'a InvocationRequest);
        impl Serialize for Req<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                RequestWire::serialize(self.0, s)
            }
        }
        let mut v = s.serialize_struct_variant("ToWorker", INVOKE_VARIANT, "Invoke", 5)?;
        v.serialize_field("id", &self.id)?;
        v.serialize_field("key", self.key)?;
        v.serialize_field("request", &Req(self.request))?;
        v.serialize_field("env", &self.env)?;
        v.serialize_field("fixed", &self.fixed)?;
        v.end()
    }
}

/// Worker → node.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum ToParent {
    /// Sent once, after the sandbox was applied and `Init` read.
    Ready { sandbox: SandboxReport },
    /// A host call of invocation `id` (`request` is empty for
    /// [`CallKind::Read`]).
    HostCall {
        id: u64,
        call: u32,
        kind: CallKind,
        #[serde(with = "HostRequestWire")]
        request: HostRequest,
    },
    Done {
        id: u64,
        #[serde(with = "InvocationWire")]
        invocation: Invocation,
    },
    /// `Invoke` named a bundle the worker does not hold (never loaded or
    /// evicted by its LRU): send `Load` and `Invoke` again.
    UnknownBundle { id: u64 },
    Pong {
        seq: u64,
        /// Whether a blank isolate is ready for the next cold start, and
        /// how many its idle work has made so far.
        blank: bool,
        blanks_made: u64,
    },
}

/// Which host call: `context.next()`, `fetch()`, or the next bytes of a
/// body the node kept for one of their responses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum CallKind {
    Next,
    Fetch,
    Read(u32),
}

/// Result of a host call.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum HostOutcome {
    /// Of `Next` and `Fetch`.
    Ok(#[serde(with = "HttpResponseWire")] HttpResponse),
    /// Of `Read`: the next bytes of the body.
    Chunk(#[serde(with = "bytes")] Vec<u8>),
    /// Of `Read`: the body has ended.
    End,
    Err(String),
}

/// Appends one frame holding `msg` to `out`.
pub(crate) fn encode<T: Serialize>(msg: &T, out: &mut Vec<u8>) -> Result<(), postcard::Error> {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    let buf = std::mem::take(out);
    match postcard::to_extend(msg, buf) {
        Ok(buf) => *out = buf,
        Err(e) => return Err(e),
    }
    let len = out.len() - start - 4;
    match u32::try_from(len) {
        Ok(n) if len <= MAX_FRAME => {
            out[start..start + 4].copy_from_slice(&n.to_le_bytes());
            Ok(())
        }
        _ => {
            out.truncate(start);
            Err(postcard::Error::SerializeBufferFull)
        }
    }
}

/// One frame holding `msg`.
pub(crate) fn frame<T: Serialize>(msg: &T) -> Result<Vec<u8>, postcard::Error> {
    // Room for the usual answer at once (growing from empty cost a few
    // reallocations per frame).
    let mut out = Vec::with_capacity(512);
    encode(msg, &mut out)?;
    Ok(out)
}

/// Payload length from a frame header, or `None` if it is too large.
pub(crate) fn payload_len(header: [u8; 4]) -> Option<usize> {
    let len = u32::from_le_bytes(header) as usize;
    (len <= MAX_FRAME).then_some(len)
}

// ---- wire mirrors -------------------------------------------------------

mod bytes {
    use serde::de::{SeqAccess, Visitor};
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
            fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
                Ok(v)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
                let mut out = Vec::new();
                while let Some(b) = seq.next_element()? {
                    out.push(b);
                }
                Ok(out)
            }
        }
        d.deserialize_byte_buf(V)
    }
}

#[derive(Serialize, Deserialize)]
#[serde(remote = "Limits")]
struct LimitsWire {
    memory_bytes: usize,
    stack_bytes: usize,
    cpu_time: Duration,
    wall_time: Duration,
    host_call_timeout: Duration,
    max_host_calls: u32,
    max_host_body_bytes: usize,
    max_console_lines: usize,
    max_console_line_bytes: usize,
    max_isolates: usize,
}

#[derive(Serialize, Deserialize)]
#[serde(remote = "Geo")]
struct GeoWire {
    city: Option<String>,
    country: Option<CodeName>,
    subdivision: Option<CodeName>,
    postal_code: Option<String>,
    latitude: Option<f64>,
    longitude: Option<f64>,
    timezone: Option<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(remote = "RequestContext")]
struct ContextWire {
    ip: String,
    request_id: String,
    #[serde(with = "GeoWire")]
    geo: Geo,
    /// Sent beside the request ([`ToWorker::Invoke`]'s `fixed`).
    #[serde(skip, default = "no_fixed")]
    fixed: std::sync::Arc<FixedContext>,
    params: BTreeMap<String, String>,
    /// Sent beside the request ([`ToWorker::Invoke`]'s `env`).
    #[serde(skip, default = "no_env")]
    env: std::sync::Arc<BTreeMap<String, String>>,
}

/// The placeholders a decoded context holds until the worker puts in what
/// was sent beside it: shared, so decoding allocates neither.
fn no_fixed() -> std::sync::Arc<FixedContext> {
    static EMPTY: std::sync::OnceLock<std::sync::Arc<FixedContext>> = std::sync::OnceLock::new();
    std::sync::Arc::clone(EMPTY.get_or_init(Default::default))
}

fn no_env() -> std::sync::Arc<BTreeMap<String, String>> {
    static EMPTY: std::sync::OnceLock<std::sync::Arc<BTreeMap<String, String>>> =
        std::sync::OnceLock::new();
    std::sync::Arc::clone(EMPTY.get_or_init(Default::default))
}

#[derive(Serialize, Deserialize)]
#[serde(remote = "InvocationRequest")]
struct RequestWire {
    method: String,
    url: String,
    headers: Vec<(String, String)>,
    #[serde(with = "bytes")]
    body: Vec<u8>,
    #[serde(with = "shared_context")]
    context: std::sync::Arc<RequestContext>,
}

/// A shared [`RequestContext`] on the wire: as [`ContextWire`].
mod shared_context {
    use std::sync::Arc;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::{ContextWire, RequestContext};

    #[derive(Serialize)]
    struct Out<'a>(#[serde(with = "ContextWire")] &'a RequestContext);

    #[derive(Deserialize)]
    struct In(#[serde(with = "ContextWire")] RequestContext);

    pub(super) fn serialize<S: Serializer>(
        c: &Arc<RequestContext>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        Out(c).serialize(s)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Arc<RequestContext>, D::Error> {
        In::deserialize(d).map(|c| Arc::new(c.0))
    }
}

#[derive(Serialize, Deserialize)]
#[serde(remote = "HostRequest")]
struct HostRequestWire {
    method: String,
    url: String,
    headers: Vec<(String, String)>,
    #[serde(with = "bytes")]
    body: Vec<u8>,
    send_conditional_request: bool,
}

#[derive(Serialize, Deserialize)]
#[serde(remote = "HttpResponse")]
struct HttpResponseWire {
    status: u16,
    headers: Vec<(String, String)>,
    #[serde(with = "bytes")]
    body: Vec<u8>,
    body_handle: Option<u32>,
}

#[derive(Serialize, Deserialize)]
#[serde(remote = "InvocationOutcome")]
enum OutcomeWire {
    Response(#[serde(with = "HttpResponseWire")] HttpResponse),
    Rewrite { url: String },
    PassThrough,
    Error(InvocationError),
}

#[derive(Serialize, Deserialize)]
#[serde(remote = "Invocation")]
struct InvocationWire {
    #[serde(with = "OutcomeWire")]
    outcome: InvocationOutcome,
    set_cookies: Vec<String>,
    telemetry: Telemetry,
}

/// Decodes one payload; `Err` means a malformed frame.
pub(crate) fn decode<'a, T: Deserialize<'a>>(payload: &'a [u8]) -> Result<T, postcard::Error> {
    postcard::from_bytes(payload)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{ConsoleLine, ErrorKind};

    fn request() -> InvocationRequest {
        let mut r = InvocationRequest {
            method: "POST".into(),
            url: "https://s.example/a?b".into(),
            headers: vec![("x-a".into(), "1".into())],
            body: b"\x00\xffbody".to_vec(),
            ..Default::default()
        };
        r.context_mut().geo.city = Some("Lyon".into());
        r.context_mut().geo.latitude = Some(45.7);
        std::sync::Arc::make_mut(&mut r.context_mut().env).insert("K".into(), "V".into());
        let fixed = std::sync::Arc::make_mut(&mut r.context_mut().fixed);
        fixed.site.name = "site".into();
        fixed.deploy.id = "d1".into();
        r
    }

    fn payload(frame: &[u8]) -> &[u8] {
        let len = payload_len([frame[0], frame[1], frame[2], frame[3]]).unwrap();
        assert_eq!(len, frame.len() - 4);
        &frame[4..]
    }

    #[test]
    fn invoke_by_reference_decodes_as_invoke() {
        let req = request();
        // With the environment and the fixed context beside the request,
        // and without them.
        let with = (Some(&*req.context.env), Some(&*req.context.fixed));
        for (env, fixed) in [with, (None, None)] {
            let f = frame(&InvokeRef {
                id: 7,
                key: "k",
                request: &req,
                env,
                fixed,
            })
            .unwrap();
            match decode::<ToWorker>(payload(&f)).unwrap() {
                ToWorker::Invoke {
                    id,
                    key,
                    mut request,
                    env: sent,
                    fixed: sent_fixed,
                } => {
                    assert_eq!((id, key.as_str()), (7, "k"));
                    assert!(request.context.env.is_empty(), "not inside the request");
                    assert_eq!(*request.context.fixed, FixedContext::default());
                    assert_eq!(sent.as_deref(), env);
                    assert_eq!(sent_fixed.as_deref(), fixed);
                    request.context_mut().env = std::sync::Arc::clone(&req.context.env);
                    request.context_mut().fixed = std::sync::Arc::clone(&req.context.fixed);
                    assert_eq!(request, req);
                }
                other => panic!("{other:?}"),
            }
        }
    }

    /// A decoded context's placeholders for what comes beside it are
    /// shared, not made per request.
    #[test]
    fn decoded_contexts_share_their_placeholders() {
        let req = request();
        let f = frame(&InvokeRef {
            id: 1,
            key: "k",
            request: &req,
            env: None,
            fixed: None,
        })
        .unwrap();
        let decoded = || match decode::<ToWorker>(payload(&f)).unwrap() {
            ToWorker::Invoke { request, .. } => request,
            other => panic!("{other:?}"),
        };
        let (a, b) = (decoded(), decoded());
        assert!(std::sync::Arc::ptr_eq(&a.context.fixed, &b.context.fixed));
        assert!(std::sync::Arc::ptr_eq(&a.context.env, &b.context.env));
    }

    #[test]
    fn outcomes_round_trip() {
        for outcome in [
            InvocationOutcome::Response(HttpResponse {
                status: 201,
                headers: vec![("a".into(), "b".into())],
                body: vec![1, 2, 3],
                body_handle: None,
            }),
            InvocationOutcome::Response(HttpResponse {
                status: 200,
                headers: vec![],
                body: vec![],
                body_handle: Some(7),
            }),
            InvocationOutcome::Rewrite { url: "/x".into() },
            InvocationOutcome::PassThrough,
            InvocationOutcome::Error(InvocationError::new(ErrorKind::CpuLimit, "cpu")),
        ] {
            let inv = Invocation {
                outcome,
                set_cookies: vec!["a=b".into()],
                telemetry: Telemetry {
                    console: vec![ConsoleLine {
                        level: "log".into(),
                        message: "hi".into(),
                    }],
                    late_error: Some(InvocationError::new(ErrorKind::Uncaught, "late")),
                    ..Default::default()
                },
            };
            let f = frame(&ToParent::Done {
                id: 1,
                invocation: inv.clone(),
            })
            .unwrap();
            match decode::<ToParent>(payload(&f)).unwrap() {
                ToParent::Done { invocation, .. } => assert_eq!(invocation, inv),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn malformed_payloads_are_errors() {
        assert!(decode::<ToParent>(&[200, 1, 2]).is_err());
        assert!(decode::<ToParent>(&[]).is_err());
        assert_eq!(payload_len(u32::MAX.to_le_bytes()), None);
    }
}
