//! The headers the proxy reads: their names ([`HeaderName`], full and compact, RFC 3261
//! §7.3.3), and typed views of their values: Via (§20.42, RFC 3581), name-addr headers From,
//! To, Contact, Route (§20.10, §20.20, §20.39), CSeq (§20.16), Max-Forwards (§20.22). Each
//! view borrows from the message text; line folding and the tortuous white space of RFC 4475
//! §3.1.1.1 are accepted, the malformed values of §3.1.2 are not.

use std::ops::Range;

use super::lex::{is_token_char, split_host_port, split_scheme};
// Defined in `lex`; still reachable here, where it used to be.
pub use super::lex::SyntaxError;

/// The headers the proxy looks at, by full and compact name (RFC 3261 §7.3.3, §20).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeaderName {
    Via,
    From,
    To,
    CallId,
    CSeq,
    MaxForwards,
    ContentLength,
    ContentType,
    Contact,
    Route,
    RecordRoute,
    ProxyRequire,
    PAssertedIdentity,
    ProxyAuthorization,
    Diversion,
    HistoryInfo,
    Reason,
    Other,
}

impl HeaderName {
    /// Header names are case-insensitive (RFC 3261 §7.3.1).
    pub(super) fn from_bytes(name: &[u8]) -> Self {
        let eq = |s: &str| name.eq_ignore_ascii_case(s.as_bytes());
        match name.len() {
            1 => match name[0].to_ascii_lowercase() {
                b'v' => HeaderName::Via,
                b'f' => HeaderName::From,
                b't' => HeaderName::To,
                b'i' => HeaderName::CallId,
                b'l' => HeaderName::ContentLength,
                b'c' => HeaderName::ContentType,
                b'm' => HeaderName::Contact,
                _ => HeaderName::Other,
            },
            _ if eq("via") => HeaderName::Via,
            _ if eq("from") => HeaderName::From,
            _ if eq("to") => HeaderName::To,
            _ if eq("call-id") => HeaderName::CallId,
            _ if eq("cseq") => HeaderName::CSeq,
            _ if eq("max-forwards") => HeaderName::MaxForwards,
            _ if eq("content-length") => HeaderName::ContentLength,
            _ if eq("content-type") => HeaderName::ContentType,
            _ if eq("contact") => HeaderName::Contact,
            _ if eq("route") => HeaderName::Route,
            _ if eq("record-route") => HeaderName::RecordRoute,
            _ if eq("proxy-require") => HeaderName::ProxyRequire,
            _ if eq("p-asserted-identity") => HeaderName::PAssertedIdentity,
            _ if eq("proxy-authorization") => HeaderName::ProxyAuthorization,
            _ if eq("diversion") => HeaderName::Diversion,
            _ if eq("history-info") => HeaderName::HistoryInfo,
            _ if eq("reason") => HeaderName::Reason,
            _ => HeaderName::Other,
        }
    }

    /// Headers that may appear once only (RFC 3261 §7.3.1, RFC 4475 §3.3.8).
    pub(super) fn single(self) -> bool {
        matches!(
            self,
            HeaderName::From
                | HeaderName::To
                | HeaderName::CallId
                | HeaderName::CSeq
                | HeaderName::MaxForwards
                | HeaderName::ContentLength
        )
    }
}

fn err<T>(why: &'static str) -> Result<T, SyntaxError> {
    Err(SyntaxError::Malformed(why))
}

/// A cursor over a header value. White space includes the CRLFs of folded lines.
struct Scanner<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Scanner<'a> {
    fn new(s: &'a str) -> Self {
        Self { s, pos: 0 }
    }
    fn peek(&self) -> Option<u8> {
        self.s.as_bytes().get(self.pos).copied()
    }
    fn at_end(&self) -> bool {
        self.pos >= self.s.len()
    }
    fn sws(&mut self) {
        while self
            .peek()
            .is_some_and(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
        {
            self.pos += 1;
        }
    }
    /// Skips white space, then takes `c` if it is next.
    fn eat(&mut self, c: u8) -> bool {
        let save = self.pos;
        self.sws();
        if self.peek() == Some(c) {
            self.pos += 1;
            true
        } else {
            self.pos = save;
            false
        }
    }
    fn take_while(&mut self, f: impl Fn(u8) -> bool) -> &'a str {
        let start = self.pos;
        while self.peek().is_some_and(&f) {
            self.pos += 1;
        }
        &self.s[start..self.pos]
    }
    fn token(&mut self) -> &'a str {
        self.take_while(is_token_char)
    }
    /// A quoted string, quotes included; `\` escapes any byte but CR and LF.
    fn quoted(&mut self) -> Result<&'a str, SyntaxError> {
        let start = self.pos;
        if self.peek() != Some(b'"') {
            return err("expected a quoted string");
        }
        self.pos += 1;
        loop {
            match self.peek() {
                None => return err("unterminated quoted string"),
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(&self.s[start..self.pos]);
                }
                Some(b'\\') => {
                    if matches!(
                        self.s.as_bytes().get(self.pos + 1),
                        None | Some(b'\r' | b'\n')
                    ) {
                        return err("bad escape in a quoted string");
                    }
                    self.pos += 2;
                }
                Some(_) => self.pos += 1,
            }
        }
    }
    /// `*( SEMI generic-param )`; returns the parameters and where the last one ends.
    fn params(&mut self) -> Result<Params<'a>, SyntaxError> {
        let mut list = Vec::new();
        let mut end = self.pos;
        while self.eat(b';') {
            self.sws();
            let name = self.token();
            if name.is_empty() {
                return err("empty parameter");
            }
            let value = if self.eat(b'=') {
                self.sws();
                let v = if self.peek() == Some(b'"') {
                    self.quoted()?
                } else if self.peek() == Some(b'[') {
                    self.take_while(|b| b != b']' && b != b';' && b != b',');
                    if self.peek() != Some(b']') {
                        return err("unclosed IPv6 reference");
                    }
                    self.pos += 1;
                    &self.s[self.s[..self.pos].rfind('[').unwrap_or(0)..self.pos]
                } else {
                    // A token or a host; `received` holds a bare IPv6 address (RFC 3261 §20.42).
                    self.take_while(|b| is_token_char(b) || b == b':')
                };
                if v.is_empty() {
                    return err("empty parameter value");
                }
                Some(v)
            } else {
                None
            };
            list.push((name, value));
            end = self.pos;
        }
        Ok(Params { list, end })
    }
}

struct Params<'a> {
    list: Vec<(&'a str, Option<&'a str>)>,
    /// Offset just after the last parameter (or where parameters would start).
    end: usize,
}

fn find_param<'a>(params: &[(&'a str, Option<&'a str>)], name: &str) -> Option<Option<&'a str>> {
    params
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| *v)
}

/// One Via value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Via<'a> {
    pub transport: &'a str,
    pub host: &'a str,
    pub port: Option<u16>,
    params: Vec<(&'a str, Option<&'a str>)>,
    /// The value's range in the message.
    pub range: Range<usize>,
    /// Where a new parameter can be inserted (after the last one), in the message.
    pub params_end: usize,
}

impl<'a> Via<'a> {
    /// A parameter (`Some(None)` when present without value).
    pub fn param(&self, name: &str) -> Option<Option<&'a str>> {
        find_param(&self.params, name)
    }

    pub fn branch(&self) -> Option<&'a str> {
        self.param("branch").flatten()
    }

    pub fn received(&self) -> Option<&'a str> {
        self.param("received").flatten()
    }

    /// `rport` (RFC 3581): `Some(None)` when asked for, `Some(Some(port))` once filled in.
    pub fn rport(&self) -> Option<Option<&'a str>> {
        self.param("rport")
    }

    /// Whether the branch carries RFC 3261's magic cookie (and something after it).
    pub fn rfc3261_branch(&self) -> Option<&'a str> {
        self.branch()
            .filter(|b| b.len() > 7 && b.starts_with("z9hG4bK"))
    }
}

/// Splits the value of a Via header line (several comma-separated values allowed) into its
/// values; `base` is the value's offset in the message, so ranges are absolute.
pub fn split_vias(text: &str, base: usize) -> Vec<Result<Via<'_>, SyntaxError>> {
    let mut out = Vec::with_capacity(1);
    let mut sc = Scanner::new(text);
    loop {
        sc.sws();
        let start = sc.pos;
        match parse_via(&mut sc) {
            Ok((transport, host, port, params)) => {
                out.push(Ok(Via {
                    transport,
                    host,
                    port,
                    params: params.list,
                    range: base + start..base + params.end,
                    params_end: base + params.end,
                }));
            }
            Err(e) => {
                out.push(Err(e));
                return out;
            }
        }
        if sc.eat(b',') {
            continue;
        }
        sc.sws();
        if !sc.at_end() {
            out.push(err("junk after a Via value"));
        }
        return out;
    }
}

type ViaParts<'a> = (&'a str, &'a str, Option<u16>, Params<'a>);

fn parse_via<'a>(sc: &mut Scanner<'a>) -> Result<ViaParts<'a>, SyntaxError> {
    let name = sc.token();
    if !name.eq_ignore_ascii_case("SIP") {
        return err("Via protocol is not SIP");
    }
    if !sc.eat(b'/') {
        return err("Via: expected /");
    }
    sc.sws();
    let version = sc.token();
    if version != "2.0" {
        return err("Via: SIP version is not 2.0");
    }
    if !sc.eat(b'/') {
        return err("Via: expected /");
    }
    sc.sws();
    let transport = sc.token();
    if transport.is_empty() {
        return err("Via: no transport");
    }
    sc.sws();
    let host_start = sc.pos;
    if sc.peek() == Some(b'[') {
        sc.take_while(|b| b != b']');
        sc.pos += usize::from(sc.peek() == Some(b']'));
    } else {
        sc.take_while(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_');
    }
    let host_end = sc.pos;
    let mut hostport_end = host_end;
    if sc.eat(b':') {
        sc.sws();
        sc.take_while(|b| b.is_ascii_digit());
        hostport_end = sc.pos;
    }
    let hostport: String = sc.s[host_start..hostport_end].split_whitespace().collect();
    let (_, port) = split_host_port(&hostport)?;
    let host = &sc.s[host_start..host_end];
    if host.is_empty() {
        return err("Via: no host");
    }
    let params = sc.params()?;
    Ok((transport, host, port, params))
}

/// A `name-addr` or `addr-spec` header value with its parameters (From, To, one Contact or
/// Route value).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NameAddr<'a> {
    pub display: Option<&'a str>,
    /// The URI, without `<>`.
    pub uri: &'a str,
    params: Vec<(&'a str, Option<&'a str>)>,
}

impl<'a> NameAddr<'a> {
    /// Parses a whole single-value header (From, To).
    pub fn parse(text: &'a str) -> Result<Self, SyntaxError> {
        let mut sc = Scanner::new(text);
        let na = parse_name_addr(&mut sc, false)?;
        sc.sws();
        if !sc.at_end() {
            return err("junk after the address");
        }
        Ok(na)
    }

    pub fn param(&self, name: &str) -> Option<Option<&'a str>> {
        find_param(&self.params, name)
    }

    pub fn tag(&self) -> Option<&'a str> {
        self.param("tag").flatten()
    }
}

fn parse_name_addr<'a>(sc: &mut Scanner<'a>, in_list: bool) -> Result<NameAddr<'a>, SyntaxError> {
    sc.sws();
    let start = sc.pos;
    let mut display = None;
    let bracketed = if sc.peek() == Some(b'"') {
        display = Some(sc.quoted()?);
        sc.sws();
        if sc.peek() != Some(b'<') {
            return err("expected < after the display name");
        }
        true
    } else {
        // Tokens separated by white space, then `<`; or an addr-spec.
        let mut probe = Scanner {
            s: sc.s,
            pos: sc.pos,
        };
        loop {
            let t = probe.token();
            probe.sws();
            match probe.peek() {
                Some(b'<') => {
                    let shown = sc.s[start..probe.pos].trim_end();
                    display = (!shown.is_empty()).then_some(shown);
                    sc.pos = probe.pos;
                    break true;
                }
                Some(_)
                    if !t.is_empty()
                        && probe.pos > start
                        && sc.s.as_bytes()[probe.pos - 1].is_ascii_whitespace() =>
                {
                    continue;
                }
                _ => break false,
            }
        }
    };
    let uri = if bracketed {
        sc.pos += 1;
        let inner = sc.take_while(|b| b != b'>');
        if sc.peek() != Some(b'>') {
            return err("unclosed <");
        }
        sc.pos += 1;
        if inner.bytes().any(|b| b.is_ascii_whitespace()) {
            return err("white space inside <>");
        }
        inner
    } else {
        // addr-spec: the URI ends at `;` (header parameters follow) or `,` in a list; it must
        // not hold `,`, `;` or `?` itself (RFC 3261 §20.10).
        let uri = sc.take_while(|b| !matches!(b, b';' | b',' | b' ' | b'\t' | b'\r' | b'\n'));
        if uri.contains('?') {
            return err("an address with URI headers must be in <>");
        }
        uri
    };
    if split_scheme(uri).is_none() {
        return err("not a URI");
    }
    let params = sc.params()?;
    if !in_list {
        sc.sws();
        if sc.peek() == Some(b',') {
            return err("several values in a single-value header");
        }
    }
    Ok(NameAddr {
        display,
        uri,
        params: params.list,
    })
}

/// The values of a Contact (or Route, Record-Route) header line; `*` is a Contact of its own.
pub fn parse_contacts(text: &str) -> Result<Vec<NameAddr<'_>>, SyntaxError> {
    if text.trim() == "*" {
        return Ok(Vec::new());
    }
    let mut sc = Scanner::new(text);
    let mut out = Vec::new();
    loop {
        out.push(parse_name_addr(&mut sc, true)?);
        if sc.eat(b',') {
            continue;
        }
        sc.sws();
        if !sc.at_end() {
            return err("junk after an address");
        }
        return Ok(out);
    }
}

/// The CSeq header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CSeq<'a> {
    pub number: u32,
    pub method: &'a str,
}

impl<'a> CSeq<'a> {
    pub fn parse(text: &'a str) -> Result<Self, SyntaxError> {
        let mut sc = Scanner::new(text);
        sc.sws();
        let digits = sc.take_while(|b| b.is_ascii_digit());
        // RFC 3261 §8.1.1.5: less than 2^31.
        let number = digits
            .parse::<u32>()
            .ok()
            .filter(|&n| n < 1 << 31)
            .ok_or(SyntaxError::Malformed("bad sequence number"))?;
        sc.sws();
        let method = sc.token();
        sc.sws();
        if method.is_empty() || !sc.at_end() {
            return err("bad method");
        }
        Ok(CSeq { number, method })
    }
}

/// Max-Forwards: 0 to 255.
pub fn parse_max_forwards(text: &str) -> Result<u8, SyntaxError> {
    let t = text.trim();
    if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
        return err("not a number");
    }
    t.trim_start_matches('0')
        .parse::<u8>()
        .or_else(|e| {
            if t.bytes().all(|b| b == b'0') {
                Ok(0)
            } else {
                Err(e)
            }
        })
        .map_err(|_| SyntaxError::Malformed("over 255"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vias_with_tortuous_white_space() {
        let text = "SIP  / 2.0  / TCP     spindle.example.com   ;\r\n  branch  =   z9hG4bK9ikj8  ,\r\n SIP  /    2.0   / UDP  192.168.255.111   ; branch=\r\n z9hG4bK30239";
        let vias: Vec<Via<'_>> = split_vias(text, 100)
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(vias.len(), 2);
        assert_eq!(
            (vias[0].transport, vias[0].host, vias[0].branch()),
            ("TCP", "spindle.example.com", Some("z9hG4bK9ikj8"))
        );
        assert_eq!(
            (vias[1].transport, vias[1].host, vias[1].branch()),
            ("UDP", "192.168.255.111", Some("z9hG4bK30239"))
        );
        assert_eq!(vias[0].range.start, 100);
        let v6 = &split_vias(
            "SIP/2.0/UDP [fd17::3519]:5062;branch=z9hG4bKa;received=fd17::1;rport=5062",
            0,
        )[0];
        assert_eq!(v6.as_ref().unwrap().received(), Some("fd17::1"));
        let v = &split_vias("SIP/2.0/UDP [::1]:5070;rport;branch=z9hG4bKx", 0)[0];
        let v = v.as_ref().unwrap();
        assert_eq!(
            (v.host, v.port, v.rport()),
            ("[::1]", Some(5070), Some(None))
        );
        assert_eq!(
            v.params_end,
            "SIP/2.0/UDP [::1]:5070;rport;branch=z9hG4bKx".len()
        );
        assert!(split_vias("SIP/2.0/UDP 192.0.2.15;;,;,,", 0)
            .iter()
            .any(Result::is_err));
        assert!(split_vias("SIP/7.0/UDP c.example.com", 0)[0].is_err());
    }

    #[test]
    fn name_addrs() {
        let na = NameAddr::parse(
            "\"J Rosenberg \\\\\\\"\"       <sip:jdrosen@example.com>\r\n  ;\r\n  tag = 98asjd8",
        )
        .unwrap();
        assert_eq!(
            (na.uri, na.tag()),
            ("sip:jdrosen@example.com", Some("98asjd8"))
        );
        assert_eq!(
            NameAddr::parse("caller<sip:caller@example.com>;tag=323")
                .unwrap()
                .tag(),
            Some("323")
        );
        assert_eq!(
            NameAddr::parse("sip:caller@example.net;tag=134")
                .unwrap()
                .uri,
            "sip:caller@example.net"
        );
        assert_eq!(
            NameAddr::parse("T. Watson <sip:t.watson@example.org>")
                .unwrap()
                .display,
            Some("T. Watson")
        );
        assert!(NameAddr::parse("<http://www.example.com>;tag=3234233").is_ok());
        assert!(NameAddr::parse("\"Mr. J. User <sip:j.user@example.com>").is_err());
        assert!(NameAddr::parse("\"Watson, Thomas\" < sip:t.watson@example.org >").is_err());
        assert!(NameAddr::parse("Bell, Alexander <sip:a.g.bell@example.com>;tag=43").is_err());
        assert!(parse_contacts("\"Joe\" <sip:joe@example.org>;;;;").is_err());
        assert!(parse_contacts("sip:user@example.com?Route=%3Csip:sip.example.com%3E").is_err());
        assert_eq!(
            parse_contacts("<sip:a@b>, <sip:c@d>;q=0.5").unwrap().len(),
            2
        );
        assert!(parse_contacts("*").unwrap().is_empty());
    }

    #[test]
    fn cseq_and_max_forwards() {
        assert_eq!(
            CSeq::parse("0009\r\n  INVITE").unwrap(),
            CSeq {
                number: 9,
                method: "INVITE"
            }
        );
        assert!(CSeq::parse("36893488147419103232 REGISTER").is_err());
        assert!(CSeq::parse("8").is_err());
        assert_eq!(parse_max_forwards("0068"), Ok(68));
        assert_eq!(parse_max_forwards("0"), Ok(0));
        assert!(parse_max_forwards("300").is_err());
        assert!(parse_max_forwards("-1").is_err());
    }
}
