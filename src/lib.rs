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
//! One call flows as: caller and dialed strings → tenant and identity → dialed clean-up and
//! E.164 normalization (cached per tenant) → classification (incoming, internal, external) →
//! Call ACL → call-permission tiers → verdict (`allow`, `deny`, `challenge`) and next hop.

pub mod config;
pub mod policy;
pub mod report;
