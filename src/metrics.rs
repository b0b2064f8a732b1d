//! What the proxy counts (SPEC §9.3), and its Prometheus text exposition (format 0.0.4).
//!
//! Counting is on the per-message path, so it takes no lock and allocates nothing: every
//! series is a relaxed atomic in a fixed array, indexed by enums whose values are the label
//! values (methods, transports, reasons...). Decisions are counted per tenant in an array of
//! their own; the core holds the tenants' arrays by `TenantId`, and the registry keeps them
//! by name so that counts survive a reload (a tenant renamed starts again at zero, as
//! Prometheus expects of a new series).
//!
//! The exposition is written by hand at scrape time rather than through `prometheus-client`:
//! that crate's label families take a lock and hash the labels on every update, which is what
//! the per-message path must not do; what is left (a dozen `# TYPE` blocks) is small, and
//! `promtool check metrics` checks it in the tests.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::policy::{CallKind, Decision, Policy, Stage, Verdict};
use crate::proxy::Transport;

/// SIP methods, as counted (anything else is `other`).
pub const METHODS: [&str; 15] = [
    "INVITE",
    "ACK",
    "BYE",
    "CANCEL",
    "OPTIONS",
    "REGISTER",
    "INFO",
    "UPDATE",
    "PRACK",
    "REFER",
    "SUBSCRIBE",
    "NOTIFY",
    "MESSAGE",
    "PUBLISH",
    "other",
];

/// The index of a method in [`METHODS`].
pub fn method_index(method: &[u8]) -> usize {
    METHODS[..METHODS.len() - 1]
        .iter()
        .position(|m| m.as_bytes() == method)
        .unwrap_or(METHODS.len() - 1)
}

/// Transports, as counted.
pub const TRANSPORTS: [&str; 3] = ["udp", "tcp", "tls"];

/// Why a request was refused or dropped before any decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Not from a trusted peer, a tenant source or an authenticated user (403).
    Admission,
    /// Challenged for credentials, or wrong ones (407, a login lockout).
    Authentication,
    /// Over its source's rate (`limits.per_source`), or banned.
    RateLimit,
    /// Over `max_transactions` or `max_dialogs`, or draining (503).
    Overload,
    /// Not a SIP message, or one that cannot be proxied (400, dropped).
    Malformed,
    /// A loop or no hops left (482, 483).
    Loop,
    /// An in-dialog request for no dialog sipscreen admitted (481).
    UnknownDialog,
}

impl Refusal {
    pub const ALL: [Refusal; 7] = [
        Refusal::Admission,
        Refusal::Authentication,
        Refusal::RateLimit,
        Refusal::Overload,
        Refusal::Malformed,
        Refusal::Loop,
        Refusal::UnknownDialog,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Admission => "admission",
            Refusal::Authentication => "authentication",
            Refusal::RateLimit => "rate_limit",
            Refusal::Overload => "overload",
            Refusal::Malformed => "malformed",
            Refusal::Loop => "loop",
            Refusal::UnknownDialog => "unknown_dialog",
        }
    }
}

/// How a PIN prompt ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PinOutcome {
    Accepted,
    /// Wrong PINs (or none in time) up to `pin.attempts`, or a wrong PIN given with the dial
    /// prefix.
    Rejected,
    /// The caller hung up first.
    Abandoned,
    /// Refused because the user, source or caller is locked out.
    LockedOut,
}

impl PinOutcome {
    pub const ALL: [PinOutcome; 4] = [
        PinOutcome::Accepted,
        PinOutcome::Rejected,
        PinOutcome::Abandoned,
        PinOutcome::LockedOut,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PinOutcome::Accepted => "accepted",
            PinOutcome::Rejected => "rejected",
            PinOutcome::Abandoned => "abandoned",
            PinOutcome::LockedOut => "locked_out",
        }
    }
}

const CALLS: [CallKind; 3] = [CallKind::Internal, CallKind::External, CallKind::Incoming];
const VERDICTS: [&str; 3] = ["allow", "deny", "challenge"];

/// The upper bounds of the decision-time histogram, in seconds: a decision takes about a
/// microsecond; the top buckets catch the pathological.
const BUCKETS: [f64; 12] = [
    1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 1e-3, 2.5e-3, 1e-2, 1e-1,
];

/// One tenant's decisions, by call kind, verdict and stage.
#[derive(Default)]
pub struct TenantCounts {
    decisions: [[[AtomicU64; 4]; 3]; 3],
}

fn call_index(c: CallKind) -> usize {
    CALLS.iter().position(|k| *k == c).unwrap_or(0)
}

fn verdict_index(v: Verdict) -> usize {
    match v {
        Verdict::Allow => 0,
        Verdict::Deny => 1,
        Verdict::Challenge(_) => 2,
    }
}

fn stage_index(s: Stage) -> usize {
    Stage::ALL.iter().position(|x| *x == s).unwrap_or(0)
}

/// Every counter of the proxy.
pub struct Metrics {
    requests: [[AtomicU64; TRANSPORTS.len()]; METHODS.len()],
    /// Responses sent, by class (1xx to 6xx).
    responses: [AtomicU64; 6],
    refusals: [AtomicU64; 7],
    pin: [AtomicU64; 4],
    lockouts: AtomicU64,
    /// Reloads: succeeded, refused.
    reloads: [AtomicU64; 2],
    transactions: AtomicU64,
    dialogs: AtomicU64,
    /// Open TCP connections, as the transport counts them.
    tcp: Arc<AtomicUsize>,
    decision_buckets: [AtomicU64; BUCKETS.len()],
    decision_count: AtomicU64,
    decision_nanos: AtomicU64,
    /// Set once draining starts (SIGTERM): `/health` then says 503.
    draining: std::sync::atomic::AtomicBool,
    /// Per-tenant decisions by tenant name; locked only on reload and scrape.
    tenants: Mutex<Vec<(Box<str>, Arc<TenantCounts>)>>,
}

impl Metrics {
    /// `tcp` is the transport's count of open connections.
    pub fn new(tcp: Arc<AtomicUsize>) -> Arc<Metrics> {
        Arc::new(Metrics {
            requests: Default::default(),
            responses: Default::default(),
            refusals: Default::default(),
            pin: Default::default(),
            lockouts: AtomicU64::new(0),
            reloads: Default::default(),
            transactions: AtomicU64::new(0),
            dialogs: AtomicU64::new(0),
            tcp,
            decision_buckets: Default::default(),
            decision_count: AtomicU64::new(0),
            decision_nanos: AtomicU64::new(0),
            draining: Default::default(),
            tenants: Mutex::new(Vec::new()),
        })
    }

    /// The proxy stops taking new calls (SIGTERM).
    pub fn set_draining(&self) {
        self.draining.store(true, Relaxed);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Relaxed)
    }

    /// The count of open TCP connections, which the transport keeps.
    pub fn tcp(&self) -> Arc<AtomicUsize> {
        self.tcp.clone()
    }

    /// The counters of each tenant of `policy`, by `TenantId`: the ones a tenant of that name
    /// had, or new ones.
    pub fn tenants(&self, policy: &Policy) -> Vec<Arc<TenantCounts>> {
        let mut known = self
            .tenants
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        policy
            .tenants
            .iter()
            .map(|t| {
                let name = &t.spec.name;
                match known.iter().find(|(n, _)| n == name) {
                    Some((_, c)) => c.clone(),
                    None => {
                        let c = Arc::new(TenantCounts::default());
                        known.push((name.clone(), c.clone()));
                        c
                    }
                }
            })
            .collect()
    }

    pub fn request(&self, method: usize, transport: Transport) {
        let t = TRANSPORTS
            .iter()
            .position(|t| *t == transport.name())
            .unwrap_or(0);
        self.requests[method][t].fetch_add(1, Relaxed);
    }

    pub fn response(&self, status: u16) {
        if let Some(c) = self
            .responses
            .get(usize::from(status / 100).wrapping_sub(1))
        {
            c.fetch_add(1, Relaxed);
        }
    }

    pub fn refusal(&self, why: Refusal) {
        self.refusals[why as usize].fetch_add(1, Relaxed);
    }

    pub fn pin(&self, outcome: PinOutcome) {
        self.pin[outcome as usize].fetch_add(1, Relaxed);
    }

    pub fn lockout(&self) {
        self.lockouts.fetch_add(1, Relaxed);
    }

    pub fn reload(&self, ok: bool) {
        self.reloads[usize::from(!ok)].fetch_add(1, Relaxed);
    }

    /// Transactions and dialogs in flight now.
    pub fn in_flight(&self, transactions: usize, dialogs: usize) {
        self.transactions.store(transactions as u64, Relaxed);
        self.dialogs.store(dialogs as u64, Relaxed);
    }

    /// A decision of `tenant` and how long it took.
    pub fn decision(&self, tenant: &TenantCounts, d: &Decision, took: Duration) {
        tenant.decisions[call_index(d.call)][verdict_index(d.verdict)][stage_index(d.stage())]
            .fetch_add(1, Relaxed);
        let secs = took.as_secs_f64();
        for (b, bound) in self.decision_buckets.iter().zip(BUCKETS) {
            if secs <= bound {
                b.fetch_add(1, Relaxed);
            }
        }
        self.decision_count.fetch_add(1, Relaxed);
        self.decision_nanos
            .fetch_add(took.as_nanos().min(u128::from(u64::MAX)) as u64, Relaxed);
    }

    /// The Prometheus text exposition of every counter, and the process's own.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(8192);
        let tenants = self
            .tenants
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        family(
            &mut out,
            "sipscreen_decisions_total",
            "counter",
            "Calls decided, by tenant, call kind, decision and the stage that decided.",
        );
        for (name, counts) in &tenants {
            for (c, call) in CALLS.iter().enumerate() {
                for (v, verdict) in VERDICTS.iter().enumerate() {
                    for (s, stage) in Stage::ALL.iter().enumerate() {
                        let n = counts.decisions[c][v][s].load(Relaxed);
                        let _ = writeln!(
                            out,
                            "sipscreen_decisions_total{{tenant=\"{}\",call=\"{}\",decision=\"{verdict}\",stage=\"{}\"}} {n}",
                            escape(name),
                            call.as_str(),
                            stage.as_str()
                        );
                    }
                }
            }
        }
        family(
            &mut out,
            "sipscreen_sip_requests_total",
            "counter",
            "SIP requests received, by method and transport.",
        );
        for (m, method) in METHODS.iter().enumerate() {
            for (t, transport) in TRANSPORTS.iter().enumerate() {
                let n = self.requests[m][t].load(Relaxed);
                let _ = writeln!(
                    out,
                    "sipscreen_sip_requests_total{{method=\"{method}\",transport=\"{transport}\"}} {n}"
                );
            }
        }
        family(
            &mut out,
            "sipscreen_sip_responses_total",
            "counter",
            "SIP responses sent (made or relayed), by status class.",
        );
        for (i, c) in self.responses.iter().enumerate() {
            let _ = writeln!(
                out,
                "sipscreen_sip_responses_total{{class=\"{}xx\"}} {}",
                i + 1,
                c.load(Relaxed)
            );
        }
        family(
            &mut out,
            "sipscreen_refusals_total",
            "counter",
            "Requests refused or dropped before any decision, by reason.",
        );
        for r in Refusal::ALL {
            let _ = writeln!(
                out,
                "sipscreen_refusals_total{{reason=\"{}\"}} {}",
                r.as_str(),
                self.refusals[r as usize].load(Relaxed)
            );
        }
        family(
            &mut out,
            "sipscreen_pin_outcomes_total",
            "counter",
            "PIN prompts, by how they ended.",
        );
        for p in PinOutcome::ALL {
            let _ = writeln!(
                out,
                "sipscreen_pin_outcomes_total{{outcome=\"{}\"}} {}",
                p.as_str(),
                self.pin[p as usize].load(Relaxed)
            );
        }
        scalar(
            &mut out,
            "sipscreen_pin_lockouts_total",
            "counter",
            "PIN lockouts begun (a user, source or caller with too many wrong PINs).",
            self.lockouts.load(Relaxed),
        );
        family(
            &mut out,
            "sipscreen_reloads_total",
            "counter",
            "Configuration reloads and admin API changes, by result.",
        );
        for (i, result) in ["ok", "error"].iter().enumerate() {
            let _ = writeln!(
                out,
                "sipscreen_reloads_total{{result=\"{result}\"}} {}",
                self.reloads[i].load(Relaxed)
            );
        }
        scalar(
            &mut out,
            "sipscreen_transactions",
            "gauge",
            "Transactions in flight (server and client).",
            self.transactions.load(Relaxed),
        );
        scalar(
            &mut out,
            "sipscreen_draining",
            "gauge",
            "1 while the proxy drains before stopping (no new calls), else 0.",
            u64::from(self.is_draining()),
        );
        scalar(
            &mut out,
            "sipscreen_dialogs",
            "gauge",
            "Dialogs remembered for in-dialog requests.",
            self.dialogs.load(Relaxed),
        );
        scalar(
            &mut out,
            "sipscreen_tcp_connections",
            "gauge",
            "Open TCP connections, both directions.",
            self.tcp.load(Relaxed) as u64,
        );
        family(
            &mut out,
            "sipscreen_decision_duration_seconds",
            "histogram",
            "Time to decide a call (admission excluded).",
        );
        for (b, bound) in self.decision_buckets.iter().zip(BUCKETS) {
            let _ = writeln!(
                out,
                "sipscreen_decision_duration_seconds_bucket{{le=\"{bound}\"}} {}",
                b.load(Relaxed)
            );
        }
        let count = self.decision_count.load(Relaxed);
        let _ = writeln!(
            out,
            "sipscreen_decision_duration_seconds_bucket{{le=\"+Inf\"}} {count}"
        );
        let _ = writeln!(
            out,
            "sipscreen_decision_duration_seconds_sum {}",
            self.decision_nanos.load(Relaxed) as f64 / 1e9
        );
        let _ = writeln!(out, "sipscreen_decision_duration_seconds_count {count}");
        process::render(&mut out);
        out
    }
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn scalar(out: &mut String, name: &str, kind: &str, help: &str, value: u64) {
    family(out, name, kind, help);
    let _ = writeln!(out, "{name} {value}");
}

/// A label value as the text format wants it.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The standard `process_*` metrics, from `/proc/self` (Linux).
mod process {
    use std::fmt::Write;

    /// Clock ticks per second of `/proc/self/stat` (`USER_HZ`: 100 on every Linux
    /// architecture the proxy builds for).
    const TICKS: f64 = 100.0;

    pub fn render(out: &mut String) {
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
        // Fields after the command name, which is in parentheses and may hold spaces.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<f64>().ok());
        if let (Some(utime), Some(stime)) = (field(14), field(15)) {
            super::family(
                out,
                "process_cpu_seconds_total",
                "counter",
                "Total user and system CPU time spent in seconds.",
            );
            let _ = writeln!(out, "process_cpu_seconds_total {}", (utime + stime) / TICKS);
        }
        // In kB in /proc/self/status, so no page size is assumed.
        let rss = std::fs::read_to_string("/proc/self/status")
            .unwrap_or_default()
            .lines()
            .find_map(|l| {
                l.strip_prefix("VmRSS:")?
                    .split_whitespace()
                    .next()?
                    .parse::<f64>()
                    .ok()
            });
        if let Some(rss) = rss {
            super::family(
                out,
                "process_resident_memory_bytes",
                "gauge",
                "Resident memory size in bytes.",
            );
            let _ = writeln!(out, "process_resident_memory_bytes {}", rss * 1024.0);
        }
        if let Some(vsize) = field(23) {
            super::family(
                out,
                "process_virtual_memory_bytes",
                "gauge",
                "Virtual memory size in bytes.",
            );
            let _ = writeln!(out, "process_virtual_memory_bytes {vsize}");
        }
        if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
            super::family(
                out,
                "process_open_fds",
                "gauge",
                "Number of open file descriptors.",
            );
            let _ = writeln!(out, "process_open_fds {}", fds.count());
        }
        let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
        if let Some(max) = limits
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .and_then(|l| l.split_whitespace().nth(3))
            .and_then(|v| v.parse::<u64>().ok())
        {
            super::family(
                out,
                "process_max_fds",
                "gauge",
                "Maximum number of open file descriptors.",
            );
            let _ = writeln!(out, "process_max_fds {max}");
        }
        let boot = std::fs::read_to_string("/proc/stat")
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("btime ")?.trim().parse::<f64>().ok());
        if let (Some(boot), Some(start)) = (boot, field(22)) {
            super::family(
                out,
                "process_start_time_seconds",
                "gauge",
                "Start time of the process since unix epoch in seconds.",
            );
            let _ = writeln!(out, "process_start_time_seconds {}", boot + start / TICKS);
        }
    }
}
