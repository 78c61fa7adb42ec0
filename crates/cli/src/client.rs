//! The API client the CLI commands share: base URL and token from the
//! environment, one-line errors from the API's JSON error shape.

use std::time::Duration;

use anyhow::{anyhow, Context};
use serde_json::Value;

/// A client of the control API.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Client {
    /// `LEDGE_API` (default `http://127.0.0.1:8081`) and `LEDGE_TOKEN` (default:
    /// the contents of `./ledge-data/admin-token`).
    pub fn from_env() -> anyhow::Result<Self> {
        let base = std::env::var("LEDGE_API")
            .unwrap_or_else(|_| "http://127.0.0.1:8081".into())
            .trim_end_matches('/')
            .to_owned();
        let token = match std::env::var("LEDGE_TOKEN") {
            Ok(t) if !t.trim().is_empty() => t.trim().to_owned(),
            _ => {
                let path = crate::default_data_dir().join("admin-token");
                std::fs::read_to_string(&path)
                    .map(|t| t.trim().to_owned())
                    .map_err(|_| {
                        anyhow!(
                            "no API token: set LEDGE_TOKEN, or run from the folder holding ledge-data/admin-token"
                        )
                    })?
            }
        };
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(600))
            .build()?;
        Ok(Self { http, base, token })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn send(&self, req: reqwest::RequestBuilder, what: &str) -> anyhow::Result<Value> {
        let resp = req.bearer_auth(&self.token).send().await.map_err(|e| {
            anyhow!(
                "cannot reach the Ledge API at {}: {}",
                self.base,
                root_cause(&e)
            )
        })?;
        let status = resp.status();
        let bytes = resp
            .bytes()
            .await
            .with_context(|| format!("{what}: reading the response"))?;
        if status.is_success() {
            if bytes.is_empty() {
                return Ok(Value::Null);
            }
            return serde_json::from_slice(&bytes)
                .with_context(|| format!("{what}: the API answered with invalid JSON"));
        }
        let msg = serde_json::from_slice::<Value>(&bytes)
            .ok()
            .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
            .unwrap_or_else(|| String::from_utf8_lossy(&bytes).trim().to_owned());
        Err(ApiFailure {
            status: status.as_u16(),
            message: msg,
        }
        .into())
    }

    /// GET `path`.
    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.send(self.http.get(self.url(path)), path).await
    }

    /// POST JSON to `path`.
    pub async fn post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        self.send(self.http.post(self.url(path)).json(body), path)
            .await
    }

    /// PATCH JSON to `path`.
    pub async fn patch(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        self.send(self.http.patch(self.url(path)).json(body), path)
            .await
    }

    /// DELETE `path`.
    pub async fn delete(&self, path: &str) -> anyhow::Result<Value> {
        self.send(self.http.delete(self.url(path)), path).await
    }

    /// PUT raw bytes to `path`.
    pub async fn put_bytes(&self, path: &str, body: Vec<u8>) -> anyhow::Result<Value> {
        self.send(
            self.http
                .put(self.url(path))
                .header("content-type", "application/octet-stream")
                .body(body),
            path,
        )
        .await
    }
}

impl Client {
    /// GET `path` and hand back the response with its body unread, for
    /// answers that stream (server-sent events). No overall time limit:
    /// the stream lasts as long as the caller reads it; a connection that
    /// stays silent for `idle` (the API sends keep-alives) is an error.
    pub async fn get_stream(
        &self,
        path: &str,
        idle: Duration,
    ) -> anyhow::Result<reqwest::Response> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(idle)
            .build()?;
        let resp = http
            .get(self.url(path))
            .bearer_auth(&self.token)
            .header("accept", "text/event-stream")
            .send()
            .await
            .map_err(|e| {
                anyhow!(
                    "cannot reach the Ledge API at {}: {}",
                    self.base,
                    root_cause(&e)
                )
            })?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let bytes = resp
            .bytes()
            .await
            .with_context(|| format!("{path}: reading the response"))?;
        let message = serde_json::from_slice::<Value>(&bytes)
            .ok()
            .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
            .unwrap_or_else(|| String::from_utf8_lossy(&bytes).trim().to_owned());
        Err(ApiFailure {
            status: status.as_u16(),
            message,
        }
        .into())
    }
}

/// An error answer from the API.
#[derive(Debug)]
pub struct ApiFailure {
    /// HTTP status.
    pub status: u16,
    /// The API's message.
    pub message: String,
}

impl std::fmt::Display for ApiFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ApiFailure {}

fn root_cause(e: &dyn std::error::Error) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}
