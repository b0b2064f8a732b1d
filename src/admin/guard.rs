//! Who may use the admin interface (SPEC §9.2), checked before any handler runs:
//!
//! - `Host` must name this machine when the listener is on loopback: a web page whose name
//!   an attacker points at 127.0.0.1 (DNS rebinding) sends its own name and is refused.
//! - `Origin`, when a browser sends one, must be this interface itself: a page of another
//!   site cannot post a form or a script's request to it. So must `Sec-Fetch-Site`.
//! - A request with a body must say `Content-Type: application/json` (a form cannot).
//! - A token (`X-Auth-Token`, as Wazo's clients send it, or `Authorization: Bearer`), when
//!   the configuration has tokens, for all but the API's description and the console's
//!   files; compared in constant time. Without tokens (loopback only, `validate` sees to
//!   that) a token sent anyway is ignored.
//!
//! The token's name is handed to the handlers, which log it with every change.

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::error::ApiError;
use super::Admin;

/// Who is asking: the name of the token they gave, or `local` when no token is needed.
#[derive(Clone, Debug)]
pub struct Caller(pub String);

/// Paths anyone who passes the site checks may read: the API's own description, whether the
/// proxy is up (what a load balancer or a process supervisor asks, without a token), and the
/// console's files ([`super::console::is_asset`]: the page must load to ask for a token).
const PUBLIC: [&str; 2] = ["/1.1/api/api.yml", "/health"];

pub async fn guard(State(admin): State<Arc<Admin>>, mut req: Request, next: Next) -> Response {
    if let Err(e) = check_site(&admin, req.headers()) {
        return e.into_response();
    }
    if let Err(e) = check_content_type(req.method(), req.headers()) {
        return e.into_response();
    }
    let path = req.uri().path();
    let caller = if PUBLIC.contains(&path) || super::console::is_asset(path) {
        Caller("anonymous".into())
    } else {
        match check_token(&admin, req.headers()) {
            Ok(c) => c,
            Err(e) => {
                let mut r = e.into_response();
                r.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"sipscreen\""),
                );
                return r;
            }
        }
    };
    req.extensions_mut().insert(caller);
    next.run(req).await
}

fn forbidden(message: String) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, message)
}

/// The `Host`, `Origin` and `Sec-Fetch-Site` checks.
fn check_site(admin: &Admin, headers: &HeaderMap) -> Result<(), ApiError> {
    let host = headers.get(header::HOST).map(HeaderValue::to_str);
    let host = match host {
        Some(Ok(h)) => Some(h),
        Some(Err(_)) => return Err(forbidden("Host: not a valid host name".into())),
        None => None,
    };
    if let Some(h) = host {
        if admin.listen.ip().is_loopback() && !is_local(h) {
            return Err(forbidden(format!(
                "Host: `{h}` does not name this machine: refused"
            )));
        }
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("null");
        let same = host.is_some_and(|h| {
            origin.eq_ignore_ascii_case(&format!("http://{h}"))
                || origin.eq_ignore_ascii_case(&format!("https://{h}"))
        });
        if !same {
            return Err(forbidden(format!(
                "Origin: `{origin}` is another site: refused"
            )));
        }
    }
    if headers
        .get("sec-fetch-site")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"cross-site"))
    {
        return Err(forbidden(
            "Sec-Fetch-Site: cross-site requests are refused".into(),
        ));
    }
    Ok(())
}

/// Whether a `Host` value names this machine: `localhost`, a loopback address, with or
/// without a port.
fn is_local(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
            _ => host,
        }
    };
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name == "localhost"
        || name.ends_with(".localhost")
        || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// A request that carries a body must carry JSON.
fn check_content_type(method: &Method, headers: &HeaderMap) -> Result<(), ApiError> {
    if !matches!(
        *method,
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    ) {
        return Ok(());
    }
    let has_body = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim() != "0")
        || headers.contains_key(header::TRANSFER_ENCODING);
    let json = |v: &HeaderValue| {
        v.to_str().is_ok_and(|ct| {
            ct.split(';')
                .next()
                .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
        })
    };
    match headers.get(header::CONTENT_TYPE) {
        Some(ct) if !json(ct) => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Type: must be application/json",
        )),
        None if has_body => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Type: must be application/json",
        )),
        _ => Ok(()),
    }
}

/// The token check; the caller's name.
fn check_token(admin: &Admin, headers: &HeaderMap) -> Result<Caller, ApiError> {
    let current = admin.service.current();
    let tokens = current
        .admin
        .as_ref()
        .map(|a| a.tokens.as_slice())
        .unwrap_or_default();
    if tokens.is_empty() {
        return Ok(Caller("local".into()));
    }
    let given = headers
        .get("x-auth-token")
        .and_then(|v| v.to_str().ok())
        .or_else(|| {
            headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
        })
        .map(str::trim);
    let Some(given) = given else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "a token is required: X-Auth-Token or Authorization: Bearer",
        ));
    };
    // Digests first, so that the comparison takes the same time whatever the lengths; every
    // token is compared, so the time does not say which one nearly matched either.
    let digest = Sha256::digest(given.as_bytes());
    let mut found = None;
    for (name, token) in tokens {
        let equal = Sha256::digest(token.as_bytes()).ct_eq(&digest);
        if bool::from(equal) && found.is_none() {
            found = Some(name.clone());
        }
    }
    found
        .map(Caller)
        .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "the token is not valid"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_hosts() {
        for h in [
            "localhost",
            "localhost:8080",
            "127.0.0.1:8080",
            "127.1.2.3",
            "[::1]:8080",
            "LOCALHOST.",
            "app.localhost:80",
        ] {
            assert!(is_local(h), "{h}");
        }
        for h in [
            "evil.example",
            "evil.example:8080",
            "10.0.0.1:8080",
            "[2001:db8::1]:8080",
            "localhost.evil.example",
            "127.0.0.1.nip.io",
        ] {
            assert!(!is_local(h), "{h}");
        }
    }

    #[test]
    fn content_types() {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("2"));
        assert!(check_content_type(&Method::POST, &h).is_err());
        assert!(check_content_type(&Method::GET, &h).is_ok());
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
        assert!(check_content_type(&Method::POST, &h).is_ok());
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        assert!(check_content_type(&Method::PUT, &h).is_err());
        let mut empty = HeaderMap::new();
        empty.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
        assert!(check_content_type(&Method::PUT, &empty).is_ok());
    }
}
