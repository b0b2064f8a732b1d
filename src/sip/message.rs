//! The message index: start line, header lines, body (RFC 3261 §7, §25.1), and the checks
//! that make a message acceptable to a proxy (RFC 4475 lists what must be refused).

use std::fmt;
use std::ops::Range;

use super::framing::{bad, find_head_end, parse_content_length, split_header, trim, HeaderLines};
use super::header::{self, CSeq, NameAddr, Via};
use super::lex::SyntaxError;
use super::uri::Uri;
// Defined in `framing`, `header` and `lex`; still reachable here, where they used to be.
pub use super::framing::{frame, Framing, ParseError, StreamFramer};
pub use super::header::HeaderName;
pub use super::lex::is_token_char;

/// The longest message accepted by default (SPEC §7).
pub const DEFAULT_MAX_SIZE: usize = 64 * 1024;

/// A request method. Unknown methods are kept by name and forwarded untouched.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Method {
    Invite,
    Ack,
    Cancel,
    Bye,
    Options,
    Register,
    Info,
    Prack,
    Update,
    Subscribe,
    Notify,
    Refer,
    Message,
    Publish,
    Other(Box<str>),
}

impl Method {
    /// Method names are case-sensitive (RFC 3261 §7.1).
    pub fn from_bytes(b: &[u8]) -> Self {
        match b {
            b"INVITE" => Method::Invite,
            b"ACK" => Method::Ack,
            b"CANCEL" => Method::Cancel,
            b"BYE" => Method::Bye,
            b"OPTIONS" => Method::Options,
            b"REGISTER" => Method::Register,
            b"INFO" => Method::Info,
            b"PRACK" => Method::Prack,
            b"UPDATE" => Method::Update,
            b"SUBSCRIBE" => Method::Subscribe,
            b"NOTIFY" => Method::Notify,
            b"REFER" => Method::Refer,
            b"MESSAGE" => Method::Message,
            b"PUBLISH" => Method::Publish,
            other => Method::Other(String::from_utf8_lossy(other).into()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Method::Invite => "INVITE",
            Method::Ack => "ACK",
            Method::Cancel => "CANCEL",
            Method::Bye => "BYE",
            Method::Options => "OPTIONS",
            Method::Register => "REGISTER",
            Method::Info => "INFO",
            Method::Prack => "PRACK",
            Method::Update => "UPDATE",
            Method::Subscribe => "SUBSCRIBE",
            Method::Notify => "NOTIFY",
            Method::Refer => "REFER",
            Method::Message => "MESSAGE",
            Method::Publish => "PUBLISH",
            Method::Other(m) => m,
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One header line.
#[derive(Clone, Debug)]
pub struct Header {
    pub name: HeaderName,
    /// The name as written.
    pub name_range: Range<usize>,
    /// The value, from after the colon and leading white space to the end of the last
    /// continuation line (line folding included, trailing white space excluded).
    pub value: Range<usize>,
    /// The whole line, CRLF of the last continuation line included.
    pub line: Range<usize>,
}

/// The first line.
#[derive(Clone, Debug)]
pub enum StartLine {
    Request { method: Method, uri: Range<usize> },
    Response { code: u16, reason: Range<usize> },
}

/// A parsed message: its bytes and their index.
#[derive(Clone, Debug)]
pub struct Message {
    buf: Vec<u8>,
    start: StartLine,
    /// The start line, its line ending included.
    start_line: Range<usize>,
    headers: Vec<Header>,
    /// The blank line that ends the headers.
    blank: Range<usize>,
    body: Range<usize>,
}

impl Message {
    /// Parses one message from a datagram or a framed stream chunk. Bytes after the body
    /// (beyond Content-Length) are ignored (RFC 3261 §18.3, RFC 4475 §3.1.1.8). `datagram`
    /// says whether a Content-Length larger than the bytes is an error (UDP) — a framed stream
    /// chunk always holds the whole body.
    pub fn parse(bytes: &[u8]) -> Result<Message, ParseError> {
        let lead = bytes
            .iter()
            .take_while(|&&b| b == b'\r' || b == b'\n')
            .count();
        let bytes = &bytes[lead..];
        let is_request = !bytes.starts_with(b"SIP/");
        let fail = |status: u16, reason: &str| ParseError {
            status,
            reason: reason.to_owned(),
            request: is_request,
        };
        // A datagram whose last header line lacks the blank line after it is read as having
        // no body, as lenient peers do.
        let (blank_start, head_end) = find_head_end(bytes)
            .or_else(|| bytes.ends_with(b"\n").then_some((bytes.len(), bytes.len())))
            .ok_or_else(|| fail(400, "no end of headers"))?;
        let mut lines = HeaderLines::new(&bytes[..blank_start]);
        let start_line = lines.next().ok_or_else(|| fail(400, "empty message"))?;
        let start = parse_start_line(bytes, &start_line).map_err(|e| ParseError {
            request: is_request,
            ..e
        })?;
        let mut headers = Vec::with_capacity(24);
        for line in lines {
            let (name_range, value) = split_header(bytes, &line).map_err(|e| ParseError {
                request: is_request,
                ..e
            })?;
            let name = HeaderName::from_bytes(&bytes[name_range.clone()]);
            if name.single() && headers.iter().any(|h: &Header| h.name == name) {
                return Err(fail(400, "a single-value header appears more than once"));
            }
            headers.push(Header {
                name,
                name_range,
                value,
                line,
            });
        }
        let available = bytes.len() - head_end;
        let length = match headers.iter().find(|h| h.name == HeaderName::ContentLength) {
            Some(h) => {
                parse_content_length(trim(&bytes[h.value.clone()])).map_err(|e| ParseError {
                    request: is_request,
                    ..e
                })?
            }
            None => available,
        };
        if length > available {
            return Err(fail(400, "Content-Length larger than the body"));
        }
        let msg = Message {
            buf: bytes[..head_end + length].to_vec(),
            start,
            start_line,
            headers,
            blank: blank_start..head_end,
            body: head_end..head_end + length,
        };
        msg.check()
            .map_err(|(status, reason)| fail(status, &reason))?;
        Ok(msg)
    }

    /// The checks a proxy needs before it can handle a message (RFC 3261 §16.3, RFC 4475).
    fn check(&self) -> Result<(), (u16, String)> {
        let e400 = |r: &str| (400, r.to_owned());
        for name in [
            HeaderName::From,
            HeaderName::To,
            HeaderName::CallId,
            HeaderName::CSeq,
        ] {
            if self.header(name).is_none() {
                return Err(e400(&format!("missing {name:?} header")));
            }
        }
        if self.vias().next().is_none() {
            return Err(e400("missing Via header"));
        }
        for via in self.vias() {
            via.map_err(|e| e400(&format!("bad Via: {e}")))?;
        }
        let cseq = self.cseq().map_err(|e| e400(&format!("bad CSeq: {e}")))?;
        if self.call_id().is_empty() {
            return Err(e400("empty Call-ID"));
        }
        for name in [HeaderName::From, HeaderName::To] {
            let v = self.header_str(name).unwrap_or_default();
            NameAddr::parse(v).map_err(|e| e400(&format!("bad {name:?}: {e}")))?;
        }
        for h in self
            .headers
            .iter()
            .filter(|h| h.name == HeaderName::Contact)
        {
            header::parse_contacts(self.text(&h.value))
                .map_err(|e| e400(&format!("bad Contact: {e}")))?;
        }
        if let StartLine::Request { method, uri } = &self.start {
            if cseq.method != method.as_str() {
                return Err(e400("CSeq method differs from the request method"));
            }
            if let Some(h) = self.header(HeaderName::MaxForwards) {
                header::parse_max_forwards(self.text(&h.value))
                    .map_err(|e| e400(&format!("bad Max-Forwards: {e}")))?;
            }
            let uri = self.text(uri);
            match Uri::parse(uri) {
                Err(SyntaxError::UnsupportedScheme) => {
                    return Err((416, "Unsupported URI Scheme".to_owned()))
                }
                Err(e) => return Err(e400(&format!("bad Request-URI: {e}"))),
                Ok(u) if u.has_headers() => return Err(e400("headers in the Request-URI")),
                Ok(_) => {}
            }
        }
        Ok(())
    }

    /// The whole message as read (without what followed its body).
    pub fn bytes(&self) -> &[u8] {
        &self.buf
    }

    /// The start line, parsed.
    pub fn start(&self) -> &StartLine {
        &self.start
    }

    /// The start line's range, line ending included.
    pub fn start_line(&self) -> Range<usize> {
        self.start_line.clone()
    }

    /// The range of the blank line that ends the headers.
    pub fn blank_line(&self) -> Range<usize> {
        self.blank.clone()
    }

    pub fn is_request(&self) -> bool {
        matches!(self.start, StartLine::Request { .. })
    }

    /// The method of a request, or of the request a response answers (from CSeq).
    pub fn method(&self) -> Method {
        match &self.start {
            StartLine::Request { method, .. } => method.clone(),
            StartLine::Response { .. } => self
                .cseq()
                .map(|c| Method::from_bytes(c.method.as_bytes()))
                .unwrap_or(Method::Other("".into())),
        }
    }

    /// The status code of a response.
    pub fn status(&self) -> Option<u16> {
        match self.start {
            StartLine::Response { code, .. } => Some(code),
            StartLine::Request { .. } => None,
        }
    }

    /// The reason phrase of a response (empty for a request).
    pub fn status_reason(&self) -> &str {
        match &self.start {
            StartLine::Response { reason, .. } => self.text(reason),
            StartLine::Request { .. } => "",
        }
    }

    /// The Request-URI of a request.
    pub fn request_uri(&self) -> Option<&str> {
        match &self.start {
            StartLine::Request { uri, .. } => Some(self.text(uri)),
            StartLine::Response { .. } => None,
        }
    }

    /// The range of the Request-URI.
    pub fn request_uri_range(&self) -> Option<Range<usize>> {
        match &self.start {
            StartLine::Request { uri, .. } => Some(uri.clone()),
            StartLine::Response { .. } => None,
        }
    }

    /// Every header line, in order.
    pub fn headers(&self) -> &[Header] {
        &self.headers
    }

    /// The first header of this name.
    pub fn header(&self, name: HeaderName) -> Option<&Header> {
        self.headers.iter().find(|h| h.name == name)
    }

    /// The value of the first header of this name, as text.
    pub fn header_str(&self, name: HeaderName) -> Option<&str> {
        self.header(name).map(|h| self.text(&h.value))
    }

    /// Every value of headers of this name, in order, as text (one item per line).
    pub fn header_values(&self, name: HeaderName) -> impl Iterator<Item = &str> + '_ {
        self.headers
            .iter()
            .filter(move |h| h.name == name)
            .map(|h| self.text(&h.value))
    }

    /// A range of the message as text. Header values are text in practice; bytes that are not
    /// UTF-8 read as an empty string, which fails whatever check needed them.
    pub fn text(&self, r: &Range<usize>) -> &str {
        self.buf
            .get(r.clone())
            .and_then(|b| std::str::from_utf8(b).ok())
            .unwrap_or("")
    }

    /// The Call-ID.
    pub fn call_id(&self) -> &str {
        self.header_str(HeaderName::CallId).unwrap_or_default()
    }

    /// The CSeq.
    pub fn cseq(&self) -> Result<CSeq<'_>, SyntaxError> {
        CSeq::parse(self.header_str(HeaderName::CSeq).unwrap_or_default())
    }

    /// Every Via value, top first, with the absolute range of each value.
    pub fn vias(&self) -> impl Iterator<Item = Result<Via<'_>, SyntaxError>> + '_ {
        self.headers
            .iter()
            .filter(|h| h.name == HeaderName::Via)
            .flat_map(move |h| header::split_vias(self.text(&h.value), h.value.start))
    }

    /// The top Via.
    pub fn top_via(&self) -> Option<Via<'_>> {
        self.vias().next().and_then(Result::ok)
    }

    /// The From header.
    pub fn from(&self) -> Option<NameAddr<'_>> {
        self.header_str(HeaderName::From)
            .and_then(|v| NameAddr::parse(v).ok())
    }

    /// The To header.
    pub fn to(&self) -> Option<NameAddr<'_>> {
        self.header_str(HeaderName::To)
            .and_then(|v| NameAddr::parse(v).ok())
    }

    /// The body.
    pub fn body(&self) -> &[u8] {
        &self.buf[self.body.clone()]
    }
}

/// The raw header lines needed to answer a request that could not be parsed (RFC 3261
/// §8.2.6: Via, From, To, Call-ID, CSeq copied into the response). Via and CSeq are needed
/// (the response is routed by Via and matched by CSeq); the others are copied when present.
#[derive(Clone, Debug)]
pub struct ReplyLines {
    pub vias: Vec<Range<usize>>,
    /// From, To, Call-ID, CSeq lines, in that order, those that are there.
    pub others: Vec<Range<usize>>,
}

impl ReplyLines {
    /// Scans `bytes` (as received) for the lines; `None` when Via or CSeq is missing or the
    /// header block cannot even be split into lines.
    pub fn find(bytes: &[u8]) -> Option<ReplyLines> {
        let end = find_head_end(bytes).map_or(bytes.len(), |(blank, _)| blank);
        let mut vias = Vec::new();
        let mut found: [Option<Range<usize>>; 4] = Default::default();
        for line in HeaderLines::new(&bytes[..end]).skip(1) {
            let Ok((name, _)) = split_header(bytes, &line) else {
                continue;
            };
            let slot = match HeaderName::from_bytes(&bytes[name]) {
                HeaderName::Via => {
                    vias.push(line);
                    continue;
                }
                HeaderName::From => 0,
                HeaderName::To => 1,
                HeaderName::CallId => 2,
                HeaderName::CSeq => 3,
                _ => continue,
            };
            found[slot].get_or_insert(line);
        }
        if vias.is_empty() || found[3].is_none() {
            return None;
        }
        Some(ReplyLines {
            vias,
            others: found.into_iter().flatten().collect(),
        })
    }
}

fn parse_start_line(buf: &[u8], line: &Range<usize>) -> Result<StartLine, ParseError> {
    let raw = &buf[line.clone()];
    let text = raw.strip_suffix(b"\n").unwrap_or(raw);
    let text = text.strip_suffix(b"\r").unwrap_or(text);
    let off = line.start;
    if let Some(rest) = text.strip_prefix(b"SIP/") {
        // Status-Line = SIP-Version SP Status-Code SP Reason-Phrase
        let sp = memchr::memchr(b' ', text).ok_or_else(|| bad(400, "bad status line", false))?;
        if !text[..sp].eq_ignore_ascii_case(b"SIP/2.0") || rest.is_empty() {
            return Err(bad(505, "unsupported SIP version", false));
        }
        let after = &text[sp + 1..];
        let code_end = memchr::memchr(b' ', after).unwrap_or(after.len());
        let code = &after[..code_end];
        if code.len() != 3 || !code.iter().all(u8::is_ascii_digit) {
            return Err(bad(400, "bad status code", false));
        }
        let code: u16 = std::str::from_utf8(code)
            .ok()
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        if !(100..=699).contains(&code) {
            return Err(bad(400, "status code out of range", false));
        }
        let reason_start = off + sp + 1 + (code_end + 1).min(after.len());
        return Ok(StartLine::Response {
            code,
            reason: reason_start..off + text.len(),
        });
    }
    // Request-Line = Method SP Request-URI SP SIP-Version, one SP each.
    let mut parts = text.split(|&b| b == b' ');
    let (Some(method), Some(uri), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad(400, "malformed request line", true));
    };
    if method.is_empty() || !method.iter().all(|&b| is_token_char(b)) {
        return Err(bad(400, "malformed method", true));
    }
    if uri.is_empty()
        || uri
            .iter()
            .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
    {
        return Err(bad(400, "malformed Request-URI", true));
    }
    if !version.eq_ignore_ascii_case(b"SIP/2.0") {
        if version.len() > 4 && version[..4].eq_ignore_ascii_case(b"SIP/") {
            return Err(bad(505, "Version Not Supported", true));
        }
        return Err(bad(400, "malformed request line", true));
    }
    let uri_start = off + method.len() + 1;
    Ok(StartLine::Request {
        method: Method::from_bytes(method),
        uri: uri_start..uri_start + uri.len(),
    })
}
