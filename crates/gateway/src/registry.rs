//! The set of loaded modules and the routes that lead to them.
//!
//! Readers take a cheap snapshot (an `Arc`) of the current table; loading a
//! module builds its replacement off to the side and swaps it in, so a
//! request always sees one complete, consistent version.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, RwLock};

use shanhai_runtime::{LoadError, LoadedModule, Runtime};

use crate::config::{Config, is_module_name};

/// A route's target: the module and the path prefix it is mounted at.
#[derive(Debug, Clone)]
pub struct RouteMatch {
    /// Module name.
    pub module: Arc<str>,
    /// The mount point (`/hello` for `/hello/*`); the rest is `PATH_INFO`.
    pub mount: Arc<str>,
}

#[derive(Default)]
struct RouteTable {
    exact: HashMap<String, RouteMatch>,
    /// `(prefix, target)`, longest prefix first.
    prefixes: Vec<(String, RouteMatch)>,
}

impl RouteTable {
    fn add(&mut self, route: &str, module: &Arc<str>) {
        if let Some(prefix) = route.strip_suffix("/*") {
            let target = RouteMatch {
                module: module.clone(),
                mount: Arc::from(prefix),
            };
            self.prefixes.push((format!("{prefix}/"), target));
        } else {
            let target = RouteMatch {
                module: module.clone(),
                mount: Arc::from(route),
            };
            self.exact.insert(route.to_owned(), target);
        }
    }

    fn finish(&mut self) {
        self.prefixes
            .sort_by_key(|(prefix, _)| std::cmp::Reverse(prefix.len()));
    }

    fn lookup(&self, path: &str) -> Option<&RouteMatch> {
        self.exact.get(path).or_else(|| {
            self.prefixes
                .iter()
                .find(|(prefix, _)| path.starts_with(prefix.as_str()))
                .map(|(_, target)| target)
        })
    }
}

#[derive(Default)]
struct Snapshot {
    modules: BTreeMap<Arc<str>, Arc<LoadedModule>>,
    routes: RouteTable,
}

/// Loaded modules by name, with their routes.
pub struct ModuleRegistry {
    current: RwLock<Arc<Snapshot>>,
    failures: RwLock<BTreeMap<String, String>>,
}

impl Default for ModuleRegistry {
    fn default() -> Self {
        Self {
            current: RwLock::new(Arc::new(Snapshot::default())),
            failures: RwLock::new(BTreeMap::new()),
        }
    }
}

impl ModuleRegistry {
    /// The module named `name`.
    pub fn get(&self, name: &str) -> Option<Arc<LoadedModule>> {
        self.current.read().unwrap().modules.get(name).cloned()
    }

    /// The module serving `path`, and where it is mounted.
    pub fn route(&self, path: &str) -> Option<(RouteMatch, Arc<LoadedModule>)> {
        let snapshot = self.current.read().unwrap().clone();
        let target = snapshot.routes.lookup(path)?.clone();
        let module = snapshot.modules.get(&target.module)?.clone();
        Some((target, module))
    }

    /// Every loaded module, by name.
    pub fn modules(&self) -> Vec<Arc<LoadedModule>> {
        self.current
            .read()
            .unwrap()
            .modules
            .values()
            .cloned()
            .collect()
    }

    /// Modules that failed to load, with the reason.
    pub fn failures(&self) -> BTreeMap<String, String> {
        self.failures.read().unwrap().clone()
    }

    /// Loads every module of the config and of its modules folder. A module
    /// that fails is logged and recorded; the others still load.
    pub async fn load_all(&self, runtime: &Runtime, config: &Config) -> usize {
        let mut names: Vec<String> = config.modules.keys().cloned().collect();
        names.extend(discover(&config.server.modules_dir));
        names.sort();
        names.dedup();
        self.load_names(runtime, config, &names).await
    }

    /// Loads the named modules (files found through the config) and swaps
    /// them in. Returns how many loaded.
    pub async fn load_names(&self, runtime: &Runtime, config: &Config, names: &[String]) -> usize {
        let mut count = 0;
        for name in names {
            if self.reload(runtime, config, name).await.is_ok() {
                count += 1;
            }
        }
        count
    }

    /// (Re)loads one module from its file and swaps it in atomically:
    /// requests already running finish on the old version, new ones get the
    /// new one. When loading fails the old version (if any) keeps serving and
    /// the failure is recorded. When the file is gone the module is
    /// unmounted.
    pub async fn reload(
        &self,
        runtime: &Runtime,
        config: &Config,
        name: &str,
    ) -> Result<ReloadOutcome, LoadError> {
        let outcome = self.reload_inner(runtime, config, name).await;
        let result = match &outcome {
            Ok(ReloadOutcome::Added) => "added",
            Ok(ReloadOutcome::Swapped) => "swapped",
            Ok(ReloadOutcome::Unchanged) => "unchanged",
            Ok(ReloadOutcome::Removed) => "removed",
            Err(_) => "failed",
        };
        metrics::counter!("shanhai_module_reloads_total", "result" => result).increment(1);
        outcome
    }

    async fn reload_inner(
        &self,
        runtime: &Runtime,
        config: &Config,
        name: &str,
    ) -> Result<ReloadOutcome, LoadError> {
        let path = config.module_path(name);
        // A configured module's file must exist (a missing one is an error
        // to report); a discovered module whose file went away is unmounted.
        if !path.exists() && !config.modules.contains_key(name) {
            let removed = self.apply(config, |modules| modules.remove(name));
            self.failures.write().unwrap().remove(name);
            if removed.is_some() {
                tracing::info!(module = name, path = %path.display(), "module file removed; unmounted");
            }
            return Ok(ReloadOutcome::Removed);
        }
        match load_one(runtime, config, name, self.get(name).as_deref()).await {
            Ok(None) => {
                self.failures.write().unwrap().remove(name);
                Ok(ReloadOutcome::Unchanged)
            }
            Ok(Some(module)) => {
                let version = module.version().to_owned();
                let previous =
                    self.apply(config, |modules| modules.insert(Arc::from(name), module));
                self.failures.write().unwrap().remove(name);
                match previous {
                    Some(old) if old.version() == version => Ok(ReloadOutcome::Unchanged),
                    Some(old) => {
                        tracing::info!(module = name, from = old.version(), to = %version, "module swapped");
                        Ok(ReloadOutcome::Swapped)
                    }
                    None => Ok(ReloadOutcome::Added),
                }
            }
            Err(err) => {
                let serving = self.get(name).map(|m| m.version().to_owned());
                tracing::error!(
                    module = name,
                    path = %path.display(),
                    error = %err,
                    still_serving = serving.as_deref().unwrap_or("nothing"),
                    "module refused"
                );
                self.failures
                    .write()
                    .unwrap()
                    .insert(name.to_owned(), err.to_string());
                Err(err)
            }
        }
    }

    /// Unmounts module `name` and forgets its last failure, whatever its
    /// file holds; returns whether it was mounted. Requests already running
    /// finish on it. For modules the config names, whose missing file
    /// [`reload`](Self::reload) reports as an error instead.
    pub fn unmount(&self, config: &Config, name: &str) -> bool {
        let removed = self.apply(config, |modules| modules.remove(name));
        self.failures.write().unwrap().remove(name);
        if removed.is_some() {
            tracing::info!(module = name, "module unmounted");
        }
        removed.is_some()
    }

    /// Builds the next snapshot from a changed module map and swaps it in.
    /// The write lock is held while building, so concurrent changes never
    /// lose one another.
    fn apply<R>(
        &self,
        config: &Config,
        change: impl FnOnce(&mut BTreeMap<Arc<str>, Arc<LoadedModule>>) -> R,
    ) -> R {
        let mut current = self.current.write().unwrap();
        let mut modules = current.modules.clone();
        let result = change(&mut modules);
        let mut routes = RouteTable::default();
        for name in modules.keys() {
            routes.add(&format!("/{name}"), name);
            routes.add(&format!("/{name}/*"), name);
            if let Some(section) = config.modules.get(&**name) {
                for route in &section.routes {
                    routes.add(route, name);
                }
            }
        }
        routes.finish();
        *current = Arc::new(Snapshot { modules, routes });
        result
    }
}

/// What [`ModuleRegistry::reload`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// A module that was not loaded now is.
    Added,
    /// A new version replaced the old one.
    Swapped,
    /// The file's content is what was already serving.
    Unchanged,
    /// The file is gone; the module was unmounted.
    Removed,
}

/// Reads, verifies and loads module `name`; `None` when its file holds
/// exactly the version already serving (a touched file, or the watcher
/// seeing a file the admin API just installed), so that nothing is
/// re-initialised for nothing.
async fn load_one(
    runtime: &Runtime,
    config: &Config,
    name: &str,
    serving: Option<&LoadedModule>,
) -> Result<Option<Arc<LoadedModule>>, LoadError> {
    let settings = config
        .settings_for(name)
        .map_err(|err| LoadError::Abi(err.to_string()))?;
    let path = config.module_path(name);
    let wasm = tokio::fs::read(&path).await.map_err(|err| {
        LoadError::Io(std::io::Error::new(
            err.kind(),
            format!("reading {}: {err}", path.display()),
        ))
    })?;
    // Before the unchanged check: a signature that stopped verifying must
    // be reported even when the module bytes did not change.
    crate::signing::verify_module(&config.signing, &path, &wasm)?;
    if serving.is_some_and(|module| shanhai_runtime::module_version(&wasm) == module.version()) {
        return Ok(None);
    }
    runtime.load(name, wasm, settings).await.map(Some)
}

/// Module names from the `*.wasm` files of a folder.
fn discover(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        tracing::warn!(dir = %dir.display(), "modules folder not found; serving configured modules only");
        return Vec::new();
    };
    entries
        .filter_map(|entry| {
            let path = entry.ok()?.path();
            if path.extension()? != "wasm" {
                return None;
            }
            let name = path.file_stem()?.to_str()?.to_owned();
            if is_module_name(&name) {
                Some(name)
            } else {
                tracing::warn!(file = %path.display(), "skipping file: module names may contain only letters, digits, '-' and '_'");
                None
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_prefix_wins_and_exact_beats_prefix() {
        let mut table = RouteTable::default();
        let a: Arc<str> = Arc::from("a");
        let b: Arc<str> = Arc::from("b");
        table.add("/a", &a);
        table.add("/a/*", &a);
        table.add("/a/b/*", &b);
        table.add("/a/b", &b);
        table.finish();
        assert_eq!(&*table.lookup("/a").unwrap().module, "a");
        assert_eq!(&*table.lookup("/a/x").unwrap().module, "a");
        assert_eq!(&*table.lookup("/a/b/c").unwrap().module, "b");
        assert_eq!(&*table.lookup("/a/b/c").unwrap().mount, "/a/b");
        assert!(table.lookup("/ab").is_none());
        assert!(table.lookup("/").is_none());
    }
}
