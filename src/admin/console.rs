//! The web console (SPEC §10): a single page over this same API, served at `/` by the admin
//! listener, every asset built into the binary so that it works with no network but the
//! listener's. Its source is `console/` (TypeScript and Preact, bundled by esbuild); the
//! built files are committed under `src/admin/console/`, so that building sipscreen needs
//! no Node.js.
//!
//! The assets carry no secret and need no token: the page must load to ask for one. Every
//! API call it then makes carries the token, and the guard's `Host`/`Origin` checks apply
//! here as everywhere. The page forbids being framed and loading anything from elsewhere
//! (`Content-Security-Policy`).
//!
//! Cache: the names are fixed, so a browser keeps each asset with its `ETag` (a digest of
//! its bytes) and asks again each time (`no-cache`): an upgraded sipscreen's console is
//! never mixed with the old one's, and an unchanged one costs a `304`.

use std::sync::LazyLock;

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use sha2::{Digest, Sha256};

/// One file of the console.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

const ASSETS: [Asset; 4] = [
    Asset {
        path: "/",
        content_type: "text/html; charset=utf-8",
        body: include_bytes!("console/index.html"),
    },
    Asset {
        path: "/assets/console.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("console/assets/console.js"),
    },
    Asset {
        path: "/assets/console.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("console/assets/console.css"),
    },
    Asset {
        path: "/assets/favicon.svg",
        content_type: "image/svg+xml",
        body: include_bytes!("console/assets/favicon.svg"),
    },
];

/// What the page may do: run its own script and style, call this API, show its own images;
/// nothing from elsewhere, no framing (clickjacking), no form posted anywhere.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
    connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// Each asset's `ETag`, in [`ASSETS`] order: a digest of its bytes, computed once.
static ETAGS: LazyLock<Vec<HeaderValue>> = LazyLock::new(|| {
    ASSETS
        .iter()
        .map(|a| {
            let digest = Sha256::digest(a.body);
            let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
            HeaderValue::from_str(&format!("\"{hex}\"")).expect("hex digits are a header value")
        })
        .collect()
});

/// The console's routes, to merge into the API's router.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    ASSETS
        .iter()
        .enumerate()
        .fold(Router::new(), |router, (i, asset)| {
            router.route(
                asset.path,
                get(move |headers: HeaderMap| async move { serve(i, &headers) }),
            )
        })
}

/// Whether `path` is one of the console's files (which need no token).
pub fn is_asset(path: &str) -> bool {
    ASSETS.iter().any(|a| a.path == path)
}

fn serve(i: usize, headers: &HeaderMap) -> Response {
    let asset = &ASSETS[i];
    let etag = ETAGS[i].clone();
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|tag| tag.trim().trim_start_matches("W/") == etag)
        });
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static(asset.content_type),
            )],
            asset.body,
        )
            .into_response()
    };
    let h = response.headers_mut();
    h.insert(header::ETAG, etag);
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if asset.path == "/" {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        );
        h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        h.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_names_only_assets_that_are_served() {
        let page = std::str::from_utf8(ASSETS[0].body).expect("UTF-8");
        for reference in page
            .split(['"', '\''])
            .filter(|s| s.starts_with("/assets/"))
        {
            assert!(is_asset(reference), "index.html names {reference}");
        }
        assert!(page.contains("/assets/console.js") && page.contains("/assets/console.css"));
    }

    #[test]
    fn a_known_etag_is_not_modified() {
        let mut h = HeaderMap::new();
        assert_eq!(serve(1, &h).status(), StatusCode::OK);
        h.insert(header::IF_NONE_MATCH, ETAGS[1].clone());
        assert_eq!(serve(1, &h).status(), StatusCode::NOT_MODIFIED);
        h.insert(header::IF_NONE_MATCH, ETAGS[2].clone());
        assert_eq!(serve(1, &h).status(), StatusCode::OK);
    }
}
