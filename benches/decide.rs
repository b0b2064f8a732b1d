//! The decision of SPEC §8: one call decided for a tenant with 10,000 users, 1,000 ACL
//! patterns and 1k / 10k / 100k call permissions (exact extensions and patterns mixed), to
//! show the median time and how it grows with the number of permissions.
//!
//! Run: `cargo bench --bench decide`.

use std::fmt::Write;
use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use sipscreen::config::Config;
use sipscreen::policy::Call;

const USERS: usize = 10_000;
const GROUPS: usize = 100;
const OUTCALLS: usize = 10;
const ACL_PATTERNS: usize = 1_000;
const ACLS: usize = 10;

/// A generated configuration: every object refers to real ones, so it loads through the same
/// validation as a hand-written file.
fn generate(permissions: usize) -> String {
    let mut s = String::from(
        "[server]\nlisten = [\"udp:127.0.0.1:5060\"]\nnext_hop = \"udp:127.0.0.1:5070\"\n[brand]\nname = \"bench\"\n",
    );
    s.push_str("[[tenant]]\nname = \"big\"\ncountry = \"ES\"\n");
    for i in 0..ACL_PATTERNS {
        let _ = writeln!(s, "[[tenant.acl_patterns]]\nname = \"p{i}\"");
        let _ = match i % 4 {
            0 => writeln!(s, "regex = '^34{:03}[0-9]+$'", i % 1000),
            1 => writeln!(s, "regex = '^\\+{}9{:02}'", 30 + i % 60, i % 100),
            2 => writeln!(s, "numbers = [\"+349{:08}\"]", i),
            _ => writeln!(s, "regex = '{:04}$'", i),
        };
    }
    for a in 0..ACLS {
        let _ = writeln!(
            s,
            "[[tenant.call_acls]]\nname = \"acl{a}\"\ndefault = \"{}\"\nrules = [",
            if a % 2 == 0 { "allow" } else { "deny" }
        );
        for r in 0..ACL_PATTERNS / ACLS {
            let p = a * (ACL_PATTERNS / ACLS) + r;
            let _ = writeln!(
                s,
                "{{ metric = {r}, pattern = \"p{p}\", action = \"{}\" }},",
                if r % 3 == 0 { "deny" } else { "allow" }
            );
        }
        s.push_str("]\n");
    }
    for u in 0..USERS {
        let _ = writeln!(
            s,
            "[[tenant.users]]\nname = \"u{u}\"\nextension = \"{}\"",
            10_000 + u
        );
        if u % 2 == 0 {
            let _ = writeln!(s, "call_acl = \"acl{}\"", u % ACLS);
        }
    }
    for g in 0..GROUPS {
        let _ = write!(s, "[[tenant.groups]]\nname = \"g{g}\"\nmembers = [");
        for m in (g..USERS).step_by(GROUPS) {
            let _ = write!(s, "\"u{m}\",");
        }
        s.push_str("]\n");
    }
    for o in 0..OUTCALLS {
        let _ = writeln!(
            s,
            "[[tenant.outcalls]]\nname = \"o{o}\"\npatterns = [\"_00{}X.\", \"_{}XXXXXXXX\"]",
            30 + o,
            o
        );
    }
    for p in 0..permissions {
        let ext = match p % 5 {
            0 => format!("\"6{:08}\"", p),
            1 => format!("\"9{:08}\"", p * 7),
            2 => format!("\"_00{}X.\"", 30 + p % 60),
            3 => format!("\"_9{:03}XXXXX\"", p % 1000),
            _ => format!("\"_6{:02}X.\", \"1{:04}\"", p % 100, p % 10_000),
        };
        let holders = match p % 10 {
            0 => format!("groups = [\"g{}\"]", p % GROUPS),
            1 => format!("outcalls = [\"o{}\"]", p % OUTCALLS),
            _ => format!("users = [\"u{}\", \"u{}\"]", p % USERS, (p * 7 + 3) % USERS),
        };
        let mode = if p % 3 == 0 { "allow" } else { "deny" };
        let pw = if p % 7 == 0 {
            "password = \"1234\"\n"
        } else {
            ""
        };
        let _ = writeln!(s, "[[tenant.call_permissions]]\nname = \"perm{p}\"\nmode = \"{mode}\"\nextensions = [{ext}]\n{holders}\n{pw}");
    }
    s
}

/// The calls to decide, in rotation: callers spread over the users, dialed numbers over
/// national, international, internal and short forms.
fn calls() -> Vec<(String, String)> {
    (0..1_000)
        .map(|i| {
            let caller = format!("{}", 10_000 + (i * 37) % USERS);
            let dialed = match i % 5 {
                0 => format!("6{:08}", i * 13),
                1 => format!("00{}{:09}", 30 + i % 60, i),
                2 => format!("9{:08}", i * 7),
                3 => format!("{}", 10_000 + (i * 11) % USERS),
                _ => format!("+34{:09}", 900_000_000 + i),
            };
            (caller, dialed)
        })
        .collect()
}

fn decide(c: &mut Criterion) {
    let calls = calls();
    let mut group = c.benchmark_group("decide");
    group.measurement_time(Duration::from_secs(4));
    for permissions in [1_000, 10_000, 100_000] {
        let config = Config::from_toml(&generate(permissions), "generated.toml", None)
            .expect("generated config is valid");
        let policy = &config.policy;
        // Warm the normalization cache as a running proxy has it.
        for (from, to) in &calls {
            policy.decide(&Call {
                tenant: 0,
                caller: from,
                dialed: to,
                forwarded_by: None,
            });
        }
        group.bench_with_input(
            BenchmarkId::from_parameter(permissions),
            &permissions,
            |b, _| {
                let mut i = 0;
                b.iter(|| {
                    let (from, to) = &calls[i % calls.len()];
                    i += 1;
                    black_box(policy.decide(&Call {
                        tenant: 0,
                        caller: from,
                        dialed: to,
                        forwarded_by: None,
                    }))
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, decide);
criterion_main!(benches);
