//! Percent-decoding (RFC 3986 §2.1), shared by the SIP layer (escaped URI headers) and the
//! policy (dialed numbers and caller names): a leaf that both may use without either
//! depending on the other.

use std::borrow::Cow;

/// Decodes `%XX` escapes; a malformed escape is kept as written, and so is a decoded byte
/// sequence that is not UTF-8 (then nothing is decoded).
pub fn decode(s: &str) -> Cow<'_, str> {
    if !s.contains('%') {
        return Cow::Borrowed(s);
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let hex = |j: usize| bytes.get(j).and_then(|c| char::from(*c).to_digit(16));
        match (b, hex(i + 1), hex(i + 2)) {
            (b'%', Some(h), Some(l)) => {
                out.push(u8::try_from(h * 16 + l).unwrap_or(b'%'));
                i += 3;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    match String::from_utf8(out) {
        Ok(decoded) => Cow::Owned(decoded),
        Err(_) => Cow::Borrowed(s),
    }
}

/// Whether every `%` of `s` starts a valid escape and the decoded bytes are UTF-8: when not,
/// [`decode`] keeps the text as written, and a peer that decodes more leniently could read
/// another string than sipscreen did.
pub fn decodes_cleanly(s: &str) -> bool {
    if !s.contains('%') {
        return true;
    }
    let bytes = s.as_bytes();
    let escapes_ok = bytes.iter().enumerate().all(|(i, &b)| {
        b != b'%'
            || (bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
    });
    escapes_ok && matches!(decode(s), std::borrow::Cow::Owned(_))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_escapes_and_keeps_what_is_not_one() {
        assert_eq!(decode("%2B34%20612"), "+34 612");
        assert_eq!(decode("no-escape"), "no-escape");
        assert_eq!(decode("100%"), "100%");
        assert_eq!(decode("%zz1"), "%zz1");
        assert_eq!(
            decode("%ff"),
            "%ff",
            "not UTF-8 once decoded: kept as written"
        );
    }
}
