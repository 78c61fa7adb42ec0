//! What the API shows of traffic: per-site statistics, the live log tail
//! (server-sent events), and the operator's Prometheus metrics.

use std::convert::Infallible;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use ledge_telemetry::{Resolution, StatusFilter, TailFilter, Telemetry};
use serde_json::{json, Value};

use crate::api::{ApiState, Caller};
use crate::error::ApiError;

/// Longest range one stats query covers.
pub const MAX_STATS_RANGE: Duration = Duration::from_secs(90 * 24 * 3600);
/// Entries per top list in a stats answer.
pub const TOP_ENTRIES: usize = 10;
/// How often an idle log stream sends a comment, so proxies keep it open.
pub const TAIL_KEEPALIVE: Duration = Duration::from_secs(15);

fn telemetry(st: &ApiState) -> Result<&Telemetry, ApiError> {
    st.telemetry.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "telemetry_off",
            "this node runs with --access-log off: no statistics, logs or metrics",
        )
    })
}

fn query_pairs(q: Option<&str>) -> impl Iterator<Item = (&str, &str)> {
    q.unwrap_or("")
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| kv.split_once('=').unwrap_or((kv, "")))
}

/// A point in time: Unix seconds, or a duration before now (`90s`, `15m`,
/// `1h`, `7d`).
pub fn parse_time(s: &str, now: SystemTime) -> Option<SystemTime> {
    if let Ok(secs) = s.parse::<u64>() {
        return Some(UNIX_EPOCH + Duration::from_secs(secs));
    }
    let (n, unit) = s.split_at(s.len().checked_sub(1)?);
    let n: u64 = n.parse().ok()?;
    let secs = match unit {
        "s" => n,
        "m" => n.checked_mul(60)?,
        "h" => n.checked_mul(3600)?,
        "d" => n.checked_mul(86_400)?,
        _ => return None,
    };
    now.checked_sub(Duration::from_secs(secs))
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// `GET /api/v1/sites/{site}/stats?since=1h&until=…&resolution=minute|hour`
pub async fn stats(
    State(st): State<ApiState>,
    caller: Caller,
    Path(site): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let site = crate::api::site_param(&site)?;
    caller.site(&site)?;
    st.meta.get_site(&site).await?;
    let t = telemetry(&st)?;
    let now = SystemTime::now();
    let mut since = now - Duration::from_secs(3600);
    let mut until = now + Duration::from_secs(60);
    let mut resolution = None;
    for (k, v) in query_pairs(query.as_deref()) {
        let bad = || {
            ApiError::invalid(format!(
                "{k}={v:?}: use Unix seconds or a duration such as 15m, 1h, 7d"
            ))
        };
        match k {
            "since" => since = parse_time(v, now).ok_or_else(bad)?,
            "until" => until = parse_time(v, now).ok_or_else(bad)?,
            "resolution" => {
                resolution = Some(match v {
                    "minute" => Resolution::Minute,
                    "hour" => Resolution::Hour,
                    _ => return Err(ApiError::invalid("resolution must be minute or hour")),
                })
            }
            _ => return Err(ApiError::invalid(format!("unknown query parameter {k:?}"))),
        }
    }
    if until <= since {
        return Err(ApiError::invalid("until must be after since"));
    }
    let span = until.duration_since(since).unwrap_or_default();
    if span > MAX_STATS_RANGE {
        return Err(ApiError::invalid("at most 90 days per query"));
    }
    // Minutes for up to six hours, hours beyond, unless asked.
    let resolution = resolution.unwrap_or(if span <= Duration::from_secs(6 * 3600) {
        Resolution::Minute
    } else {
        Resolution::Hour
    });
    let report = t
        .stats(site.as_str(), since, until, resolution)
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.0))?;
    let buckets: Vec<Value> = report
        .buckets
        .iter()
        .map(|b| json!({"start": b.start, "counters": b.counters}))
        .collect();
    Ok(Json(json!({
        "site": site,
        "since": unix(since),
        "until": unix(until),
        "resolution": resolution,
        "total": report.total.summary(TOP_ENTRIES),
        "buckets": buckets,
    })))
}

/// `GET /api/v1/sites/{site}/logs?functions=1&status=5xx`: live records as
/// server-sent events, until the client goes away.
pub async fn logs(
    State(st): State<ApiState>,
    caller: Caller,
    Path(site): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let site = crate::api::site_param(&site)?;
    caller.site(&site)?;
    st.meta.get_site(&site).await?;
    let t = telemetry(&st)?;
    let mut filter = TailFilter::site(site.as_str());
    for (k, v) in query_pairs(query.as_deref()) {
        match k {
            "functions" => filter.functions = matches!(v, "" | "1" | "true"),
            "status" => {
                filter.status = Some(
                    v.parse::<StatusFilter>()
                        .map_err(|e| ApiError::invalid(format!("status={v:?}: {e}")))?,
                )
            }
            _ => return Err(ApiError::invalid(format!("unknown query parameter {k:?}"))),
        }
    }
    let sub = t.subscribe(filter);
    let stream = futures_util::stream::unfold(Some(sub), |sub| async move {
        let mut sub = sub?;
        tokio::select! {
            ev = sub.next() => ev.map(|ev| (Ok::<_, Infallible>(ev.sse_frame()), Some(sub))),
            () = tokio::time::sleep(TAIL_KEEPALIVE) => Some((Ok(": keep-alive\n\n".to_owned()), Some(sub))),
        }
    });
    Ok((
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

/// `GET /metrics`: the node's metrics in Prometheus text format.
pub async fn metrics(State(st): State<ApiState>) -> Result<Response, ApiError> {
    let t = telemetry(&st)?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        t.render_metrics(),
    )
        .into_response())
}

/// Checks a site's log drains as telemetry will run them.
pub fn check_site_drains(list: &[String]) -> Result<(), ApiError> {
    for s in list {
        let d: ledge_telemetry::DrainSpec = s
            .parse()
            .map_err(|e: ledge_telemetry::DrainError| ApiError::invalid(e.to_string()))?;
        if !d.is_remote() {
            return Err(ApiError::invalid(format!(
                "log drain {s:?}: sites may only drain to https, nats or kafka"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_unix_seconds_or_durations_before_now() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert_eq!(
            parse_time("5", now),
            Some(UNIX_EPOCH + Duration::from_secs(5))
        );
        assert_eq!(
            parse_time("1h", now),
            Some(UNIX_EPOCH + Duration::from_secs(1_000_000 - 3600))
        );
        assert_eq!(
            parse_time("2d", now),
            Some(UNIX_EPOCH + Duration::from_secs(1_000_000 - 172_800))
        );
        for bad in ["", "h", "1w", "-1h", "99999999999999999999d", "1.5h"] {
            assert_eq!(parse_time(bad, now), None, "{bad}");
        }
    }
}
