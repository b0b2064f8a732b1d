//! The lexical pieces the SIP parsers share (RFC 3261 §25.1): `token` characters, URI
//! schemes (RFC 3986 §3.1), `host[:port]`, and [`SyntaxError`], the error of every header and
//! URI parser. It uses nothing else of `sip`, so the parsers built on it (`header`, `uri`,
//! `message`) do not depend on one another for these.

use std::fmt;

/// Why a header value does not parse.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SyntaxError {
    Malformed(&'static str),
    /// A well-formed URI of a scheme the proxy does not route.
    UnsupportedScheme,
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SyntaxError::Malformed(why) => f.write_str(why),
            SyntaxError::UnsupportedScheme => f.write_str("unsupported URI scheme"),
        }
    }
}

impl std::error::Error for SyntaxError {}

/// RFC 3261 `token` characters.
pub fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b)
}

/// `scheme:rest`, with a well-formed scheme (RFC 3986 §3.1).
pub fn split_scheme(text: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = text.split_once(':')?;
    let mut chars = scheme.bytes();
    let first_ok = chars.next().is_some_and(|b| b.is_ascii_alphabetic());
    let rest_ok = chars.all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b));
    (first_ok && rest_ok).then_some((scheme, rest))
}

/// `host[:port]`, the host a name, an IPv4 address or a bracketed IPv6 address.
pub fn split_host_port(hostport: &str) -> Result<(&str, Option<u16>), SyntaxError> {
    let (host, port) = if hostport.starts_with('[') {
        let close = hostport
            .find(']')
            .ok_or(SyntaxError::Malformed("unclosed IPv6 reference"))?;
        let (h, rest) = hostport.split_at(close + 1);
        match rest.strip_prefix(':') {
            Some(p) => (h, Some(p)),
            None if rest.is_empty() => (h, None),
            None => return Err(SyntaxError::Malformed("junk after an IPv6 reference")),
        }
    } else {
        match hostport.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    let host_ok = if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        inner.parse::<std::net::Ipv6Addr>().is_ok()
    } else {
        !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
    };
    if !host_ok {
        return Err(SyntaxError::Malformed("bad host"));
    }
    let port = match port {
        None => None,
        Some(p) => Some(
            p.parse::<u16>()
                .map_err(|_| SyntaxError::Malformed("bad port"))?,
        ),
    };
    Ok((host, port))
}
