//! SIP, SIPS and tel URIs (RFC 3261 §19.1, RFC 3966): just enough to route and to read the
//! dialed number. Other schemes are recognised as such and refused where a proxy must route.

use super::lex::SyntaxError;
// Defined in `lex`; still reachable here, where they used to be.
pub use super::lex::{split_host_port, split_scheme};

/// A parsed URI; every part borrows from the text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Uri<'a> {
    pub scheme: Scheme,
    /// The user part (`sip:`/`sips:`, before `@` and any `:password`) or the number (`tel:`).
    /// URI parameters inside the user part (`;npdi;rn=`, RFC 4694) are kept: they are the
    /// dialed number's clean-up to set aside.
    pub user: Option<&'a str>,
    /// The host (`[...]` for IPv6, brackets kept); empty for `tel:`.
    pub host: &'a str,
    pub port: Option<u16>,
    /// `;name[=value]` parameters after the host (or after the number for `tel:`).
    pub params: &'a str,
    headers: Option<&'a str>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    Sip,
    Sips,
    Tel,
}

impl<'a> Uri<'a> {
    /// Parses a URI of a scheme sipscreen routes; another well-formed scheme gives
    /// [`SyntaxError::UnsupportedScheme`] (416 for a Request-URI).
    pub fn parse(text: &'a str) -> Result<Self, SyntaxError> {
        let (scheme, rest) = split_scheme(text).ok_or(SyntaxError::Malformed("no URI scheme"))?;
        let scheme = if scheme.eq_ignore_ascii_case("sip") {
            Scheme::Sip
        } else if scheme.eq_ignore_ascii_case("sips") {
            Scheme::Sips
        } else if scheme.eq_ignore_ascii_case("tel") {
            Scheme::Tel
        } else {
            return Err(SyntaxError::UnsupportedScheme);
        };
        if rest
            .bytes()
            .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
        {
            return Err(SyntaxError::Malformed("white space in a URI"));
        }
        if scheme == Scheme::Tel {
            let (number, params) = rest.split_once(';').map_or((rest, ""), |(n, p)| (n, p));
            if number.is_empty() {
                return Err(SyntaxError::Malformed("empty tel: number"));
            }
            return Ok(Uri {
                scheme,
                user: Some(number),
                host: "",
                port: None,
                params,
                headers: None,
            });
        }
        let (userinfo, hostpart) = match rest.find('@') {
            Some(at) => (Some(&rest[..at]), &rest[at + 1..]),
            None => (None, rest),
        };
        let user = userinfo.map(|u| u.split_once(':').map_or(u, |(user, _password)| user));
        let (hostport_params, headers) = match hostpart.split_once('?') {
            Some((hp, h)) => (hp, Some(h)),
            None => (hostpart, None),
        };
        let (hostport, params) = hostport_params
            .split_once(';')
            .map_or((hostport_params, ""), |(h, p)| (h, p));
        let (host, port) = split_host_port(hostport)?;
        Ok(Uri {
            scheme,
            user,
            host,
            port,
            params,
            headers,
        })
    }

    /// Whether the URI carries `?headers`.
    pub fn has_headers(&self) -> bool {
        self.headers.is_some()
    }

    /// A header carried in the URI (`?Reason=SIP%3Bcause%3D302`), still escaped.
    pub fn header(&self, name: &str) -> Option<&'a str> {
        self.headers?.split('&').find_map(|h| {
            let (n, v) = h.split_once('=')?;
            n.eq_ignore_ascii_case(name).then_some(v)
        })
    }

    /// A URI parameter's value (`Some("")` for a parameter without value).
    pub fn param(&self, name: &str) -> Option<&'a str> {
        self.params.split(';').find_map(|p| {
            let (n, v) = p.split_once('=').map_or((p, ""), |(n, v)| (n, v));
            n.trim().eq_ignore_ascii_case(name).then_some(v.trim())
        })
    }

    /// The host without IPv6 brackets.
    pub fn host_unbracketed(&self) -> &'a str {
        self.host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(self.host)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sip_and_tel_uris() {
        let u = Uri::parse("sip:+12125550100;npdi;rn=+12125550000@example.com;user=phone").unwrap();
        assert_eq!(u.user, Some("+12125550100;npdi;rn=+12125550000"));
        assert_eq!(u.host, "example.com");
        assert_eq!(u.param("user"), Some("phone"));
        let t = Uri::parse("tel:+14155550100;phone-context=example.com").unwrap();
        assert_eq!((t.scheme, t.user), (Scheme::Tel, Some("+14155550100")));
        let v6 = Uri::parse("sip:1001@[::1]:5070;lr").unwrap();
        assert_eq!(
            (v6.host_unbracketed(), v6.port, v6.param("lr")),
            ("::1", Some(5070), Some(""))
        );
        let semi = Uri::parse("sip:user;par=u%40example.net@example.com").unwrap();
        assert_eq!(semi.user, Some("user;par=u%40example.net"));
        assert!(
            Uri::parse("sip:user@example.com?Route=%3Csip:example.com%3E")
                .unwrap()
                .has_headers()
        );
        assert_eq!(
            Uri::parse("soap.beep://192.0.2.103:3002"),
            Err(SyntaxError::UnsupportedScheme)
        );
        assert_eq!(
            Uri::parse("nobodyKnowsThisScheme:totallyopaquecontent"),
            Err(SyntaxError::UnsupportedScheme)
        );
        assert!(Uri::parse("<sip:user@example.com>").is_err());
        assert!(Uri::parse("sip:user@exa mple.com").is_err());
        assert!(Uri::parse("sip:user@host:99999").is_err());
    }
}
