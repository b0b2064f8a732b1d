//! `sipscreen replay` (SPEC §1): the SIP messages of a capture, fed to the same sans-I/O core
//! the proxy runs, with the capture's timestamps as "now".
//!
//! Replay exists so that a decision can be checked against real traffic without a network:
//! a capture of a call is evidence of what the proxy would have done with it. The layers:
//! - [`capture`]: the file (pcap or pcapng) → UDP datagrams and reassembled TCP stream bytes,
//!   with addresses and capture time. SIP-agnostic; undecodable packets are skipped and
//!   counted, while an unreadable or truncated file is an error naming the file and offset.
//! - `tcp` (private): per-direction TCP reassembly by sequence number, used by [`capture`].
//! - `payload` (private): [`Payload`], what both of them hand out.
//! - [`calls`]: payloads → SIP messages (TCP framed by Content-Length) → the proxy core →
//!   one decision per new call, printed or compared with expectations.

pub mod calls;
pub mod capture;
mod payload;
mod tcp;

pub use calls::{call_json, compare, replay, sip_messages, CapturedMessage, ReplayedCall};
pub use capture::{Capture, CaptureError};
pub use payload::{Payload, Transport};
