//! The `sipscreen` command: parses the command line, loads the configuration, and hands over
//! to the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use sipscreen::config::{Config, ConfigErrors, LogFormat};
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
        /// Log lines as `text` or `json` (one object per line); overrides the file's
        /// `server.log_format`.
        #[arg(long = "log-format", value_name = "text|json")]
        log_format: Option<LogFormat>,
    },
    /// Load and validate a configuration; print every error (exit 2) or nothing wrong (exit 0).
    Validate {
        #[arg(long)]
        config: PathBuf,
    },
    /// Replay the SIP messages of a capture through the decision path: one line per new call.
    Replay {
        #[arg(long)]
        config: PathBuf,
        /// A pcap or pcapng file.
        capture: PathBuf,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
        /// Expected decisions (JSON lines with call_id and the keys to compare); exit 1 on
        /// any difference.
        #[arg(long)]
        expect: Option<PathBuf>,
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
        Command::Run { config, log_format } => run(&config, log_format),
        Command::Replay {
            config,
            capture,
            json,
            expect,
        } => replay(&config, &capture, json, expect.as_deref()),
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
            let request = report::CheckRequest {
                from: &from,
                to: &to,
                tenant: tenant.as_deref(),
                forwarded_by: forwarded_by.as_deref(),
                pin: pin.as_deref(),
            };
            let (decision, lines) = match report::check(&c.policy, &request) {
                Ok(d) => d,
                Err(e) => {
                    let e = match e {
                        report::CheckError::WhichTenant => {
                            "the configuration has several tenants: name one with --tenant"
                                .to_owned()
                        }
                        report::CheckError::BadPin(p) => {
                            format!("--pin `{p}` must be digits or `*`")
                        }
                        e => e.to_string(),
                    };
                    eprintln!("sipscreen check: {e}");
                    return ExitCode::from(BAD_INPUT);
                }
            };
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
/// exits 1; SIGTERM or SIGINT drains and exits 0. `log_format` is `--log-format`, which wins
/// over the file's.
fn run(path: &std::path::Path, log_format: Option<LogFormat>) -> ExitCode {
    let (config, text) = match Config::load_with_text(path) {
        Ok(c) => c,
        Err(errors) => {
            refuse_config(path, &errors, log_format.unwrap_or_default());
            return ExitCode::from(BAD_INPUT);
        }
    };
    init_logging(log_format.unwrap_or(config.log_format));
    for w in &config.warnings {
        tracing::warn!("{w}");
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the runtime");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let (control, controlled) = tokio::sync::mpsc::channel(16);
        let metrics = sipscreen::metrics::Metrics::new(Default::default());
        let service =
            sipscreen::service::Service::new(path, &config, text, control, metrics.clone());
        let Config {
            proxy: mut settings,
            policy,
            admin,
            tls,
            ..
        } = config;
        let sockets = sipscreen::transport::Sockets::bind(&settings.server.listen)
            .await?
            .with_tls(tls);
        // Decisions as they are made, for the admin API's live feed; a subscriber that falls
        // behind skips what it missed instead of holding memory.
        let decisions = admin
            .as_ref()
            .map(|_| tokio::sync::broadcast::channel(1024).0);
        if let Some(admin) = admin {
            let listener = tokio::net::TcpListener::bind(admin.listen)
                .await
                .map_err(|e| {
                    std::io::Error::new(
                        e.kind(),
                        format!("cannot listen on admin {}: {e}", admin.listen),
                    )
                })?;
            tracing::info!(admin = %listener.local_addr()?, "admin API listening");
            let service = service.clone();
            let feed = decisions.clone().expect("made with the admin listener");
            let metrics = metrics.clone();
            tokio::spawn(async move {
                if let Err(e) = sipscreen::admin::serve(listener, service, feed, metrics).await {
                    tracing::error!(error = %e, "the admin API stopped");
                }
            });
        }
        // Port 0 in `listen` is now a real port: the core must know it (Via, Record-Route).
        settings.server.listen = sockets.bound().to_vec();
        for l in &settings.server.listen {
            tracing::info!(listen = %l, "listening");
        }
        let next_hop = policy.hop_name(policy.default_next_hop);
        tracing::info!(next_hop, "sipscreen running");
        // Every signal handler is in place before systemd hears that the proxy is ready.
        tokio::spawn(sipscreen::service::reload_on_sighup(service.clone()));
        let stop = shutdown_signal();
        sipscreen::notify::ready();
        let draining = metrics.clone();
        let shutdown = async move {
            stop.await;
            draining.set_draining();
            sipscreen::notify::stopping();
        };
        let observe = sipscreen::transport::Observe { decisions, metrics };
        sipscreen::transport::run(settings, policy, sockets, shutdown, controlled, observe).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "sipscreen stopped");
            ExitCode::FAILURE
        }
    }
}

/// The log of `run`, on stderr (where systemd's journal reads it), filtered by `RUST_LOG`
/// (default `info`). JSON lines carry `timestamp`, `level`, `target` and the event's fields
/// at the top level (`message` among them), so that a shipper indexes `tenant` or
/// `decision` without unwrapping anything.
fn init_logging(format: LogFormat) {
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        LogFormat::Json => builder.json().flatten_event(true).with_ansi(false).init(),
    }
}

/// Prints every error of a configuration `run` refuses: plain lines, as `validate` prints
/// them, or in JSON, one log event each, when the command line asked for JSON (a log
/// shipper reading the service's output takes every line as an object).
fn refuse_config(path: &std::path::Path, errors: &ConfigErrors, format: LogFormat) {
    let summary = format!(
        "{}: {} error(s), not starting",
        path.display(),
        errors.0.len()
    );
    match format {
        LogFormat::Text => {
            eprintln!("{errors}");
            eprintln!("{summary}");
        }
        LogFormat::Json => {
            init_logging(format);
            for e in &errors.0 {
                tracing::error!(error = %e, "invalid configuration");
            }
            tracing::error!("{summary}");
        }
    }
}

/// `sipscreen replay`: exit 0 (or 1 when `--expect` finds a difference), 2 for a bad
/// configuration, an unreadable capture or an unreadable expectations file.
fn replay(
    config: &std::path::Path,
    capture: &std::path::Path,
    json: bool,
    expect: Option<&std::path::Path>,
) -> ExitCode {
    use sipscreen::replay;
    let config = match Config::load(config) {
        Ok(c) => std::sync::Arc::new(c),
        Err(errors) => {
            eprintln!("{errors}");
            return ExitCode::from(BAD_INPUT);
        }
    };
    let capture = match replay::Capture::read(capture) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("sipscreen replay: {e}");
            return ExitCode::from(BAD_INPUT);
        }
    };
    let (messages, broken) = replay::sip_messages(&capture, config.proxy.limits.max_message_size);
    if capture.skipped() > 0 || broken > 0 {
        eprintln!(
            "sipscreen replay: {} packet(s) skipped, {broken} stream byte(s) not framed",
            capture.skipped()
        );
    }
    let calls = replay::replay(&config, &messages);
    let objects: Vec<_> = calls
        .iter()
        .map(|c| replay::call_json(&config, c))
        .collect();
    for (call, obj) in calls.iter().zip(&objects) {
        if json {
            println!("{}", serde_json::Value::Object(obj.clone()));
        } else {
            let field = |k: &str| {
                obj.get(k)
                    .and_then(|v| v.as_str())
                    .unwrap_or("-")
                    .to_owned()
            };
            println!(
                "{} {} {} {} {} {} → {}: {}",
                field("time"),
                field("source"),
                call.screening.call_id,
                field("call"),
                field("identity"),
                field("dialed"),
                field("decision"),
                field("reason")
            );
        }
    }
    let Some(path) = expect else {
        return ExitCode::SUCCESS;
    };
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("sipscreen replay: cannot read {}: {e}", path.display());
            return ExitCode::from(BAD_INPUT);
        }
    };
    match replay::compare(&objects, &text) {
        Ok(diffs) if diffs.is_empty() => ExitCode::SUCCESS,
        Ok(diffs) => {
            for d in &diffs {
                eprintln!("difference: {d}");
            }
            eprintln!(
                "sipscreen replay: {} difference(s) with {}",
                diffs.len(),
                path.display()
            );
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("sipscreen replay: {}: {e}", path.display());
            ExitCode::from(BAD_INPUT)
        }
    }
}

/// SIGTERM or SIGINT. The handlers are in place when this returns (their default action
/// ends the process at once, without draining). Call it within the runtime.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let signals = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    );
    async move {
        match signals {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            _ => std::future::pending().await,
        }
    }
}
