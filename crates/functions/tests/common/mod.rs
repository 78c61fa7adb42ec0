#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use ledge_functions::*;

/// A host whose `next()` answers from a fixed origin and records requests.
#[derive(Default)]
pub struct TestHost {
    pub seen: Mutex<Vec<(String, HostRequest)>>,
    pub delay: Option<Duration>,
    /// Keep response bodies (as the node does), handing them out
    /// `read_chunk` bytes at a time.
    pub keep: bool,
    pub read_chunk: usize,
    /// Every read of a kept body fails.
    pub fail_reads: bool,
    /// Kept bodies and how far each was read.
    pub kept: Mutex<Vec<(Vec<u8>, usize)>>,
}

impl TestHost {
    /// A host that keeps bodies, read `chunk` bytes at a time.
    pub fn keeping(chunk: usize) -> TestHost {
        TestHost {
            keep: true,
            read_chunk: chunk,
            ..Default::default()
        }
    }

    /// How many bytes of kept body `h` were read.
    pub fn read_of(&self, h: usize) -> usize {
        self.kept.lock().unwrap()[h].1
    }
}

#[async_trait]
impl Host for TestHost {
    async fn next(&self, request: HostRequest) -> Result<HttpResponse, HostError> {
        self.answer("next", request).await
    }
    async fn fetch(&self, request: HostRequest) -> Result<HttpResponse, HostError> {
        if request.url.contains("fail.invalid") {
            return Err(HostError::new("connection refused"));
        }
        self.answer("fetch", request).await
    }
    async fn read_body(&self, handle: u32) -> Result<Option<Vec<u8>>, HostError> {
        if self.fail_reads {
            return Err(HostError::new("connection reset"));
        }
        let mut kept = self.kept.lock().unwrap();
        let Some((body, at)) = kept.get_mut(handle as usize) else {
            return Err(HostError::new("no such body"));
        };
        if *at == body.len() {
            return Ok(None);
        }
        let end = (*at + self.read_chunk.max(1)).min(body.len());
        let chunk = body[*at..end].to_vec();
        *at = end;
        Ok(Some(chunk))
    }
}

impl TestHost {
    async fn answer(&self, kind: &str, request: HostRequest) -> Result<HttpResponse, HostError> {
        if let Some(d) = self.delay {
            tokio::time::sleep(d).await;
        }
        self.seen
            .lock()
            .unwrap()
            .push((kind.to_string(), request.clone()));
        let echo = format!(
            "{} {} {} body={}",
            kind,
            request.method,
            request.url,
            String::from_utf8_lossy(&request.body)
        );
        let mut headers = vec![
            ("content-type".to_string(), "text/plain".to_string()),
            ("x-origin".to_string(), "1".to_string()),
        ];
        for (k, v) in &request.headers {
            if k.starts_with("x-") {
                headers.push((format!("echo-{k}"), v.clone()));
            }
        }
        if self.keep {
            let mut kept = self.kept.lock().unwrap();
            kept.push((echo.into_bytes(), 0));
            return Ok(HttpResponse {
                status: 200,
                headers,
                body: Vec::new(),
                body_handle: Some(kept.len() as u32 - 1),
            });
        }
        Ok(HttpResponse {
            status: 200,
            headers,
            body: echo.into_bytes(),
            body_handle: None,
        })
    }
}

pub fn request(url: &str) -> InvocationRequest {
    InvocationRequest {
        method: "GET".into(),
        url: url.into(),
        headers: vec![("host".into(), "site.example".into())],
        body: Vec::new(),
        context: Arc::new(RequestContext {
            ip: "203.0.113.7".into(),
            request_id: "req-1".into(),
            fixed: Arc::new(FixedContext {
                site: SiteInfo {
                    id: "s1".into(),
                    name: "site".into(),
                    url: "https://site.example".into(),
                },
                deploy: DeployInfo {
                    id: "d1".into(),
                    context: "production".into(),
                    published: true,
                },
                server: ServerInfo {
                    region: "eu-1".into(),
                },
                ..Default::default()
            }),
            ..Default::default()
        }),
    }
}

pub fn engine() -> Engine {
    Engine::new(Limits::default())
}

pub async fn run(engine: &Engine, source: &str, req: &InvocationRequest) -> Invocation {
    let bundle = Bundle::single("test", source);
    engine.invoke(&bundle, req, &TestHost::default()).await
}

pub fn response(inv: &Invocation) -> &HttpResponse {
    match &inv.outcome {
        InvocationOutcome::Response(r) => r,
        other => panic!(
            "expected a response, got {other:?}; console: {:?}",
            inv.telemetry.console
        ),
    }
}

/// The invocation's console lines, messages only, in order.
pub fn console(inv: &Invocation) -> Vec<&str> {
    inv.telemetry
        .console
        .iter()
        .map(|l| l.message.as_str())
        .collect()
}

pub fn body(inv: &Invocation) -> String {
    String::from_utf8_lossy(&response(inv).body).into_owned()
}

/// Runs `script` (the body of an async function) and returns its string result:
/// `return "..."` in the script becomes the response body.
pub async fn eval(script: &str) -> String {
    let src = format!(
        "export default async (request, context) => {{ const __r = await (async () => {{ {script} }})(); return new Response(String(__r)); }}"
    );
    let inv = run(&engine(), &src, &request("https://site.example/")).await;
    match &inv.outcome {
        InvocationOutcome::Response(r) => String::from_utf8_lossy(&r.body).into_owned(),
        other => format!("!{other:?}"),
    }
}

pub fn error_kind(inv: &Invocation) -> Option<ErrorKind> {
    match &inv.outcome {
        InvocationOutcome::Error(e) => Some(e.kind),
        _ => None,
    }
}

/// Assertions for WPT-style tests, run inside the isolate (see [`check`]).
pub const HARNESS: &str = r#"
const __fails = [];
const eq = (a, b, label) => {
  const sa = typeof a === 'string' ? a : JSON.stringify(a), sb = typeof b === 'string' ? b : JSON.stringify(b);
  if (sa !== sb) __fails.push(`${label}: got ${sa}, want ${sb}`);
};
const ok = (c, label) => { if (!c) __fails.push(`${label}: not true`); };
const throws = (f, name, label) => {
  try { f(); __fails.push(`${label}: did not throw`); }
  catch (e) { if (e == null || e.name !== name) __fails.push(`${label}: threw ${e && e.name} (${e && e.message}), want ${name}`); }
};
const rejects = async (p, name, label) => {
  try { await p; __fails.push(`${label}: did not reject`); }
  catch (e) { if (e == null || e.name !== name) __fails.push(`${label}: rejected ${e && e.name} (${e && e.message}), want ${name}`); }
};
const tick = (n = 1) => new Promise((r) => setTimeout(r, n));
const bytes = (s) => new TextEncoder().encode(s);
const text = (u) => new TextDecoder().decode(u);
"#;

/// Runs `script` (the body of an async handler) with [`HARNESS`] and fails
/// with the assertions that did not hold.
pub async fn check(script: &str) {
    let src = format!(
        "{HARNESS}\nexport default async (request, context) => {{\n{script}\n; return new Response(__fails.length ? __fails.join('\\n') : 'ok'); }}"
    );
    let inv = run(&engine(), &src, &request("https://site.example/")).await;
    match &inv.outcome {
        InvocationOutcome::Response(r) => {
            let text = String::from_utf8_lossy(&r.body);
            assert_eq!(text, "ok", "\n{text}\nconsole: {:?}", inv.telemetry.console);
        }
        other => panic!("{other:?}; console: {:?}", inv.telemetry.console),
    }
}
