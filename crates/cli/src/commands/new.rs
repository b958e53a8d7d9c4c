//! `shanhai new`: scaffold a module.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/embedded_sdk.rs"));
}

/// Create a new module project that builds with one command and runs.
///
/// The project carries a copy of the SDK under third_party/, so it builds
/// offline, with one command.
#[derive(clap::Args)]
#[command(after_help = "\
Build the new project in its folder:
  Go:    GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o NAME.wasm .
  Rust:  cargo build --release --target wasm32-wasip1")]
pub(crate) struct Args {
    /// Module name (letters, digits, '-', '_'); also the folder created.
    name: String,
    /// Guest language.
    #[arg(long, value_enum, default_value = "go")]
    lang: Lang,
    /// Parent folder of the new project.
    #[arg(long, default_value = ".")]
    dir: PathBuf,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Lang {
    Go,
    Rust,
}

const GO_SDK_PATH: &str = "github.com/shanhai-edge/shanhai/sdk/go";

pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    if !shanhai_gateway::config::is_module_name(&args.name) {
        bail!(
            "`{}` is not a module name: use letters, digits, '-' and '_'",
            args.name
        );
    }
    let root = args.dir.join(&args.name);
    if root.exists() {
        bail!("{} already exists", root.display());
    }
    let name = &args.name;
    let build = match args.lang {
        Lang::Go => {
            write_tree(&root.join("third_party/shanhai-sdk-go"), embedded::GO_SDK)?;
            write(
                &root.join("go.mod"),
                &format!(
                    "module {name}\n\ngo 1.24\n\nrequire {GO_SDK_PATH} v0.0.0\n\nreplace {GO_SDK_PATH} => ./third_party/shanhai-sdk-go\n"
                ),
            )?;
            write(&root.join("main.go"), &GO_MAIN.replace("NAME", name))?;
            write(&root.join("main_test.go"), &GO_TEST.replace("NAME", name))?;
            format!("GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o {name}.wasm .")
        }
        Lang::Rust => {
            let crate_name = name.replace('-', "_");
            write_tree(
                &root.join("third_party/shanhai-abi/src"),
                embedded::RUST_ABI,
            )?;
            write(
                &root.join("third_party/shanhai-abi/Cargo.toml"),
                RUST_ABI_MANIFEST,
            )?;
            write_tree(
                &root.join("third_party/shanhai-sdk/src"),
                embedded::RUST_SDK,
            )?;
            write(
                &root.join("third_party/shanhai-sdk/Cargo.toml"),
                RUST_SDK_MANIFEST,
            )?;
            write(
                &root.join("Cargo.toml"),
                &RUST_MANIFEST.replace("NAME", name),
            )?;
            write(&root.join("src/lib.rs"), &RUST_LIB.replace("NAME", name))?;
            write(&root.join(".gitignore"), "/target\n")?;
            format!(
                "cargo build --release --target wasm32-wasip1 && cp target/wasm32-wasip1/release/{crate_name}.wasm {name}.wasm"
            )
        }
    };
    write(
        &root.join("README.md"),
        &format!(
            "# {name}\n\nA Shanhai module.\n\nBuild:\n\n    {build}\n\nTry it once:\n\n    shanhai run {name}.wasm --path /{name}\n\nServe it: copy `{name}.wasm` into the gateway's modules folder; it answers at `/{name}`.\n"
        ),
    )?;
    println!(
        "created {}\n\nbuild it:\n  cd {} && {build}\nrun it once:\n  shanhai run {name}.wasm",
        root.display(),
        root.display()
    );
    Ok(())
}

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

fn write_tree(root: &Path, files: &[(&str, &[u8])]) -> anyhow::Result<()> {
    for (relative, bytes) in files {
        let path = root.join(relative);
        std::fs::create_dir_all(path.parent().context("file without a folder")?)?;
        std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

const GO_MAIN: &str = r#"// Command NAME is a Shanhai module.
//
// Build: GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o NAME.wasm .
package main

import (
	"fmt"
	"log/slog"
	"net/http"

	shanhai "github.com/shanhai-edge/shanhai/sdk/go"
)

// init runs once per instance: register the handlers here.
func init() {
	shanhai.HandleHTTP(http.HandlerFunc(handle))
}

// main stays empty: the gateway calls the module's exports, not main.
func main() {}

func handle(w http.ResponseWriter, r *http.Request) {
	name := r.URL.Query().Get("name")
	if name == "" {
		name = "world"
	}
	slog.Info("handling request", "path", r.URL.Path)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprintf(w, "Hello, %s, from NAME\n", name)
}
"#;

const GO_TEST: &str = r#"//go:build !wasm

package main

import (
	"io"
	"net/http/httptest"
	"testing"

	"github.com/shanhai-edge/shanhai/sdk/go/shanhaitest"
)

func TestHandle(t *testing.T) {
	resp, err := shanhaitest.Do(httptest.NewRequest("GET", "/NAME?name=edge", nil))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(body) != "Hello, edge, from NAME\n" {
		t.Fatalf("got %d %q", resp.StatusCode, body)
	}
}
"#;

const RUST_MANIFEST: &str = r#"[package]
name = "NAME"
version = "0.1.0"
edition = "2024"
publish = false

[lib]
crate-type = ["cdylib"]

[dependencies]
shanhai-sdk = { path = "third_party/shanhai-sdk" }

[profile.release]
strip = true
opt-level = "s"

# A workspace of its own, so that a parent workspace does not claim it.
[workspace]
"#;

const RUST_SDK_MANIFEST: &str = r#"[package]
name = "shanhai-sdk"
version = "0.1.0"
edition = "2024"
publish = false

[lib]
name = "shanhai_sdk"

[dependencies]
shanhai-abi = { path = "../shanhai-abi" }
http = "1"
"#;

const RUST_ABI_MANIFEST: &str = r#"[package]
name = "shanhai-abi"
version = "0.1.0"
edition = "2024"
publish = false
"#;

const RUST_LIB: &str = r#"//! NAME: a Shanhai module.
//!
//! Build: `cargo build --release --target wasm32-wasip1`.

use shanhai_sdk::Handlers;
use shanhai_sdk::http::{Request, Response};

fn handlers() -> Handlers {
    Handlers::new().http(handle)
}

shanhai_sdk::export!(handlers);

fn handle(request: Request<Vec<u8>>) -> Response<String> {
    let name = request
        .uri()
        .query()
        .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("name=")))
        .unwrap_or("world")
        .to_owned();
    shanhai_sdk::info!("handling {}", request.uri().path());
    Response::new(format!("Hello, {name}, from NAME\n"))
}
"#;
