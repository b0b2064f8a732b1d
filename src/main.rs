//! The `sipscreen` command: parses the command line, loads the configuration, and hands over
//! to the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use sipscreen::config::Config;
use sipscreen::policy::Call;
use sipscreen::report;

#[derive(Parser)]
#[command(
    name = "sipscreen",
    version,
    about = "SIP call-screening proxy: Call ACLs and call permissions in front of any PBX or trunk"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy until SIGTERM or SIGINT.
    Run {
        #[arg(long, default_value = "config/sipscreen.toml")]
        config: PathBuf,
    },
    /// Load and validate a configuration; print every error (exit 2) or nothing wrong (exit 0).
    Validate {
        #[arg(long)]
        config: PathBuf,
    },
    /// Decide one call without any network and explain the decision.
    Check {
        #[arg(long)]
        config: PathBuf,
        /// The caller: a user's extension or name, or any number (an external caller).
        #[arg(long)]
        from: String,
        /// The dialed number.
        #[arg(long)]
        to: String,
        /// The tenant, needed when the configuration has several.
        #[arg(long)]
        tenant: Option<String>,
        /// The user who forwarded the call; their rights apply.
        #[arg(long = "forwarded-by")]
        forwarded_by: Option<String>,
        /// Resolve a challenge as if the caller had entered these digits.
        #[arg(long)]
        pin: Option<String>,
        /// One JSON object instead of readable lines.
        #[arg(long)]
        json: bool,
    },
}

/// Exit status for a bad configuration or bad arguments (SPEC §1).
const BAD_INPUT: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run { config } => run(&config),
        Command::Validate { config } => match Config::load(&config) {
            Ok(c) => {
                for w in &c.warnings {
                    eprintln!("warning: {w}");
                }
                let tenants = c.policy.tenants.len();
                println!(
                    "{}: valid ({tenants} tenant{})",
                    config.display(),
                    if tenants == 1 { "" } else { "s" }
                );
                ExitCode::SUCCESS
            }
            Err(errors) => {
                eprintln!("{errors}");
                eprintln!("{}: {} error(s)", config.display(), errors.0.len());
                ExitCode::from(BAD_INPUT)
            }
        },
        Command::Check {
            config,
            from,
            to,
            tenant,
            forwarded_by,
            pin,
            json,
        } => {
            let c = match Config::load(&config) {
                Ok(c) => c,
                Err(errors) => {
                    eprintln!("{errors}");
                    return ExitCode::from(BAD_INPUT);
                }
            };
            let (caller, from_domain) = split_address(&from);
            let (dialed, to_domain) = split_address(&to);
            let tenant_id = match &tenant {
                Some(name) => c
                    .policy
                    .tenant_by_name(name)
                    .ok_or_else(|| format!("no tenant named `{name}`")),
                None => {
                    let domains: Vec<&str> =
                        [from_domain, to_domain].into_iter().flatten().collect();
                    c.policy.tenant_for(&domains, None).ok_or_else(|| {
                        "the configuration has several tenants: name one with --tenant".to_owned()
                    })
                }
            };
            let tenant_id = match tenant_id {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("sipscreen check: {e}");
                    return ExitCode::from(BAD_INPUT);
                }
            };
            if let Some(p) = pin
                .as_deref()
                .filter(|p| !p.bytes().all(|b| b.is_ascii_digit() || b == b'*'))
            {
                eprintln!("sipscreen check: --pin `{p}` must be digits or `*`");
                return ExitCode::from(BAD_INPUT);
            }
            let call = Call {
                tenant: tenant_id,
                caller,
                dialed,
                forwarded_by: forwarded_by.as_deref(),
            };
            let (decision, lines) = c.policy.explain(&call, pin.as_deref());
            if json {
                let value = serde_json::Value::Object(report::decision_json(&c.policy, &decision));
                println!("{value}");
            } else {
                print!("{}", report::decision_text(&c.policy, &decision, &lines));
            }
            ExitCode::SUCCESS
        }
    }
}

/// `sipscreen run`: a bad configuration never starts (exit 2); a listener that cannot bind
/// exits 1; SIGTERM or SIGINT drains and exits 0.
fn run(path: &std::path::Path) -> ExitCode {
    let config = match Config::load(path) {
        Ok(c) => c,
        Err(errors) => {
            eprintln!("{errors}");
            eprintln!(
                "{}: {} error(s), not starting",
                path.display(),
                errors.0.len()
            );
            return ExitCode::from(BAD_INPUT);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    for w in &config.warnings {
        tracing::warn!("{w}");
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("sipscreen: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let config = std::sync::Arc::new(config);
    let result = runtime.block_on(async {
        let sockets = sipscreen::transport::Sockets::bind(&config).await?;
        let listen: Vec<String> = config
            .server
            .listen
            .iter()
            .map(ToString::to_string)
            .collect();
        tracing::info!(listen = ?listen, next_hop = %config.server.next_hop, "sipscreen running");
        sipscreen::transport::run(config.clone(), sockets, shutdown_signal()).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sipscreen: {e}");
            ExitCode::FAILURE
        }
    }
}

/// SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => std::future::pending().await,
    }
}

/// Accepts `1001`, `alice@acme.example.com` or `sip:1001@acme.example.com`: the user part, and
/// the domain when there is one (to find the tenant).
fn split_address(s: &str) -> (&str, Option<&str>) {
    let s = s
        .strip_prefix("sip:")
        .or_else(|| s.strip_prefix("sips:"))
        .or_else(|| s.strip_prefix("tel:"))
        .unwrap_or(s);
    match s.rsplit_once('@') {
        Some((user, domain)) => (
            user,
            Some(domain.split([';', ':', '>']).next().unwrap_or(domain)),
        ),
        None => (s, None),
    }
}
