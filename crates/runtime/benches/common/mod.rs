//! What `runtime.rs` and `codegen.rs` share: finding the guest modules,
//! loading them, and the HTTP envelopes they are sent.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use shanhai_abi::EventKind;
use shanhai_abi::wire::{Header, HttpRequest, HttpResponse};
use shanhai_runtime::{LoadedModule, ModuleSettings, Runtime};

/// The modules folder, or `None` (after saying why) when one of `names`
/// is missing from it.
pub(crate) fn modules_dir(names: &[&str]) -> Option<PathBuf> {
    let dir = std::env::var_os("SHANHAI_BENCH_MODULES")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/modules"));
    let missing: Vec<&str> = names
        .iter()
        .copied()
        .filter(|name| !dir.join(format!("{name}.wasm")).is_file())
        .collect();
    if missing.is_empty() {
        return Some(dir);
    }
    eprintln!(
        "skipping the benchmarks: {} missing from {}.\n\
         Build the guest modules first, e.g. `bash scripts/build-examples.sh` \
         (writes target/modules), or `bash scripts/build-examples.sh DIR` \
         and set SHANHAI_BENCH_MODULES=DIR.",
        missing.join(", "),
        dir.display()
    );
    None
}

/// The compile cache every benchmark runtime shares, so that only the
/// first run of a setting compiles.
pub(crate) fn cache_dir() -> PathBuf {
    std::env::temp_dir().join("shanhai-bench-cache")
}

/// Loads `modules/NAME.wasm` into `runtime`.
pub(crate) fn load(
    tokio: &tokio::runtime::Runtime,
    runtime: &Runtime,
    modules: &Path,
    name: &str,
) -> Arc<LoadedModule> {
    let path = modules.join(format!("{name}.wasm"));
    let wasm = std::fs::read(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()));
    tokio
        .block_on(runtime.load(name, wasm, ModuleSettings::default()))
        .unwrap_or_else(|err| panic!("loading {name}: {err}"))
}

/// The envelope of an HTTP request with `body` (a JSON body when it is
/// not empty).
pub(crate) fn http_request(method: &str, uri: &str, body: &[u8]) -> Vec<u8> {
    let json = [Header {
        name: b"content-type",
        value: b"application/json",
    }];
    HttpRequest {
        method,
        uri,
        request_id: "b",
        remote_addr: "127.0.0.1:1",
        headers: if body.is_empty() {
            vec![]
        } else {
            json.to_vec()
        },
        body,
    }
    .encode()
}

/// Checks once, outside the timing, that a module answers 200 with a body
/// of at least `min_body` bytes: a benchmark of an error path is worthless.
pub(crate) fn check_http(
    tokio: &tokio::runtime::Runtime,
    module: &LoadedModule,
    envelope: &[u8],
    min_body: usize,
) {
    let output = tokio
        .block_on(module.invoke_event(EventKind::Http, envelope, "check".into()))
        .unwrap_or_else(|err| panic!("{}: {err}", module.name()));
    let response = HttpResponse::decode(&output).expect("decoding the HTTP response");
    assert_eq!(response.status, 200, "{}", module.name());
    assert!(response.body.len() >= min_body, "{}", module.name());
}
