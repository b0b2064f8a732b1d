//! Media for the PIN flow (SPEC §6): SDP offer/answer (RFC 3264) with PCMU/PCMA and
//! telephone-event, RTP packets (RFC 3550), RFC 4733 DTMF events and SIP INFO DTMF bodies,
//! the prompt (a built-in tone or a WAV file) encoded to G.711, and the digit collector.
//! All of it is sans-I/O: bytes in, bytes out, time given by the caller.

pub mod collector;
pub mod dtmf;
pub mod prompt;
pub mod rtp;
pub mod sdp;
