//! `ledge logs` (live records of a site, from the API's server-sent events)
//! and `ledge stats` (a site's statistics over a time range).

use std::io::{IsTerminal, Write};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use serde_json::Value;

use crate::client::Client;

/// The API sends a keep-alive comment every 15 s on an idle stream; this
/// long without a byte means the connection is gone.
const STREAM_IDLE: Duration = Duration::from_secs(60);

/// The long help of `ledge logs`.
pub const LOGS_HELP: &str = "Shows a site's requests (and, with --functions, its edge function \
invocations) live, as the node answers them.\n\n\
The node keeps no history for this command: it shows what happens from the moment \
it connects. Without --follow it listens for --for (default 5s) and exits; with \
--follow it keeps streaming until interrupted (Ctrl-C). For past traffic read the \
node's access log (DATA/logs/access.log by default) or a log drain, and use \
`ledge stats` for totals.\n\n\
Each record is one line: time, status, method, host and path, duration, response \
bytes, what answered (and the rule), cache status, request id (x-ledge-id). With \
--json each record is printed as the JSON line the node's drains receive.";

/// Arguments of `ledge logs`.
#[derive(clap::Args)]
pub struct LogsArgs {
    /// The site.
    #[arg(long)]
    site: String,
    /// Keep streaming until interrupted.
    #[arg(long, short = 'f')]
    follow: bool,
    /// Without --follow: how long to listen before exiting (`30s`, `2m`,
    /// or seconds).
    #[arg(
        long = "for",
        value_name = "DURATION",
        default_value = "5s",
        value_parser = parse_window,
        conflicts_with = "follow"
    )]
    window: Duration,
    /// Also show edge function invocation records.
    #[arg(long)]
    functions: bool,
    /// Only these statuses: codes and classes separated by commas (`5xx`,
    /// `404`, `4xx,500`).
    #[arg(long)]
    status: Option<String>,
    /// Print each record as its raw JSON line.
    #[arg(long)]
    json: bool,
}

/// The long help of `ledge stats`.
pub const STATS_HELP: &str = "Shows a site's traffic statistics: exact counters (requests, bytes, \
status classes, cache, edge errors, edge functions), duration percentiles, the top \
paths, referrers and countries, and requests per minute or hour. The minute in \
progress is included.\n\n\
Top-list counts are estimates that may be low by at most the error bound shown; \
percentiles are within 1 %.";

/// Arguments of `ledge stats`.
#[derive(clap::Args)]
pub struct StatsArgs {
    /// The site.
    #[arg(long)]
    site: String,
    /// Start of the range: Unix seconds, or a duration before now (`15m`,
    /// `1h`, `7d`).
    #[arg(long, default_value = "1h")]
    since: String,
    /// End of the range (same forms; default: now).
    #[arg(long)]
    until: Option<String>,
    /// Bucket width: `minute` or `hour` (default: minutes up to six hours).
    #[arg(long, value_parser = ["minute", "hour"])]
    resolution: Option<String>,
    /// Print the API's JSON answer.
    #[arg(long)]
    json: bool,
}

/// `--for`: `500ms`, `30s`, `2m`, `1h`, or plain seconds.
fn parse_window(s: &str) -> Result<Duration, String> {
    let bad = || format!("{s:?}: use a duration such as 10s, 2m or 1h");
    let s = s.trim();
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let (n, unit) = if let Some(n) = s.strip_suffix("ms") {
        (n, "ms")
    } else {
        let at = s.len().checked_sub(1).ok_or_else(bad)?;
        if !s.is_char_boundary(at) {
            return Err(bad());
        }
        s.split_at(at)
    };
    let n: u64 = n.parse().map_err(|_| bad())?;
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.checked_mul(60).ok_or_else(bad)?),
        "h" => Duration::from_secs(n.checked_mul(3600).ok_or_else(bad)?),
        _ => return Err(bad()),
    };
    Ok(d)
}

/// One server-sent event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The `event:` field (`message` when absent, as the SSE spec says).
    pub event: String,
    /// The `data:` lines joined with `\n`.
    pub data: String,
}

/// An incremental parser of a `text/event-stream` body: bytes in, complete
/// frames out. Lines end with `\n`, `\r\n` or `\r`; a blank line ends a
/// frame; lines starting with `:` are comments; fields other than `event`
/// and `data` are ignored.
#[derive(Debug, Default)]
pub struct SseParser {
    line: Vec<u8>,
    /// The previous byte was a `\r` that ended a line (so a `\n` right
    /// after it is part of the same line ending).
    after_cr: bool,
    event: Option<String>,
    data: Option<String>,
}

/// Longest line kept; a longer one is cut (a record line is a few hundred
/// bytes, a function's console output a few KiB at most).
const MAX_LINE: usize = 4 << 20;

impl SseParser {
    /// Feeds bytes; returns the frames they completed.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<Frame> {
        let mut out = Vec::new();
        for &b in bytes {
            match b {
                b'\n' if self.after_cr => self.after_cr = false,
                b'\n' | b'\r' => {
                    self.after_cr = b == b'\r';
                    let line = std::mem::take(&mut self.line);
                    if let Some(f) = self.line_done(&line) {
                        out.push(f);
                    }
                }
                _ => {
                    self.after_cr = false;
                    if self.line.len() < MAX_LINE {
                        self.line.push(b);
                    }
                }
            }
        }
        out
    }

    fn line_done(&mut self, line: &[u8]) -> Option<Frame> {
        if line.is_empty() {
            let event = self.event.take();
            let data = self.data.take()?;
            return Some(Frame {
                event: event.unwrap_or_else(|| "message".to_owned()),
                data,
            });
        }
        if line[0] == b':' {
            return None;
        }
        let line = String::from_utf8_lossy(line);
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (&*line, ""),
        };
        match field {
            "event" => self.event = Some(value.to_owned()),
            "data" => match &mut self.data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(value);
                }
                None => self.data = Some(value.to_owned()),
            },
            _ => {}
        }
        None
    }
}

/// Writes a line to stdout; `false` when stdout is gone (a closed pipe),
/// which ends the command quietly.
fn emit(out: &mut impl Write, line: &str) -> anyhow::Result<bool> {
    match writeln!(out, "{line}").and_then(|()| out.flush()) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(anyhow!("cannot write to standard output: {e}")),
    }
}

fn query_string(pairs: &[(&str, &str)]) -> String {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        q.append_pair(k, v);
    }
    let q = q.finish();
    if q.is_empty() {
        q
    } else {
        format!("?{q}")
    }
}

fn site_path(site: &str, what: &str) -> anyhow::Result<String> {
    if site.is_empty() || !site.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        bail!("--site {site:?}: a site name is a DNS label (letters, digits, hyphens)");
    }
    Ok(format!("/api/v1/sites/{site}/{what}"))
}

/// `ledge logs`.
pub async fn logs(c: &Client, args: LogsArgs) -> anyhow::Result<()> {
    let mut pairs = Vec::new();
    if args.functions {
        pairs.push(("functions", "1"));
    }
    if let Some(s) = &args.status {
        pairs.push(("status", s.as_str()));
    }
    let path = format!("{}{}", site_path(&args.site, "logs")?, query_string(&pairs));
    let mut resp = c.get_stream(&path, STREAM_IDLE).await?;
    let deadline = (!args.follow).then(|| tokio::time::Instant::now() + args.window);
    if std::io::stderr().is_terminal() {
        if args.follow {
            eprintln!(
                "streaming live records of site {} (Ctrl-C to stop)",
                args.site
            );
        } else {
            eprintln!(
                "showing live records of site {} for {:?} (--follow to keep streaming)",
                args.site, args.window
            );
        }
    }
    let mut parser = SseParser::default();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    loop {
        let chunk = match deadline {
            Some(d) => match tokio::time::timeout_at(d, resp.chunk()).await {
                Ok(c) => c,
                Err(_) => return Ok(()),
            },
            None => resp.chunk().await,
        };
        let chunk = chunk.context("the log stream broke")?;
        let Some(chunk) = chunk else {
            bail!("the node closed the log stream (it may be shutting down)");
        };
        for frame in parser.push(&chunk) {
            let line = match frame.event.as_str() {
                "lagged" => {
                    eprintln!(
                        "warning: {} records skipped: this stream fell behind the node",
                        frame.data.trim()
                    );
                    continue;
                }
                "traffic" | "edge_functions" if args.json => frame.data,
                "traffic" | "edge_functions" => match serde_json::from_str::<Value>(&frame.data) {
                    Ok(v) => render_record(&v),
                    Err(e) => {
                        eprintln!("warning: a record that is not JSON ({e}): {}", frame.data);
                        continue;
                    }
                },
                // Kinds this client does not know (a newer node): skip.
                _ => continue,
            };
            if !emit(&mut out, &line)? {
                return Ok(());
            }
        }
    }
}

fn text<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or("-")
}

fn millis(v: &Value) -> String {
    match v.as_f64() {
        Some(ms) if ms >= 100.0 => format!("{ms:.0}ms"),
        Some(ms) => format!("{ms:.1}ms"),
        None => "-".to_owned(),
    }
}

/// One readable line for a record (traffic or edge function).
pub fn render_record(v: &Value) -> String {
    let status = v["status_code"]
        .as_u64()
        .map_or_else(|| "-".to_owned(), |s| s.to_string());
    if v["log_type"] == "edge_functions" {
        let mut line = format!(
            "{} {status} {} {} fn:{} {} cpu {} {} id={}",
            text(v, "timestamp"),
            text(v, "method"),
            text(v, "path"),
            text(v, "function_name"),
            millis(&v["duration"]),
            millis(&v["cpu_time"]),
            text(v, "outcome"),
            text(v, "request_id"),
        );
        for c in v["console"].as_array().into_iter().flatten() {
            line.push_str(&format!(
                "\n    [{}] {}",
                text(c, "level"),
                c["message"].as_str().unwrap_or("").replace('\n', "\n    ")
            ));
        }
        return line;
    }
    let query = v["query"]
        .as_str()
        .map(|q| format!("?{q}"))
        .unwrap_or_default();
    let mut answered = text(v, "answered_by").to_owned();
    if let Some(class) = v["error_class"].as_str() {
        answered.push_str(&format!("({class})"));
    }
    if let Some(rule) = v["rule"].as_str() {
        answered.push(' ');
        answered.push_str(rule);
    }
    if let Some(f) = v["function_name"].as_str() {
        answered.push_str(&format!(" fn:{f}"));
    }
    format!(
        "{} {status} {} {}{}{query} {} {}B {answered} cache={} id={}",
        text(v, "timestamp"),
        text(v, "method"),
        text(v, "host"),
        text(v, "path"),
        millis(&v["duration"]),
        v["response_size"].as_u64().unwrap_or(0),
        text(v, "cache_status"),
        text(v, "request_id"),
    )
}

/// `ledge stats`.
pub async fn stats(c: &Client, args: StatsArgs) -> anyhow::Result<()> {
    let mut pairs = vec![("since", args.since.as_str())];
    if let Some(u) = &args.until {
        pairs.push(("until", u.as_str()));
    }
    if let Some(r) = &args.resolution {
        pairs.push(("resolution", r.as_str()));
    }
    let path = format!(
        "{}{}",
        site_path(&args.site, "stats")?,
        query_string(&pairs)
    );
    let v = c.get(&path).await?;
    let text = if args.json {
        serde_json::to_string_pretty(&v)?
    } else {
        render_stats(&v).context("the API's statistics answer has an unexpected shape")?
    };
    let stdout = std::io::stdout();
    emit(&mut stdout.lock(), &text)?;
    Ok(())
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = UNITS[0];
    for u in &UNITS[1..] {
        if v < 1024.0 {
            break;
        }
        v /= 1024.0;
        unit = u;
    }
    format!("{v:.1} {unit}")
}

fn utc(secs: u64) -> String {
    let t = std::time::UNIX_EPOCH + Duration::from_secs(secs);
    let s = ledge_telemetry::record::format_rfc3339(t);
    // `2026-11-28T12:05:45.000Z` → `2026-11-28 12:05`
    match (s.get(..10), s.get(11..16)) {
        (Some(d), Some(hm)) => format!("{d} {hm}"),
        _ => s,
    }
}

fn percentiles(v: &Value) -> String {
    match v
        .as_array()
        .map(|a| a.iter().map(Value::as_f64).collect::<Vec<_>>())
    {
        Some(p) if p.len() == 3 && p.iter().all(Option::is_some) => {
            let f = |x: Option<f64>| format!("{:.1}", x.unwrap_or(0.0));
            format!("p50 {}  p90 {}  p99 {}", f(p[0]), f(p[1]), f(p[2]))
        }
        _ => "-".to_owned(),
    }
}

fn top_list(out: &mut String, title: &str, v: &Value) {
    let entries: Vec<(&str, u64)> = v
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| Some((e.get(0)?.as_str()?, e.get(1)?.as_u64()?)))
        .collect();
    out.push_str(&format!("\n{title}\n"));
    if entries.is_empty() {
        out.push_str("  (none)\n");
        return;
    }
    let width = entries
        .iter()
        .map(|(_, n)| n.to_string().len())
        .max()
        .unwrap_or(1);
    for (k, n) in entries {
        out.push_str(&format!("  {n:>width$}  {k}\n"));
    }
}

/// The stats answer as a readable table.
pub fn render_stats(v: &Value) -> anyhow::Result<String> {
    let total = &v["total"];
    let c = &total["counters"];
    if !c.is_object() {
        bail!("no total counters");
    }
    let n = |k: &str| c[k].as_u64().unwrap_or(0);
    let resolution = v["resolution"].as_str().unwrap_or("minute");
    let mut o = String::new();
    o.push_str(&format!(
        "site {}   {} → {} UTC   ({} buckets)\n\n",
        v["site"].as_str().unwrap_or("?"),
        utc(v["since"].as_u64().unwrap_or(0)),
        utc(v["until"].as_u64().unwrap_or(0)),
        resolution
    ));
    let row = |o: &mut String, label: &str, value: String| {
        o.push_str(&format!("  {label:<16}{value}\n"));
    };
    row(&mut o, "requests", n("requests").to_string());
    let out_bytes = match n("bytes_out") {
        b if b < 1024 => human_bytes(b),
        b => format!("{} ({b} B)", human_bytes(b)),
    };
    row(&mut o, "bytes out", out_bytes);
    row(&mut o, "bytes in", human_bytes(n("bytes_in")));
    row(
        &mut o,
        "status",
        format!(
            "2xx {}  3xx {}  4xx {}  5xx {}{}",
            n("status_2xx"),
            n("status_3xx"),
            n("status_4xx"),
            n("status_5xx"),
            match n("status_1xx") {
                0 => String::new(),
                x => format!("  1xx {x}"),
            }
        ),
    );
    row(
        &mut o,
        "cache",
        format!("hits {}  misses {}", n("cache_hits"), n("cache_misses")),
    );
    row(&mut o, "edge errors", n("edge_errors").to_string());
    row(
        &mut o,
        "functions",
        format!(
            "{} invocations  {} errors  cpu ms {}",
            n("function_invocations"),
            n("function_errors"),
            percentiles(&total["function_cpu_ms"])
        ),
    );
    row(&mut o, "duration ms", percentiles(&total["duration_ms"]));
    let bound = total["top_error_bound"].as_u64().unwrap_or(0);
    if bound > 0 {
        o.push_str(&format!(
            "\ntop lists are estimates: each count may be low by up to {bound}\n"
        ));
    }
    top_list(&mut o, "top paths", &total["top_paths"]);
    top_list(&mut o, "top referrers", &total["top_referrers"]);
    top_list(&mut o, "top countries", &total["top_countries"]);
    o.push_str(&format!("\nrequests per {resolution}\n"));
    let buckets = v["buckets"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    let counts: Vec<(u64, u64)> = buckets
        .iter()
        .filter_map(|b| Some((b["start"].as_u64()?, b["counters"]["requests"].as_u64()?)))
        .collect();
    if counts.is_empty() {
        o.push_str("  (no traffic)\n");
    }
    let max = counts.iter().map(|&(_, r)| r).max().unwrap_or(0).max(1);
    for (start, requests) in counts {
        let bar = "#".repeat(((requests * 40).div_ceil(max)) as usize);
        o.push_str(&format!("  {}  {requests:>8}  {bar}\n", utc(start)));
    }
    Ok(o.trim_end().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_frames_split_anywhere() {
        let input = b": keep-alive\n\nevent: traffic\ndata: {\"a\":1}\n\nevent: lagged\r\ndata: 3\r\n\r\ndata: x\ndata: y\n\n";
        let whole = SseParser::default().push(input);
        let expected = vec![
            Frame {
                event: "traffic".into(),
                data: "{\"a\":1}".into(),
            },
            Frame {
                event: "lagged".into(),
                data: "3".into(),
            },
            Frame {
                event: "message".into(),
                data: "x\ny".into(),
            },
        ];
        assert_eq!(whole, expected);
        // Byte by byte gives the same frames.
        let mut p = SseParser::default();
        let mut got = Vec::new();
        for b in input {
            got.extend(p.push(&[*b]));
        }
        assert_eq!(got, expected);
        // A lone CR ends a line too; an event without data is no frame.
        let mut p = SseParser::default();
        assert_eq!(
            p.push(b"event: x\r\revent: traffic\rdata: 1\r\r"),
            vec![Frame {
                event: "traffic".into(),
                data: "1".into()
            }]
        );
    }

    #[test]
    fn windows_parse() {
        assert_eq!(parse_window("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_window("12"), Ok(Duration::from_secs(12)));
        assert_eq!(parse_window("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_window("250ms"), Ok(Duration::from_millis(250)));
        for bad in ["", "s", "5x", "-1s", "1.5s", "é", "99999999999999999999h"] {
            assert!(parse_window(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn records_render_as_one_line() {
        let v: Value = serde_json::from_str(
            r#"{"log_type":"traffic","timestamp":"2026-11-28T12:05:45.123Z","request_id":"abc",
            "site_id":"blog","deploy_id":"d1","host":"blog.example","method":"GET","path":"/old",
            "query":"a=1","status_code":301,"response_size":0,"duration":0.42,
            "answered_by":"redirect","rule":"_redirects:2","cache_status":"none","error_class":null}"#,
        )
        .unwrap_or_default();
        assert_eq!(
            render_record(&v),
            "2026-11-28T12:05:45.123Z 301 GET blog.example/old?a=1 0.4ms 0B redirect _redirects:2 cache=none id=abc"
        );
    }

    #[test]
    fn function_records_render_with_their_console() {
        let v = serde_json::json!({
            "log_type": "edge_functions", "timestamp": "2026-11-28T12:05:45.123Z",
            "request_id": "abc", "site_id": "blog", "deploy_id": "d1", "function_name": "geo",
            "duration": 12.5, "cpu_time": 1.25, "outcome": "ok", "status_code": null,
            "method": "GET", "path": "/", "console": [{"level": "log", "message": "a\nb"}]
        });
        assert_eq!(
            render_record(&v),
            "2026-11-28T12:05:45.123Z - GET / fn:geo 12.5ms cpu 1.2ms ok id=abc\n    [log] a\n    b"
        );
    }

    #[test]
    fn stats_render_a_table() {
        let v = serde_json::json!({
            "site": "blog", "since": 0, "until": 3600, "resolution": "minute",
            "total": {"counters": {"requests": 3, "bytes_out": 2048, "status_2xx": 2, "status_5xx": 1},
                      "top_paths": [["/", 2], ["/x", 1]], "top_referrers": [], "top_countries": [],
                      "top_error_bound": 0, "duration_ms": [1.0, 2.0, 3.0], "function_cpu_ms": null},
            "buckets": [{"start": 60, "counters": {"requests": 3}}]
        });
        let t = render_stats(&v).unwrap_or_default();
        assert!(t.contains("requests        3"), "{t}");
        assert!(t.contains("2.0 KiB (2048 B)"), "{t}");
        assert!(t.contains("p50 1.0  p90 2.0  p99 3.0"), "{t}");
        assert!(t.contains("1970-01-01 00:01         3  ####"), "{t}");
    }
}
