//! The set of loaded modules and the routes that lead to them.
//!
//! Readers take a cheap snapshot (an `Arc`) of the current table; loading a
//! module builds its replacement off to the side and swaps it in, so a
//! request always sees one complete, consistent version.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock, RwLockWriteGuard};
use std::time::{Duration, Instant};

use http::{HeaderMap, StatusCode};
use serde::Serialize;
use shanhai_runtime::{AfterLoad, LoadError, LoadedModule, Runtime};

use crate::canary::{Canary, CanaryOutcome, Release, RollbackReason};
use crate::config::{Config, is_module_name, weight_basis_points};
use crate::signing::{ModuleSignature, SequenceBook};

/// A route's target: the module and the path prefix it is mounted at.
#[derive(Debug, Clone)]
pub struct RouteMatch {
    /// Module name.
    pub module: Arc<str>,
    /// The mount point (`/hello` for `/hello/*`); the rest is `PATH_INFO`.
    pub mount: Arc<str>,
}

/// The routes of one origin: the shared one, or a module's own host.
#[derive(Default)]
struct PathRoutes {
    /// WebSocket routes: exact paths to module names.
    websocket: HashMap<String, Arc<str>>,
    exact: HashMap<String, RouteMatch>,
    /// `(prefix, target)`, longest prefix first.
    prefixes: Vec<(String, RouteMatch)>,
}

impl PathRoutes {
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

/// Every route: the shared origin's, and each module host's. A module with
/// `hosts` is served on those hosts alone, and nothing else is served there,
/// so its pages and another module's never share an origin.
#[derive(Default)]
struct RouteTable {
    shared: PathRoutes,
    /// By host name: the module that owns it and its routes there.
    hosts: HashMap<String, (Arc<str>, PathRoutes)>,
    /// Modules served on their own hosts only.
    hosted: BTreeSet<Arc<str>>,
}

impl RouteTable {
    /// The routes of the origin a request names with `host` (normalised by
    /// [`request_host`](crate::http::request_host)).
    fn for_host(&self, host: Option<&str>) -> &PathRoutes {
        host.and_then(|host| self.hosts.get(host))
            .map_or(&self.shared, |(_, routes)| routes)
    }

    /// Whether `/api/exec/MODULE/...` may call `module` on `host`: on a
    /// module's host only that module; elsewhere only modules without
    /// hosts. The error says why not.
    fn exec_allowed(&self, module: &str, host: Option<&str>) -> Result<(), String> {
        match host.and_then(|host| self.hosts.get(host).map(|(owner, _)| (host, owner))) {
            Some((host, owner)) if &**owner != module => Err(format!(
                "{host} serves only module `{owner}`; call `{module}` on its own origin"
            )),
            None if self.hosted.contains(module) => Err(format!(
                "module `{module}` is served only on its own hosts (modules.{module}.hosts)"
            )),
            _ => Ok(()),
        }
    }
}

type Modules = BTreeMap<Arc<str>, Arc<LoadedModule>>;
type Canaries = BTreeMap<Arc<str>, Arc<Canary>>;

#[derive(Default)]
struct Snapshot {
    /// The stable version of each module.
    modules: Modules,
    /// Canaries, by the name of the module they are a canary of.
    canaries: Canaries,
    /// Modules the gateway started with that have not finished loading
    /// (or failing) yet: their routes exist, and requests wait for them.
    pending: Arc<BTreeSet<Arc<str>>>,
    /// Shared between snapshots that differ only in canaries.
    routes: Arc<RouteTable>,
}

/// What a lookup found: a module serving, one still loading, or nothing.
pub enum Lookup<T> {
    /// Serving.
    Found(T),
    /// Configured or found in the modules folder, and still loading: the
    /// name of the module.
    Loading(Arc<str>),
    /// Nothing of that name or route.
    Missing,
}

impl<T> Lookup<T> {
    fn map<U>(self, found: impl FnOnce(T) -> U) -> Lookup<U> {
        match self {
            Self::Found(value) => Lookup::Found(found(value)),
            Self::Loading(name) => Lookup::Loading(name),
            Self::Missing => Lookup::Missing,
        }
    }
}

impl Snapshot {
    /// `select`, telling a module still loading from one that does not
    /// exist.
    fn lookup(&self, name: &str, key: Option<&[u8]>) -> Lookup<Selected> {
        match self.select(name, key) {
            Some(selected) => Lookup::Found(selected),
            None => match self.pending.get(name) {
                Some(name) => Lookup::Loading(name.clone()),
                None => Lookup::Missing,
            },
        }
    }

    fn select(&self, name: &str, key: Option<&[u8]>) -> Option<Selected> {
        let stable = self.modules.get(name)?;
        let Some(canary) = self.canaries.get(name) else {
            return Some(Selected {
                module: stable.clone(),
                canary: None,
            });
        };
        let release = canary.choose(key);
        let module = match release {
            Release::Stable => stable.clone(),
            Release::Canary => canary.module().clone(),
        };
        Some(Selected {
            module,
            canary: Some((canary.clone(), release)),
        })
    }
}

/// The sticky key of a request to module `name`: the value of its canary's
/// sticky header.
fn sticky_key<'h>(snapshot: &Snapshot, name: &str, headers: &'h HeaderMap) -> Option<&'h [u8]> {
    let canary = snapshot.canaries.get(name)?;
    headers
        .get(canary.sticky_header())
        .map(http::HeaderValue::as_bytes)
}

/// The version of a module chosen for one request.
pub struct Selected {
    /// The module to run.
    pub module: Arc<LoadedModule>,
    canary: Option<(Arc<Canary>, Release)>,
}

impl Selected {
    /// Which side of a canary release the request went to; `None` when the
    /// module has no canary.
    pub fn release(&self) -> Option<Release> {
        self.canary.as_ref().map(|(_, release)| *release)
    }
}

/// A module being loaded, for the admin API.
#[derive(Debug, Clone, Serialize)]
pub struct Loading {
    /// The module.
    pub name: String,
    /// `queued` (at start, not begun), then `compiling` (compiling, or
    /// loading compiled code from the cache, and initialising an
    /// instance).
    pub phase: &'static str,
    /// Size of the module file.
    pub bytes: usize,
    /// Whether it is a canary.
    pub canary: bool,
    /// Time spent so far.
    pub elapsed_ms: u64,
    #[serde(skip)]
    since: Instant,
}

/// Loaded modules by name, with their routes and canaries.
pub struct ModuleRegistry {
    current: RwLock<Arc<Snapshot>>,
    /// Bumped on every snapshot swap, so that requests waiting for a
    /// module still loading wake up.
    swapped: tokio::sync::watch::Sender<()>,
    /// How long a request waits for a module still loading.
    loading_wait: Duration,
    failures: RwLock<BTreeMap<String, String>>,
    loading: Mutex<BTreeMap<(String, bool), Loading>>,
    canary_outcomes: RwLock<BTreeMap<String, CanaryOutcome>>,
    /// The highest signature sequence each module has served.
    sequences: SequenceBook,
    /// Start-up modules still waiting for their turn to load, and those a
    /// request has moved ahead of the queue.
    start_queue: Mutex<StartQueue>,
    /// Wakes the start-up dispatcher when a request hurries a module.
    hurry_signal: tokio::sync::Notify,
}

/// The start-up modules not yet begun, in the order they load, and those
/// a request asked for, for [`ModuleRegistry::load_all`].
#[derive(Default)]
struct StartQueue {
    waiting: std::collections::VecDeque<String>,
    hurried: Vec<String>,
}

impl StartQueue {
    /// Takes a module a request asked for out of the queue, if any.
    fn take_hurried(&mut self) -> Option<String> {
        while let Some(name) = self.hurried.pop() {
            if let Some(at) = self.waiting.iter().position(|waiting| *waiting == name) {
                return self.waiting.remove(at);
            }
        }
        None
    }
}

impl Default for ModuleRegistry {
    /// Five seconds of loading wait and sequences kept in memory.
    fn default() -> Self {
        let sequences = SequenceBook::open(Path::new("")).expect("an in-memory book always opens");
        Self::new(Duration::from_secs(5), sequences)
    }
}

/// Why a canary operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum CanaryError {
    /// There is no stable version to compare a canary with.
    #[error(
        "module `{0}` has no stable version serving; deploy it normally first, a canary is compared with it"
    )]
    NoStable(String),
    /// The canary is the version already serving.
    #[error("the canary is version {0}, which is already the stable version")]
    SameAsStable(String),
    /// The module has no canary.
    #[error("module `{0}` has no canary")]
    NoCanary(String),
    /// The canary's module was refused.
    #[error(transparent)]
    Load(#[from] LoadError),
}

/// What [`ModuleRegistry::start_canary`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CanaryStart {
    /// A new canary runs.
    Started,
    /// A canary of another version was replaced.
    Replaced,
    /// The same version was already the canary: only its weight changed.
    Reweighted,
}

impl ModuleRegistry {
    /// An empty registry whose requests wait up to `loading_wait` for a
    /// module still loading at start, checking signed modules' sequence
    /// numbers against `sequences`.
    pub fn new(loading_wait: Duration, sequences: SequenceBook) -> Self {
        Self {
            sequences,
            current: RwLock::new(Arc::new(Snapshot::default())),
            swapped: tokio::sync::watch::Sender::new(()),
            loading_wait,
            failures: RwLock::new(BTreeMap::new()),
            loading: Mutex::new(BTreeMap::new()),
            canary_outcomes: RwLock::new(BTreeMap::new()),
            start_queue: Mutex::new(StartQueue::default()),
            hurry_signal: tokio::sync::Notify::new(),
        }
    }

    /// The stable version of module `name`.
    pub fn get(&self, name: &str) -> Option<Arc<LoadedModule>> {
        self.current.read().unwrap().modules.get(name).cloned()
    }

    /// Whether module `name` is configured: loaded, or still loading.
    pub fn knows(&self, name: &str) -> bool {
        let current = self.current.read().unwrap();
        current.modules.contains_key(name) || current.pending.contains(name)
    }

    /// The version of module `name` that serves a request with `headers`:
    /// the stable one, or its canary.
    pub fn select(&self, name: &str, headers: &HeaderMap) -> Option<Selected> {
        let snapshot = self.current.read().unwrap().clone();
        let key = sticky_key(&snapshot, name, headers);
        snapshot.select(name, key)
    }

    /// The version of module `name` for sticky key `key` (a WebSocket
    /// connection uses its id, so it meets one version throughout).
    pub fn select_keyed(&self, name: &str, key: Option<&[u8]>) -> Option<Selected> {
        self.current.read().unwrap().select(name, key)
    }

    /// The version of module `name` for sticky key `key`, waiting up to
    /// the loading bound while the module is still loading at start.
    pub async fn select_ready(&self, name: &str, key: Option<&[u8]>) -> Lookup<Selected> {
        self.when_settled(Some(self.loading_wait), |snapshot| {
            snapshot.lookup(name, key)
        })
        .await
    }

    /// Like [`select`](Self::select), waiting up to the loading bound
    /// while the module is still loading at start.
    pub async fn select_ready_for(&self, name: &str, headers: &HeaderMap) -> Lookup<Selected> {
        self.when_settled(Some(self.loading_wait), |snapshot| {
            snapshot.lookup(name, sticky_key(snapshot, name, headers))
        })
        .await
    }

    /// The module serving `path` on `host` for a request with `headers`,
    /// and where it is mounted, waiting up to the loading bound while the
    /// module behind the route is still loading at start.
    pub async fn route_ready(
        &self,
        host: Option<&str>,
        path: &str,
        headers: &HeaderMap,
    ) -> Lookup<(RouteMatch, Selected)> {
        self.when_settled(Some(self.loading_wait), |snapshot| {
            let Some(target) = snapshot.routes.for_host(host).lookup(path) else {
                return Lookup::Missing;
            };
            let key = sticky_key(snapshot, &target.module, headers);
            snapshot
                .lookup(&target.module, key)
                .map(|selected| (target.clone(), selected))
        })
        .await
    }

    /// Waits, without bound, until module `name` has finished loading or
    /// failing at start; returns at once for any other module. Timers and
    /// MQTT triggers start for their module after this.
    pub async fn settled(&self, name: &str) {
        self.when_settled(None, |snapshot| match snapshot.pending.get(name) {
            Some(name) => Lookup::Loading(name.clone()),
            None => Lookup::Found(()),
        })
        .await;
    }

    /// Runs `find` on the current snapshot until it finds something other
    /// than a module still loading, or `request_wait` passes. A request
    /// (`Some` wait) moves the module it waits for ahead of the start-up
    /// queue; a trigger waiting in the background (`None`) does not.
    async fn when_settled<T>(
        &self,
        request_wait: Option<Duration>,
        mut find: impl FnMut(&Snapshot) -> Lookup<T>,
    ) -> Lookup<T> {
        // Subscribed before the first look, so a swap between the look and
        // the wait is not missed.
        let mut swapped = self.swapped.subscribe();
        let deadline = tokio::time::Instant::now()
            .checked_add(request_wait.unwrap_or(Duration::MAX))
            .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(86_400 * 365));
        loop {
            let snapshot = self.current.read().unwrap().clone();
            match find(&snapshot) {
                Lookup::Loading(name) => {
                    if request_wait.is_some() {
                        self.hurry(&name);
                    }
                    if !matches!(
                        tokio::time::timeout_at(deadline, swapped.changed()).await,
                        Ok(Ok(()))
                    ) {
                        return Lookup::Loading(name);
                    }
                }
                found => return found,
            }
        }
    }

    /// Whether every module the gateway started with has loaded or failed.
    pub fn started(&self) -> bool {
        self.current.read().unwrap().pending.is_empty()
    }

    /// Modules the gateway started with that are still loading.
    pub fn pending(&self) -> Vec<String> {
        self.current
            .read()
            .unwrap()
            .pending
            .iter()
            .map(|name| name.to_string())
            .collect()
    }

    /// The module whose WebSocket route is `path` on `host`.
    pub fn websocket_route(&self, host: Option<&str>, path: &str) -> Option<Arc<str>> {
        self.current
            .read()
            .unwrap()
            .routes
            .for_host(host)
            .websocket
            .get(path)
            .cloned()
    }

    /// Whether `/api/exec/` may call module `name` on `host`: a module with
    /// `hosts` only on those, and only it there; the error says why not.
    pub fn exec_allowed(&self, name: &str, host: Option<&str>) -> Result<(), String> {
        self.current.read().unwrap().routes.exec_allowed(name, host)
    }

    /// Records how a request to a module with a canary went, and rolls the
    /// canary back when it tipped over a threshold.
    pub fn observe(&self, selected: &Selected, status: StatusCode, elapsed: Duration) {
        let Some((canary, release)) = &selected.canary else {
            return;
        };
        if let Some(reason) = canary.record(*release, status.is_server_error(), elapsed) {
            self.end_canary(canary, Some(reason));
        }
    }

    /// The canary of module `name`.
    pub fn canary(&self, name: &str) -> Option<Arc<Canary>> {
        self.current.read().unwrap().canaries.get(name).cloned()
    }

    /// How module `name`'s last canary ended.
    pub fn canary_outcome(&self, name: &str) -> Option<CanaryOutcome> {
        self.canary_outcomes.read().unwrap().get(name).cloned()
    }

    /// Modules being loaded right now, and those of the start-up that
    /// have not begun (`queued`).
    pub fn loading(&self) -> Vec<Loading> {
        let mut loading: Vec<Loading> = self
            .loading
            .lock()
            .unwrap()
            .values()
            .map(|loading| Loading {
                elapsed_ms: loading.since.elapsed().as_millis() as u64,
                ..loading.clone()
            })
            .collect();
        for name in self.pending() {
            if !loading.iter().any(|l| l.name == name && !l.canary) {
                loading.push(Loading {
                    name,
                    phase: "queued",
                    bytes: 0,
                    canary: false,
                    elapsed_ms: 0,
                    since: Instant::now(),
                });
            }
        }
        loading
    }

    /// Starts `canary` as module `name`'s canary, replacing any other.
    pub fn start_canary(
        &self,
        config: &Config,
        name: &str,
        canary: Canary,
    ) -> Result<CanaryStart, CanaryError> {
        let version = canary.module().version().to_owned();
        let weight = canary.weight();
        self.apply(config, |modules, canaries| {
            let stable = modules
                .get(name)
                .ok_or_else(|| CanaryError::NoStable(name.to_owned()))?;
            if stable.version() == version {
                return Err(CanaryError::SameAsStable(version.clone()));
            }
            if let Some(current) = canaries.get(name)
                && current.module().version() == version
            {
                current.set_weight(weight);
                return Ok(CanaryStart::Reweighted);
            }
            let replaced = canaries.insert(Arc::from(name), Arc::new(canary));
            Ok(if replaced.is_some() {
                CanaryStart::Replaced
            } else {
                CanaryStart::Started
            })
        })
        .inspect(|start| {
            tracing::info!(
                module = name,
                canary = %version,
                weight_percent = f64::from(weight) / 100.0,
                action = ?start,
                "canary release"
            );
        })
    }

    /// Makes `canary` module `name`'s stable version. Requests already
    /// running finish where they started.
    pub fn promote_canary(
        &self,
        config: &Config,
        name: &str,
        canary: &Arc<Canary>,
    ) -> Result<(), CanaryError> {
        let promoted = self.apply(config, |modules, canaries| {
            if canaries.get(name).is_some_and(|c| Arc::ptr_eq(c, canary)) {
                canaries.remove(name);
                modules.insert(Arc::from(name), canary.module().clone());
                true
            } else {
                false
            }
        });
        if !promoted {
            // A reload of the same bytes (the file the promotion wrote) may
            // have got there first.
            return match self.get(name) {
                Some(stable) if stable.version() == canary.module().version() => Ok(()),
                _ => Err(CanaryError::NoCanary(name.to_owned())),
            };
        }
        // The promoted signature is now the module's: older ones are
        // rollbacks from here on.
        if let Some(signed) = canary
            .signature()
            .and_then(|text| text.parse::<ModuleSignature>().ok())
        {
            self.sequences.record(name, signed.fields.sequence);
        }
        self.record_outcome(name, CanaryOutcome::new(canary, "promoted", None));
        metrics::counter!("shanhai_canary_promotions_total", "module" => name.to_owned())
            .increment(1);
        tracing::info!(
            module = name,
            version = canary.module().version(),
            "canary promoted to stable"
        );
        Ok(())
    }

    /// Stops module `name`'s canary at an operator's request.
    pub fn rollback_canary(&self, name: &str) -> Result<(), CanaryError> {
        let canary = self
            .canary(name)
            .ok_or_else(|| CanaryError::NoCanary(name.to_owned()))?;
        self.end_canary(&canary, Some(RollbackReason::Manual));
        Ok(())
    }

    /// Removes `canary` (if it still runs) and records why.
    fn end_canary(&self, canary: &Arc<Canary>, reason: Option<RollbackReason>) {
        let name = canary.module().name().to_owned();
        let removed = self.change_canaries(|canaries| {
            if canaries
                .get(name.as_str())
                .is_some_and(|c| Arc::ptr_eq(c, canary))
            {
                canaries.remove(name.as_str());
                true
            } else {
                false
            }
        });
        if !removed {
            return;
        }
        let outcome = CanaryOutcome::new(canary, "rolled_back", reason);
        let label = outcome
            .rollback
            .as_ref()
            .map_or("manual", RollbackReason::label);
        metrics::counter!("shanhai_canary_rollbacks_total", "module" => name.clone(), "reason" => label)
            .increment(1);
        tracing::warn!(
            module = %name,
            canary = canary.module().version(),
            reason = label,
            "canary rolled back: {}",
            outcome.message
        );
        self.record_outcome(&name, outcome);
    }

    fn record_outcome(&self, name: &str, outcome: CanaryOutcome) {
        self.canary_outcomes
            .write()
            .unwrap()
            .insert(name.to_owned(), outcome);
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

    /// The modules the gateway starts with: every `[modules.NAME]` and
    /// every `NAME.wasm` of the modules folder that is not a canary's file.
    pub fn startup_modules(config: &Config) -> Vec<String> {
        let mut names: Vec<String> = config.modules.keys().cloned().collect();
        names.extend(
            discover(&config.server.modules_dir)
                .into_iter()
                .filter(|name| {
                    !config.is_canary_file(&config.server.modules_dir.join(format!("{name}.wasm")))
                }),
        );
        names.sort();
        names.dedup();
        names
    }

    /// Marks `names` as loading: their routes answer at once, and requests
    /// for them wait (up to the loading bound) until they serve or fail.
    pub fn expect(&self, config: &Config, names: &[String]) {
        let pending: BTreeSet<Arc<str>> =
            names.iter().map(|name| Arc::from(name.as_str())).collect();
        self.swap_pending(config, |current| current.extend(pending));
    }

    /// Loads `names` (the [`startup_modules`](Self::startup_modules), which
    /// the caller has marked with [`expect`](Self::expect)), each followed
    /// by its configured canary, and clears each from the loading set. A
    /// module that fails is logged and recorded; the others still load.
    /// Modules load in name order, a few at a time, and a module a request
    /// waits for goes first; compiles run up to the runtime's
    /// `compile_concurrency` at a time. Each module serves as soon as it
    /// is ready. Returns how many loaded.
    pub async fn load_all(
        self: &Arc<Self>,
        runtime: &Runtime,
        config: &Arc<Config>,
        names: &[String],
    ) -> usize {
        let started = Instant::now();
        // As many loads at once as there are cores, plus the compiles the
        // runtime runs at once: a module whose code is cached only needs
        // mapping and initialising, and sixteen of them started together
        // on two cores all finish last. Taking turns in name order, the
        // first modules serve within tens of milliseconds, and a module a
        // request waits for skips the queue. The extra turns keep cached
        // modules moving while others wait to compile. Requests for every
        // module at once only bring back the all-at-once start: each
        // module still loads once.
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let turns = Arc::new(tokio::sync::Semaphore::new(
            cores + runtime.config().compile_concurrency.max(1),
        ));
        tracing::info!(
            modules = names.len(),
            at_once = turns.available_permits(),
            "loading modules in the background"
        );
        *self.start_queue.lock().unwrap() = StartQueue {
            waiting: names.iter().cloned().collect(),
            hurried: Vec::new(),
        };
        let mut loads = tokio::task::JoinSet::new();
        let spawn_load = |loads: &mut tokio::task::JoinSet<bool>, name: String, turn| {
            let (registry, runtime, config) = (self.clone(), runtime.clone(), config.clone());
            loads.spawn(async move {
                let turn: Option<tokio::sync::OwnedSemaphorePermit> = turn;
                // A module loaded in its turn rests until its first event;
                // one a request hurried keeps its validation instance for it.
                let after = if turn.is_some() {
                    AfterLoad::Rest
                } else {
                    AfterLoad::Serve
                };
                let loaded = registry
                    .reload_then(&runtime, &config, &name, after)
                    .await
                    .is_ok();
                if let Some(canary) = config.modules.get(&name).and_then(|m| m.canary.as_ref()) {
                    registry
                        .load_config_canary(&runtime, &config, &name, canary)
                        .await;
                }
                registry.swap_pending(&config, |pending| {
                    pending.remove(name.as_str());
                });
                loaded
            });
        };
        // One dispatcher hands out the turns, so the queue's order is the
        // order loads begin (tasks spawned at once run in any order).
        loop {
            let hurried = self.start_queue.lock().unwrap().take_hurried();
            if let Some(name) = hurried {
                tracing::debug!(module = %name, "a request waits for it: loading it ahead of its turn");
                spawn_load(&mut loads, name, None);
                continue;
            }
            if self.start_queue.lock().unwrap().waiting.is_empty() {
                break;
            }
            tokio::select! {
                turn = turns.clone().acquire_owned() => {
                    let next = self.start_queue.lock().unwrap().waiting.pop_front();
                    if let Some(name) = next {
                        spawn_load(&mut loads, name, turn.ok());
                    }
                }
                () = self.hurry_signal.notified() => {}
            }
        }
        let loaded = loads.join_all().await.into_iter().filter(|l| *l).count();
        tracing::info!(
            loaded,
            failed = names.len() - loaded,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "every module loaded or failed; ready"
        );
        loaded
    }

    /// Lets start-up module `name` load now if it still waits for its turn.
    fn hurry(&self, name: &str) {
        let mut queue = self.start_queue.lock().unwrap();
        if queue.waiting.iter().any(|waiting| waiting == name)
            && !queue.hurried.iter().any(|hurried| hurried == name)
        {
            queue.hurried.push(name.to_owned());
            drop(queue);
            // A stored permit: a dispatcher not waiting yet still sees it.
            self.hurry_signal.notify_one();
        }
    }

    /// Changes the set of modules still loading at start.
    fn swap_pending(&self, config: &Config, change: impl FnOnce(&mut BTreeSet<Arc<str>>)) {
        let current = self.current.write().unwrap();
        let mut pending = (*current.pending).clone();
        change(&mut pending);
        let (modules, canaries) = (current.modules.clone(), current.canaries.clone());
        self.publish(current, config, modules, canaries, Arc::new(pending));
    }

    /// Swaps in the snapshot of these maps, with their routes, and wakes
    /// the requests waiting for a module still loading.
    fn publish(
        &self,
        mut current: RwLockWriteGuard<'_, Arc<Snapshot>>,
        config: &Config,
        modules: Modules,
        canaries: Canaries,
        pending: Arc<BTreeSet<Arc<str>>>,
    ) {
        let routes = Arc::new(route_table(config, &modules, &pending));
        *current = Arc::new(Snapshot {
            modules,
            canaries,
            pending,
            routes,
        });
        drop(current);
        self.swapped.send_replace(());
    }

    /// Starts the canary `[modules.NAME.canary]` names; a failure is logged
    /// and the stable version serves alone.
    async fn load_config_canary(
        &self,
        runtime: &Runtime,
        config: &Config,
        name: &str,
        canary: &crate::config::ModuleCanary,
    ) {
        let path = config.modules_dir_path(&canary.file);
        let started = async {
            let wasm = read_module(&path).await?;
            // Checked here for the file's name; deploy_canary checks it
            // again with the sequence.
            crate::signing::verify_module(&config.signing, name, &path, &wasm)
                .map_err(LoadError::from)?;
            let signature = std::fs::read_to_string(crate::signing::signature_path(&path))
                .ok()
                .map(|text| text.trim().to_owned());
            let weight = weight_basis_points(canary.weight).unwrap_or(0);
            self.deploy_canary(runtime, config, name, wasm, signature, weight)
                .await
        };
        match started.await {
            Ok(_) => {}
            Err(CanaryError::SameAsStable(version)) => tracing::info!(
                module = name,
                file = %path.display(),
                version,
                "the configured canary is already the stable version; not starting it"
            ),
            Err(err) => tracing::error!(
                module = name,
                file = %path.display(),
                error = %err,
                "configured canary refused; the stable version serves alone"
            ),
        }
    }

    /// Loads `wasm` (checked against `signature` as an upload would be) as
    /// a canary of module `name` taking `weight` basis points of its
    /// traffic, and starts it.
    pub async fn deploy_canary(
        &self,
        runtime: &Runtime,
        config: &Config,
        name: &str,
        wasm: Vec<u8>,
        signature: Option<String>,
        weight: u32,
    ) -> Result<CanaryStart, CanaryError> {
        let stable = self
            .get(name)
            .ok_or_else(|| CanaryError::NoStable(name.to_owned()))?;
        let version = shanhai_runtime::module_version(&wasm);
        if version == stable.version() {
            return Err(CanaryError::SameAsStable(version));
        }
        let path = config.module_path(name);
        let _loading = self.start_loading(name, true, wasm.len());
        let signed =
            crate::signing::verify_bytes(&config.signing, name, &path, &wasm, signature.as_deref())
                .map_err(LoadError::from)?;
        // Checked, not recorded: a canary rolled back must not lock the
        // stable version out. Promotion records it.
        if let Some(signed) = &signed {
            self.sequences
                .check(name, &path, signed)
                .map_err(LoadError::from)?;
        }
        let policy = config
            .canary
            .policy()
            .map_err(|err| LoadError::Abi(err.to_string()))?;
        let module = match self.canary(name) {
            // Only the weight changes: keep the warm instances.
            Some(current) if current.module().version() == version => current.module().clone(),
            _ => {
                let settings = config
                    .settings_for(name)
                    .map_err(|err| LoadError::Abi(err.to_string()))?;
                with_progress(name, runtime.load(name, wasm.clone(), settings)).await?
            }
        };
        let canary = Canary::new(module, weight, wasm, signature, policy);
        self.start_canary(config, name, canary)
    }

    /// Marks module `name` as loading until the guard drops.
    fn start_loading(&self, name: &str, canary: bool, bytes: usize) -> LoadingGuard<'_> {
        let key = (name.to_owned(), canary);
        self.loading.lock().unwrap().insert(
            key.clone(),
            Loading {
                name: name.to_owned(),
                phase: "compiling",
                bytes,
                canary,
                elapsed_ms: 0,
                since: Instant::now(),
            },
        );
        LoadingGuard {
            registry: self,
            key,
        }
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
        self.reload_then(runtime, config, name, AfterLoad::Serve)
            .await
    }

    /// [`reload`](Self::reload), with what the module does once loaded.
    async fn reload_then(
        &self,
        runtime: &Runtime,
        config: &Config,
        name: &str,
        after: AfterLoad,
    ) -> Result<ReloadOutcome, LoadError> {
        let outcome = self.reload_inner(runtime, config, name, after).await;
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
        after: AfterLoad,
    ) -> Result<ReloadOutcome, LoadError> {
        let path = config.module_path(name);
        // A configured module's file must exist (a missing one is an error
        // to report); a discovered module whose file went away is unmounted.
        if !path.exists() && !config.modules.contains_key(name) {
            let removed = self.apply(config, |modules, _| modules.remove(name));
            self.failures.write().unwrap().remove(name);
            if removed.is_some() {
                tracing::info!(module = name, path = %path.display(), "module file removed; unmounted");
            }
            return Ok(ReloadOutcome::Removed);
        }
        match self.load_one(runtime, config, name, after).await {
            Ok(None) => {
                self.failures.write().unwrap().remove(name);
                Ok(ReloadOutcome::Unchanged)
            }
            Ok(Some(module)) => {
                let version = module.version().to_owned();
                let previous = self.apply(config, |modules, canaries| {
                    // A stable file changed to the canary's version (a
                    // promotion by hand): the canary has nothing left to do.
                    if canaries
                        .get(name)
                        .is_some_and(|c| c.module().version() == version)
                    {
                        canaries.remove(name);
                        tracing::info!(module = name, version = %version, "the stable file now holds the canary's version; canary ended");
                    }
                    modules.insert(Arc::from(name), module)
                });
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
        let removed = self.apply(config, |modules, _| modules.remove(name));
        self.failures.write().unwrap().remove(name);
        if removed.is_some() {
            tracing::info!(module = name, "module unmounted");
        }
        removed.is_some()
    }

    /// Builds the next snapshot from changed module and canary maps and
    /// swaps it in. The write lock is held while building, so concurrent
    /// changes never lose one another. A module that is gone loses its
    /// canary.
    fn apply<R>(
        &self,
        config: &Config,
        change: impl FnOnce(&mut Modules, &mut Canaries) -> R,
    ) -> R {
        let current = self.current.write().unwrap();
        let mut modules = current.modules.clone();
        let mut canaries = current.canaries.clone();
        let result = change(&mut modules, &mut canaries);
        canaries.retain(|name, _| modules.contains_key(name));
        let pending = current.pending.clone();
        self.publish(current, config, modules, canaries, pending);
        result
    }

    /// Like [`apply`](Self::apply) for a change of canaries only, which
    /// leaves the routes as they are.
    fn change_canaries<R>(&self, change: impl FnOnce(&mut Canaries) -> R) -> R {
        let mut current = self.current.write().unwrap();
        let mut canaries = current.canaries.clone();
        let result = change(&mut canaries);
        *current = Arc::new(Snapshot {
            modules: current.modules.clone(),
            canaries,
            pending: current.pending.clone(),
            routes: current.routes.clone(),
        });
        result
    }
}

/// The routes of the modules serving and of those still loading.
fn route_table(config: &Config, modules: &Modules, pending: &BTreeSet<Arc<str>>) -> RouteTable {
    let mut table = RouteTable::default();
    let names: BTreeSet<&Arc<str>> = modules.keys().chain(pending.iter()).collect();
    for name in names {
        let served = config.http_routes(name);
        let websocket = config.websocket_routes(name);
        let add = |routes: &mut PathRoutes| {
            for route in &served.routes {
                routes.add(route, name);
            }
            for route in &websocket {
                routes.websocket.insert(route.clone(), name.clone());
            }
        };
        if served.hosts.is_empty() {
            add(&mut table.shared);
            continue;
        }
        table.hosted.insert(name.clone());
        for host in &served.hosts {
            let (_, routes) = table
                .hosts
                .entry(host.clone())
                .or_insert_with(|| (name.clone(), PathRoutes::default()));
            add(routes);
        }
    }
    table.shared.finish();
    for (_, routes) in table.hosts.values_mut() {
        routes.finish();
    }
    table
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

/// Removes a module's entry from the loading list when dropped.
struct LoadingGuard<'a> {
    registry: &'a ModuleRegistry,
    key: (String, bool),
}

impl Drop for LoadingGuard<'_> {
    fn drop(&mut self) {
        self.registry.loading.lock().unwrap().remove(&self.key);
    }
}

impl ModuleRegistry {
    /// Reads, verifies and loads module `name`; `None` when its file holds
    /// exactly the version already serving (a touched file, or the watcher
    /// seeing a file the admin API just installed), so that nothing is
    /// re-initialised for nothing.
    async fn load_one(
        &self,
        runtime: &Runtime,
        config: &Config,
        name: &str,
        after: AfterLoad,
    ) -> Result<Option<Arc<LoadedModule>>, LoadError> {
        let settings = config
            .settings_for(name)
            .map_err(|err| LoadError::Abi(err.to_string()))?;
        let path = config.module_path(name);
        let wasm = read_module(&path).await?;
        // Before the unchanged check: a signature that stopped verifying
        // must be reported even when the module bytes did not change.
        let signed = crate::signing::verify_module(&config.signing, name, &path, &wasm)?;
        if let Some(signed) = &signed {
            self.sequences.check(name, &path, signed)?;
        }
        let record = || {
            if let Some(signed) = &signed {
                self.sequences.record(name, signed.fields.sequence);
            }
        };
        if self
            .get(name)
            .is_some_and(|module| shanhai_runtime::module_version(&wasm) == module.version())
        {
            record();
            return Ok(None);
        }
        let _loading = self.start_loading(name, false, wasm.len());
        let loaded = with_progress(name, runtime.load_then(name, wasm, settings, after)).await?;
        record();
        Ok(Some(loaded))
    }
}

/// How often a long load says it is still going.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// Runs a module load, logging every [`PROGRESS_EVERY`] while it lasts: a
/// Go module takes seconds to compile on a small box, and an operator
/// watching the log should see it is under way.
async fn with_progress<T>(name: &str, load: impl Future<Output = T>) -> T {
    let started = Instant::now();
    let mut load = std::pin::pin!(load);
    let mut ticks =
        tokio::time::interval_at(tokio::time::Instant::now() + PROGRESS_EVERY, PROGRESS_EVERY);
    loop {
        tokio::select! {
            done = &mut load => return done,
            _ = ticks.tick() => tracing::info!(
                module = name,
                elapsed_s = started.elapsed().as_secs(),
                "still compiling"
            ),
        }
    }
}

async fn read_module(path: &Path) -> Result<Vec<u8>, LoadError> {
    tokio::fs::read(path).await.map_err(|err| {
        LoadError::Io(std::io::Error::new(
            err.kind(),
            format!("reading {}: {err}", path.display()),
        ))
    })
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
        let mut table = PathRoutes::default();
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

    #[test]
    fn hosted_modules_own_their_hosts_for_http_websocket_and_exec() {
        let config = Config::parse(
            "[modules.app]\nhosts = [\"app.example\"]\nroutes = [\"/api/*\"]\n\
             [modules.app.websocket]\nroutes = [\"/live\"]\n\
             [modules.site]\nhosts = [\"site.example\"]\n",
        )
        .unwrap();
        let pending: BTreeSet<Arc<str>> = ["app", "site", "shared"]
            .into_iter()
            .map(Arc::from)
            .collect();
        let table = route_table(&config, &Modules::new(), &pending);
        let module = |host: Option<&str>, path: &str| {
            table
                .for_host(host)
                .lookup(path)
                .map(|target| target.module.to_string())
        };
        // app: only its routes on its host; site: every path on its host.
        assert_eq!(
            module(Some("app.example"), "/api/x").as_deref(),
            Some("app")
        );
        assert_eq!(module(Some("app.example"), "/"), None);
        assert_eq!(module(Some("app.example"), "/shared"), None);
        assert_eq!(module(Some("site.example"), "/").as_deref(), Some("site"));
        assert_eq!(
            module(Some("site.example"), "/shared/x").as_deref(),
            Some("site")
        );
        // The shared origin (any other host, or none) has neither.
        for host in [None, Some("127.0.0.1"), Some("other.example")] {
            assert_eq!(module(host, "/app"), None);
            assert_eq!(module(host, "/api/x"), None);
            assert_eq!(module(host, "/shared").as_deref(), Some("shared"));
            assert!(!table.for_host(host).websocket.contains_key("/live"));
        }
        assert_eq!(
            table
                .for_host(Some("app.example"))
                .websocket
                .get("/live")
                .map(|m| &**m),
            Some("app")
        );
        assert!(table.exec_allowed("app", Some("app.example")).is_ok());
        assert!(table.exec_allowed("shared", Some("app.example")).is_err());
        assert!(table.exec_allowed("app", None).is_err());
        assert!(table.exec_allowed("shared", None).is_ok());
    }
}
