//! The decision of SPEC §8: one call decided for a tenant with 10,000 users, 1,000 ACL
//! patterns and 1k / 10k / 100k call permissions (exact extensions and patterns mixed), to
//! show the median time and how it grows with the number of permissions.
//!
//! Run: `cargo bench --bench decide`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use sipscreen::config::Config;
use sipscreen::policy::Call;

mod common;
use common::{generate, USERS};

/// The server part of the generated configuration: nothing listens, nothing is sent.
const SERVER: &str =
    "[server]\nlisten = [\"udp:127.0.0.1:5060\"]\nnext_hop = \"udp:127.0.0.1:5070\"\n";

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
        let config = Config::from_toml(&generate(SERVER, permissions), "generated.toml", None)
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
