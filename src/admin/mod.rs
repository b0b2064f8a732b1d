//! The admin interface (SPEC §9.2): an HTTP/1.1 JSON API in wazo-confd's `/1.1/` shapes, on
//! its own listener and its own task, that reads and changes the configuration file while
//! the proxy runs.
//!
//! Built on axum (over hyper and tokio, which the proxy already runs on): the most used Rust
//! HTTP framework, kept by the tokio project. The API's own logic is not in axum's hands:
//! [`model`] says what the objects look like, [`edit`] changes the TOML document (no I/O),
//! [`list`] pages lists; [`Service`] checks, writes and puts a change in force. [`guard`]
//! decides who may ask, before any of it. [`console`] serves the web console at `/`.
//!
//! Who can reach it, and what stops them: on a loopback address only local processes, and
//! web pages (through the browser on the same machine) are refused by the `Host` and
//! `Origin` checks (DNS rebinding, cross-site forms). Anywhere else, only holders of a token.

mod console;
mod edit;
mod error;
mod guard;
mod list;
mod model;
mod routes;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::broadcast;

use crate::metrics::Metrics;
use crate::service::Service;

pub use error::ApiError;

/// What the handlers share.
pub struct Admin {
    service: Arc<Service>,
    /// The decisions as they are made (JSON), for `/1.1/events`.
    decisions: broadcast::Sender<Arc<str>>,
    /// What `/metrics` shows and `/health` reads.
    metrics: Arc<Metrics>,
    /// Live feeds open now, bounded by [`MAX_WATCHERS`](routes::MAX_WATCHERS).
    watchers: std::sync::atomic::AtomicUsize,
    /// The address the interface listens on (after a port 0 was bound).
    listen: SocketAddr,
}

/// Serves the admin interface on `listener` until the task is dropped.
pub async fn serve(
    listener: TcpListener,
    service: Arc<Service>,
    decisions: broadcast::Sender<Arc<str>>,
    metrics: Arc<Metrics>,
) -> std::io::Result<()> {
    let listen = listener.local_addr()?;
    let admin = Arc::new(Admin {
        service,
        decisions,
        metrics,
        watchers: Default::default(),
        listen,
    });
    axum::serve(listener, routes::router(admin)).await
}
