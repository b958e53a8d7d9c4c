//! Guest stdout/stderr for pooled instances, forwarded to the host's log.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};

use crate::host::log::{LogBudget, MAX_LINE_BYTES};

/// A WASI output stream whose writes become log lines tagged with the
/// module, so a Go panic message printed to stderr is not lost. Each
/// write is one line of the module's [`LogBudget`]: past it, writes
/// succeed and are dropped.
#[derive(Clone)]
pub(crate) struct LogStream {
    pub(crate) module: Arc<str>,
    pub(crate) stream: &'static str,
    pub(crate) budget: Arc<LogBudget>,
}

impl IsTerminal for LogStream {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LogStream {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl AsyncWrite for LogStream {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let text = String::from_utf8_lossy(&buf[..buf.len().min(MAX_LINE_BYTES)]);
        let text = text.trim_end();
        if !text.is_empty() && self.budget.admit() {
            tracing::warn!(target: "shanhai::guest", module = &*self.module, stream = self.stream, "{text}");
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
