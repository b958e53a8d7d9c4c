//! Hot plug: watches the modules folder and reloads modules whose files
//! appear, change or disappear.
//!
//! File events are debounced per module: a reload starts only after the
//! file has been quiet for [`SETTLE`], so a slow `cp` is not loaded half
//! written (and if it were, validation would refuse it, the old version
//! would keep serving, and the file's next event would retry). Compiles run
//! one at a time, so a burst of new files cannot take every core from the
//! requests being served.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use notify::{EventKind, RecursiveMode, Watcher};
use shanhai_runtime::Runtime;
use tokio::sync::mpsc;

use crate::config::{Config, is_module_name};
use crate::registry::ModuleRegistry;

/// How long a file must be quiet before it is (re)loaded.
pub(crate) const SETTLE: Duration = Duration::from_millis(300);

/// A running folder watcher; dropping it stops watching.
pub struct ModuleWatcher {
    _watcher: notify::RecommendedWatcher,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ModuleWatcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ModuleWatcher {
    /// Starts watching `config.server.modules_dir`.
    pub fn start(
        runtime: Runtime,
        registry: Arc<ModuleRegistry>,
        config: Arc<Config>,
    ) -> notify::Result<Self> {
        let (events, mut changed) = mpsc::unbounded_channel::<PathBuf>();
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| match event {
                Ok(event) if !matches!(event.kind, EventKind::Access(_)) => {
                    for path in event.paths {
                        let _ = events.send(path);
                    }
                }
                Ok(_) => {}
                Err(err) => tracing::warn!(error = %err, "module folder watch error"),
            })?;
        let dir = config.server.modules_dir.clone();
        watcher.watch(&dir, RecursiveMode::NonRecursive)?;
        tracing::info!(dir = %dir.display(), "watching the modules folder for changes");

        let task = tokio::spawn(async move {
            let names = FileNames::new(&config);
            let mut pending: HashMap<String, Instant> = HashMap::new();
            loop {
                // Woken when the first pending file has been quiet for
                // SETTLE, not on a fixed tick: an idle box stays asleep.
                let first_settled = pending.values().min().map(|last| *last + SETTLE);
                tokio::select! {
                    path = changed.recv() => match path {
                        Some(path) => {
                            if let Some(name) = names.module_for(&path) {
                                pending.insert(name, Instant::now());
                            }
                        }
                        None => return,
                    },
                    () = sleep_until(first_settled) => {
                        let ready: Vec<String> = pending
                            .iter()
                            .filter(|(_, last)| last.elapsed() >= SETTLE)
                            .map(|(name, _)| name.clone())
                            .collect();
                        for name in ready {
                            pending.remove(&name);
                            // Sequential on purpose: one compile at a time.
                            let _ = registry.reload(&runtime, &config, &name).await;
                        }
                    }
                }
            }
        });
        Ok(Self {
            _watcher: watcher,
            task,
        })
    }
}

/// Sleeps until `at`, or for ever when there is nothing to wait for.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// Maps file names in the modules folder to module names: a configured
/// `file` first, else `NAME.wasm`. Configured canary files belong to no
/// module: they are loaded when the gateway starts.
struct FileNames {
    configured: HashMap<PathBuf, String>,
    canaries: Vec<PathBuf>,
    dir: PathBuf,
}

impl FileNames {
    fn new(config: &Config) -> Self {
        let configured = config
            .modules
            .keys()
            .map(|name| (config.module_path(name), name.clone()))
            .collect();
        Self {
            configured,
            canaries: config
                .modules
                .keys()
                .filter_map(|name| config.canary_path(name))
                .collect(),
            dir: config.server.modules_dir.clone(),
        }
    }

    fn module_for(&self, path: &Path) -> Option<String> {
        let file = path.file_name()?;
        // `X.sig` is the signature of module file X: a new one may let X load.
        if let Some(signed) = file.to_str().and_then(|f| f.strip_suffix(".sig")) {
            return self.module_for(&self.dir.join(signed));
        }
        let in_dir = self.dir.join(file);
        if let Some(name) = self.configured.get(&in_dir) {
            return Some(name.clone());
        }
        if self.canaries.contains(&in_dir) {
            return None;
        }
        let name = Path::new(file).file_stem()?.to_str()?;
        (Path::new(file).extension()? == "wasm" && is_module_name(name)).then(|| name.to_owned())
    }
}
