//! The proxy's own settings (SPEC §2, §6, §7, §9.3): `[server]` (listen addresses, the
//! default next hop, trusted peers, Record-Route, the Reason of a 403, the log format),
//! `[limits]` and `[pin]` (the PIN flow: attempts, digits, timeouts, prompt, RTP ports, dial
//! prefix, lockout).

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use toml::Spanned;

use super::checker::Checker;
use super::raw::{RawLimits, RawLockout, RawPin, RawServer, Str};
use super::values::{parse_cidr, parse_hop, parse_peer};
use crate::media::prompt::Prompt;
use crate::policy::HopId;
use crate::proxy::{Limits, Lockout, PerSource, PinSettings, Server};

/// `[server]`, and the default next hop (the first of the table of hops).
pub(super) fn check_server(
    ck: &mut Checker<'_>,
    s: &Spanned<RawServer>,
) -> Option<(Server, HopId)> {
    let c = "server";
    let raw = s.get_ref();
    let mut listen = Vec::new();
    if let Some(l) = ck.required(&raw.listen, "listen", &s.span(), c) {
        if l.get_ref().is_empty() {
            ck.error(
                Some(&l.span()),
                c,
                "`listen` must name at least one address",
            );
        }
        for entry in l.get_ref() {
            listen.extend(parse_peer(ck, entry, "listen", c));
        }
    }
    let next_hop = ck
        .required(&raw.next_hop, "next_hop", &s.span(), c)
        .and_then(|n| parse_hop(ck, n, c));
    let trusted_peers = raw
        .trusted_peers
        .iter()
        .filter_map(|p| parse_cidr(ck, p, "trusted_peers", c))
        .collect();
    let dns = raw
        .dns
        .as_ref()
        .map(|d| check_dns(ck, d, c))
        .unwrap_or_default();
    let probe_interval = ck.positive(&raw.probe_interval_s, 10, "probe_interval_s", c);
    if probe_interval > 3600 {
        if let Some(p) = &raw.probe_interval_s {
            ck.error(
                Some(&p.span()),
                c,
                "`probe_interval_s` must be at most 3600 (an hour)",
            );
        }
    }
    let down_after = ck.positive(&raw.down_after, 3, "down_after", c);
    let reject_reason = match &raw.reject_reason {
        Some(r) if r.get_ref().contains(['\r', '\n']) => {
            ck.error(Some(&r.span()), c, "`reject_reason` must be one line");
            String::new()
        }
        Some(r) => r.get_ref().clone(),
        None => "Q.850;cause=21".to_owned(),
    };
    Some((
        Server {
            listen,
            hops: Vec::new(),
            down_after,
            probe_interval: secs(probe_interval),
            dns,
            trusted_peers,
            record_route: raw.record_route.unwrap_or(true),
            reject_reason,
        },
        next_hop?,
    ))
}

/// `dns`: the servers next hop names are looked up with, `IP` (port 53) or `IP:PORT`.
fn check_dns(ck: &mut Checker<'_>, d: &Spanned<Vec<Str>>, c: &str) -> Vec<SocketAddr> {
    if d.get_ref().is_empty() {
        ck.error(
            Some(&d.span()),
            c,
            "`dns` must name at least one server (leave it out to use the system's)",
        );
    }
    let mut out = Vec::new();
    for entry in d.get_ref() {
        let v = entry.get_ref();
        let parsed = v
            .parse::<SocketAddr>()
            .ok()
            .or_else(|| v.parse::<IpAddr>().ok().map(|ip| SocketAddr::new(ip, 53)))
            .filter(|a| a.port() != 0 && !a.ip().is_unspecified());
        match parsed {
            Some(a) => out.push(a),
            None => ck.error(
                Some(&entry.span()),
                c,
                format!("`dns`: `{v}` is not a DNS server's IP or IP:PORT (IPv6 as [::1]:53)"),
            ),
        }
    }
    out
}

/// How `sipscreen run` writes its log (SPEC §9.3): readable lines for a terminal, or one JSON
/// object per line for a log shipper. `--log-format` overrides the file's choice.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;

    /// `text` or `json`, as both the file and the command line write them.
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err(format!("`{s}` is neither \"text\" nor \"json\"")),
        }
    }
}

/// `server.log_format`; the default (text) when `[server]` or the key is missing.
pub(super) fn check_log_format(ck: &mut Checker<'_>, s: Option<&Spanned<RawServer>>) -> LogFormat {
    let Some(f) = s.and_then(|s| s.get_ref().log_format.as_ref()) else {
        return LogFormat::default();
    };
    f.get_ref().parse().unwrap_or_else(|e| {
        ck.error(Some(&f.span()), "server", format!("`log_format`: {e}"));
        LogFormat::default()
    })
}

pub(super) fn check_limits(ck: &mut Checker<'_>, raw: Option<&Spanned<RawLimits>>) -> Limits {
    let d = Limits::default();
    let Some(raw) = raw.map(Spanned::get_ref) else {
        return d;
    };
    let c = "limits";
    let size = ck.positive(
        &raw.max_message_size,
        d.max_message_size as u32,
        "max_message_size",
        c,
    );
    if !(1024..=1 << 20).contains(&size) {
        if let Some(s) = &raw.max_message_size {
            ck.error(
                Some(&s.span()),
                c,
                "`max_message_size` must be between 1024 and 1048576 bytes",
            );
        }
    }
    let secs = |ck: &mut Checker<'_>, v: &Option<Spanned<i64>>, d: Duration, key: &str| {
        Duration::from_secs(u64::from(ck.positive(v, d.as_secs() as u32, key, c)))
    };
    let per_source = raw.per_source.as_ref().map_or(d.per_source, |p| {
        let (p, pc) = (p.get_ref(), "limits.per_source");
        let ds = d.per_source;
        PerSource {
            requests_per_s: ck.positive(&p.requests_per_s, ds.requests_per_s, "requests_per_s", pc),
            burst: ck.positive(&p.burst, ds.burst, "burst", pc),
            ban: Duration::from_secs(u64::from(ck.positive(
                &p.ban_s,
                ds.ban.as_secs() as u32,
                "ban_s",
                pc,
            ))),
        }
    });
    Limits {
        max_dialogs: ck.positive(&raw.max_dialogs, d.max_dialogs as u32, "max_dialogs", c) as usize,
        invite_timeout: secs(
            ck,
            &raw.invite_timeout_s,
            d.invite_timeout,
            "invite_timeout_s",
        ),
        max_dialed_length: ck.positive(
            &raw.max_dialed_length,
            d.max_dialed_length as u32,
            "max_dialed_length",
            c,
        ) as usize,
        dialog_timeout: secs(
            ck,
            &raw.dialog_timeout_s,
            d.dialog_timeout,
            "dialog_timeout_s",
        ),
        per_source,
        max_message_size: size as usize,
        max_transactions: ck.positive(
            &raw.max_transactions,
            d.max_transactions as u32,
            "max_transactions",
            c,
        ) as usize,
        max_tcp_connections: ck.positive(
            &raw.max_tcp_connections,
            d.max_tcp_connections as u32,
            "max_tcp_connections",
            c,
        ) as usize,
        tcp_idle_timeout: Duration::from_secs(u64::from(ck.positive(
            &raw.tcp_idle_timeout_s,
            d.tcp_idle_timeout.as_secs() as u32,
            "tcp_idle_timeout_s",
            c,
        ))),
    }
}

pub(super) fn check_pin(
    ck: &mut Checker<'_>,
    p: Option<&Spanned<RawPin>>,
    base: &Path,
) -> Option<PinSettings> {
    let c = "pin";
    let empty = RawPin {
        attempts: None,
        max_digits: None,
        first_digit_timeout_s: None,
        inter_digit_timeout_s: None,
        prompt: None,
        rtp_ports: None,
        dial_prefix: None,
        lockout: None,
    };
    let raw = p.map_or(&empty, |p| p.get_ref());
    let attempts = ck.positive(&raw.attempts, 3, "attempts", c);
    let max_digits = ck.positive(&raw.max_digits, 16, "max_digits", c);
    if max_digits > 40 {
        if let Some(m) = &raw.max_digits {
            ck.error(
                Some(&m.span()),
                c,
                "`max_digits` must be at most 40 (the longest password)",
            );
        }
    }
    let first = ck.positive(&raw.first_digit_timeout_s, 10, "first_digit_timeout_s", c);
    let inter = ck.positive(&raw.inter_digit_timeout_s, 5, "inter_digit_timeout_s", c);
    let prompt = check_prompt(ck, raw.prompt.as_ref(), base, c);
    let rtp_ports = check_rtp_ports(ck, raw.rtp_ports.as_ref(), c);
    let dial_prefix = raw
        .dial_prefix
        .as_ref()
        .and_then(|d| check_dial_prefix(ck, d, c));
    let lockout = check_lockout(ck, raw.lockout.as_ref());
    Some(PinSettings {
        attempts,
        max_digits,
        first_digit_timeout: secs(first),
        inter_digit_timeout: secs(inter),
        prompt,
        rtp_ports,
        dial_prefix,
        lockout,
    })
}

fn secs(n: u32) -> Duration {
    Duration::from_secs(u64::from(n))
}

/// `prompt`: the built-in tone, or a WAV file, relative to the configuration's folder.
fn check_prompt(ck: &mut Checker<'_>, prompt: Option<&Str>, base: &Path, c: &str) -> Prompt {
    match prompt {
        None => Prompt::tone(),
        Some(s) if s.get_ref() == "tone" => Prompt::tone(),
        Some(s) => {
            let path = base.join(s.get_ref());
            if path.is_file() {
                std::fs::read(&path)
                    .map_err(|e| format!("cannot read {}: {e}", path.display()))
                    .and_then(|bytes| {
                        Prompt::from_wav(&bytes).map_err(|e| format!("{}: {e}", path.display()))
                    })
                    .unwrap_or_else(|e| {
                        ck.error(Some(&s.span()), c, format!("`prompt`: {e}"));
                        Prompt::tone()
                    })
            } else {
                ck.error(
                    Some(&s.span()),
                    c,
                    format!(
                        "`prompt`: `{}` is neither \"tone\" nor a readable file",
                        path.display()
                    ),
                );
                Prompt::tone()
            }
        }
    }
}

/// `rtp_ports`: `LOW-HIGH`, the UDP ports the prompt's media is sent from.
fn check_rtp_ports(ck: &mut Checker<'_>, ports: Option<&Str>, c: &str) -> (u16, u16) {
    match ports {
        None => (40000, 40999),
        Some(r) => {
            let parsed = r.get_ref().split_once('-').and_then(|(a, b)| {
                Some((a.trim().parse::<u16>().ok()?, b.trim().parse::<u16>().ok()?))
            });
            match parsed {
                Some((lo, hi)) if lo > 0 && lo <= hi && (lo..=hi).any(|p| p % 2 == 0) => (lo, hi),
                Some((lo, hi)) if lo > 0 && lo <= hi => {
                    ck.error(
                        Some(&r.span()),
                        c,
                        format!("`rtp_ports` `{lo}-{hi}` has no even port: RTP takes even ports (RFC 3550 §11)"),
                    );
                    (40000, 40999)
                }
                _ => {
                    ck.error(
                        Some(&r.span()),
                        c,
                        format!(
                            "`rtp_ports` must be a range LOW-HIGH of UDP ports, not `{}`",
                            r.get_ref()
                        ),
                    );
                    (40000, 40999)
                }
            }
        }
    }
}

/// `dial_prefix` (SPEC §6 item 1): digits, `*` and `#`.
fn check_dial_prefix(ck: &mut Checker<'_>, d: &Str, c: &str) -> Option<String> {
    let v = d.get_ref();
    if v.is_empty()
        || !v
            .bytes()
            .all(|b| b.is_ascii_digit() || b == b'*' || b == b'#')
    {
        ck.error(
            Some(&d.span()),
            c,
            format!("`dial_prefix` must be digits, `*` or `#`, not `{v}`"),
        );
        return None;
    }
    Some(v.clone())
}

/// `lockout`: how many wrong PINs within a window lock a user out, and for how long.
fn check_lockout(ck: &mut Checker<'_>, lockout: Option<&Spanned<RawLockout>>) -> Lockout {
    let lc = "pin.lockout";
    match lockout {
        None => Lockout {
            failures: 5,
            window: secs(600),
            lock: secs(900),
        },
        Some(l) => {
            let l = l.get_ref();
            Lockout {
                failures: ck.positive(&l.failures, 5, "failures", lc),
                window: secs(ck.positive(&l.window_s, 600, "window_s", lc)),
                lock: secs(ck.positive(&l.lock_s, 900, "lock_s", lc)),
            }
        }
    }
}
