//! Forwarded and incoming calls on the wire (SPEC §4.6, §4.7): a live `sipscreen run` between
//! SIPp callers, a SIPp PBX and a SIPp trunk, all on loopback, with the rules of
//! `tests/forwarding/screening.toml` (the ones the captures of `pcaps/` were recorded with):
//!
//! - alice (1001) may call anything; bob (1002) only French mobiles (Call ACL, default deny);
//!   carol (1003) no 08 number (call permission); the DID +33140000000 refuses one caller;
//! - the PBX that forwards calls sends from 127.0.0.2, a trusted peer; phones send from
//!   127.0.0.1, which is not trusted.
//!
//! What is asserted is what the caller gets (200 or 403), and what reaches the PBX or the
//! trunk: a SIPp UAS whose message log is read, or a socket of the test that must stay silent.
//!
//! SIPp (Debian package `sip-tester`) is required: these tests fail, never skip, without it.
//! The harness is `tests/common`: every process is stopped by its PID, every wait is bounded,
//! sipscreen binds port 0, the PBX's and the trunk's ports are held by the test whenever no
//! SIPp has them, and each test works in its own temporary directory, kept and named when the
//! test fails.

mod common;
use common::net::NextHop;
use common::proxy::Sipscreen;
use common::sipp::{Sipp, SippCommand};
use common::TempDir;
use std::fs;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

/// Phones and the trunk's callers: not a trusted peer.
const PHONE: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
/// The PBX that forwards calls: `trusted_peers = ["127.0.0.2/32"]`.
const PBX_FWD: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

const ALICE: &str = "1001";
const BOB: &str = "1002";
const CAROL: &str = "1003";
/// A French mobile: everyone may call it.
const MOBILE: &str = "0612345678";
/// A French landline: bob's ACL denies it, alice may call it.
const LANDLINE: &str = "0145678901";
/// A premium number: carol's call permission denies it (and bob's ACL).
const PREMIUM: &str = "0899123456";
/// The DID of the incall `main-did`, and the caller its permission blocks.
const DID: &str = "+33140000000";
const BLOCKED_CALLER: &str = "+33698765432";

const WAIT: Duration = Duration::from_secs(15);
/// SIPp's own time limit (`-timeout`) in this suite.
const SIPP_TIMEOUT: Duration = Duration::from_secs(10);

fn scenario(name: &str) -> String {
    common::scenario("forwarding", name)
}

/// The request lines of a SIPp message log (`INVITE sip:... SIP/2.0`, ...), in order.
fn requests(log: &str, method: &str) -> Vec<String> {
    log.lines()
        .map(|l| l.trim_end_matches('\r'))
        .filter(|l| l.starts_with(method) && l.ends_with(" SIP/2.0"))
        .map(str::to_owned)
        .collect()
}

// ---------------------------------------------------------------------------------------
// One proxy with its PBX and trunk.

struct Net {
    proxy: Sipscreen,
    /// `@PBX@`: the PBX (internal and incoming calls), or a user's phone answering 3xx.
    pbx: NextHop,
    /// `@TRUNK@`: the SIP trunk (external calls).
    trunk: NextHop,
    dir: TempDir,
}

/// What a SIPp UAS received.
struct Received {
    log: String,
}

impl Net {
    /// A proxy with the forwarding rules, on port 0, in front of the PBX and the trunk.
    fn start(test: &str) -> Net {
        let dir = TempDir::new("fwd", test);
        let (pbx, trunk) = (NextHop::udp(PHONE), NextHop::udp(PHONE));
        let template = fs::read_to_string(scenario("screening.toml")).unwrap();
        let config = template
            .replace("@PROXY@", &format!("{PHONE}:0"))
            .replace("@PBX@", &pbx.addr().to_string())
            .replace("@TRUNK@", &trunk.addr().to_string());
        Net {
            proxy: Sipscreen::start(&dir, &config),
            pbx,
            trunk,
            dir,
        }
    }

    /// A SIPp run of `scenario_file` from `ip`, for one call.
    fn sipp(&self, name: &str, scenario_file: &str, ip: IpAddr) -> SippCommand {
        let sipp = SippCommand::new(name, ip)
            .args(["-sf", &scenario(scenario_file), "-m", "1"])
            .trace_msg(true)
            .timeout(SIPP_TIMEOUT);
        if ip == PHONE {
            sipp
        } else {
            sipp.args(["-bind_local"])
        }
    }

    /// A SIPp UAS at `hop`, running `scenario_file` once; returns when it listens.
    fn uas(&self, name: &str, hop: &NextHop, scenario_file: &str, keys: &[(&str, &str)]) -> Sipp {
        keys.iter()
            .fold(self.sipp(name, scenario_file, PHONE), |uas, (k, v)| {
                uas.args(["-key", k, v])
            })
            .port(hop.lend())
            .spawn(&self.dir)
    }

    /// Waits for a UAS to finish its call (bounded) and returns what it received.
    fn finish(&self, uas: Sipp) -> Received {
        let run = uas.finish(WAIT);
        assert!(
            run.status.success(),
            "SIPp did not complete its call:\n{}\nproxy log:\n{}",
            run.describe(),
            self.proxy.log_tail()
        );
        Received {
            log: run.message_log(),
        }
    }

    /// One call from `ip` as `caller` to `dialed`, with one extra header line, through the
    /// proxy; `answered` picks the scenario that expects 200 (else 403). Panics, with every
    /// log, when the caller does not get what it expects.
    fn call(
        &self,
        name: &str,
        ip: IpAddr,
        caller: &str,
        dialed: &str,
        header: &str,
        answered: bool,
    ) {
        let scenario_file = if answered {
            "uac_answered.xml"
        } else {
            "uac_rejected.xml"
        };
        let run = self
            .sipp(name, scenario_file, ip)
            .args([self.proxy.udp().to_string()])
            .args(["-cid_str", &format!("{name}-%u@forwarding-e2e")])
            .args([
                "-s", dialed, "-key", "caller", caller, "-key", "hdr", header,
            ])
            .run(&self.dir, WAIT);
        assert!(
            run.status.success(),
            "{name}: {caller} calling {dialed} from {ip} with `{header}` should get {}.\n{}\n\
             proxy log:\n{}",
            if answered { "200" } else { "403" },
            run.describe(),
            self.proxy.log_tail()
        );
    }
}

const PLAIN: &str = "Subject: no forwarding";

fn diversion(user: &str, ip: IpAddr) -> String {
    format!("Diversion: <sip:{user}@{ip}>;reason=unconditional;counter=1")
}

fn history_info(forwarder: &str, target: &str, ip: IpAddr) -> String {
    format!("History-Info: <sip:{forwarder}@{ip}>;index=1, <sip:{target}@{ip};cause=302>;index=1.1")
}

/// Calls that must reach the trunk: each is answered there, and the trunk saw the INVITE for
/// `dialed`.
fn assert_reaches_trunk(net: &Net, name: &str, ip: IpAddr, caller: &str, header: &str) {
    let trunk = net.uas(&format!("{name}-trunk"), &net.trunk, "uas_answer.xml", &[]);
    net.call(name, ip, caller, LANDLINE, header, true);
    let got = net.finish(trunk);
    let invites = requests(&got.log, "INVITE ");
    assert_eq!(invites.len(), 1, "{name}: {invites:?}");
    assert!(
        invites[0].starts_with(&format!("INVITE sip:{LANDLINE}@")),
        "{name}: {invites:?}"
    );
    // A trusted PBX's forwarding headers are information for the next hop too: forwarded
    // untouched. (Whether a phone's should be is not settled by SPEC §4.7: not asserted.)
    if header != PLAIN && ip == PBX_FWD {
        assert!(
            got.log.contains(header),
            "{name}: no `{header}` in\n{}",
            got.log
        );
    }
}

/// Calls that must be refused: 403 to the caller, and nothing reaches the trunk.
fn assert_refused(net: &Net, name: &str, ip: IpAddr, caller: &str, header: &str) {
    let trunk = net.trunk.silent("trunk");
    net.call(name, ip, caller, LANDLINE, header, false);
    trunk.assert_nothing(name);
}

// ---------------------------------------------------------------------------------------
// Diversion and History-Info (SPEC §4.7).

#[test]
fn trusted_diversion_checks_the_forwarders_rights() {
    let net = Net::start("diversion-trusted");
    // alice, through the PBX, may call a landline...
    assert_reaches_trunk(&net, "alice-direct", PBX_FWD, ALICE, PLAIN);
    // ...but not when the PBX says bob forwarded the call: bob's ACL denies landlines.
    assert_refused(
        &net,
        "alice-via-bob",
        PBX_FWD,
        ALICE,
        &diversion(BOB, PBX_FWD),
    );
    // And the other way: bob alone may not, bob's call forwarded by alice may.
    assert_refused(&net, "bob-direct", PBX_FWD, BOB, PLAIN);
    assert_reaches_trunk(
        &net,
        "bob-via-alice",
        PBX_FWD,
        BOB,
        &diversion(ALICE, PBX_FWD),
    );
}

#[test]
fn spoofed_diversion_from_a_phone_is_ignored() {
    let net = Net::start("diversion-spoofed");
    // bob's phone claims alice forwarded the call: not believed, bob's ACL denies.
    assert_refused(
        &net,
        "bob-claims-alice",
        PHONE,
        BOB,
        &diversion(ALICE, PHONE),
    );
    // alice's phone naming bob as forwarder does not lose alice's rights either.
    assert_reaches_trunk(
        &net,
        "alice-claims-bob",
        PHONE,
        ALICE,
        &diversion(BOB, PHONE),
    );
}

#[test]
fn trusted_history_info_checks_the_forwarders_rights() {
    let net = Net::start("history-info");
    // bob's call, forwarded by alice (History-Info from the trusted PBX): alice's rights.
    assert_reaches_trunk(
        &net,
        "hi-bob-via-alice",
        PBX_FWD,
        BOB,
        &history_info(ALICE, LANDLINE, PBX_FWD),
    );
    // alice's call, forwarded by bob: bob's ACL denies.
    assert_refused(
        &net,
        "hi-alice-via-bob",
        PBX_FWD,
        ALICE,
        &history_info(BOB, LANDLINE, PBX_FWD),
    );
    // The same History-Info from bob's phone is not believed: bob's own rights.
    assert_refused(
        &net,
        "hi-spoofed",
        PHONE,
        BOB,
        &history_info(ALICE, LANDLINE, PHONE),
    );
}

// ---------------------------------------------------------------------------------------
// Incoming calls (SPEC §4.6).

#[test]
fn incoming_call_is_checked_on_the_callers_number() {
    let net = Net::start("incoming");
    // The incall's permission names the caller's number: 403, the PBX sees nothing.
    let pbx = net.pbx.silent("PBX");
    net.call("blocked", PHONE, BLOCKED_CALLER, DID, PLAIN, false);
    pbx.assert_nothing("blocked caller");
    drop(pbx);
    // Anyone else reaches the PBX with the DID as Request-URI.
    let pbx = net.uas("allowed-pbx", &net.pbx, "uas_answer.xml", &[]);
    net.call("allowed", PHONE, "+33611111111", DID, PLAIN, true);
    let got = net.finish(pbx);
    let invites = requests(&got.log, "INVITE ");
    assert_eq!(invites.len(), 1, "{invites:?}");
    assert!(
        invites[0].starts_with(&format!("INVITE sip:{DID}@")),
        "{invites:?}"
    );
}

// ---------------------------------------------------------------------------------------
// A phone's own forward: 3xx followed with the forwarding user's rights (SPEC §4.7).

#[test]
fn redirect_tries_only_the_targets_the_forwarding_user_may_call() {
    let net = Net::start("redirect");
    let trunk_addr = net.trunk.addr();
    // carol's phone forwards to an 08 number (first choice) and a mobile. carol may not call
    // the 08 number (alice, the caller, could): it is skipped, the mobile is tried.
    let targets = format!("<sip:{PREMIUM}@{trunk_addr}>;q=0.9, <sip:{MOBILE}@{trunk_addr}>;q=0.5");
    let pbx = net.uas(
        "carol-phone",
        &net.pbx,
        "uas_redirect.xml",
        &[("targets", &targets)],
    );
    let trunk = net.uas("redirect-trunk", &net.trunk, "uas_answer.xml", &[]);
    net.call("alice-to-carol", PHONE, ALICE, CAROL, PLAIN, true);
    let trunk_got = net.finish(trunk);
    let pbx_got = net.finish(pbx);
    // carol's phone got the call to 1003 (and sipscreen's ACK of its 302), nothing else.
    assert_eq!(
        requests(&pbx_got.log, "INVITE "),
        [format!(
            "INVITE sip:{CAROL}@{PHONE}:{} SIP/2.0",
            net.proxy.udp().port()
        )],
        "{}",
        pbx_got.log
    );
    assert_eq!(requests(&pbx_got.log, "ACK ").len(), 1, "{}", pbx_got.log);
    // The trunk got exactly one INVITE, for the allowed target, as Request-URI.
    assert_eq!(
        requests(&trunk_got.log, "INVITE "),
        [format!("INVITE sip:{MOBILE}@{trunk_addr} SIP/2.0")],
        "{}",
        trunk_got.log
    );
}

#[test]
fn redirect_with_every_target_denied_gets_403() {
    let net = Net::start("redirect-denied");
    let trunk_addr = net.trunk.addr();
    // bob's phone forwards to a landline and an 08 number: bob's ACL denies both (alice, the
    // caller, could call either). The caller gets 403; the trunk sees nothing.
    let targets = format!("<sip:{LANDLINE}@{trunk_addr}>, <sip:{PREMIUM}@{trunk_addr}>;q=0.5");
    let pbx = net.uas(
        "bob-phone",
        &net.pbx,
        "uas_redirect.xml",
        &[("targets", &targets)],
    );
    let trunk = net.trunk.silent("trunk");
    net.call("alice-to-bob", PHONE, ALICE, BOB, PLAIN, false);
    trunk.assert_nothing("every forward target denied");
    let pbx_got = net.finish(pbx);
    assert_eq!(
        requests(&pbx_got.log, "INVITE ").len(),
        1,
        "{}",
        pbx_got.log
    );
}
