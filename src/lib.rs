//! sipscreen: a SIP call-screening proxy.
//!
//! The layers, from the inside out:
//! - [`policy`]: pure rule engine (SPEC §3–§4). Numbers, Asterisk patterns, Call ACLs, call
//!   permissions, and [`policy::Policy::decide`], which turns one call into a decision and
//!   its explanation. No SIP, no I/O, no clock.
//! - [`config`]: the TOML file, read into raw serde structures, then checked as a whole into a
//!   [`config::Config`] that can only hold valid, resolved data (SPEC §2). Every error is
//!   reported at once with its file, line and column.
//!
//! - [`sip`]: messages over their raw bytes: framing, header index, typed views of the few
//!   headers a proxy reads. No I/O, no clock.
//! - [`proxy`]: the sans-I/O core: transactions (RFC 3261 §17, RFC 6026) and the proxy
//!   (§16) with screening, driven by `handle_*(now, ...)` and drained by `poll_*()`.
//! - [`media`]: the PIN prompt's media: SDP offer/answer, RTP, RFC 4733 and INFO DTMF,
//!   the prompt's G.711 frames, the digit collector. Pure.
//! - [`transport`]: the only tokio code: UDP and TCP sockets, timers, the task that owns the
//!   core.
//! - [`replay`]: captures read back into the same decision path.
//!
//! Dependencies point one way: `transport` → `proxy` → `sip` / `policy`.
//!
//! One call flows as: caller and dialed strings → tenant and identity → dialed clean-up and
//! E.164 normalization (cached per tenant) → classification (incoming, internal, external) →
//! Call ACL → call-permission tiers → verdict (`allow`, `deny`, `challenge`) and next hop.

pub mod config;
pub mod media;
pub mod percent;
pub mod policy;
pub mod proxy;
pub mod replay;
pub mod report;
pub mod service;
pub mod sip;
pub mod transport;
