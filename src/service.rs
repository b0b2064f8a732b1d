//! Running as a service (SPEC §9.1): reloading the configuration file, on SIGHUP or when
//! asked (the admin API), without a restart and without losing a call.
//!
//! A reload reads and checks the whole file again. An invalid file changes nothing: every
//! error is logged and returned, and the running rules stay. A valid one is handed to the
//! core task, which swaps its policy and settings between two messages (the per-message path
//! takes no lock); calls in flight keep the decision they were given. What cannot change
//! while running (the listeners, the transport's own limits) is named as needing a restart.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, Mutex};

use crate::config::{Config, ConfigErrors};
use crate::proxy::{Limits, Peer};
use crate::transport::Control;

/// What a successful reload says.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Reloaded {
    /// Settings that changed in the file but only take effect after a restart.
    pub needs_restart: Vec<String>,
}

/// Why a reload changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("{0}")]
    Invalid(ConfigErrors),
    #[error("the proxy is stopping")]
    Stopped,
}

/// What the running proxy was started with, of the settings a reload cannot change.
#[derive(Debug, Clone, PartialEq)]
struct Fixed {
    listen: Vec<Peer>,
    limits: Limits,
}

/// The reloadable proxy: its configuration file and the way to its core task.
pub struct Service {
    path: PathBuf,
    control: mpsc::Sender<Control>,
    /// The fixed settings as the file had them when the proxy started; one reload at a time.
    fixed: Mutex<Fixed>,
}

impl Service {
    /// `config` is what the proxy was started with (as the file says: `listen` before any
    /// port 0 was bound).
    pub fn new(path: &Path, config: &Config, control: mpsc::Sender<Control>) -> Arc<Self> {
        Arc::new(Self {
            path: path.to_owned(),
            control,
            fixed: Mutex::new(fixed(config)),
        })
    }

    /// The configuration file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the file again and, when it is valid, puts it in force.
    pub async fn reload(&self) -> Result<Reloaded, ReloadError> {
        let fixed_then = self.fixed.lock().await;
        // systemd hears RELOADING=1 now and READY=1 on every way out.
        let _reloading = crate::notify::Reloading::begin();
        let path = self.path.clone();
        let loaded = tokio::task::spawn_blocking(move || Config::load(&path))
            .await
            .map_err(|_| ReloadError::Stopped)?;
        let config = match loaded {
            Ok(c) => c,
            Err(errors) => {
                for e in &errors.0 {
                    tracing::error!(error = %e, "reload refused, the running rules stay");
                }
                return Err(ReloadError::Invalid(errors));
            }
        };
        for w in &config.warnings {
            tracing::warn!("{w}");
        }
        let now = fixed(&config);
        let mut needs_restart = Vec::new();
        if now.listen != fixed_then.listen {
            needs_restart.push("server.listen".to_owned());
        }
        let (a, b) = (now.limits, fixed_then.limits);
        for (key, changed) in [
            (
                "limits.max_message_size",
                a.max_message_size != b.max_message_size,
            ),
            (
                "limits.max_tcp_connections",
                a.max_tcp_connections != b.max_tcp_connections,
            ),
            (
                "limits.tcp_idle_timeout_s",
                a.tcp_idle_timeout != b.tcp_idle_timeout,
            ),
        ] {
            if changed {
                needs_restart.push(key.to_owned());
            }
        }
        let (done, applied) = oneshot::channel();
        let reload = Control::Reload {
            settings: Box::new(config.proxy),
            policy: config.policy,
            done,
        };
        self.control
            .send(reload)
            .await
            .map_err(|_| ReloadError::Stopped)?;
        applied.await.map_err(|_| ReloadError::Stopped)?;
        for key in &needs_restart {
            tracing::warn!(
                setting = key.as_str(),
                "changed in the file: takes effect after a restart"
            );
        }
        tracing::info!(config = %self.path.display(), "configuration reloaded");
        Ok(Reloaded { needs_restart })
    }

    /// Asks the core task something and waits for its answer.
    pub async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Control) -> Option<T> {
        let (reply, answer) = oneshot::channel();
        self.control.send(make(reply)).await.ok()?;
        answer.await.ok()
    }
}

fn fixed(config: &Config) -> Fixed {
    let mut limits = config.proxy.limits;
    // Only the transport's own limits are fixed; the core's change live.
    let d = Limits::default();
    limits.max_transactions = d.max_transactions;
    limits.max_dialogs = d.max_dialogs;
    limits.invite_timeout = d.invite_timeout;
    limits.dialog_timeout = d.dialog_timeout;
    limits.max_dialed_length = d.max_dialed_length;
    limits.per_source = d.per_source;
    Fixed {
        listen: config.proxy.server.listen.clone(),
        limits,
    }
}

/// Reloads on every SIGHUP, for as long as the proxy runs.
///
/// The handler is in place when this returns, not when the future is first polled: SIGHUP's
/// default action ends the process, and systemd may send one (`systemctl reload`) as soon
/// as it hears READY=1. Call it within the runtime.
pub fn reload_on_sighup(service: Arc<Service>) -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let hup = signal(SignalKind::hangup());
    async move {
        let Ok(mut hup) = hup else {
            tracing::warn!("cannot listen for SIGHUP: reload through the admin API only");
            return;
        };
        while hup.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading the configuration");
            // Errors are logged by reload itself.
            let _ = service.reload().await;
        }
    }
}
