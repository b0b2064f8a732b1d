//! Running as a service (SPEC §9.1): reloading the configuration file, on SIGHUP or when
//! asked (the admin API), and changing it (the admin API), without a restart and without
//! losing a call.
//!
//! A reload reads and checks the whole file again. An invalid file changes nothing: every
//! error is logged and returned, and the running rules stay. A valid one is handed to the
//! core task, which swaps its policy and settings between two messages (the per-message path
//! takes no lock); calls in flight keep the decision they were given. What cannot change
//! while running (the listeners, the transport's own limits, the admin listener) is named as
//! needing a restart.
//!
//! A change is an edit of the file's text as the proxy last loaded it: refused when the file
//! changed on disk since (someone else edited it: their edit must not be lost), checked as a
//! whole like a reload, written atomically, then put in force like a reload. Reloads and
//! changes take turns.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use tokio::sync::{mpsc, oneshot, Mutex};
use toml_edit::DocumentMut;

use crate::config::{AdminSettings, Config, ConfigErrors};
use crate::metrics::Metrics;
use crate::policy::Policy;
use crate::proxy::{Limits, Peer};
use crate::transport::Control;

/// What a successful reload or change says.
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

/// Why a change was not made. Nothing was written and the running rules stay, whatever the
/// reason.
#[derive(Debug, thiserror::Error)]
pub enum ChangeError<E> {
    /// The edit itself refused (an unknown object, a bad value).
    #[error("{0}")]
    Edit(E),
    /// The edited file is not a valid configuration.
    #[error("{0}")]
    Invalid(ConfigErrors),
    /// The file on disk is not the one the proxy loaded.
    #[error("the configuration file changed on disk since it was loaded: reload it first")]
    Conflict,
    /// The file could not be read or written.
    #[error("{0}")]
    Io(String),
    #[error("the proxy is stopping")]
    Stopped,
}

/// The configuration in force, as the admin interface reads it.
pub struct Loaded {
    /// The file's text when it was loaded (or last written).
    pub text: String,
    /// The same, parsed for editing with its comments and layout.
    pub doc: DocumentMut,
    pub policy: Arc<Policy>,
    pub admin: Option<AdminSettings>,
}

/// What the running proxy was started with, of the settings a reload cannot change.
#[derive(Debug, Clone, PartialEq)]
struct Fixed {
    listen: Vec<Peer>,
    limits: Limits,
    admin: Option<SocketAddr>,
}

/// The reloadable proxy: its configuration file and the way to its core task.
pub struct Service {
    path: PathBuf,
    control: mpsc::Sender<Control>,
    /// The fixed settings as the file had them when the proxy started; held by the one
    /// reload or change under way.
    fixed: Mutex<Fixed>,
    /// Reloads are counted there.
    metrics: Arc<Metrics>,
    /// What is in force. Written only under `fixed`'s lock; read by the admin interface
    /// (never by the per-message path).
    current: RwLock<Arc<Loaded>>,
}

impl Service {
    /// `config` is what the proxy was started with, checked from `text` (as the file says:
    /// `listen` before any port 0 was bound).
    pub fn new(
        path: &Path,
        config: &Config,
        text: String,
        control: mpsc::Sender<Control>,
        metrics: Arc<Metrics>,
    ) -> Arc<Self> {
        let doc = text.parse::<DocumentMut>().unwrap_or_default();
        Arc::new(Self {
            path: path.to_owned(),
            control,
            metrics,
            fixed: Mutex::new(fixed(config)),
            current: RwLock::new(Arc::new(Loaded {
                text,
                doc,
                policy: config.policy.clone(),
                admin: config.admin.clone(),
            })),
        })
    }

    /// The configuration file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The configuration in force.
    pub fn current(&self) -> Arc<Loaded> {
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Reads the file again and, when it is valid, puts it in force.
    pub async fn reload(&self) -> Result<Reloaded, ReloadError> {
        let fixed_then = self.fixed.lock().await;
        // systemd hears RELOADING=1 now and READY=1 on every way out.
        let _reloading = crate::notify::Reloading::begin();
        let path = self.path.clone();
        let loaded = tokio::task::spawn_blocking(move || Config::load_with_text(&path))
            .await
            .map_err(|_| ReloadError::Stopped)?;
        let (config, text) = match loaded {
            Ok(c) => c,
            Err(errors) => {
                for e in &errors.0 {
                    tracing::error!(error = %e, "reload refused, the running rules stay");
                }
                self.metrics.reload(false);
                return Err(ReloadError::Invalid(errors));
            }
        };
        let reloaded = self.apply(&fixed_then, config, text, None).await?;
        self.metrics.reload(true);
        tracing::info!(config = %self.path.display(), "configuration reloaded");
        Ok(reloaded)
    }

    /// Edits the file as it was loaded, and when the result is a valid configuration writes
    /// it (atomically) and puts it in force. `edit` says what it did (`T`); when it changed
    /// nothing, nothing is written. The bool says whether the file was written.
    ///
    /// Reading, editing, printing and checking the file run on the blocking pool: a large
    /// configuration takes a good part of a second to check, and the proxy's core task must
    /// not wait for it.
    pub async fn change<T, E>(
        &self,
        edit: impl FnOnce(&mut DocumentMut) -> Result<T, E> + Send + 'static,
    ) -> Result<(T, bool), ChangeError<E>>
    where
        T: Send + 'static,
        E: Send + 'static,
    {
        let fixed_then = self.fixed.lock().await;
        let current = self.current();
        let path = self.path.clone();
        let prepared = tokio::task::spawn_blocking(move || prepare(&path, &current, edit))
            .await
            .map_err(|_| ChangeError::Stopped)??;
        let (done, config, text, doc) = match prepared {
            Prepared::Unchanged(done) => return Ok((done, false)),
            Prepared::Changed(p) => *p,
        };
        let path = self.path.clone();
        let written = text.clone();
        tokio::task::spawn_blocking(move || write_atomically(&path, &written))
            .await
            .map_err(|_| ChangeError::Stopped)?
            .map_err(|e| ChangeError::Io(format!("cannot write the configuration: {e}")))?;
        self.apply(&fixed_then, config, text, Some(doc))
            .await
            .map_err(|_| ChangeError::Stopped)?;
        Ok((done, true))
    }

    /// Puts a checked configuration in force and makes it the current one; `doc` is its
    /// text parsed for editing, when the caller has it already.
    async fn apply(
        &self,
        fixed_then: &Fixed,
        config: Config,
        text: String,
        doc: Option<DocumentMut>,
    ) -> Result<Reloaded, ReloadError> {
        for w in &config.warnings {
            tracing::warn!("{w}");
        }
        let needs_restart = needs_restart(fixed_then, &fixed(&config));
        let (text, doc) = match doc {
            Some(d) => (text, d),
            None => tokio::task::spawn_blocking(move || {
                let doc = text.parse::<DocumentMut>().unwrap_or_default();
                (text, doc)
            })
            .await
            .map_err(|_| ReloadError::Stopped)?,
        };
        let loaded = Arc::new(Loaded {
            text,
            doc,
            policy: config.policy.clone(),
            admin: config.admin,
        });
        let (done, applied) = oneshot::channel();
        let reload = Control::Reload {
            settings: Box::new(config.proxy),
            policy: config.policy,
            tls: config.tls,
            done,
        };
        self.control
            .send(reload)
            .await
            .map_err(|_| ReloadError::Stopped)?;
        applied.await.map_err(|_| ReloadError::Stopped)?;
        *self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = loaded;
        for key in &needs_restart {
            tracing::warn!(
                setting = key.as_str(),
                "changed in the file: takes effect after a restart"
            );
        }
        Ok(Reloaded { needs_restart })
    }

    /// Asks the core task something and waits for its answer.
    pub async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Control) -> Option<T> {
        let (reply, answer) = oneshot::channel();
        self.control.send(make(reply)).await.ok()?;
        answer.await.ok()
    }
}

/// What an edit of the file came to.
enum Prepared<T> {
    /// The file would stay as it is: nothing to write.
    Unchanged(T),
    /// A valid new file: what the edit said, the checked configuration, its text, its
    /// document.
    Changed(Box<(T, Config, String, DocumentMut)>),
}

/// The blocking part of a change: the file must still be what was loaded; the edit is made
/// on a copy of the document and the result checked as a whole.
fn prepare<T, E>(
    path: &Path,
    current: &Loaded,
    edit: impl FnOnce(&mut DocumentMut) -> Result<T, E>,
) -> Result<Prepared<T>, ChangeError<E>> {
    let on_disk = std::fs::read_to_string(path)
        .map_err(|e| ChangeError::Io(format!("cannot read the configuration: {e}")))?;
    if on_disk != current.text {
        return Err(ChangeError::Conflict);
    }
    let mut doc = current.doc.clone();
    let done = edit(&mut doc).map_err(ChangeError::Edit)?;
    let text = doc.to_string();
    if text == current.text {
        return Ok(Prepared::Unchanged(done));
    }
    let file = path.display().to_string();
    let config = Config::from_toml(&text, &file, path.parent()).map_err(ChangeError::Invalid)?;
    Ok(Prepared::Changed(Box::new((done, config, text, doc))))
}

/// The settings that differ between what the proxy started with and `now`, of those that
/// only a restart changes.
fn needs_restart(then: &Fixed, now: &Fixed) -> Vec<String> {
    let mut keys = Vec::new();
    if now.listen != then.listen {
        keys.push("server.listen");
    }
    let (a, b) = (now.limits, then.limits);
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
        ("admin.listen", now.admin != then.admin),
    ] {
        if changed {
            keys.push(key);
        }
    }
    keys.into_iter().map(str::to_owned).collect()
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
        admin: config.admin.as_ref().map(|a| a.listen),
    }
}

/// Replaces the file at `path` with `text` so that a crash leaves either the old file or the
/// new one, never a part: a temporary file in the same folder (same file system, so the
/// rename is atomic), written and synced, renamed over the file, and the folder synced so the
/// rename itself is durable. The file keeps its permissions.
fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map_or_else(|| "config".into(), |n| n.to_string_lossy());
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        if let Ok(meta) = std::fs::metadata(path) {
            f.set_permissions(meta.permissions())?;
        }
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
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

#[cfg(test)]
mod tests {
    use super::write_atomically;

    #[test]
    fn a_write_replaces_the_file_whole_and_keeps_its_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("sipscreen-write-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("c.toml");
        std::fs::write(&path, "old").expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).expect("chmod");
        write_atomically(&path, "new text").expect("written");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "new text");
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o640);
        let left: Vec<_> = std::fs::read_dir(&dir).expect("list").collect();
        assert_eq!(left.len(), 1, "no temporary file left: {left:?}");
        std::fs::remove_dir_all(&dir).expect("clean up");
    }

    #[test]
    fn a_failed_write_leaves_nothing_behind() {
        let dir = std::env::temp_dir().join(format!("sipscreen-nowrite-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        // The target is a folder: the rename fails, after the temporary file was written.
        let target = dir.join("c.toml");
        std::fs::create_dir_all(target.join("inside")).expect("a folder in the way");
        assert!(write_atomically(&target, "text").is_err());
        let names: Vec<String> = std::fs::read_dir(&dir)
            .expect("list")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["c.toml"], "the temporary file is gone");
        std::fs::remove_dir_all(&dir).expect("clean up");
    }
}
