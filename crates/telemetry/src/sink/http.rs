//! HTTP drains: batched, gzipped `POST`s.

use std::io::Write;
use std::net::{IpAddr, SocketAddr};

use flate2::write::GzEncoder;
use reqwest::header::{CONTENT_ENCODING, CONTENT_TYPE, USER_AGENT};

use super::{Batch, BatchWriter, ConnectCheck, SinkError};
use crate::drain::HttpFormat;

pub(crate) struct HttpWriter {
    client: reqwest::Client,
    url: url::Url,
    format: HttpFormat,
    check: Option<ConnectCheck>,
}

impl HttpWriter {
    pub(crate) fn new(
        client: reqwest::Client,
        url: url::Url,
        format: HttpFormat,
        check: Option<ConnectCheck>,
    ) -> Self {
        Self {
            client,
            url,
            format,
            check,
        }
    }

    /// The resolver of the node's client checks names; IP literals never
    /// reach it, so they are checked here.
    fn check_literal(&self) -> Result<(), SinkError> {
        let Some(check) = &self.check else {
            return Ok(());
        };
        let ip = match self.url.host() {
            Some(url::Host::Ipv4(v4)) => IpAddr::V4(v4),
            Some(url::Host::Ipv6(v6)) => IpAddr::V6(v6),
            _ => return Ok(()),
        };
        let port = self.url.port_or_known_default().unwrap_or(443);
        check(SocketAddr::new(ip, port)).map_err(SinkError::Permanent)
    }
}

/// The batch as one body: NDJSON as is, or a JSON array of the lines.
pub(crate) fn encode(batch: &Batch, format: HttpFormat) -> Vec<u8> {
    let mut body = Vec::with_capacity(batch.bytes + 2);
    match format {
        HttpFormat::Ndjson => batch
            .chunks
            .iter()
            .for_each(|c| body.extend_from_slice(&c.bytes)),
        HttpFormat::Json => {
            body.push(b'[');
            for (i, l) in batch.lines().enumerate() {
                if i > 0 {
                    body.push(b',');
                }
                body.extend_from_slice(l.strip_suffix(b"\n").unwrap_or(&l));
            }
            body.push(b']');
        }
    }
    body
}

fn gzip(body: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut gz = GzEncoder::new(
        Vec::with_capacity(body.len() / 4 + 64),
        flate2::Compression::fast(),
    );
    gz.write_all(body)?;
    gz.finish()
}

impl BatchWriter for HttpWriter {
    async fn write(&mut self, batch: &Batch) -> Result<(), SinkError> {
        self.check_literal()?;
        let body = gzip(&encode(batch, self.format))
            .map_err(|e| SinkError::Permanent(format!("gzip: {e}")))?;
        let content_type = match self.format {
            HttpFormat::Ndjson => "application/x-ndjson",
            HttpFormat::Json => "application/json",
        };
        let resp = self
            .client
            .post(self.url.clone())
            .header(CONTENT_TYPE, content_type)
            .header(CONTENT_ENCODING, "gzip")
            .header(
                USER_AGENT,
                concat!("ledge-log-drain/", env!("CARGO_PKG_VERSION")),
            )
            .body(body)
            .send()
            .await
            .map_err(|e| SinkError::Retry(format!("sending: {e}")))?;
        let status = resp.status();
        if status.is_success() {
            Ok(())
        } else if status.is_server_error() || status.as_u16() == 429 || status.as_u16() == 408 {
            Err(SinkError::Retry(format!("intake answered {status}")))
        } else {
            Err(SinkError::Permanent(format!("intake answered {status}")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn encodes_ndjson_and_json_arrays() {
        let b = Batch {
            chunks: vec![
                super::super::Chunk {
                    bytes: Bytes::from_static(b"{\"a\":1}\n"),
                    lines: 1,
                },
                super::super::Chunk {
                    bytes: Bytes::from_static(b"{\"a\":2}\n{\"a\":3}\n"),
                    lines: 2,
                },
            ],
            lines: 3,
            bytes: 24,
            seq: 0,
        };
        assert_eq!(
            encode(&b, HttpFormat::Ndjson),
            b"{\"a\":1}\n{\"a\":2}\n{\"a\":3}\n"
        );
        let arr: serde_json::Value = serde_json::from_slice(&encode(&b, HttpFormat::Json)).unwrap();
        assert_eq!(arr, serde_json::json!([{"a": 1}, {"a": 2}, {"a": 3}]));
    }
}
