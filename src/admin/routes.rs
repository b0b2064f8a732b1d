//! The admin API's routes (SPEC §9.2) and what each answers.
//!
//! The object routes share one shape for every kind (`/1.1/{kind}`, `/1.1/{kind}/{id}`,
//! `/1.1/{kind}/{id}/callpermissions/{name}`, and `/1.1/brand/aclpatterns...`), so they are
//! one catch-all route whose path is read by [`Target::parse`]; the few others are routes of
//! their own.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Query, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::{middleware, Extension, Json, Router};
use serde_json::{Map, Value};

use super::edit::{self, Edited};
use super::error::ApiError;
use super::guard::{guard, Caller};
use super::list::page;
use super::model::{linked_kind, Kind, BRAND_ACL_PATTERNS, KINDS, USERS};
use super::Admin;
use crate::percent;
use crate::proxy::Subject;
use crate::report;
use crate::service::{ChangeError, ReloadError};
use crate::transport::Control;

/// The OpenAPI 3 description of this API, served at `/1.1/api/api.yml`.
const API_DOC: &str = include_str!("openapi.yml");

pub fn router(admin: Arc<Admin>) -> Router {
    Router::new()
        .route("/1.1/api/api.yml", get(api_doc))
        .route("/1.1/check", get(check))
        .route("/1.1/reload", post(reload))
        .route("/1.1/events", get(events))
        .route("/metrics", get(metrics))
        .route("/health", get(health))
        .route("/1.1/{*path}", any(objects))
        .merge(super::console::router())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(admin.clone(), guard))
        .with_state(admin)
}

type Reply = Result<Response, ApiError>;

async fn api_doc() -> Response {
    (
        [(header::CONTENT_TYPE, "application/yaml; charset=utf-8")],
        API_DOC,
    )
        .into_response()
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such resource")
}

/// A method a resource does not have (`POST /1.1/check`, `PUT /1.1/users`): an error list
/// like any other, also where axum would answer an empty body.
async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method not allowed on this resource",
    )
}

/// What an object path designates.
enum Target {
    /// `/1.1/{kind}`
    All(&'static Kind),
    /// `/1.1/{kind}/{id}`
    One(&'static Kind, String),
    /// `/1.1/{kind}/{id}/callpermissions/{name}`
    Link(&'static Kind, String, String),
    /// `/1.1/users/{id}/lockout`
    Lockout(String),
}

impl Target {
    /// Reads a path after `/1.1/`, as sent: split into segments first, then each name
    /// percent-decoded, so that an encoded `/` in a name stays inside its segment.
    fn parse(path: &str) -> Option<Target> {
        let segments: Vec<&str> = path.split('/').collect();
        let (kind, rest) = match segments.as_slice() {
            ["brand", "aclpatterns", rest @ ..] => (&BRAND_ACL_PATTERNS, rest),
            [first, rest @ ..] => (KINDS.into_iter().find(|k| k.path == *first)?, rest),
            [] => return None,
        };
        let name = |segment: &str| percent::decode(segment).into_owned();
        match rest {
            [] | [""] => Some(Target::All(kind)),
            [id] => Some(Target::One(kind, name(id))),
            [id, "callpermissions", p] if !id.is_empty() && !p.is_empty() => {
                Some(Target::Link(linked_kind(kind.path)?, name(id), name(p)))
            }
            [id, "lockout"] if kind.path == USERS.path && !id.is_empty() => {
                Some(Target::Lockout(name(id)))
            }
            _ => None,
        }
    }
}

/// The tenant a request names: the `Wazo-Tenant` header, else `?tenant=`.
fn tenant_of<'a>(headers: &'a HeaderMap, query: &'a [(String, String)]) -> Option<&'a str> {
    headers
        .get("wazo-tenant")
        .and_then(|v| v.to_str().ok())
        .or_else(|| {
            query
                .iter()
                .find(|(k, _)| k == "tenant")
                .map(|(_, v)| v.as_str())
        })
}

fn query_pairs(raw: Option<&str>) -> Result<Vec<(String, String)>, ApiError> {
    let Some(raw) = raw else {
        return Ok(Vec::new());
    };
    Query::<Vec<(String, String)>>::try_from_uri(
        &format!("/?{raw}")
            .parse()
            .map_err(|_| ApiError::bad_request("the query string is not valid"))?,
    )
    .map(|Query(q)| q)
    .map_err(|e| ApiError::bad_request(format!("the query string is not valid: {e}")))
}

/// A JSON object body.
fn body_object(body: &Bytes) -> Result<Map<String, Value>, ApiError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(ApiError::bad_request("the body must be a JSON object")),
        Err(e) => Err(ApiError::bad_request(format!("the body is not JSON: {e}"))),
    }
}

/// Every object route.
async fn objects(
    State(admin): State<Arc<Admin>>,
    Extension(Caller(caller)): Extension<Caller>,
    method: Method,
    headers: HeaderMap,
    uri: Uri,
    RawQuery(raw_query): RawQuery,
    body: Bytes,
) -> Reply {
    let target = uri
        .path()
        .strip_prefix("/1.1/")
        .and_then(Target::parse)
        .ok_or_else(|| ApiError::not_found("no such resource"))?;
    let query = query_pairs(raw_query.as_deref())?;
    let tenant = tenant_of(&headers, &query).map(str::to_owned);
    let tenant = tenant.as_deref();
    let ctx = Ctx {
        admin: &admin,
        caller: &caller,
        tenant,
    };
    match (target, method) {
        (Target::All(kind), Method::GET) => ctx.list(kind, query).await,
        (Target::All(kind), Method::POST) => ctx.create(kind, &body_object(&body)?).await,
        (Target::One(kind, id), Method::GET) => ctx.get(kind, &id).await,
        (Target::One(kind, id), Method::PUT) => ctx.update(kind, &id, &body_object(&body)?).await,
        (Target::One(kind, id), Method::DELETE) => ctx.delete(kind, &id).await,
        (Target::Link(kind, id, name), Method::PUT) => ctx.associate(kind, &id, &name, true).await,
        (Target::Link(kind, id, name), Method::DELETE) => {
            ctx.associate(kind, &id, &name, false).await
        }
        (Target::Lockout(id), Method::GET) => ctx.lockout(&id, false).await,
        (Target::Lockout(id), Method::DELETE) => ctx.lockout(&id, true).await,
        _ => Err(method_not_allowed().await),
    }
}

/// The tenant index for a kind (0 for kinds outside tenants, which ignore it).
fn tenant_in(
    doc: &toml_edit::DocumentMut,
    kind: &Kind,
    tenant: Option<&str>,
) -> Result<usize, ApiError> {
    match kind.scope {
        super::model::Scope::Tenant => edit::tenant_index(doc, tenant),
        _ => Ok(0),
    }
}

/// Runs `f` on the blocking pool.
async fn blocking(f: impl FnOnce() -> Reply + Send + 'static) -> Reply {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|_| {
        Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the proxy is stopping",
        ))
    })
}

/// One request's context.
struct Ctx<'a> {
    admin: &'a Admin,
    caller: &'a str,
    tenant: Option<&'a str>,
}

impl Ctx<'_> {
    /// Lists and objects are shown on the blocking pool: a list of 10,000 users is work the
    /// proxy's core task must not wait for.
    async fn list(&self, kind: &'static Kind, query: Vec<(String, String)>) -> Reply {
        let current = self.admin.service.current();
        let tenant = self.tenant.map(str::to_owned);
        blocking(move || {
            let t = tenant_in(&current.doc, kind, tenant.as_deref())?;
            let items = edit::show_all(&current.doc, kind, t);
            Ok(Json(page(items, &query)?).into_response())
        })
        .await
    }

    async fn get(&self, kind: &'static Kind, id: &str) -> Reply {
        let current = self.admin.service.current();
        let tenant = self.tenant.map(str::to_owned);
        let id = id.to_owned();
        blocking(move || {
            let doc = &current.doc;
            let t = tenant_in(doc, kind, tenant.as_deref())?;
            let i = edit::find(&edit::objects(doc, kind, t), kind, &id).ok_or_else(|| {
                ApiError::not_found(format!("{} `{id}`: no such {}", kind.noun, kind.noun))
            })?;
            Ok(Json(edit::show(doc, kind, t, i)).into_response())
        })
        .await
    }

    fn writable(kind: &Kind) -> Result<(), ApiError> {
        if kind.writable {
            Ok(())
        } else {
            Err(ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                format!(
                    "{}s are read-only here: they are edited in the configuration file",
                    kind.noun
                ),
            ))
        }
    }

    /// Makes a change through the service and logs it; maps every way it can fail.
    async fn change(
        &self,
        kind: &Kind,
        action: &str,
        f: impl FnOnce(&mut toml_edit::DocumentMut, usize) -> Result<Edited, ApiError> + Send + 'static,
    ) -> Result<Edited, ApiError> {
        // Where the edited object is, for naming errors by field even when the edit is
        // refused by the checker (the edit runs on the blocking pool).
        let object = Arc::new(std::sync::Mutex::new(None));
        let seen = object.clone();
        let tenant = self.tenant.map(str::to_owned);
        let scope = kind.scope;
        let result = self
            .admin
            .service
            .change(move |doc| {
                let t = match scope {
                    super::model::Scope::Tenant => edit::tenant_index(doc, tenant.as_deref())?,
                    _ => 0,
                };
                let edited = f(doc, t)?;
                if let Ok(mut o) = seen.lock() {
                    *o = Some(edited.path.clone());
                }
                Ok::<_, ApiError>(edited)
            })
            .await;
        let object = object.lock().ok().and_then(|o| o.clone());
        match result {
            Ok((edited, written)) => {
                tracing::info!(
                    token = self.caller,
                    action,
                    kind = kind.path,
                    object = edited.name.as_str(),
                    tenant = self.tenant.unwrap_or(""),
                    written,
                    "configuration changed through the admin API"
                );
                Ok(edited)
            }
            Err(ChangeError::Edit(e)) => Err(e),
            Err(ChangeError::Invalid(errors)) => {
                Err(ApiError::from_config(&errors, object.as_deref()))
            }
            Err(ChangeError::Conflict) => Err(ApiError::new(
                StatusCode::CONFLICT,
                "the configuration file changed on disk since it was loaded: reload it first",
            )),
            Err(ChangeError::Io(e)) => {
                tracing::error!(error = %e, "admin API change not written, the running rules stay");
                Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e))
            }
            Err(ChangeError::Stopped) => Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the proxy is stopping",
            )),
        }
    }

    async fn create(&self, kind: &'static Kind, body: &Map<String, Value>) -> Reply {
        Self::writable(kind)?;
        let edited = self
            .change(kind, "create", {
                let body = body.clone();
                move |doc, t| edit::create(doc, kind, t, &body)
            })
            .await?;
        let current = self.admin.service.current();
        let t = tenant_in(&current.doc, kind, self.tenant)?;
        let objs = edit::objects(&current.doc, kind, t);
        let i = edit::find(&objs, kind, &edited.name)
            .ok_or_else(|| ApiError::not_found("the new object is gone"))?;
        let shown = edit::show(&current.doc, kind, t, i);
        let location = format!("/1.1/{}/{}", kind.path, encode(&edited.name));
        let mut r = (StatusCode::CREATED, Json(shown)).into_response();
        if let Ok(v) = HeaderValue::from_str(&location) {
            r.headers_mut().insert(header::LOCATION, v);
        }
        Ok(r)
    }

    async fn update(&self, kind: &'static Kind, id: &str, body: &Map<String, Value>) -> Reply {
        Self::writable(kind)?;
        let (id, body) = (id.to_owned(), body.clone());
        self.change(kind, "update", move |doc, t| {
            edit::update(doc, kind, t, &id, &body)
        })
        .await?;
        Ok(StatusCode::NO_CONTENT.into_response())
    }

    async fn delete(&self, kind: &'static Kind, id: &str) -> Reply {
        Self::writable(kind)?;
        let id = id.to_owned();
        self.change(kind, "delete", move |doc, t| {
            edit::delete(doc, kind, t, &id)
        })
        .await?;
        Ok(StatusCode::NO_CONTENT.into_response())
    }

    async fn associate(&self, kind: &'static Kind, id: &str, name: &str, on: bool) -> Reply {
        let action = if on { "associate" } else { "dissociate" };
        let (id, name) = (id.to_owned(), name.to_owned());
        self.change(kind, action, move |doc, t| {
            edit::associate(doc, kind, t, &id, &name, on)
        })
        .await?;
        Ok(StatusCode::NO_CONTENT.into_response())
    }

    /// `GET` (`clear` false) or `DELETE` a user's PIN lockout.
    async fn lockout(&self, id: &str, clear: bool) -> Reply {
        let (tenant, user) = {
            let current = self.admin.service.current();
            let doc = &current.doc;
            let t = edit::tenant_index(doc, self.tenant)?;
            let users = edit::objects(doc, &USERS, t);
            let i = edit::find(&users, &USERS, id)
                .ok_or_else(|| ApiError::not_found(format!("user `{id}`: no such user")))?;
            let name = super::model::str_of(users[i], "name")
                .unwrap_or_default()
                .to_owned();
            (edit::tenant_name(doc, t), name)
        };
        let subject = Subject::User(tenant.as_str().into(), user.as_str().into());
        let stopping = || ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the proxy is stopping");
        if clear {
            let was = self
                .admin
                .service
                .ask(|reply| Control::ClearLockout { subject, reply })
                .await
                .ok_or_else(stopping)?;
            tracing::info!(
                token = self.caller,
                tenant = tenant.as_str(),
                user = user.as_str(),
                was_locked = was,
                "PIN lockout cleared through the admin API"
            );
            return Ok(StatusCode::NO_CONTENT.into_response());
        }
        let left = self
            .admin
            .service
            .ask(|reply| Control::Lockout { subject, reply })
            .await
            .ok_or_else(stopping)?;
        Ok(Json(serde_json::json!({
            "user": user,
            "locked": left.is_some(),
            "remaining_s": left.map(|d| d.as_secs_f64().ceil() as u64),
        }))
        .into_response())
    }
}

/// A name as one path segment of a URL.
fn encode(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `GET /1.1/check?from=&to=[&forwarded_by=&pin=]`: the decision, as `check --json`, with
/// the explanation's lines.
async fn check(
    State(admin): State<Arc<Admin>>,
    headers: HeaderMap,
    RawQuery(raw_query): RawQuery,
) -> Reply {
    let query = query_pairs(raw_query.as_deref())?;
    let get = |k: &str| {
        query
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    };
    let mut errors = Vec::new();
    for (k, _) in &query {
        if !["from", "to", "forwarded_by", "pin", "tenant"].contains(&k.as_str()) {
            errors.push(format!("{k}: unknown parameter"));
        }
    }
    for k in ["from", "to"] {
        if get(k).is_none_or(str::is_empty) {
            errors.push(format!("{k}: required"));
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::invalid(errors));
    }
    let current = admin.service.current();
    let request = report::CheckRequest {
        from: get("from").unwrap_or_default(),
        to: get("to").unwrap_or_default(),
        tenant: tenant_of(&headers, &query),
        forwarded_by: get("forwarded_by").filter(|f| !f.is_empty()),
        pin: get("pin").filter(|p| !p.is_empty()),
    };
    let (decision, lines) = report::check(&current.policy, &request).map_err(|e| match e {
        report::CheckError::UnknownTenant(_) => ApiError::not_found(format!("tenant: {e}")),
        report::CheckError::WhichTenant => ApiError::bad_request(format!(
            "tenant: {e} with the Wazo-Tenant header or ?tenant="
        )),
        report::CheckError::BadPin(_) => ApiError::bad_request(format!("pin: {e}")),
    })?;
    let mut out = report::decision_json(&current.policy, &decision);
    out.insert("explanation".into(), lines.into());
    Ok(Json(out).into_response())
}

/// `POST /1.1/reload` (SPEC §9.1).
async fn reload(
    State(admin): State<Arc<Admin>>,
    Extension(Caller(caller)): Extension<Caller>,
) -> Reply {
    tracing::info!(
        token = caller.as_str(),
        "reload asked through the admin API"
    );
    match admin.service.reload().await {
        Ok(_) => Ok(StatusCode::NO_CONTENT.into_response()),
        Err(ReloadError::Invalid(errors)) => Err(ApiError::invalid(
            errors.0.iter().map(ToString::to_string).collect(),
        )),
        Err(ReloadError::Stopped) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the proxy is stopping",
        )),
    }
}

/// Live feeds open at once: each holds a connection and a place in the decisions channel.
pub const MAX_WATCHERS: usize = 16;

/// One open live feed; its place is given back when the feed ends (the client went away).
struct Watching(Arc<Admin>);

impl Drop for Watching {
    fn drop(&mut self) {
        self.0
            .watchers
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// `GET /1.1/events`: Server-Sent Events, one `decision` event per screened call (the JSON
/// of `replay --json`), as they are made. A watcher that falls behind gets a `lagged` event
/// saying how many it missed, not a growing queue.
async fn events(State(admin): State<Arc<Admin>>) -> Reply {
    use axum::response::sse::{Event, KeepAlive, Sse};
    use std::sync::atomic::Ordering;
    use tokio::sync::broadcast::error::RecvError;

    if admin.watchers.fetch_add(1, Ordering::Relaxed) >= MAX_WATCHERS {
        admin.watchers.fetch_sub(1, Ordering::Relaxed);
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{MAX_WATCHERS} live feeds are open already"),
        ));
    }
    let receiver = admin.decisions.subscribe();
    let watching = Watching(admin.clone());
    let stream = futures_util::stream::unfold(
        (receiver, watching),
        |(mut receiver, watching)| async move {
            let event = match receiver.recv().await {
                Ok(json) => Event::default().event("decision").data(&*json),
                Err(RecvError::Lagged(n)) => Event::default().event("lagged").data(n.to_string()),
                Err(RecvError::Closed) => return None,
            };
            Some((
                Ok::<_, std::convert::Infallible>(event),
                (receiver, watching),
            ))
        },
    );
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response())
}

/// `GET /metrics`: the Prometheus text exposition (SPEC §9.3).
async fn metrics(State(admin): State<Arc<Admin>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        admin.metrics.render(),
    )
        .into_response()
}

/// `GET /health`: 200 while the proxy takes calls with a policy loaded, 503 once it drains.
/// A load balancer or systemd's watchdog reads it; it needs a token like the rest.
async fn health(State(admin): State<Arc<Admin>>) -> Response {
    if admin.metrics.is_draining() {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({"status": "draining"})),
        )
            .into_response()
    } else {
        let tenants = admin.service.current().policy.tenants.len();
        Json(serde_json::json!({"status": "ok", "tenants": tenants})).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a path designates, as text.
    fn target(path: &str) -> String {
        match Target::parse(path) {
            None => "none".into(),
            Some(Target::All(k)) => format!("all {}", k.path),
            Some(Target::One(k, id)) => format!("one {} {id}", k.path),
            Some(Target::Link(k, id, p)) => format!("link {} {id} {p}", k.path),
            Some(Target::Lockout(id)) => format!("lockout {id}"),
        }
    }

    #[test]
    fn object_paths() {
        for (path, expected) in [
            ("users", "all users"),
            ("users/", "all users"),
            ("users/1001", "one users 1001"),
            ("users/alice/lockout", "lockout alice"),
            ("groups/sales/lockout", "none"),
            (
                "users/alice/callpermissions/no%20premium",
                "link users alice no premium",
            ),
            ("queues/support/callpermissions/p", "none"),
            ("brand/aclpatterns", "all brand/aclpatterns"),
            ("brand/aclpatterns/spain", "one brand/aclpatterns spain"),
            ("brand/aclpatternsx", "none"),
            ("nothing", "none"),
            // An encoded `/` belongs to the name: it never reaches another resource.
            ("users/alice%2Flockout", "one users alice/lockout"),
            (
                "users/a%2Fcallpermissions%2Fp",
                "one users a/callpermissions/p",
            ),
            // Not UTF-8 once decoded: the name as sent, which no object has.
            ("users/%FF", "one users %FF"),
        ] {
            assert_eq!(target(path), expected, "{path}");
        }
    }
}
