//! The listener: accepts connections and serves HTTP/1.1 and HTTP/2 (h2c)
//! with the [`HttpTrigger`].

use std::net::SocketAddr;
use std::sync::Arc;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use shanhai_runtime::Runtime;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::Config;
use crate::http::HttpTrigger;
use crate::registry::ModuleRegistry;

/// A running gateway: its address, and the handle that stops it.
pub struct Gateway {
    addr: SocketAddr,
    registry: Arc<ModuleRegistry>,
    shutdown: watch::Sender<bool>,
    server: tokio::task::JoinHandle<()>,
}

impl Gateway {
    /// Builds the runtime, loads every module and starts listening.
    /// Modules that fail to load are logged and skipped.
    pub async fn start(config: Config) -> anyhow::Result<Self> {
        let runtime = Runtime::new(config.runtime_config())?;
        let registry = Arc::new(ModuleRegistry::default());
        let listener = TcpListener::bind(config.server.listen)
            .await
            .map_err(|err| anyhow::anyhow!("binding {}: {err}", config.server.listen))?;
        let addr = listener.local_addr()?;
        let loaded = registry.load_all(&runtime, &config).await;
        tracing::info!(%addr, modules = loaded, failed = registry.failures().len(), "gateway listening");
        let trigger = Arc::new(HttpTrigger::new(registry.clone()));
        let (shutdown, stop) = watch::channel(false);
        let server = tokio::spawn(accept_loop(listener, trigger, stop));
        Ok(Self {
            addr,
            registry,
            shutdown,
            server,
        })
    }

    /// The address the HTTP listener is bound to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The loaded modules.
    pub fn registry(&self) -> &Arc<ModuleRegistry> {
        &self.registry
    }

    /// Stops accepting connections and waits for the accept loop to end.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        let _ = self.server.await;
    }
}

async fn accept_loop(
    listener: TcpListener,
    trigger: Arc<HttpTrigger>,
    mut stop: watch::Receiver<bool>,
) {
    let builder = auto::Builder::new(TokioExecutor::new());
    loop {
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(err) => {
                    // Usually fd exhaustion: back off instead of spinning.
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.changed() => return,
        };
        let _ = stream.set_nodelay(true);
        let trigger = trigger.clone();
        let builder = builder.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let trigger = trigger.clone();
                async move { Ok::<_, std::convert::Infallible>(trigger.handle(request, remote).await) }
            });
            if let Err(err) = builder
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(%remote, error = %err, "connection ended with an error");
            }
        });
    }
}
