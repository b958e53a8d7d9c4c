//! The gateway: starts the HTTP listener (HTTP/1.1 and HTTP/2 (h2c), with
//! the [`HttpTrigger`], through [`crate::listener`]), the admin API beside
//! it and every trigger, and stops them.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::server::graceful::GracefulShutdown;
use shanhai_runtime::Runtime;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::admin::{AdminListeners, AdminServer};
use crate::config::Config;
use crate::http::HttpTrigger;
use crate::listener::{self, ConnectionLimits, NofileLimit};
use crate::mqtt::MqttTrigger;
use crate::registry::ModuleRegistry;
use crate::tcp::TcpTrigger;
use crate::timer::TimerTrigger;
use crate::watch::ModuleWatcher;
use crate::ws::WsTrigger;

/// A running gateway: its address, and the handle that stops it.
pub struct Gateway {
    addr: SocketAddr,
    registry: Arc<ModuleRegistry>,
    shutdown: watch::Sender<bool>,
    server: tokio::task::JoinHandle<GracefulShutdown>,
    drain_timeout: Duration,
    websocket: Arc<WsTrigger>,
    timers: TimerTrigger,
    tcp: TcpTrigger,
    mqtt: Option<MqttTrigger>,
    admin: Option<AdminServer>,
    _watcher: Option<ModuleWatcher>,
    loader: tokio::task::JoinHandle<()>,
}

impl Gateway {
    /// Builds the runtime, starts listening (with the admin API on its own
    /// listener unless `admin.enabled` is false) and starts every trigger,
    /// then loads the modules in the background: each serves as soon as it
    /// is ready, and requests for one still loading wait for it up to
    /// `server.loading_wait_ms`. Modules that fail to load are logged and
    /// skipped; a listener that cannot bind, or an admin listener off
    /// loopback without a token, fails the start.
    pub async fn start(config: Config) -> anyhow::Result<Self> {
        let nofile = listener::raise_nofile_limit();
        let http_limits = config
            .server
            .listener()
            .resolve("http", nofile.http_default());
        let admin_limits = config
            .admin
            .listener()
            .resolve("admin", nofile.admin_default());
        log_connection_limits(&nofile, &http_limits, &admin_limits, &config);
        let runtime = Runtime::new(config.runtime_config())?;
        crate::state::install(&runtime, &config).await?;
        let sequences = crate::signing::SequenceBook::open(&config.signing.sequence_file)?;
        let registry = Arc::new(ModuleRegistry::new(
            Duration::from_millis(config.server.loading_wait_ms),
            sequences,
        ));
        let listener = TcpListener::bind(config.server.listen)
            .await
            .map_err(|err| anyhow::anyhow!("binding {}: {err}", config.server.listen))?;
        let addr = listener.local_addr()?;
        let admin_listeners = if config.admin.enabled {
            Some(AdminListeners::bind(&config.admin).await?)
        } else {
            None
        };
        // Before any trigger starts: routes of modules still loading exist
        // from the first request on, and wait instead of answering 404.
        let startup = ModuleRegistry::startup_modules(&config);
        registry.expect(&config, &startup);
        let config = Arc::new(config);
        let watcher = if config.server.watch {
            let watcher = ModuleWatcher::start(runtime.clone(), registry.clone(), config.clone());
            // A missing folder is not fatal: configured modules still serve.
            watcher
                .map_err(|err| tracing::warn!(dir = %config.server.modules_dir.display(), error = %err, "not watching the modules folder"))
                .ok()
        } else {
            None
        };
        let websocket = WsTrigger::new(
            registry.clone(),
            config.clone(),
            config.websocket.settings()?,
        );
        runtime.set_websocket_host(websocket.hub().clone());
        let trigger = Arc::new(HttpTrigger::with_websocket(
            registry.clone(),
            websocket.clone(),
        ));
        // Before timers and TCP listeners, whose modules may publish.
        let mqtt = MqttTrigger::start(registry.clone(), &config).await?;
        if let Some(mqtt) = &mqtt {
            runtime.set_mqtt_host(mqtt.host());
        }
        let timers = TimerTrigger::start(registry.clone(), &config);
        let tcp = TcpTrigger::start(registry.clone(), &config).await?;
        let (shutdown, stop) = watch::channel(false);
        let admin = admin_listeners
            .map(|listeners| {
                listeners.serve(
                    runtime.clone(),
                    registry.clone(),
                    config.clone(),
                    addr,
                    admin_limits,
                    stop.clone(),
                )
            })
            .transpose()?;
        let handler = move |request, remote| {
            let trigger = trigger.clone();
            async move { trigger.handle(request, remote).await }
        };
        let server = tokio::spawn(listener::accept_loop(listener, http_limits, handler, stop));
        tracing::info!(%addr, modules = startup.len(), "gateway listening; loading modules");
        let loader = {
            let (registry, runtime, config) = (registry.clone(), runtime.clone(), config.clone());
            tokio::spawn(async move {
                registry.load_all(&runtime, &config, &startup).await;
            })
        };
        Ok(Self {
            addr,
            registry,
            shutdown,
            server,
            drain_timeout: Duration::from_millis(config.server.drain_timeout_ms),
            websocket,
            timers,
            tcp,
            mqtt,
            admin,
            _watcher: watcher,
            loader,
        })
    }

    /// The address the HTTP listener is bound to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The address the admin HTTP listener is bound to, when it runs.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().map(AdminServer::addr)
    }

    /// The admin JSON-RPC socket, when there is one.
    pub fn admin_socket(&self) -> Option<&Path> {
        self.admin.as_ref().and_then(AdminServer::socket)
    }

    /// Each TCP listener's name and bound address.
    pub fn tcp_addrs(&self) -> &[(String, SocketAddr)] {
        self.tcp.addrs()
    }

    /// The embedded MQTT broker's MQTT 3.1.1 and MQTT 5 listeners, when it
    /// runs.
    pub fn mqtt_addrs(&self) -> Option<(SocketAddr, SocketAddr)> {
        self.mqtt.as_ref().and_then(MqttTrigger::broker_addrs)
    }

    /// The loaded modules.
    pub fn registry(&self) -> &Arc<ModuleRegistry> {
        &self.registry
    }

    /// Stops accepting connections (admin ones too), then lets requests in
    /// flight finish for up to the configured drain timeout. Returns whether
    /// every connection finished in time.
    pub async fn stop(self) -> bool {
        let _ = self.shutdown.send(true);
        // Modules still loading will not serve anyone now.
        self.loader.abort();
        let timers = self.timers.stop();
        let tcp = self.tcp.stop();
        let mqtt = async {
            if let Some(mqtt) = self.mqtt {
                mqtt.stop().await;
            }
        };
        let Ok(connections) = self.server.await else {
            return false;
        };
        let admin = match self.admin {
            Some(admin) => Some(admin.stopped().await),
            None => None,
        };
        tracing::info!(
            timeout_ms = self.drain_timeout.as_millis() as u64,
            "draining connections"
        );
        let websocket = self.websocket.clone();
        let drain_timeout = self.drain_timeout;
        let drain = async {
            let admin = async {
                if let Some(admin) = admin {
                    admin.await;
                }
            };
            // WebSocket connections left hyper when they upgraded: they are
            // closed (1001) and waited for here.
            let websocket = websocket.shutdown(drain_timeout);
            tokio::join!(connections.shutdown(), admin, websocket, timers, tcp, mqtt);
        };
        let drained = tokio::time::timeout(self.drain_timeout, drain)
            .await
            .is_ok();
        if drained {
            tracing::info!("all connections drained");
        } else {
            tracing::warn!("drain timeout reached; closing the remaining connections");
        }
        drained
    }
}

/// Says which connection caps the listeners run with, and where they came
/// from; warns when configured caps leave no descriptors for the rest.
fn log_connection_limits(
    nofile: &NofileLimit,
    http: &ConnectionLimits,
    admin: &ConnectionLimits,
    config: &Config,
) {
    let origin = |set: bool| {
        if set {
            "configured"
        } else {
            "derived from RLIMIT_NOFILE"
        }
    };
    tracing::info!(
        nofile = nofile.now,
        nofile_at_start = nofile.before,
        http_max_connections = http.max_connections,
        http_max_connections_per_ip = http.max_connections_per_ip,
        http_caps = origin(config.server.max_connections.is_some()),
        admin_max_connections = admin.max_connections,
        admin_max_connections_per_ip = admin.max_connections_per_ip,
        admin_caps = origin(config.admin.max_connections.is_some()),
        "connection limits"
    );
    let held = (http.max_connections as u64).saturating_add(admin.max_connections as u64);
    if held >= nofile.now {
        tracing::warn!(
            nofile = nofile.now,
            connections = held,
            "server.max_connections and admin.max_connections reach RLIMIT_NOFILE: a flood of connections could leave no file descriptor for modules, caches and triggers"
        );
    }
}
