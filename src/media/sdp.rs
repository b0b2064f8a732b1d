//! SDP offer/answer for the PIN prompt (RFC 4566, RFC 3264): we answer an audio offer with
//! PCMU (else PCMA) and the offer's telephone-event payload type, send-only from our side
//! but able to receive the caller's DTMF events.

use std::net::{IpAddr, SocketAddr};

/// A G.711 codec.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Codec {
    Pcmu,
    Pcma,
}

impl Codec {
    /// The static RTP payload type (RFC 3551).
    pub fn payload_type(self) -> u8 {
        match self {
            Codec::Pcmu => 0,
            Codec::Pcma => 8,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Codec::Pcmu => "PCMU",
            Codec::Pcma => "PCMA",
        }
    }
}

/// What we take from the caller's offer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Offer {
    /// Where the caller receives RTP.
    pub remote: SocketAddr,
    pub codec: Codec,
    /// The caller's telephone-event payload type, if it offered one.
    pub telephone_event: Option<u8>,
    /// The offer's `o=` session id and the media line's protocol, echoed in the answer.
    proto: String,
}

/// Why an offer cannot be answered (488 Not Acceptable Here).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OfferError {
    #[error("no SDP offer")]
    Missing,
    #[error("no audio stream")]
    NoAudio,
    #[error("no usable codec (PCMU or PCMA)")]
    NoCodec,
    #[error("no usable connection address")]
    NoAddress,
}

/// The first audio stream of an offer: port, protocol, payload types, media-level address,
/// and `rtpmap` entries.
type AudioLine = (u16, String, Vec<u8>, Option<IpAddr>, Vec<(u8, String)>);

/// Reads an SDP offer: the first audio stream, its address (media-level `c=` over session
/// level), PCMU preferred over PCMA, and telephone-event/8000.
pub fn parse_offer(body: &[u8]) -> Result<Offer, OfferError> {
    let text = std::str::from_utf8(body).map_err(|_| OfferError::Missing)?;
    if text.trim().is_empty() {
        return Err(OfferError::Missing);
    }
    let mut session_addr: Option<IpAddr> = None;
    let mut media: Option<AudioLine> = None;
    let mut in_audio = false;
    for line in text.lines().map(str::trim_end) {
        let Some((kind, value)) = line.split_once('=') else {
            continue;
        };
        match kind {
            "c" => {
                let addr = value
                    .split_whitespace()
                    .nth(2)
                    .and_then(|a| a.split('/').next())
                    .and_then(|a| a.parse().ok());
                match (&mut media, in_audio) {
                    (Some(m), true) => m.3 = addr,
                    (None, _) => session_addr = addr,
                    _ => {}
                }
            }
            "m" => {
                if media.is_some() {
                    in_audio = false;
                    continue;
                }
                let mut parts = value.split_whitespace();
                let (Some(kind), Some(port), Some(proto)) =
                    (parts.next(), parts.next(), parts.next())
                else {
                    continue;
                };
                if kind == "audio" {
                    let port = port
                        .split('/')
                        .next()
                        .and_then(|p| p.parse().ok())
                        .unwrap_or(0);
                    let pts = parts.filter_map(|p| p.parse().ok()).collect();
                    media = Some((port, proto.to_owned(), pts, None, Vec::new()));
                    in_audio = true;
                } else {
                    in_audio = false;
                }
            }
            "a" if in_audio => {
                if let Some(rest) = value.strip_prefix("rtpmap:") {
                    let mut parts = rest.splitn(2, ' ');
                    if let (Some(pt), Some(enc)) =
                        (parts.next().and_then(|p| p.parse().ok()), parts.next())
                    {
                        if let Some(m) = &mut media {
                            m.4.push((pt, enc.to_ascii_lowercase()));
                        }
                    }
                }
            }
            _ => {}
        }
    }
    let (port, proto, pts, addr, maps) = media.ok_or(OfferError::NoAudio)?;
    if port == 0 {
        return Err(OfferError::NoAudio);
    }
    let named = |name: &str| {
        maps.iter()
            .find(|(pt, enc)| pts.contains(pt) && enc.starts_with(name))
            .map(|(pt, _)| *pt)
    };
    let codec = if pts.contains(&0) {
        Codec::Pcmu
    } else if pts.contains(&8) {
        Codec::Pcma
    } else {
        return Err(OfferError::NoCodec);
    };
    let telephone_event = named("telephone-event/8000");
    let ip = addr
        .or(session_addr)
        .filter(|ip| !ip.is_unspecified())
        .ok_or(OfferError::NoAddress)?;
    Ok(Offer {
        remote: SocketAddr::new(ip, port),
        codec,
        telephone_event,
        proto,
    })
}

/// Our answer: the chosen codec and the caller's telephone-event type, at `local`.
pub fn answer(offer: &Offer, local: SocketAddr, session_id: u64) -> String {
    let ip = local.ip();
    let family = if ip.is_ipv4() { "IP4" } else { "IP6" };
    let c = offer.codec;
    let mut pts = c.payload_type().to_string();
    let mut attrs = format!("a=rtpmap:{} {}/8000\r\n", c.payload_type(), c.name());
    if let Some(te) = offer.telephone_event {
        pts.push_str(&format!(" {te}"));
        attrs.push_str(&format!(
            "a=rtpmap:{te} telephone-event/8000\r\na=fmtp:{te} 0-15\r\n"
        ));
    }
    format!(
        "v=0\r\no=sipscreen {session_id} 1 IN {family} {ip}\r\ns=sipscreen PIN\r\nc=IN {family} {ip}\r\nt=0 0\r\nm=audio {} {} {pts}\r\n{attrs}a=ptime:20\r\na=sendrecv\r\n",
        local.port(),
        offer.proto
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIPP_OFFER: &str = "v=0\r\no=user1 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\n";

    #[test]
    fn answers_pcmu_with_the_offered_event_type() {
        let offer = parse_offer(SIPP_OFFER.as_bytes()).unwrap();
        assert_eq!(
            (offer.remote, offer.codec, offer.telephone_event),
            ("127.0.0.1:6000".parse().unwrap(), Codec::Pcmu, Some(101))
        );
        let a = answer(&offer, "127.0.0.1:40000".parse().unwrap(), 7);
        assert!(a.contains("m=audio 40000 RTP/AVP 0 101\r\n"), "{a}");
        assert!(
            a.contains("a=rtpmap:101 telephone-event/8000\r\n")
                && a.contains("c=IN IP4 127.0.0.1\r\n")
        );
        let back = parse_offer(a.as_bytes()).unwrap();
        assert_eq!(back.remote.port(), 40000);
    }

    #[test]
    fn pcma_only_and_refusals() {
        let pcma = SIPP_OFFER
            .replace("RTP/AVP 0 101", "RTP/AVP 8 96")
            .replace("rtpmap:0 PCMU", "rtpmap:8 PCMA")
            .replace("101", "96");
        let o = parse_offer(pcma.as_bytes()).unwrap();
        assert_eq!((o.codec, o.telephone_event), (Codec::Pcma, Some(96)));
        let g729 = SIPP_OFFER.replace("RTP/AVP 0 101", "RTP/AVP 18");
        assert_eq!(parse_offer(g729.as_bytes()), Err(OfferError::NoCodec));
        assert_eq!(parse_offer(b""), Err(OfferError::Missing));
        assert_eq!(
            parse_offer(b"v=0\r\nm=video 5000 RTP/AVP 31\r\n"),
            Err(OfferError::NoAudio)
        );
        let v6 = SIPP_OFFER.replace("c=IN IP4 127.0.0.1", "c=IN IP6 ::1");
        assert_eq!(
            parse_offer(v6.as_bytes()).unwrap().remote,
            "[::1]:6000".parse().unwrap()
        );
    }
}
