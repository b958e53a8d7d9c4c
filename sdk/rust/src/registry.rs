//! The handler table of this instance, installed by the function that
//! [`export!`](crate::export) names, once, before the first event.

use std::cell::OnceCell;

use crate::Handlers;

thread_local! {
    static HANDLERS: OnceCell<Handlers> = const { OnceCell::new() };
}

/// Installs the table `build` returns unless one is installed already.
pub(crate) fn install(build: fn() -> Handlers) {
    HANDLERS.with(|cell| {
        cell.get_or_init(|| {
            #[cfg(target_arch = "wasm32")]
            log_panics();
            build()
        });
    });
}

/// Runs `f` with the installed table (an empty one if none is).
pub(crate) fn with_handlers<R>(f: impl FnOnce(&Handlers) -> R) -> R {
    HANDLERS.with(|cell| match cell.get() {
        Some(handlers) => f(handlers),
        None => f(&Handlers::new()),
    })
}

/// Sends panic messages to the host's log, tagged with the request, before
/// wasm32's panic-abort traps. Set before the user's table is built, so a
/// hook the user sets there wins.
#[cfg(target_arch = "wasm32")]
fn log_panics() {
    std::panic::set_hook(Box::new(|info| {
        crate::host::log(shanhai_abi::LogLevel::Error, &info.to_string());
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> Handlers {
        Handlers::new().function("f", |_: &[u8]| Vec::new())
    }

    #[test]
    fn install_happens_once() {
        with_handlers(|h| assert_eq!(h.function_names().count(), 0));
        install(table);
        install(Handlers::new);
        with_handlers(|h| assert_eq!(h.function_names().collect::<Vec<_>>(), ["f"]));
    }
}
