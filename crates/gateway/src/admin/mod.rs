//! The admin API: list, upload, delete and reload modules, show the config,
//! serve Prometheus metrics and health.
//!
//! Each operation is one method of [`Admin`]; two thin transports call them:
//!
//! - HTTP with JSON bodies on `admin.listen` ([`http`]), authenticated by a
//!   bearer token ([`auth`]). Without a token the listener only binds a
//!   loopback address.
//! - JSON-RPC 2.0, one request per line, on the Unix socket `admin.socket`
//!   ([`rpc`]). The socket file is created with mode 0600: filesystem
//!   permissions are its authentication, so whoever may open it is an admin.
//!
//! Changes (upload, delete, reload) are serialised, so two deploys of one
//! module never interleave their file writes and loads. Uploaded files are
//! written to a temporary name and renamed into place, so the folder
//! watcher never sees half a module; its own reload of the renamed file then
//! finds the version already serving.

mod auth;
mod http;
pub(crate) mod logtail;
mod prometheus;
mod redact;
mod rpc;
mod stats;
mod ui;

pub use ui::DashboardConfig;

use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use hyper_util::server::graceful::GracefulShutdown;
use serde::Serialize;
use shanhai_runtime::{ImportError, LoadedModule, Runtime};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::watch;

use crate::canary::{CanaryOutcome, CanaryReport};
use crate::config::{AdminConfig, Config, is_module_name, weight_basis_points};
use crate::listener::{ConnectionLimits, accept_loop};
use crate::registry::{CanaryError, CanaryStart, Loading, ModuleRegistry, ReloadOutcome};
use crate::signing::signature_path;
use auth::AdminAuth;

/// Largest module an upload may carry.
pub(crate) const MAX_MODULE_BYTES: usize = 64 << 20;

/// Largest compiled code an import may carry: wasmtime's code for a Go
/// module is a few times the module's size.
pub(crate) const MAX_COMPILED_BYTES: usize = 128 << 20;

/// Largest signature an upload may carry (a `FILE.sig` line is under 400
/// bytes).
const MAX_SIGNATURE_BYTES: usize = 4096;

/// Why an admin operation failed. Each transport maps the variants to its
/// own codes: an HTTP status, a JSON-RPC error code.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AdminError {
    /// The name cannot be a module name.
    #[error("`{0}` is not a module name: use 1 to 64 letters, digits, '-' and '_'")]
    BadName(String),
    /// No module of that name is loaded, failed or has a file.
    #[error("no module named `{0}`")]
    UnknownModule(String),
    /// The request is malformed.
    #[error("{0}")]
    BadRequest(String),
    /// The body is larger than its limit ([`MAX_MODULE_BYTES`] for a
    /// module, [`MAX_COMPILED_BYTES`] for compiled code), in bytes.
    #[error("the upload exceeds its {0}-byte limit")]
    TooLarge(usize),
    /// The module was refused; whatever served before still serves.
    #[error("{message}")]
    LoadFailed {
        /// The module.
        name: String,
        /// The load error.
        message: String,
    },
    /// The module is not in a state that allows the operation (a canary
    /// without a stable version, a promotion without a canary).
    #[error("{message}")]
    Conflict {
        /// The module.
        name: String,
        /// What is in the way.
        message: String,
    },
    /// Compiled code was refused: unsigned, untrusted, changed, or not for
    /// this engine. The gateway compiles the module itself instead.
    #[error("compiled code refused: {0}")]
    CompiledRefused(String),
    /// Writing or removing a file failed.
    #[error("{0}")]
    Io(String),
}

impl AdminError {
    /// The stable kind, as in the HTTP trigger's errors.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Self::BadName(_) | Self::BadRequest(_) => "bad_request",
            Self::UnknownModule(_) => "unknown_module",
            Self::TooLarge(_) => "body_too_large",
            Self::LoadFailed { .. } => "load_failed",
            Self::Conflict { .. } => "conflict",
            Self::CompiledRefused(_) => "compiled_refused",
            Self::Io(_) => "internal",
        }
    }

    /// The module the error is about, when there is one.
    pub(crate) fn module(&self) -> Option<&str> {
        match self {
            Self::UnknownModule(name)
            | Self::LoadFailed { name, .. }
            | Self::Conflict { name, .. } => Some(name),
            _ => None,
        }
    }
}

/// One module as the admin API shows it.
#[derive(Debug, Serialize)]
pub(crate) struct ModuleInfo {
    name: String,
    /// `serving`, or `failed`: the last load failed and no version serves.
    state: &'static str,
    version: Option<String>,
    kind: Option<&'static str>,
    routes: Vec<String>,
    pool: Option<PoolInfo>,
    /// Why the last load failed (an older version may still serve).
    last_error: Option<String>,
    /// The canary taking part of the traffic, with both versions' figures.
    canary: Option<CanaryReport>,
    /// How the last canary ended.
    last_canary: Option<CanaryOutcome>,
}

impl ModuleInfo {
    /// The canary part: stable version, canary and last canary outcome.
    pub(crate) fn canary_view(&self) -> serde_json::Value {
        serde_json::json!({
            "name": self.name,
            "stable": self.version,
            "canary": self.canary,
            "last_canary": self.last_canary,
        })
    }
}

#[derive(Debug, Serialize)]
struct PoolInfo {
    live: usize,
    idle: usize,
    waiting: usize,
    min_instances: usize,
    max_instances: usize,
    created: u64,
    recycled: u64,
    reaped: u64,
    discarded: u64,
    scale_ups: u64,
}

/// Every module, by name, and those being loaded.
#[derive(Debug, Serialize)]
pub(crate) struct ModuleList {
    modules: Vec<ModuleInfo>,
    /// Modules compiling right now (a Go module takes seconds).
    loading: Vec<Loading>,
}

/// What a canary operation did.
#[derive(Debug, Serialize)]
pub(crate) struct CanaryChanged {
    name: String,
    /// `started`, `replaced`, `reweighted`, `promoted` or `rolled_back`.
    outcome: &'static str,
    /// The stable version after the change.
    stable: Option<String>,
    /// The canary after the change, when one runs.
    canary: Option<CanaryReport>,
}

/// What a change did.
#[derive(Debug, Serialize)]
pub(crate) struct Changed {
    name: String,
    /// The version now serving; `None` once removed.
    version: Option<String>,
    /// `added`, `swapped`, `unchanged` or `removed`.
    outcome: &'static str,
}

/// The answer to an import of compiled code.
#[derive(Debug, Serialize)]
pub(crate) struct Imported {
    /// The SHA-256 of the module the code was compiled from.
    module_sha256: String,
    /// The instruction set of the code.
    isa: &'static str,
    /// The key that signed it.
    signed_by: String,
    /// Always `imported`: the next load of the module skips compiling.
    outcome: &'static str,
}

/// The admin operations over the gateway's modules and config.
pub(crate) struct Admin {
    runtime: Runtime,
    registry: Arc<ModuleRegistry>,
    config: Arc<Config>,
    /// Held by every change, so changes apply one at a time.
    changes: tokio::sync::Mutex<()>,
    http_addr: SocketAddr,
    admin_addr: SocketAddr,
    socket: Option<PathBuf>,
    stopping: watch::Receiver<bool>,
    /// When the admin API started serving (the gateway's uptime).
    started: Instant,
    /// The dashboard's one-second samples.
    stats: stats::Stats,
    /// Log tail polls waiting now (at most `admin.dashboard.max_log_clients`).
    log_clients: AtomicUsize,
}

/// A log tail poll while it waits: counted in [`Admin::log_clients`].
struct LogClient<'a>(&'a AtomicUsize);

impl Drop for LogClient<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Admin {
    /// The dashboard's figures: the process, its listeners, the samples of
    /// the last 15 minutes newer than `since` (Unix milliseconds), and the
    /// figures by module and by trigger.
    pub(crate) fn stats(&self, since: u64) -> serde_json::Value {
        let view = self.stats.view(since);
        let dashboard = &self.config.admin.dashboard;
        serde_json::json!({
            "version": env!("CARGO_PKG_VERSION"),
            "uptime_s": self.started.elapsed().as_secs(),
            "rss_bytes": stats::rss_bytes(),
            "listeners": {
                "http": self.http_addr.to_string(),
                "admin": self.admin_addr.to_string(),
                "socket": self.socket.as_ref().map(|p| p.display().to_string()),
                "tcp": self.config.tcp.keys().collect::<Vec<_>>(),
            },
            "sample_interval_s": 1,
            "samples_kept": stats::SAMPLES,
            "now": view.now,
            "series": view.series,
            "modules": view.modules,
            "triggers": view.triggers,
            "loading": self.registry.loading(),
            "log_tail": {
                "clients": self.log_clients.load(Ordering::Relaxed),
                "max_clients": dashboard.max_log_clients,
                "buffer_lines": dashboard.log_buffer_lines,
                "dropped_total": logtail::dropped_total(),
            },
        })
    }

    /// One poll of the live log tail; `None` when
    /// `admin.dashboard.max_log_clients` polls already wait.
    pub(crate) async fn log_poll(&self, query: &logtail::LogQuery) -> Option<logtail::LogBatch> {
        let max = self.config.admin.dashboard.max_log_clients;
        let admitted = self
            .log_clients
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < max).then_some(n + 1)
            })
            .is_ok();
        if !admitted {
            return None;
        }
        let _client = LogClient(&self.log_clients);
        Some(logtail::poll(query).await)
    }

    /// The longest a log tail poll may wait.
    pub(crate) fn log_poll_timeout(&self) -> Duration {
        Duration::from_millis(self.config.admin.dashboard.log_poll_timeout_ms)
    }

    /// Whether the dashboard is served.
    pub(crate) fn dashboard_enabled(&self) -> bool {
        self.config.admin.dashboard.enabled
    }

    /// Every loaded module, then those that failed with no version serving.
    pub(crate) fn list(&self) -> ModuleList {
        let mut failures = self.registry.failures();
        let mut modules: Vec<ModuleInfo> = self
            .registry
            .modules()
            .iter()
            .map(|module| self.info(module, failures.remove(module.name())))
            .collect();
        modules.extend(
            failures
                .into_iter()
                .map(|(name, error)| failed_info(name, error)),
        );
        modules.sort_by(|a, b| a.name.cmp(&b.name));
        ModuleList {
            modules,
            loading: self.registry.loading(),
        }
    }

    /// One module.
    pub(crate) fn get(&self, name: &str) -> Result<ModuleInfo, AdminError> {
        check_name(name)?;
        let error = self.registry.failures().remove(name);
        match (self.registry.get(name), error) {
            (Some(module), error) => Ok(self.info(&module, error)),
            (None, Some(error)) => Ok(failed_info(name.to_owned(), error)),
            (None, None) => Err(AdminError::UnknownModule(name.to_owned())),
        }
    }

    /// Installs `wasm` (and its signature) as module `name`'s file and loads
    /// it. When loading fails the previous files are put back and the
    /// previous version keeps serving. The work runs in its own task, so a
    /// client that disconnects mid-way cannot leave the refused file on
    /// disk.
    pub(crate) async fn upload(
        self: &Arc<Self>,
        name: &str,
        wasm: Vec<u8>,
        signature: Option<String>,
    ) -> Result<Changed, AdminError> {
        let (admin, name) = (self.clone(), name.to_owned());
        tokio::spawn(async move { admin.install(&name, wasm, signature).await })
            .await
            .unwrap_or_else(|err| Err(AdminError::Io(format!("the upload task failed: {err}"))))
    }

    async fn install(
        &self,
        name: &str,
        wasm: Vec<u8>,
        signature: Option<String>,
    ) -> Result<Changed, AdminError> {
        check_name(name)?;
        if wasm.len() > MAX_MODULE_BYTES {
            return Err(AdminError::TooLarge(MAX_MODULE_BYTES));
        }
        check_signature_text(signature.as_deref())?;
        let _change = self.changes.lock().await;
        let path = self.config.module_path(name);
        let sig = signature_path(&path);
        // What was on disk, so a refused upload can be undone: otherwise the
        // refused file would be what the next restart tries to load.
        let previous = (std::fs::read(&path).ok(), std::fs::read(&sig).ok());
        // The signature first: when the module lands, the loader finds the
        // signature that belongs to it. Without one, an older signature
        // would belong to other bytes.
        match signature {
            // One line, as `shanhai sign` writes it.
            Some(signature) => {
                write_atomically(sig.clone(), format!("{signature}\n").into_bytes()).await?
            }
            None => remove_if_present(&sig)?,
        }
        write_atomically(path.clone(), wasm).await?;
        tracing::info!(module = name, "module uploaded through the admin API");
        let loaded = self.load(name).await;
        if loaded.is_err() {
            tracing::warn!(
                module = name,
                "upload refused; restoring the previous files"
            );
            let (old_wasm, old_sig) = previous;
            match old_sig {
                Some(bytes) => write_atomically(sig, bytes).await?,
                None => remove_if_present(&sig)?,
            }
            match old_wasm {
                Some(bytes) => write_atomically(path, bytes).await?,
                None => remove_if_present(&path)?,
            }
        }
        loaded
    }

    /// Imports `code`, compiled elsewhere from the module whose SHA-256 is
    /// `module_sha256`, into the compile cache once its signature (from a
    /// trusted key, see [`crate::compiled`]) and wasmtime's own checks
    /// pass. A module with that hash uploaded afterwards loads without
    /// compiling. Refused code changes nothing.
    pub(crate) async fn import_compiled(
        &self,
        module_sha256: &str,
        code: Vec<u8>,
        signature: Option<String>,
    ) -> Result<Imported, AdminError> {
        let is_digest = module_sha256.len() == 64
            && module_sha256
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !is_digest {
            return Err(AdminError::BadRequest(format!(
                "`{module_sha256}` is not a module's SHA-256: 64 lowercase hex digits"
            )));
        }
        if code.len() > MAX_COMPILED_BYTES {
            return Err(AdminError::TooLarge(MAX_COMPILED_BYTES));
        }
        check_signature_text(signature.as_deref())?;
        let isa = self.runtime.code_isa();
        let refused = |message: String| {
            tracing::warn!(module_sha256, isa, "compiled code refused: {message}");
            AdminError::CompiledRefused(message)
        };
        let signed = crate::compiled::verify(
            &self.config.signing,
            module_sha256,
            isa,
            &code,
            signature.as_deref(),
        )
        .map_err(|err| refused(err.to_string()))?;
        let _change = self.changes.lock().await;
        self.runtime
            .import_compiled(module_sha256, code)
            .await
            .map_err(|err| match err {
                ImportError::Incompatible(_) => refused(format!(
                    "{err} (compile it for the layout in /admin/config, runtime.memory_plan: `shanhai compile --target ARCH --config` with this gateway's config, and `--va-bits`)"
                )),
                ImportError::NoCache => refused(err.to_string()),
                ImportError::Io(_) => AdminError::Io(err.to_string()),
            })?;
        tracing::info!(
            module_sha256,
            isa,
            signed_by = %signed.key,
            "compiled code imported: the module with this hash loads without compiling"
        );
        Ok(Imported {
            module_sha256: module_sha256.to_owned(),
            isa,
            signed_by: signed.key.to_string(),
            outcome: "imported",
        })
    }

    /// Removes module `name`'s file (and signature) and unmounts it.
    pub(crate) async fn delete(&self, name: &str) -> Result<Changed, AdminError> {
        check_name(name)?;
        let _change = self.changes.lock().await;
        let path = self.config.module_path(name);
        let known = self.registry.get(name).is_some()
            || self.registry.failures().contains_key(name)
            || path.exists();
        if !known {
            return Err(AdminError::UnknownModule(name.to_owned()));
        }
        remove_if_present(&path)?;
        remove_if_present(&signature_path(&path))?;
        if self.config.modules.contains_key(name) {
            // `reload` would report a configured module's missing file as an
            // error and keep serving it.
            self.registry.unmount(&self.config, name);
        } else {
            let _ = self
                .registry
                .reload(&self.runtime, &self.config, name)
                .await;
        }
        tracing::info!(module = name, "module deleted through the admin API");
        Ok(Changed {
            name: name.to_owned(),
            version: None,
            outcome: "removed",
        })
    }

    /// Reloads module `name` from its file.
    pub(crate) async fn reload(&self, name: &str) -> Result<Changed, AdminError> {
        check_name(name)?;
        let _change = self.changes.lock().await;
        let known = self.registry.get(name).is_some()
            || self.config.modules.contains_key(name)
            || self.config.module_path(name).exists();
        if !known {
            return Err(AdminError::UnknownModule(name.to_owned()));
        }
        self.load(name).await
    }

    /// Loads `wasm` as a canary of module `name` taking `weight_percent` of
    /// its traffic. The same version again only changes the weight.
    pub(crate) async fn canary_deploy(
        &self,
        name: &str,
        wasm: Vec<u8>,
        signature: Option<String>,
        weight_percent: f64,
    ) -> Result<CanaryChanged, AdminError> {
        check_name(name)?;
        if wasm.len() > MAX_MODULE_BYTES {
            return Err(AdminError::TooLarge(MAX_MODULE_BYTES));
        }
        check_signature_text(signature.as_deref())?;
        let weight = weight_basis_points(weight_percent)
            .map_err(|message| AdminError::BadRequest(format!("weight: {message}")))?;
        let _change = self.changes.lock().await;
        let start = self
            .registry
            .deploy_canary(&self.runtime, &self.config, name, wasm, signature, weight)
            .await
            .map_err(|err| canary_error(name, err))?;
        Ok(self.canary_changed(
            name,
            match start {
                CanaryStart::Started => "started",
                CanaryStart::Replaced => "replaced",
                CanaryStart::Reweighted => "reweighted",
            },
        ))
    }

    /// Makes module `name`'s canary its stable version: its file (and
    /// signature) become the module's, so a restart serves it too.
    pub(crate) async fn canary_promote(&self, name: &str) -> Result<CanaryChanged, AdminError> {
        check_name(name)?;
        let _change = self.changes.lock().await;
        let canary = self
            .registry
            .canary(name)
            .ok_or_else(|| AdminError::Conflict {
                name: name.to_owned(),
                message: format!("module `{name}` has no canary to promote"),
            })?;
        let path = self.config.module_path(name);
        let sig = signature_path(&path);
        // The signature first, as for an upload: the watcher's reload of the
        // new file then finds the signature that belongs to it.
        match canary.signature() {
            Some(text) => write_atomically(sig, format!("{text}\n").into_bytes()).await?,
            None => remove_if_present(&sig)?,
        }
        write_atomically(path, canary.wasm().to_vec()).await?;
        self.registry
            .promote_canary(&self.config, name, &canary)
            .map_err(|err| canary_error(name, err))?;
        Ok(self.canary_changed(name, "promoted"))
    }

    /// Stops module `name`'s canary; the stable version takes all traffic.
    pub(crate) async fn canary_rollback(&self, name: &str) -> Result<CanaryChanged, AdminError> {
        check_name(name)?;
        let _change = self.changes.lock().await;
        self.registry
            .rollback_canary(name)
            .map_err(|err| canary_error(name, err))?;
        Ok(self.canary_changed(name, "rolled_back"))
    }

    fn canary_changed(&self, name: &str, outcome: &'static str) -> CanaryChanged {
        CanaryChanged {
            name: name.to_owned(),
            outcome,
            stable: self.registry.get(name).map(|m| m.version().to_owned()),
            canary: self.registry.canary(name).map(|c| c.report()),
        }
    }

    /// The effective config, with secrets redacted, and the memory layout
    /// the runtime chose for this process's address space.
    pub(crate) fn config(&self) -> serde_json::Value {
        let mut config = redact::config_json(&self.config);
        let plan = self.runtime.memory_plan();
        // `shanhai deploy --precompiled` picks the code compiled for this.
        config["runtime"]["code_isa"] = self.runtime.code_isa().into();
        config["runtime"]["memory_plan"] = serde_json::json!({
            "strategy": plan.strategy.as_str(),
            "pool_slots": plan.pool_slots,
            "memory_reservation_bytes": plan.memory_reservation,
            "memory_guard_bytes": plan.memory_guard,
            "bounds_checks": plan.bounds_checks,
            "reserved_up_front_bytes": plan.reserved_up_front,
            "address_space": plan.space.to_string(),
            "reason": plan.reason,
            "summary": plan.summary(),
        });
        config
    }

    /// Whether the gateway is serving (modules loaded, listeners up, not
    /// shutting down), with the details.
    pub(crate) fn readiness(&self) -> (bool, serde_json::Value) {
        let ready = !*self.stopping.borrow() && self.registry.started();
        let body = serde_json::json!({
            "ready": ready,
            "modules": self.registry.modules().iter().map(|m| m.name().to_owned()).collect::<Vec<_>>(),
            "loading": self.registry.pending(),
            "failed": self.registry.failures(),
            "listeners": {
                "http": self.http_addr.to_string(),
                "admin": self.admin_addr.to_string(),
                "socket": self.socket.as_ref().map(|p| p.display().to_string()),
            },
        });
        (ready, body)
    }

    async fn load(&self, name: &str) -> Result<Changed, AdminError> {
        let outcome = self
            .registry
            .reload(&self.runtime, &self.config, name)
            .await
            .map_err(|err| AdminError::LoadFailed {
                name: name.to_owned(),
                message: err.to_string(),
            })?;
        Ok(Changed {
            name: name.to_owned(),
            version: self.registry.get(name).map(|m| m.version().to_owned()),
            outcome: match outcome {
                ReloadOutcome::Added => "added",
                ReloadOutcome::Swapped => "swapped",
                ReloadOutcome::Unchanged => "unchanged",
                ReloadOutcome::Removed => "removed",
            },
        })
    }

    fn info(&self, module: &LoadedModule, last_error: Option<String>) -> ModuleInfo {
        let name = module.name();
        let routes = self.config.http_routes(name).listed();
        ModuleInfo {
            name: name.to_owned(),
            state: "serving",
            version: Some(module.version().to_owned()),
            kind: Some(module.kind().as_str()),
            routes,
            pool: Some({
                let stats = module.pool_stats();
                PoolInfo {
                    live: stats.live,
                    idle: stats.idle,
                    waiting: stats.waiting,
                    min_instances: module.limits().min_instances,
                    max_instances: stats.max_instances,
                    created: stats.created,
                    recycled: stats.recycled,
                    reaped: stats.reaped,
                    discarded: stats.discarded,
                    scale_ups: stats.scale_ups,
                }
            }),
            last_error,
            canary: self.registry.canary(name).map(|c| c.report()),
            last_canary: self.registry.canary_outcome(name),
        }
    }
}

fn failed_info(name: String, error: String) -> ModuleInfo {
    ModuleInfo {
        name,
        state: "failed",
        version: None,
        kind: None,
        routes: Vec::new(),
        pool: None,
        last_error: Some(error),
        canary: None,
        last_canary: None,
    }
}

fn check_signature_text(signature: Option<&str>) -> Result<(), AdminError> {
    match signature {
        Some(signature)
            if signature.is_empty()
                || signature.len() > MAX_SIGNATURE_BYTES
                || !signature.bytes().all(|b| b.is_ascii_graphic() || b == b' ') =>
        {
            Err(AdminError::BadRequest(format!(
                "the signature must be 1 to {MAX_SIGNATURE_BYTES} printable characters (as in FILE.sig)"
            )))
        }
        _ => Ok(()),
    }
}

fn canary_error(name: &str, err: CanaryError) -> AdminError {
    match err {
        CanaryError::Load(err) => AdminError::LoadFailed {
            name: name.to_owned(),
            message: err.to_string(),
        },
        other => AdminError::Conflict {
            name: name.to_owned(),
            message: other.to_string(),
        },
    }
}

fn check_name(name: &str) -> Result<(), AdminError> {
    if is_module_name(name) {
        Ok(())
    } else {
        Err(AdminError::BadName(name.to_owned()))
    }
}

/// Writes `bytes` to a temporary file beside `path`, flushes it to disk and
/// renames it over `path`: readers see the old file or the whole new one.
/// The temporary name does not end in `.wasm`, so the watcher ignores it.
async fn write_atomically(path: PathBuf, bytes: Vec<u8>) -> Result<(), AdminError> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let write = move || -> std::io::Result<()> {
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)?;
        let file_name = path.file_name().unwrap_or_default().to_string_lossy();
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let tmp = dir.join(format!(".{file_name}.upload-{}-{n}", std::process::id()));
        let written = std::fs::File::create(&tmp)
            .and_then(|mut file| {
                file.write_all(&bytes)?;
                file.sync_all()
            })
            .and_then(|()| std::fs::rename(&tmp, &path));
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written.map_err(|err| {
            std::io::Error::new(err.kind(), format!("writing {}: {err}", path.display()))
        })
    };
    tokio::task::spawn_blocking(write)
        .await
        .map_err(|err| AdminError::Io(err.to_string()))?
        .map_err(|err| AdminError::Io(err.to_string()))
}

fn remove_if_present(path: &Path) -> Result<(), AdminError> {
    match std::fs::remove_file(path) {
        Err(err) if err.kind() != std::io::ErrorKind::NotFound => Err(AdminError::Io(format!(
            "removing {}: {err}",
            path.display()
        ))),
        _ => Ok(()),
    }
}

/// The admin listeners, bound (so that a bad address fails the start) but
/// not serving yet.
pub(crate) struct AdminListeners {
    tcp: TcpListener,
    socket: Option<(UnixListener, PathBuf)>,
    auth: AdminAuth,
}

impl AdminListeners {
    /// Checks the authentication settings, binds the HTTP listener and the
    /// Unix socket, and installs the metrics recorder.
    pub(crate) async fn bind(admin: &AdminConfig) -> anyhow::Result<Self> {
        let auth = AdminAuth::from_config(admin)?;
        let tcp = TcpListener::bind(admin.listen).await.with_context(|| {
            format!("binding the admin listener {} (admin.listen)", admin.listen)
        })?;
        let socket = if admin.socket.as_os_str().is_empty() {
            None
        } else {
            let listener = bind_socket(&admin.socket)
                .await
                .with_context(|| format!("admin.socket {}", admin.socket.display()))?;
            Some((listener, admin.socket.clone()))
        };
        // Installed before modules load, so their loads are counted.
        prometheus::handle();
        Ok(Self { tcp, socket, auth })
    }

    /// Starts serving; both listeners stop when `stop` turns true.
    pub(crate) fn serve(
        self,
        runtime: Runtime,
        registry: Arc<ModuleRegistry>,
        config: Arc<Config>,
        http_addr: SocketAddr,
        limits: ConnectionLimits,
        stop: watch::Receiver<bool>,
    ) -> anyhow::Result<AdminServer> {
        let addr = self.tcp.local_addr()?;
        let socket_path = self.socket.as_ref().map(|(_, path)| path.clone());
        logtail::configure(config.admin.dashboard.log_buffer_lines);
        let stats = stats::Stats::new();
        tokio::spawn(stats.clone().run(prometheus::handle(), stop.clone()));
        let admin = Arc::new(Admin {
            runtime,
            registry,
            config,
            changes: tokio::sync::Mutex::new(()),
            http_addr,
            admin_addr: addr,
            socket: socket_path.clone(),
            stopping: stop.clone(),
            started: Instant::now(),
            stats,
            log_clients: AtomicUsize::new(0),
        });
        if let Some(file) = self.auth.token_file() {
            tracing::info!(%addr, token_file = %file.display(), "admin API listening (bearer token required: the CLI reads it from admin.token_file)");
        } else if self.auth.required() {
            tracing::info!(%addr, "admin API listening (bearer token required)");
        } else {
            tracing::info!(%addr, "admin API listening (no token: loopback only)");
        }
        let service = Arc::new(http::AdminHttp::new(
            admin.clone(),
            self.auth,
            prometheus::handle(),
        ));
        let http = tokio::spawn(accept_loop(
            self.tcp,
            limits,
            move |request, _remote| {
                let service = service.clone();
                async move { service.handle(request).await }
            },
            stop.clone(),
        ));
        let rpc = self.socket.map(|(listener, path)| {
            tracing::info!(socket = %path.display(), "admin JSON-RPC listening");
            tokio::spawn(rpc::serve(listener, admin, stop))
        });
        Ok(AdminServer {
            addr,
            socket: socket_path,
            http,
            rpc,
        })
    }
}

/// Binds the Unix socket at `path` with mode 0600. A stale socket file (no
/// one answers on it) is replaced; a live one, or any other file, is not.
async fn bind_socket(path: &Path) -> anyhow::Result<UnixListener> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            if tokio::net::UnixStream::connect(path).await.is_ok() {
                anyhow::bail!("another process is serving on this socket");
            }
            std::fs::remove_file(path).context("removing the stale socket")?;
        }
        Ok(_) => anyhow::bail!("the path exists and is not a socket; refusing to replace it"),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => return Err(err.into()),
    }
    // Bound under a temporary name and renamed once its mode is 0600, so
    // the socket is never reachable with looser permissions.
    let file_name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = path.with_file_name(format!(".{file_name}.{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let listener = UnixListener::bind(&tmp).context("binding")?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))
        .and_then(|()| std::fs::rename(&tmp, path))
        .inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })
        .context("setting the socket's mode")?;
    Ok(listener)
}

/// The running admin listeners.
pub(crate) struct AdminServer {
    addr: SocketAddr,
    socket: Option<PathBuf>,
    http: tokio::task::JoinHandle<GracefulShutdown>,
    rpc: Option<tokio::task::JoinHandle<()>>,
}

impl AdminServer {
    /// The address of the admin HTTP listener.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The path of the JSON-RPC socket, when there is one.
    pub(crate) fn socket(&self) -> Option<&Path> {
        self.socket.as_deref()
    }

    /// Once the stop signal was sent: waits until no new connections are
    /// accepted, removes the socket file, and returns what still has to
    /// drain (HTTP connections, JSON-RPC connections finishing their
    /// current request).
    pub(crate) async fn stopped(self) -> impl Future<Output = ()> {
        let http = self.http.await.ok();
        if let Some(path) = &self.socket {
            let _ = std::fs::remove_file(path);
        }
        async move {
            let http = async {
                if let Some(connections) = http {
                    connections.shutdown().await;
                }
            };
            let rpc = async {
                if let Some(rpc) = self.rpc {
                    let _ = rpc.await;
                }
            };
            tokio::join!(http, rpc);
        }
    }
}
