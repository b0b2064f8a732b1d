//! sipscreen: a SIP call-screening proxy.
//!
//! The layers, from the inside out (dependencies point one way: `service` → `transport` →
//! `proxy` → `sip` / `policy` / `media`; `config` builds what each layer takes):
//! - [`percent`]: percent-decoding, a leaf that `sip` and `policy` share.
//! - [`policy`]: the pure rule engine (SPEC §3–§4). Numbers, Asterisk patterns, Call ACLs,
//!   call permissions, and [`policy::Policy::decide`], which turns one call into a decision
//!   and its explanation. No SIP, no sockets, no clock, no files.
//! - [`sip`]: messages over their raw bytes: framing (whole buffers and resumable streams),
//!   header index, typed views of the few headers a proxy reads. No policy, no I/O.
//! - [`media`]: the PIN prompt's media: SDP offer/answer, RTP, RFC 4733 and INFO DTMF, the
//!   prompt's G.711 frames, the digit collector. Pure.
//! - [`proxy`]: the sans-I/O core, driven by `handle_*(now, ...)` and drained by `poll_*()`:
//!   admission (trusted peers, tenant sources, digest), dialog-bound in-dialog requests,
//!   transactions (RFC 3261 §17, RFC 6026), the proxy (§16) with screening, the PIN hold, and
//!   the limits. It takes [`proxy::Settings`] and an `Arc` of the policy; see its module map.
//! - [`config`]: the TOML file, read into raw serde structures, then checked as a whole into a
//!   [`config::Config`] (the proxy's settings and the policy) that can only hold valid,
//!   resolved data (SPEC §2). Every error is reported at once with file, line and column.
//! - [`transport`]: the only socket code (tokio): UDP and TCP, timers, the task that owns the
//!   core, and the control channel that reloads it.
//! - [`service`]: running as a service: reloading the configuration (SIGHUP, the admin API)
//!   and changing it (the admin API): checked, written atomically, put in force.
//! - [`admin`]: the HTTP admin API (axum): wazo-confd-shaped resources over the TOML
//!   document, who may use it, `check` and reload.
//! - [`notify`]: telling systemd the service is ready, reloading or stopping (`Type=notify`).
//! - [`metrics`]: the counters of the per-message path (atomics, no lock) and their
//!   Prometheus exposition.
//! - [`replay`]: captures read back into the same core, the capture's clock as now.
//! - [`report`]: how a decision is shown (`check`, `replay`).
//!
//! One INVITE flows as: transport (a datagram, or a message framed off a TCP stream) →
//! `proxy` stateless checks → admission (tenant and identity) → screening: dialed clean-up and
//! E.164 normalization (cached per tenant) → classification (incoming, internal, external) →
//! Call ACL → call-permission tiers → verdict (`allow`, `deny`, `challenge`) → forwarded copy
//! (byte edits) on a client transaction, 403, or the PIN hold → responses relayed back, and
//! the dialog they make remembered for the requests that follow.

pub mod admin;
pub mod config;
pub mod media;
pub mod metrics;
pub mod notify;
pub mod percent;
pub mod policy;
pub mod proxy;
pub mod replay;
pub mod report;
pub mod service;
pub mod sip;
pub mod transport;
