//! SIP messages over their raw bytes (RFC 3261 §7, §20, §25), with no I/O and no clock.
//!
//! A [`Message`] owns the bytes it was read from and an index of where each part lies: the
//! start line, every header line (name, value, the whole line), the body. Nothing is
//! re-serialized: the proxy forwards a message by copying these ranges and splicing in the
//! few lines it changes (Via, Max-Forwards, Route, Record-Route), so unknown headers and
//! bodies pass through byte for byte. Only the headers the proxy needs get typed parsing
//! ([`header`], [`uri`]), and they are parsed when asked for.
//!
//! [`frame`] finds where a message ends in a stream (Content-Length framing, RFC 3261
//! §18.3), telling "need more bytes" from "this can never be a message", as TCP needs.
//!
//! The modules, each using only those before it: `lex` (token characters, URI schemes,
//! `host[:port]`, [`header::SyntaxError`]); [`uri`] and [`header`] (typed views, and
//! [`HeaderName`]); `framing` (the header block's lines, Content-Length, [`frame`] and
//! [`StreamFramer`]); [`message`] (the index and the checks a proxy needs); [`forwarding`]
//! (who forwarded a call).

pub mod forwarding;
mod framing;
pub mod header;
mod lex;
pub mod message;
pub mod uri;

pub use framing::{frame, Framing, ParseError, StreamFramer};
pub use header::HeaderName;
pub use message::{Message, Method, ReplyLines, StartLine};
