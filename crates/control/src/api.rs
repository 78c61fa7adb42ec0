//! The control API under `/api/v1`.
//!
//! | method | path | who |
//! |---|---|---|
//! | POST | `/sites` `{"name"}` | admin |
//! | GET | `/sites` | admin (a site token sees its own site) |
//! | GET, DELETE | `/sites/{site}` | site (delete: admin) |
//! | POST | `/sites/{site}/domains` `{"domain"}` | admin |
//! | DELETE | `/sites/{site}/domains/{domain}` | admin |
//! | GET, PATCH | `/sites/{site}/settings` | site / admin |
//! | POST | `/tokens` `{"site"}` | admin |
//! | POST, GET | `/sites/{site}/deploys` | site |
//! | GET | `/deploys/{id}` | site |
//! | PUT | `/deploys/{id}/blobs/{sha256}` | site |
//! | POST | `/sites/{site}/rollback` `{"deploy"?}` | site |
//! | POST | `/sites/{site}/lock`, `/sites/{site}/unlock` | site |
//! | POST | `/sites/{site}/purge` `{"tags"?}` | site |
//! | GET | `/sites/{site}/stats?since&until&resolution` | site |
//! | GET | `/sites/{site}/logs?functions&status` (server-sent events) | site |
//! | GET | `/metrics` (Prometheus, on the API listener) | anyone who can reach it |

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{FromRequestParts, Path, RawQuery, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use futures_util::TryStreamExt;
use ledge_core::{normalize_host, DeployId, Digest, Label, SiteName};
use ledge_store::{
    BlobStore, Deploy, DeployDiagnostic, DeployState, Feed, MetaStore, NewDeploy, Principal, Site,
    UploadOutcome,
};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::process::Processor;
use crate::token_hash;

/// Validates a deploy's configuration files (path → text) into diagnostics.
pub type ConfigCheck =
    Arc<dyn Fn(&BTreeMap<String, String>) -> Vec<DeployDiagnostic> + Send + Sync>;

/// Bundles a deploy's edge functions: configuration texts (path → text) and
/// the sources under `netlify/edge-functions/` (path relative to that folder
/// → text) in, the bundled functions or every problem out. Any problem fails
/// the deploy. Runs on a blocking thread.
pub type FunctionBuild = Arc<
    dyn Fn(
            &BTreeMap<String, String>,
            &BTreeMap<String, String>,
        ) -> Result<Vec<ledge_store::SnapshotFunction>, Vec<DeployDiagnostic>>
        + Send
        + Sync,
>;

/// Most paths in one deploy.
pub const MAX_DEPLOY_FILES: usize = 200_000;
/// Longest path in a deploy.
pub const MAX_PATH_LEN: usize = 1024;
/// Largest JSON request body.
pub const MAX_JSON_BODY: usize = 64 << 20;

/// Shared state of the API.
#[derive(Clone)]
pub struct ApiState {
    /// Metadata.
    pub meta: Arc<dyn MetaStore>,
    /// Blobs.
    pub blobs: Arc<dyn BlobStore>,
    /// Change feed.
    pub feed: Feed,
    /// Deploy processing.
    pub processor: Processor,
    /// Edge domain, for URLs.
    pub edge_domain: String,
    /// `:PORT` suffix of edge URLs (empty for 80).
    pub edge_port_suffix: String,
    /// Seals private keys at rest.
    pub node_key: Arc<ledge_tls::NodeKey>,
    /// Statistics, live logs and metrics (`None` with the access log off).
    pub telemetry: Option<ledge_telemetry::Telemetry>,
}

/// The API router.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/api/v1/sites", post(create_site).get(list_sites))
        .route("/api/v1/sites/{site}", get(get_site).delete(delete_site))
        .route("/api/v1/sites/{site}/domains", post(add_domain))
        .route(
            "/api/v1/sites/{site}/domains/{domain}",
            delete(remove_domain),
        )
        .route(
            "/api/v1/sites/{site}/settings",
            get(get_settings).patch(patch_settings),
        )
        .route("/api/v1/tokens", post(create_token))
        .route(
            "/api/v1/sites/{site}/deploys",
            post(create_deploy).get(list_deploys),
        )
        .route("/api/v1/deploys/{id}", get(get_deploy))
        .route("/api/v1/deploys/{id}/blobs/{digest}", put(put_blob))
        .route("/api/v1/sites/{site}/certs", post(add_cert).get(list_certs))
        .route("/api/v1/sites/{site}/rollback", post(rollback))
        .route("/api/v1/sites/{site}/purge", post(purge))
        .route("/api/v1/sites/{site}/stats", get(crate::observe::stats))
        .route("/api/v1/sites/{site}/logs", get(crate::observe::logs))
        .route("/metrics", get(crate::observe::metrics))
        .route("/api/v1/sites/{site}/lock", post(lock))
        .route("/api/v1/sites/{site}/unlock", post(unlock))
        .fallback(|| async { ApiError::not_found("no such API endpoint") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this endpoint does not support that method",
            )
        })
        // Bodies are size-checked per endpoint (manifests up to MAX_JSON_BODY;
        // blobs are streamed and bounded by the blob store).
        .layer(axum::extract::DefaultBodyLimit::max(MAX_JSON_BODY))
        .layer(axum::middleware::from_fn_with_state(
            state.feed.clone(),
            read_your_writes,
        ))
        .with_state(state)
}

/// Longest an API answer waits for this node's edge to catch up.
pub const SETTLE_LIMIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Read-your-writes between the API and this node's edge: an answer waits
/// (bounded by [`SETTLE_LIMIT`]) until the router has applied every change
/// made so far, both before the handler runs (so "deploy ready" read from the
/// store is already routable) and after it (so a domain just added is routed
/// by the time the client hears so).
async fn read_your_writes(
    State(feed): State<Feed>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let settle = |when: &'static str| {
        let feed = feed.clone();
        async move {
            if !feed.settle(SETTLE_LIMIT).await {
                tracing::warn!(when, "the edge did not catch up with the store in time");
            }
        }
    };
    settle("before").await;
    let res = next.run(req).await;
    settle("after").await;
    res
}

// === auth ===

/// The caller, from `Authorization: Bearer TOKEN`.
pub struct Caller(pub Principal);

impl FromRequestParts<ApiState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .ok_or_else(|| {
                ApiError::unauthorized(
                    "missing Authorization header: send 'Authorization: Bearer TOKEN'",
                )
            })?;
        let token = header
            .to_str()
            .ok()
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| ApiError::unauthorized("Authorization must be 'Bearer TOKEN'"))?;
        match state.meta.principal(&token_hash(token)).await? {
            Some(p) => Ok(Caller(p)),
            None => Err(ApiError::unauthorized("invalid token")),
        }
    }
}

impl Caller {
    fn admin(&self) -> Result<(), ApiError> {
        match &self.0 {
            Principal::Admin => Ok(()),
            Principal::Site(_) => Err(ApiError::forbidden("this needs the admin token")),
        }
    }

    pub(crate) fn site(&self, site: &SiteName) -> Result<(), ApiError> {
        match &self.0 {
            Principal::Admin => Ok(()),
            Principal::Site(s) if s == site => Ok(()),
            // Do not tell a site token whether another site exists.
            Principal::Site(_) => Err(ApiError::not_found(format!("site \"{site}\" not found"))),
        }
    }
}

// === helpers ===

pub(crate) fn site_param(s: &str) -> Result<SiteName, ApiError> {
    SiteName::parse(s).map_err(|_| ApiError::not_found(format!("site {s:?} not found")))
}

fn deploy_param(s: &str) -> Result<DeployId, ApiError> {
    DeployId::parse(s).map_err(|_| ApiError::not_found(format!("deploy {s:?} not found")))
}

fn parse_json<T: DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    if body.len() > MAX_JSON_BODY {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("request body is larger than {MAX_JSON_BODY} bytes"),
        ));
    }
    serde_json::from_slice(body).map_err(|e| ApiError::invalid(format!("invalid JSON body: {e}")))
}

fn parse_json_or_empty<T: DeserializeOwned + Default>(body: &Bytes) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        Ok(T::default())
    } else {
        parse_json(body)
    }
}

impl ApiState {
    fn url(&self, label: &str) -> String {
        format!(
            "http://{label}.{}{}/",
            self.edge_domain, self.edge_port_suffix
        )
    }

    fn site_json(&self, s: &Site) -> Value {
        json!({
            "name": s.name,
            "created_at": s.created_at,
            "published_deploy": s.published,
            "locked": s.locked,
            "domains": s.domains,
            "url": self.url(s.name.as_str()),
        })
    }

    fn deploy_json(&self, d: &Deploy, published: Option<&DeployId>) -> Value {
        let mut urls = json!({
            "permalink": self.url(&format!("{}--{}", d.id, d.site)),
        });
        if let Some(a) = &d.alias {
            urls["alias"] = json!(self.url(&format!("{a}--{}", d.site)));
        }
        let is_published = published == Some(&d.id);
        if is_published {
            urls["live"] = json!(self.url(d.site.as_str()));
        }
        json!({
            "id": d.id,
            "site": d.site,
            "state": d.state,
            "prod": d.prod,
            "alias": d.alias,
            "message": d.message,
            "created_at": d.created_at,
            "ready_at": d.ready_at,
            "published": is_published,
            "file_count": d.file_count,
            "required_count": d.required_count,
            "missing_count": d.missing.len(),
            "required": d.missing,
            "error": d.error,
            "diagnostics": d.diagnostics,
            "urls": urls,
        })
    }
}

// === sites ===

#[derive(Deserialize)]
struct CreateSite {
    name: SiteName,
}

async fn create_site(
    State(st): State<ApiState>,
    caller: Caller,
    body: Bytes,
) -> Result<Response, ApiError> {
    caller.admin()?;
    let req: CreateSite = parse_json(&body)?;
    let (site, ev) = st.meta.create_site(&req.name).await?;
    st.feed.send([ev]);
    Ok((StatusCode::CREATED, Json(st.site_json(&site))).into_response())
}

async fn list_sites(State(st): State<ApiState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    let sites = match &caller.0 {
        Principal::Admin => st.meta.list_sites().await?,
        Principal::Site(s) => vec![st.meta.get_site(s).await?],
    };
    Ok(Json(json!({
        "sites": sites.iter().map(|s| st.site_json(s)).collect::<Vec<_>>()
    })))
}

async fn get_site(
    State(st): State<ApiState>,
    caller: Caller,
    Path(site): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let site = site_param(&site)?;
    caller.site(&site)?;
    let mut v = st.site_json(&st.meta.get_site(&site).await?);
    v["domain_status"] = json!(st.meta.domain_statuses(&site).await?);
    Ok(Json(v))
}

async fn delete_site(
    State(st): State<ApiState>,
    caller: Caller,
    Path(site): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.admin()?;
    let site = site_param(&site)?;
    let ev = st.meta.delete_site(&site).await?;
    st.feed.send([ev]);
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
struct AddDomain {
    domain: String,
}

fn domain_param(raw: &str, edge_domain: &str) -> Result<String, ApiError> {
    let d = normalize_host(raw)
        .filter(|d| !raw.contains(':') && d.contains('.') && !d.starts_with('.') && !d.contains(".."))
        .ok_or_else(|| {
            ApiError::invalid(format!(
                "{raw:?} is not a domain name: give a host name such as www.example.com, without scheme or port"
            ))
        })?;
    if d == edge_domain || d.ends_with(&format!(".{edge_domain}")) {
        return Err(ApiError::invalid(format!(
            "{d:?} is under the platform's edge domain {edge_domain:?}; sites get those names automatically"
        )));
    }
    Ok(d)
}

async fn add_domain(
    State(st): State<ApiState>,
    caller: Caller,
    Path(site): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    caller.admin()?;
    let site = site_param(&site)?;
    let req: AddDomain = parse_json(&body)?;
    let domain = domain_param(&req.domain, &st.edge_domain)?;
    let ev = st.meta.add_domain(&site, &domain).await?;
    st.feed.send([ev]);
    Ok((
        StatusCode::CREATED,
        Json(json!({"domain": domain, "site": site})),
    )
        .into_response())
}

async fn remove_domain(
    State(st): State<ApiState>,
    caller: Caller,
    Path((site, domain)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    caller.admin()?;
    let site = site_param(&site)?;
    let domain = normalize_host(&domain)
        .ok_or_else(|| ApiError::not_found(format!("domain {domain:?} not found")))?;
    let ev = st.meta.remove_domain(&site, &domain).await?;
    st.feed.send([ev]);
    Ok(StatusCode::NO_CONTENT)
}

async fn get_settings(
    State(st): State<ApiState>,
    caller: Caller,
    Path(site): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let site = site_param(&site)?;
    caller.site(&site)?;
    Ok(Json(st.meta.settings(&site).await?.view()))
}

async fn patch_settings(
    State(st): State<ApiState>,
    caller: Caller,
    Path(site): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let site = site_param(&site)?;
    caller.admin()?;
    let patch: Value = parse_json(&body)?;
    if let Some(drains) = patch.get("log_drains") {
        let list: Vec<String> = match drains {
            Value::Array(a) => a
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
            Value::String(s) if !s.is_empty() => s.split(',').map(str::to_owned).collect(),
            _ => Vec::new(),
        };
        crate::observe::check_site_drains(&list)?;
    }
    let (settings, ev) = st.meta.patch_settings(&site, &patch).await?;
    st.feed.send([ev]);
    Ok(Json(settings.view()))
}

#[derive(Deserialize)]
struct CreateToken {
    site: SiteName,
}

async fn create_token(
    State(st): State<ApiState>,
    caller: Caller,
    body: Bytes,
) -> Result<Response, ApiError> {
    caller.admin()?;
    let CreateToken { site } = parse_json(&body)?;
    let token = crate::new_token();
    st.meta
        .add_token(&token_hash(&token), &Principal::Site(site.clone()))
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"token": token, "site": site})),
    )
        .into_response())
}

// === deploys ===

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateDeploy {
    files: BTreeMap<String, String>,
    #[serde(default)]
    prod: bool,
    #[serde(default)]
    alias: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

fn check_path(p: &str) -> Result<(), String> {
    if !p.starts_with('/') {
        return Err(format!("path {p:?} must start with '/'"));
    }
    if p.len() > MAX_PATH_LEN {
        return Err(format!("path {p:?} is longer than {MAX_PATH_LEN} bytes"));
    }
    if p.ends_with('/') {
        return Err(format!("path {p:?} names a folder, not a file"));
    }
    if p.chars().any(|c| c.is_control() || c == '\\') {
        return Err(format!(
            "path {p:?} contains control characters or a backslash"
        ));
    }
    if p[1..]
        .split('/')
        .any(|s| s.is_empty() || s == "." || s == "..")
    {
        return Err(format!("path {p:?} has an empty, '.' or '..' segment"));
    }
    Ok(())
}

async fn create_deploy(
    State(st): State<ApiState>,
    caller: Caller,
    Path(site): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let site = site_param(&site)?;
    caller.site(&site)?;
    let req: CreateDeploy = parse_json(&body)?;
    if req.files.len() > MAX_DEPLOY_FILES {
        return Err(ApiError::invalid(format!(
            "a deploy may have at most {MAX_DEPLOY_FILES} files, this one has {}",
            req.files.len()
        )));
    }
    let mut files = BTreeMap::new();
    for (path, digest) in req.files {
        check_path(&path).map_err(ApiError::invalid)?;
        let d = Digest::parse(&digest).map_err(|e| ApiError::invalid(format!("{path}: {e}")))?;
        files.insert(path, d);
    }
    let alias = req
        .alias
        .map(|a| Label::parse(&a))
        .transpose()
        .map_err(|e| ApiError::invalid(e.to_string()))?;
    let message = req.message.map(|m| m.chars().take(4096).collect());
    let deploy = st
        .meta
        .create_deploy(
            &site,
            NewDeploy {
                files,
                prod: req.prod,
                alias,
                message,
            },
        )
        .await?;
    if deploy.state == DeployState::Processing {
        st.processor.spawn(deploy.id);
    }
    let published = st.meta.get_site(&site).await?.published;
    Ok((
        StatusCode::CREATED,
        Json(st.deploy_json(&deploy, published.as_ref())),
    )
        .into_response())
}

async fn list_deploys(
    State(st): State<ApiState>,
    caller: Caller,
    Path(site): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let site = site_param(&site)?;
    caller.site(&site)?;
    let limit = match query
        .as_deref()
        .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("limit=")))
    {
        None => 50,
        Some(v) => v
            .parse::<i64>()
            .map_err(|_| ApiError::invalid(format!("limit {v:?} is not a number")))?
            .clamp(1, 1000),
    };
    let deploys = st.meta.list_deploys(&site, limit).await?;
    let published = st.meta.get_site(&site).await?.published;
    Ok(Json(json!({
        "deploys": deploys.iter().map(|d| st.deploy_json(d, published.as_ref())).collect::<Vec<_>>()
    })))
}

async fn get_deploy(
    State(st): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = deploy_param(&id)?;
    let d = st.meta.get_deploy(&id).await?;
    caller
        .site(&d.site)
        .map_err(|_| ApiError::not_found(format!("deploy {id} not found")))?;
    let published = st.meta.get_site(&d.site).await?.published;
    Ok(Json(st.deploy_json(&d, published.as_ref())))
}

async fn put_blob(
    State(st): State<ApiState>,
    caller: Caller,
    Path((id, digest)): Path<(String, String)>,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let id = deploy_param(&id)?;
    let digest = Digest::parse(&digest).map_err(|e| ApiError::invalid(e.to_string()))?;
    let deploy = st.meta.get_deploy(&id).await?;
    caller
        .site(&deploy.site)
        .map_err(|_| ApiError::not_found(format!("deploy {id} not found")))?;
    if !deploy.missing.contains(&digest) {
        if st.meta.deploy_wants(&id, &digest).await? {
            // Already uploaded: idempotent.
            return Ok(Json(
                json!({"digest": digest, "state": deploy.state, "uploaded": false}),
            ));
        }
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "not_in_deploy",
            format!("blob {digest} is not part of deploy {id}"),
        ));
    }
    let stream = body
        .into_data_stream()
        .map_err(|e| std::io::Error::other(e.to_string()));
    st.blobs.put_stream(&digest, Box::pin(stream)).await?;
    let outcome = st.meta.blob_uploaded(&id, &digest).await?;
    let state = if outcome == UploadOutcome::Complete {
        st.processor.spawn(id);
        DeployState::Processing
    } else {
        DeployState::Uploading
    };
    Ok(Json(
        json!({"digest": digest, "state": state, "uploaded": true}),
    ))
}

// === certificates ===

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddCert {
    domain: String,
    cert: String,
    key: String,
}

async fn add_cert(
    State(st): State<ApiState>,
    caller: Caller,
    Path(site): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    caller.admin()?;
    let site = site_param(&site)?;
    let req: AddCert = parse_json(&body)?;
    let domain = domain_param(req.domain.trim_start_matches("*."), &st.edge_domain)?;
    let domain = if req.domain.starts_with("*.") {
        format!("*.{domain}")
    } else {
        domain
    };
    let owned = st.meta.get_site(&site).await?.domains;
    let covered = owned.iter().any(|d| {
        *d == domain
            || domain
                .strip_prefix("*.")
                .is_some_and(|parent| d.ends_with(&format!(".{parent}")))
    });
    if !covered {
        return Err(ApiError::invalid(format!(
            "{domain:?} is not a domain of site \"{site}\": add it with `ledge domains add` first"
        )));
    }
    let probe = domain.replace('*', "ledge-check");
    let valid = ledge_tls::validate(&req.cert, &req.key, &probe, std::time::SystemTime::now())
        .map_err(|e| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_certificate",
                e.to_string(),
            )
        })?;
    let stored = ledge_store::StoredCert {
        domain: domain.clone(),
        site: site.clone(),
        chain_pem: req.cert,
        sealed_key: st.node_key.seal(req.key.as_bytes()),
        not_after: valid.not_after(),
        fingerprint: valid.fingerprint().to_owned(),
        source: "upload".into(),
        version: 0,
    };
    let ev = st.meta.put_cert(&stored).await?;
    st.feed.send([ev]);
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "domain": domain,
            "site": site,
            "names": valid.names(),
            "not_after": valid.not_after(),
            "fingerprint": valid.fingerprint(),
        })),
    )
        .into_response())
}

async fn list_certs(
    State(st): State<ApiState>,
    caller: Caller,
    Path(site): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let site = site_param(&site)?;
    caller.site(&site)?;
    Ok(Json(json!({"certs": st.meta.list_certs(&site).await?})))
}

#[derive(Deserialize, Default)]
struct RollbackReq {
    deploy: Option<String>,
}

async fn rollback(
    State(st): State<ApiState>,
    caller: Caller,
    Path(site): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let site = site_param(&site)?;
    caller.site(&site)?;
    let req: RollbackReq = parse_json_or_empty(&body)?;
    let target = req
        .deploy
        .map(|d| DeployId::parse(&d).map_err(|e| ApiError::invalid(e.to_string())))
        .transpose()?;
    let (id, ev) = st.meta.rollback(&site, target.as_ref()).await?;
    st.feed.send([ev]);
    Ok(Json(
        json!({"site": site, "published_deploy": id, "url": st.url(site.as_str())}),
    ))
}

/// Most tags in one purge request.
pub const MAX_PURGE_TAGS: usize = 100;
/// Longest tag accepted.
pub const MAX_TAG_LEN: usize = 512;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct PurgeReq {
    #[serde(default)]
    tags: Vec<String>,
}

/// Purges the site's cached responses (all, or by tag). The answer comes once
/// this node's edge applied it (see `read_your_writes`): nothing purged is
/// served from here after it.
async fn purge(
    State(st): State<ApiState>,
    caller: Caller,
    Path(site): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let site = site_param(&site)?;
    caller.site(&site)?;
    let req: PurgeReq = parse_json_or_empty(&body)?;
    if req.tags.len() > MAX_PURGE_TAGS {
        return Err(ApiError::invalid(format!(
            "at most {MAX_PURGE_TAGS} tags per purge"
        )));
    }
    for t in &req.tags {
        if t.trim().is_empty() || t.len() > MAX_TAG_LEN || t.contains(',') {
            return Err(ApiError::invalid(format!(
                "tag {t:?} is not valid: tags are non-empty, at most {MAX_TAG_LEN} bytes, without commas"
            )));
        }
    }
    let ev = st.meta.purge(&site, &req.tags).await?;
    let seq = ev.seq;
    let tags: Vec<String> = match &ev.kind {
        ledge_store::EventKind::Purged { tags, .. } => {
            tags.iter().map(|(t, _)| t.clone()).collect()
        }
        _ => Vec::new(),
    };
    st.feed.send([ev]);
    Ok(Json(json!({
        "site": site,
        "purged": if tags.is_empty() { "site" } else { "tags" },
        "tags": tags,
        "seq": seq,
    })))
}

async fn lock(
    State(st): State<ApiState>,
    caller: Caller,
    Path(site): Path<String>,
) -> Result<Json<Value>, ApiError> {
    set_lock(st, caller, site, true).await
}

async fn unlock(
    State(st): State<ApiState>,
    caller: Caller,
    Path(site): Path<String>,
) -> Result<Json<Value>, ApiError> {
    set_lock(st, caller, site, false).await
}

async fn set_lock(
    st: ApiState,
    caller: Caller,
    site: String,
    locked: bool,
) -> Result<Json<Value>, ApiError> {
    let site = site_param(&site)?;
    caller.site(&site)?;
    st.meta.set_locked(&site, locked).await?;
    Ok(Json(json!({"site": site, "locked": locked})))
}
