//! Reading a capture file into the transport payloads it carries: the bottom layer of
//! `sipscreen replay` (SPEC §1).
//!
//! Replay feeds the SIP messages of a capture to the same core the proxy runs, so this layer
//! turns a pcap or pcapng file into what a socket would have delivered: UDP datagrams and
//! TCP stream bytes, with their addresses and the capture's time. It knows nothing of SIP.
//!
//! The layers it peels, from the file down:
//! - the file format, pcap (both byte orders, micro- and nanosecond) or pcapng (any
//!   timestamp resolution), told apart by the magic number, read with `pcap-file`;
//! - the link layer: Ethernet (with 802.1Q/802.1ad VLAN tags), Linux cooked capture v1 and
//!   v2, BSD loopback (`NULL`, either byte order, and `LOOP`) and raw IP;
//! - IPv4 and IPv6 (RFC 791, RFC 8200), with fragments reassembled (etherparse's
//!   `IpDefragPool`) and IP-in-IP tunnels (protocols 4 and 41, RFC 2003, RFC 4213) unwrapped;
//! - UDP, and TCP with each direction reassembled by sequence number (the private
//!   `replay::tcp`).
//!
//! A file that cannot be read to its end is an error that names the file and the byte
//! offset where reading failed: a replay of half a capture would be silently wrong. A packet
//! that cannot be decoded is a different matter: captures are full of them (truncated by the
//! snap length, mangled), so each one is skipped and counted, never fatal.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use etherparse::defrag::{IpDefragError, IpDefragPool};
use etherparse::{EtherType, IpNumber, NetSlice, SlicedPacket, TcpSlice, UdpSlice};
use pcap_file::pcap::PcapParser;
use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionOption;
use pcap_file::pcapng::{Block, PcapNgParser};
use pcap_file::{DataLink, PcapError, TsResolution};
use thiserror::Error;

use super::tcp::{Segment, Streams};
// Defined in `payload`; still reachable here, where they used to be.
pub use super::payload::{Payload, Transport};

/// A capture that could not be read. Each names the file and, when the file itself is at
/// fault, the byte offset where reading failed.
#[derive(Debug, Error)]
pub enum CaptureError {
    #[error("{file}: cannot read: {source}")]
    Io {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}: empty file, not a capture")]
    Empty { file: String },
    #[error("{file}: not a pcap or pcapng capture (magic number {magic:#010x} at offset 0)")]
    BadMagic { file: String, magic: u32 },
    #[error("{file}: truncated {what} at offset {offset} (only {left} bytes left)")]
    Truncated {
        file: String,
        what: &'static str,
        offset: usize,
        left: usize,
    },
    #[error("{file}: invalid {what} at offset {offset}: {reason}")]
    Invalid {
        file: String,
        what: &'static str,
        offset: usize,
        reason: String,
    },
    #[error(
        "{file}: unsupported link type {link_type} at offset {offset} (sipscreen reads \
         Ethernet, Linux cooked, loopback and raw IP captures)"
    )]
    UnsupportedLinkType {
        file: String,
        link_type: u32,
        offset: usize,
    },
}

/// A whole capture, decoded: its payloads in capture order and what could not be used.
#[derive(Debug, Clone, Default)]
pub struct Capture {
    payloads: Vec<Payload>,
    packets: usize,
    skipped: usize,
}

/// pcapng's Section Header Block type, which is also the first four bytes of every pcapng.
const PCAPNG_MAGIC: u32 = 0x0A0D_0D0A;
/// pcap magic numbers as read big-endian: micro- and nanosecond, in either byte order.
const PCAP_MAGICS: [u32; 4] = [0xA1B2_C3D4, 0xD4C3_B2A1, 0xA1B2_3C4D, 0x4D3C_B2A1];
/// Where the link type sits in a pcap file header.
const PCAP_LINK_TYPE_OFFSET: usize = 20;

/// Fragments of a datagram whose other fragments have not come for this long are dropped,
/// as a receiving host would (Linux's `ipfrag_time` is 30 s; RFC 791 suggests 15 s).
const FRAGMENT_TIMEOUT: Duration = Duration::from_secs(30);
/// IP-in-IP nested deeper than this is taken as garbage rather than unwrapped forever.
const MAX_TUNNEL_DEPTH: u8 = 4;

impl Capture {
    /// Reads a whole capture file, pcap or pcapng (told apart by the magic number).
    pub fn read(path: &Path) -> Result<Capture, CaptureError> {
        let file = path.display().to_string();
        match std::fs::read(path) {
            Ok(bytes) => Capture::from_bytes(&file, &bytes),
            Err(source) => Err(CaptureError::Io { file, source }),
        }
    }

    /// Decodes a capture held in memory; `file` is the name errors give.
    pub fn from_bytes(file: &str, bytes: &[u8]) -> Result<Capture, CaptureError> {
        let Some(&[a, b, c, d]) = bytes.get(..4) else {
            return Err(if bytes.is_empty() {
                CaptureError::Empty { file: file.into() }
            } else {
                truncated(file, "file header", 0, bytes.len())
            });
        };
        let magic = u32::from_be_bytes([a, b, c, d]);
        let mut decoder = Decoder::default();
        if magic == PCAPNG_MAGIC {
            read_pcapng(file, bytes, &mut decoder)?;
        } else if PCAP_MAGICS.contains(&magic) {
            read_pcap(file, bytes, &mut decoder)?;
        } else {
            return Err(CaptureError::BadMagic {
                file: file.into(),
                magic,
            });
        }
        Ok(decoder.finish())
    }

    /// UDP datagrams (after IP reassembly) and TCP stream bytes (after TCP reassembly), in
    /// the order the capture delivered them.
    pub fn payloads(&self) -> &[Payload] {
        &self.payloads
    }

    /// The payloads, owned.
    pub fn into_payloads(self) -> Vec<Payload> {
        self.payloads
    }

    /// Packet records in the file, whatever they held.
    pub fn packets(&self) -> usize {
        self.packets
    }

    /// Packets that could not be decoded (bad headers, cut short by the snap length, an
    /// interface of a link type sipscreen does not read) and IP datagrams whose fragments
    /// never all arrived (one each). Packets that decode to something other than UDP or TCP
    /// (ARP, ICMP) are not skipped, just not payloads.
    pub fn skipped(&self) -> usize {
        self.skipped
    }
}

fn truncated(file: &str, what: &'static str, offset: usize, left: usize) -> CaptureError {
    CaptureError::Truncated {
        file: file.into(),
        what,
        offset,
        left,
    }
}

/// Turns a `pcap-file` error at `offset` (with `left` bytes from there) into ours.
fn format_error(
    file: &str,
    what: &'static str,
    offset: usize,
    left: usize,
    error: PcapError,
) -> CaptureError {
    match error {
        PcapError::IncompleteBuffer => truncated(file, what, offset, left),
        other => CaptureError::Invalid {
            file: file.into(),
            what,
            offset,
            reason: other.to_string(),
        },
    }
}

/// Offset of `rest` within `whole`, `rest` being a tail of it.
fn offset_in(whole: &[u8], rest: &[u8]) -> usize {
    whole.len() - rest.len()
}

fn read_pcap(file: &str, bytes: &[u8], decoder: &mut Decoder) -> Result<(), CaptureError> {
    let (mut rest, parser) = PcapParser::new(bytes)
        .map_err(|e| format_error(file, "pcap file header", 0, bytes.len(), e))?;
    let header = parser.header();
    let link =
        Link::from_number(u32::from(header.datalink)).ok_or(CaptureError::UnsupportedLinkType {
            file: file.into(),
            link_type: u32::from(header.datalink),
            offset: PCAP_LINK_TYPE_OFFSET,
        })?;
    let nanos_per_tick = match header.ts_resolution {
        TsResolution::MicroSecond => 1_000,
        TsResolution::NanoSecond => 1,
    };
    while !rest.is_empty() {
        let offset = offset_in(bytes, rest);
        // The raw record, not `next_packet`: that one rejects records whose original length
        // exceeds the snap length, which is exactly what a snap-length cut looks like.
        let (next, record) = parser
            .next_raw_packet(rest)
            .map_err(|e| format_error(file, "packet record", offset, rest.len(), e))?;
        rest = next;
        // A fraction past one second is out of spec, but carrying it over loses nothing.
        let time = Duration::from_secs(u64::from(record.ts_sec))
            + Duration::from_nanos(u64::from(record.ts_frac) * nanos_per_tick);
        decoder.packet(time, Some(link), &record.data, offset);
    }
    Ok(())
}

/// What pcapng says about one interface, as needed to read its packets.
#[derive(Debug, Clone, Copy)]
struct Interface {
    /// `None` for a link type sipscreen does not read: its packets are skipped.
    link: Option<Link>,
    /// `if_tsresol` (default 6: microseconds).
    tsresol: u8,
    /// `if_tsoffset`, seconds added to every timestamp.
    tsoffset: u64,
}

impl Interface {
    fn time(&self, ticks: u64) -> Duration {
        ticks_to_duration(ticks, self.tsresol).saturating_add(Duration::from_secs(self.tsoffset))
    }
}

/// A pcapng timestamp in units of `if_tsresol`: 10^-n seconds, or 2^-n when the top bit is
/// set (pcapng §4.2).
fn ticks_to_duration(ticks: u64, tsresol: u8) -> Duration {
    let exponent = u32::from(tsresol & 0x7F);
    let ticks = u128::from(ticks);
    let per_second = if tsresol & 0x80 == 0 {
        10u128.checked_pow(exponent)
    } else {
        2u128.checked_pow(exponent)
    };
    let Some(per_second) = per_second else {
        return Duration::ZERO;
    };
    let secs = u64::try_from(ticks / per_second).unwrap_or(u64::MAX);
    // Below one second, so this fits in u32.
    let nanos = (ticks % per_second) * 1_000_000_000 / per_second;
    Duration::new(secs, u32::try_from(nanos).unwrap_or(0))
}

fn read_pcapng(file: &str, bytes: &[u8], decoder: &mut Decoder) -> Result<(), CaptureError> {
    let (mut rest, mut parser) = PcapNgParser::new(bytes)
        .map_err(|e| format_error(file, "pcapng section header block", 0, bytes.len(), e))?;
    // Kept by us rather than read from the parser's own list, which pcap-file fills as
    // blocks go by: only the few fields needed, and no borrow of the parser.
    let mut interfaces: Vec<Interface> = Vec::new();
    let mut last_time = Duration::ZERO;
    while !rest.is_empty() {
        let offset = offset_in(bytes, rest);
        let (next, block) = parser
            .next_block(rest)
            .map_err(|e| format_error(file, "pcapng block", offset, rest.len(), e))?;
        rest = next;
        // The packet's interface, raw timestamp (when it has one), and bytes.
        let (interface_id, ticks, data) = match &block {
            Block::SectionHeader(_) => {
                interfaces.clear();
                continue;
            }
            Block::InterfaceDescription(idb) => {
                let mut interface = Interface {
                    link: Link::from_number(u32::from(idb.linktype)),
                    tsresol: 6,
                    tsoffset: 0,
                };
                for option in &idb.options {
                    match option {
                        InterfaceDescriptionOption::IfTsResol(r) => interface.tsresol = *r,
                        InterfaceDescriptionOption::IfTsOffset(o) => interface.tsoffset = *o,
                        _ => {}
                    }
                }
                interfaces.push(interface);
                continue;
            }
            // pcap-file stores the raw 64-bit timestamp as if it were nanoseconds; the
            // interface's resolution says what it really counts.
            Block::EnhancedPacket(epb) => (
                epb.interface_id,
                u64::try_from(epb.timestamp.as_nanos()).ok(),
                &epb.data,
            ),
            Block::Packet(pb) => (u32::from(pb.interface_id), Some(pb.timestamp), &pb.data),
            // A Simple Packet Block has no timestamp and belongs to the first interface.
            Block::SimplePacket(spb) => (0, None, &spb.data),
            _ => continue,
        };
        match interfaces.get(interface_id as usize) {
            Some(interface) => {
                let time = ticks.map_or(last_time, |t| interface.time(t));
                last_time = time;
                decoder.packet(time, interface.link, data, offset);
            }
            // A packet of an interface never described cannot be decoded.
            None => decoder.packet(last_time, None, data, offset),
        }
    }
    Ok(())
}

/// The link layers sipscreen reads, by their LINKTYPE_ number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    /// 1.
    Ethernet,
    /// 113: Linux cooked capture v1 (`tcpdump -i any`).
    LinuxSll,
    /// 276: Linux cooked capture v2.
    LinuxSll2,
    /// 0: BSD loopback, a 4-byte address family in the capturing host's byte order.
    Null,
    /// 108: OpenBSD loopback, the same family in network byte order.
    Loop,
    /// 101 (and DLT_RAW's 12, which some old writers put in files), 228, 229: raw IP.
    RawIp,
}

impl Link {
    fn from_number(number: u32) -> Option<Link> {
        match DataLink::from(number) {
            DataLink::ETHERNET => Some(Link::Ethernet),
            DataLink::LINUX_SLL => Some(Link::LinuxSll),
            DataLink::LINUX_SLL2 => Some(Link::LinuxSll2),
            DataLink::NULL => Some(Link::Null),
            DataLink::LOOP => Some(Link::Loop),
            DataLink::RAW | DataLink::IPV4 | DataLink::IPV6 => Some(Link::RawIp),
            _ if number == 12 => Some(Link::RawIp),
            _ => None,
        }
    }
}

/// Why one packet was skipped; logged at debug level, and counted.
#[derive(Debug, Error)]
enum Undecodable {
    #[error("the interface's link type is not one sipscreen reads")]
    LinkType,
    #[error("link-layer header cut short")]
    ShortLinkHeader,
    #[error(transparent)]
    Slice(#[from] etherparse::err::packet::SliceError),
    #[error("IP fragment: {0}")]
    Fragment(#[from] IpDefragError),
    #[error("UDP: {0}")]
    Udp(#[from] etherparse::err::LenError),
    #[error("TCP: {0}")]
    Tcp(#[from] etherparse::err::tcp::HeaderSliceError),
    #[error("IP-in-IP nested deeper than {MAX_TUNNEL_DEPTH}")]
    TunnelTooDeep,
}

/// When the latest fragment of an incomplete datagram came, and in which packet record.
#[derive(Debug, Clone, Copy)]
struct FragmentSeen {
    time: Duration,
    packet: usize,
}

/// The decoding state across packets: fragments waiting for the rest of their datagram,
/// TCP streams, and what came out so far.
#[derive(Default)]
struct Decoder {
    defrag: IpDefragPool<FragmentSeen, ()>,
    streams: Streams,
    payloads: Vec<Payload>,
    packets: usize,
    skipped: usize,
    last_time: Duration,
}

impl Decoder {
    /// Takes one packet record (its file offset is for the log only).
    fn packet(&mut self, time: Duration, link: Option<Link>, data: &[u8], offset: usize) {
        self.packets += 1;
        self.last_time = time;
        self.expire_fragments(time);
        if let Err(reason) = self.decode(time, link, data) {
            self.skipped += 1;
            tracing::debug!(packet = self.packets, offset, %reason, "packet skipped");
        }
    }

    /// Drops the datagrams whose fragments stopped coming, counting each as skipped.
    fn expire_fragments(&mut self, now: Duration) {
        self.drop_fragments(|last| now.saturating_sub(last) >= FRAGMENT_TIMEOUT);
    }

    /// Drops the incomplete datagrams whose last fragment came at a time `expired` says
    /// yes to, and counts them as skipped.
    fn drop_fragments(&mut self, expired: impl Fn(Duration) -> bool) {
        // The pool may ask about one datagram more than once, so datagrams are counted by
        // their last fragment's packet number, which no other datagram can share.
        let dropped = RefCell::new(BTreeSet::new());
        self.defrag.retain(|last: &FragmentSeen| {
            let drop = expired(last.time);
            if drop {
                dropped.borrow_mut().insert(last.packet);
            }
            !drop
        });
        self.skipped += dropped.into_inner().len();
    }

    fn finish(mut self) -> Capture {
        self.drop_fragments(|_| true);
        self.streams.finish(self.last_time, &mut self.payloads);
        Capture {
            payloads: self.payloads,
            packets: self.packets,
            skipped: self.skipped,
        }
    }

    fn decode(
        &mut self,
        time: Duration,
        link: Option<Link>,
        data: &[u8],
    ) -> Result<(), Undecodable> {
        let sliced = match link.ok_or(Undecodable::LinkType)? {
            Link::Ethernet => SlicedPacket::from_ethernet(data)?,
            // SLL: packet type, ARPHRD type, address length, 8 address bytes, protocol.
            Link::LinuxSll => {
                let protocol = be_u16(data, 14)?;
                let rest = data.get(16..).ok_or(Undecodable::ShortLinkHeader)?;
                SlicedPacket::from_ether_type(EtherType(protocol), rest)?
            }
            // SLL2: protocol, reserved, interface index, ARPHRD type, packet type, address
            // length, 8 address bytes.
            Link::LinuxSll2 => {
                let protocol = be_u16(data, 0)?;
                let rest = data.get(20..).ok_or(Undecodable::ShortLinkHeader)?;
                SlicedPacket::from_ether_type(EtherType(protocol), rest)?
            }
            Link::Null | Link::Loop => {
                let Some(&[a, b, c, d]) = data.get(..4) else {
                    return Err(Undecodable::ShortLinkHeader);
                };
                let family = [a, b, c, d];
                let family = if link == Some(Link::Loop) {
                    u32::from_be_bytes(family)
                } else {
                    // The writer's byte order is unknown, but families are small numbers:
                    // whichever reading keeps the top half zero is the right one.
                    let little = u32::from_le_bytes(family);
                    if little > 0xFFFF {
                        u32::from_be_bytes(family)
                    } else {
                        little
                    }
                };
                // AF_INET is 2 everywhere; AF_INET6 is 24, 28 or 30 on the BSDs and macOS,
                // 10 on Linux and 23 on Windows. Other families are not IP.
                if !matches!(family, 2 | 10 | 23 | 24 | 28 | 30) {
                    return Ok(());
                }
                SlicedPacket::from_ip(data.get(4..).unwrap_or_default())?
            }
            Link::RawIp => SlicedPacket::from_ip(data)?,
        };
        self.network(time, &sliced, 0)
    }

    /// Takes an IP packet (`depth` tunnels deep): reassembles it if it is a fragment, then
    /// hands its payload on.
    fn network(
        &mut self,
        time: Duration,
        sliced: &SlicedPacket<'_>,
        depth: u8,
    ) -> Result<(), Undecodable> {
        let (src, dst, payload) = match &sliced.net {
            Some(NetSlice::Ipv4(ip)) => (
                IpAddr::V4(ip.header().source_addr()),
                IpAddr::V4(ip.header().destination_addr()),
                ip.payload(),
            ),
            Some(NetSlice::Ipv6(ip)) => (
                IpAddr::V6(ip.header().source_addr()),
                IpAddr::V6(ip.header().destination_addr()),
                ip.payload(),
            ),
            // ARP, or an EtherType that is not IP.
            Some(NetSlice::Arp(_)) | None => return Ok(()),
        };
        if !payload.fragmented {
            return self.transport(time, src, dst, payload.ip_number, payload.payload, depth);
        }
        let seen = FragmentSeen {
            time,
            packet: self.packets,
        };
        match self.defrag.process_sliced_packet(sliced, seen, ())? {
            Some(datagram) => {
                let result =
                    self.transport(time, src, dst, datagram.ip_number, &datagram.payload, depth);
                self.defrag.return_buf(datagram);
                result
            }
            None => Ok(()),
        }
    }

    /// Takes the payload of a whole IP datagram: UDP, TCP, or another IP packet (a tunnel).
    fn transport(
        &mut self,
        time: Duration,
        src: IpAddr,
        dst: IpAddr,
        protocol: IpNumber,
        bytes: &[u8],
        depth: u8,
    ) -> Result<(), Undecodable> {
        match protocol {
            IpNumber::UDP => {
                let udp = UdpSlice::from_slice(bytes)?;
                if !udp.payload().is_empty() {
                    self.payloads.push(Payload {
                        time,
                        src: SocketAddr::new(src, udp.source_port()),
                        dst: SocketAddr::new(dst, udp.destination_port()),
                        transport: Transport::Udp,
                        bytes: udp.payload().to_vec(),
                        after_gap: false,
                    });
                }
                Ok(())
            }
            IpNumber::TCP => {
                let tcp = TcpSlice::from_slice(bytes)?;
                let segment = Segment {
                    seq: tcp.sequence_number(),
                    syn: tcp.syn(),
                    rst: tcp.rst(),
                    data: tcp.payload(),
                };
                self.streams.segment(
                    time,
                    SocketAddr::new(src, tcp.source_port()),
                    SocketAddr::new(dst, tcp.destination_port()),
                    segment,
                    &mut self.payloads,
                );
                Ok(())
            }
            IpNumber::IPV4 | IpNumber::IPV6 => {
                if depth >= MAX_TUNNEL_DEPTH {
                    return Err(Undecodable::TunnelTooDeep);
                }
                let inner = SlicedPacket::from_ip(bytes)?;
                self.network(time, &inner, depth + 1)
            }
            // ICMP, IGMP, ESP...: not what SIP travels on.
            _ => Ok(()),
        }
    }
}

/// The big-endian u16 at `at`, or an error if the link header is shorter.
fn be_u16(data: &[u8], at: usize) -> Result<u16, Undecodable> {
    match data.get(at..at.saturating_add(2)) {
        Some(&[hi, lo]) => Ok(u16::from_be_bytes([hi, lo])),
        _ => Err(Undecodable::ShortLinkHeader),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pcapng_timestamps_follow_the_interface_resolution() {
        assert_eq!(
            ticks_to_duration(1_500_000, 6),
            Duration::from_millis(1_500)
        );
        assert_eq!(ticks_to_duration(1_000_000_123, 9), Duration::new(1, 123));
        assert_eq!(
            ticks_to_duration(3 << 20, 0x80 | 20),
            Duration::from_secs(3)
        );
        assert_eq!(ticks_to_duration(5, 0x80 | 1), Duration::from_millis(2_500));
        assert_eq!(ticks_to_duration(12_345, 0), Duration::from_secs(12_345));
        assert_eq!(ticks_to_duration(u64::MAX, 127), Duration::ZERO);
    }

    #[test]
    fn link_types_by_number() {
        assert_eq!(Link::from_number(1), Some(Link::Ethernet));
        assert_eq!(Link::from_number(0), Some(Link::Null));
        assert_eq!(Link::from_number(108), Some(Link::Loop));
        assert_eq!(Link::from_number(113), Some(Link::LinuxSll));
        assert_eq!(Link::from_number(276), Some(Link::LinuxSll2));
        for raw in [12, 101, 228, 229] {
            assert_eq!(Link::from_number(raw), Some(Link::RawIp));
        }
        assert_eq!(Link::from_number(105), None);
    }
}
