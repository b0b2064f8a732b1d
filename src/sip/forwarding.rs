//! Who forwarded a call: the `Diversion` header (RFC 5806) and `History-Info` (RFC 7044,
//! with RFC 4458's `cause` URI parameter). The proxy believes them only from trusted peers
//! (SPEC §4.7); this module only reads them.

use super::header::parse_contacts;
use super::message::{HeaderName, Message};
use super::uri::Uri;

/// Where the forwarder was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Diversion,
    HistoryInfo,
}

/// The user who forwarded the call most recently.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Forwarder<'a> {
    /// The user part of the forwarding party's URI (still escaped).
    pub user: &'a str,
    pub source: Source,
    /// The diversion reason or History-Info cause, when given.
    pub reason: Option<String>,
}

/// The most recent forwarder: the top-most Diversion entry, else the entry of History-Info
/// that was retargeted last. Malformed values are skipped (never a panic).
pub fn forwarder(msg: &Message) -> Option<Forwarder<'_>> {
    diversion(msg).or_else(|| history_info(msg))
}

fn diversion(msg: &Message) -> Option<Forwarder<'_>> {
    // The most recent diversion is the first value of the first header (RFC 5806 §4).
    let top = msg
        .header_values(HeaderName::Diversion)
        .find_map(|v| parse_contacts(v).ok()?.into_iter().next())?;
    let user = user_of(top.uri)?;
    let reason = top
        .param("reason")
        .flatten()
        .map(|r| r.trim_matches('"').to_owned());
    Some(Forwarder {
        user,
        source: Source::Diversion,
        reason,
    })
}

fn history_info(msg: &Message) -> Option<Forwarder<'_>> {
    let entries: Vec<_> = msg
        .header_values(HeaderName::HistoryInfo)
        .filter_map(|v| parse_contacts(v).ok())
        .flatten()
        .collect();
    // Entry i was reached by forwarding when it says so itself (rc / mp, or a 3xx/4xx
    // `cause` in its URI), or when the entry before it carries a 3xx/4xx Reason; the
    // forwarder is then the entry before it. The last such i is the most recent.
    let forwarding_cause = |code: u16| (300..500).contains(&code);
    let mut found = None;
    for i in 1..entries.len() {
        let this = &entries[i];
        let prev = &entries[i - 1];
        let this_uri = Uri::parse(this.uri).ok();
        let cause_param = this_uri
            .as_ref()
            .and_then(|u| u.param("cause"))
            .and_then(|c| c.parse::<u16>().ok());
        let prev_reason = Uri::parse(prev.uri)
            .ok()
            .and_then(|u| u.header("Reason"))
            .and_then(reason_cause);
        let retargeted = this.param("rc").is_some() || this.param("mp").is_some();
        let cause = cause_param
            .filter(|&c| forwarding_cause(c))
            .or(prev_reason.filter(|&c| forwarding_cause(c)));
        if retargeted || cause.is_some() {
            if let Some(user) = user_of(prev.uri) {
                found = Some(Forwarder {
                    user,
                    source: Source::HistoryInfo,
                    reason: cause.map(|c| c.to_string()),
                });
            }
        }
    }
    found
}

/// The cause code of an escaped `Reason` URI header: `SIP%3Bcause%3D302` → 302.
fn reason_cause(escaped: &str) -> Option<u16> {
    let decoded = crate::percent::decode(escaped);
    let lower = decoded.to_ascii_lowercase();
    let at = lower.find("cause=")?;
    let digits: String = lower[at + 6..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

fn user_of(uri: &str) -> Option<&str> {
    Uri::parse(uri).ok()?.user.filter(|u| !u.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(extra: &str) -> Message {
        let text = format!(
            "INVITE sip:0033612345678@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1\r\nFrom: <sip:+34911111111@pbx>;tag=1\r\nTo: <sip:0033612345678@pbx>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n{extra}Content-Length: 0\r\n\r\n"
        );
        Message::parse(text.as_bytes()).unwrap()
    }

    #[test]
    fn diversion_top_most_value_wins() {
        let m = msg("Diversion: <sip:1002@pbx;user=phone>;reason=unconditional;counter=1;privacy=full, <sip:1001@pbx>;reason=user-busy\r\nDiversion: <sip:1003@pbx>;reason=no-answer\r\n");
        let f = forwarder(&m).unwrap();
        assert_eq!(
            (f.user, f.source, f.reason.as_deref()),
            ("1002", Source::Diversion, Some("unconditional"))
        );
        let quoted = msg("Diversion: \"Bob\" <tel:+34911111112>;reason=\"time-of-day\"\r\n");
        assert_eq!(forwarder(&quoted).unwrap().user, "+34911111112");
    }

    #[test]
    fn history_info_most_recent_retarget() {
        // RFC 7044 style: the Reason of the retargeted entry is escaped in its URI.
        let m = msg("History-Info: <sip:1001@pbx?Reason=SIP%3Bcause%3D302%3Btext%3D%22Moved%22>;index=1, <sip:1002@pbx?Reason=SIP%3Bcause%3D486>;index=1.1;rc=1\r\nHistory-Info: <sip:0033612345678@pbx>;index=1.1.1;rc=1.1\r\n");
        let f = forwarder(&m).unwrap();
        assert_eq!((f.user, f.source), ("1002", Source::HistoryInfo));
        // RFC 4458 style: cause in the new target's URI.
        let m = msg(
            "History-Info: <sip:1001@pbx>;index=1, <sip:0033612345678@pbx;cause=302>;index=1.1\r\n",
        );
        assert_eq!(forwarder(&m).unwrap().user, "1001");
        // No retargeting: no forwarder.
        assert_eq!(
            forwarder(&msg("History-Info: <sip:1001@pbx>;index=1\r\n")),
            None
        );
    }

    #[test]
    fn malformed_values_are_skipped() {
        for bad in [
            "Diversion: garbage;;;\r\n",
            "Diversion: <sip:1002@pbx\r\n",
            "History-Info: <sip:1001@pbx>;index=1, ,,\r\n",
            "History-Info: <>;rc\r\n",
        ] {
            assert_eq!(forwarder(&msg(bad)), None, "{bad}");
        }
        // A malformed Diversion does not hide a good History-Info.
        let m = msg("Diversion: <broken\r\nHistory-Info: <sip:1001@pbx>;index=1, <sip:2@pbx>;index=1.1;mp=1\r\n");
        assert_eq!(forwarder(&m).unwrap().user, "1001");
    }
}
