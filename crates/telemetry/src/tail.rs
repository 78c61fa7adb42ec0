//! Live tail: every record goes to a broadcast channel; a subscriber (the
//! control API's server-sent-events handler behind `ledge logs --follow`)
//! reads it through a [`TailFilter`].
//!
//! A subscriber that falls behind by more than the channel's capacity loses
//! the oldest records and is told how many ([`TailEvent::Lagged`]); the
//! request path never waits for it.

use std::str::FromStr;
use std::sync::Arc;

use tokio::sync::broadcast;

use crate::record::Record;

/// Which statuses to show: a list of exact codes (`404`) and classes
/// (`5xx`), any of which may match.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StatusFilter {
    exact: Vec<u16>,
    /// Classes as their hundreds digit (`5` for `5xx`).
    classes: Vec<u8>,
}

/// A status filter that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid status filter {0:?}: expected codes like 404 or classes like 5xx, separated by commas"
)]
pub struct StatusFilterError(pub String);

impl FromStr for StatusFilter {
    type Err = StatusFilterError;

    /// Parses `5xx`, `404`, `4xx,500`, `2XX` (case-insensitive, spaces
    /// around commas allowed).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || StatusFilterError(s.to_owned());
        let mut f = StatusFilter::default();
        for part in s.split(',').map(str::trim) {
            let b = part.as_bytes();
            if b.len() != 3 || !(b'1'..=b'5').contains(&b[0]) {
                return Err(err());
            }
            if b[1..].eq_ignore_ascii_case(b"xx") {
                f.classes.push(b[0] - b'0');
            } else if b[1..].iter().all(u8::is_ascii_digit) {
                f.exact.push(part.parse().map_err(|_| err())?);
            } else {
                return Err(err());
            }
        }
        Ok(f)
    }
}

impl StatusFilter {
    /// Whether `status` is selected.
    pub fn matches(&self, status: u16) -> bool {
        self.exact.contains(&status) || self.classes.iter().any(|&c| status / 100 == c as u16)
    }
}

/// What a live-tail subscriber wants to see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TailFilter {
    /// Only this site's records.
    pub site: String,
    /// Also edge function invocation records (`--functions`).
    pub functions: bool,
    /// Only requests with these statuses (`--status 5xx`); function records
    /// match on the status they produced.
    pub status: Option<StatusFilter>,
}

impl TailFilter {
    /// Access records of `site`, no status filter.
    pub fn site(site: impl Into<String>) -> Self {
        Self {
            site: site.into(),
            functions: false,
            status: None,
        }
    }

    /// Whether a record passes.
    pub fn matches(&self, r: &Record) -> bool {
        if r.site() != self.site {
            return false;
        }
        let status = match r {
            Record::Access(a) => Some(a.answer.status_code),
            Record::Function(f) => {
                if !self.functions {
                    return false;
                }
                f.status_code
            }
        };
        match (&self.status, status) {
            (None, _) => true,
            (Some(f), Some(s)) => f.matches(s),
            (Some(_), None) => false,
        }
    }
}

/// What a subscriber receives.
#[derive(Debug, Clone)]
pub enum TailEvent {
    /// A record that passed the filter.
    Record(Arc<Record>),
    /// The subscriber was too slow and this many records were skipped
    /// (before filtering).
    Lagged(u64),
}

impl TailEvent {
    /// The event as one server-sent-events frame: `data: <JSON line>` for a
    /// record (with `event: traffic` or `event: edge_functions`), `event:
    /// lagged` with the number skipped otherwise.
    pub fn sse_frame(&self) -> String {
        match self {
            TailEvent::Record(r) => {
                let kind = match &**r {
                    Record::Access(_) => "traffic",
                    Record::Function(_) => "edge_functions",
                };
                let line = r.to_json_line(false);
                let json = String::from_utf8_lossy(&line);
                // A JSON line has no raw newlines inside, so one data field.
                format!("event: {kind}\ndata: {}\n\n", json.trim_end())
            }
            TailEvent::Lagged(n) => format!("event: lagged\ndata: {n}\n\n"),
        }
    }
}

/// A live-tail subscription.
#[derive(Debug)]
pub struct TailSubscription {
    pub(crate) rx: broadcast::Receiver<Arc<Record>>,
    pub(crate) filter: TailFilter,
    pub(crate) metrics: Arc<crate::metrics::Metrics>,
    pub(crate) shutdown: tokio::sync::watch::Receiver<bool>,
}

impl TailSubscription {
    /// The next matching record; `None` once telemetry has shut down.
    pub async fn next(&mut self) -> Option<TailEvent> {
        loop {
            if *self.shutdown.borrow() {
                return None;
            }
            let next = tokio::select! {
                r = self.rx.recv() => r,
                _ = self.shutdown.changed() => continue,
            };
            match next {
                Ok(r) if self.filter.matches(&r) => return Some(TailEvent::Record(r)),
                Ok(_) => continue,
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    self.metrics
                        .tail_lagged
                        .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
                    return Some(TailEvent::Lagged(n));
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }

    /// The filter in use.
    pub fn filter(&self) -> &TailFilter {
        &self.filter
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_status_filters() {
        let f: StatusFilter = "5xx".parse().unwrap();
        assert!(f.matches(500) && f.matches(503) && !f.matches(404) && !f.matches(600));
        let f: StatusFilter = "404".parse().unwrap();
        assert!(f.matches(404) && !f.matches(403));
        let f: StatusFilter = "4XX, 500".parse().unwrap();
        assert!(f.matches(418) && f.matches(500) && !f.matches(502) && !f.matches(200));
        for bad in [
            "", "5x", "6xx", "abc", "40", "4000", "5xx,", "x04", "5x0", "+04",
        ] {
            assert!(bad.parse::<StatusFilter>().is_err(), "{bad:?}");
        }
    }
}
