//! The `shanhai` command line: run, new, compile, version, help.

use std::process::Command;

use crate::util::{examples, shanhai};

#[test]
fn run_calls_exports_functions_and_handlers() {
    let dir = examples();
    let (ok, out, err) = shanhai(&["run", "add.wasm", "add", "2.5", "3.7"], dir);
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "6.2");

    let (ok, out, err) = shanhai(&["run", "hello.wasm", "upper", "--data", "edge"], dir);
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "EDGE");

    let (ok, out, err) = shanhai(
        &[
            "run",
            "hello.wasm",
            "--path",
            "/hello?name=cli",
            "--var",
            "greeting=Hi",
            "-i",
        ],
        dir,
    );
    assert!(ok, "{err}");
    assert!(out.starts_with("HTTP/1.1 200 OK"), "{out}");
    assert!(out.ends_with("Hi, cli"), "{out}");

    let (ok, out, _) = shanhai(
        &["run", "cgi-echo.wasm", "-X", "POST", "--data", "abc"],
        dir,
    );
    assert!(ok);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&out).unwrap()["body"],
        "abc"
    );

    let (ok, _, err) = shanhai(&["run", "add.wasm", "add", "1"], dir);
    assert!(!ok);
    assert!(err.contains("400"), "{err}");
}

/// A file that is not a WebAssembly binary is refused in one line that
/// names the file and what it looks like.
#[test]
fn run_refuses_broken_files_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&str, &[u8], &str); 4] = [
        ("junk", b"definitely not wasm", "magic number, \\0asm"),
        ("empty", b"", "the file is empty"),
        (
            "text",
            b";; add\n(module (func (export \"add\") (param f64 f64) (result f64)))",
            "WebAssembly text (WAT)",
        ),
        (
            "code",
            b"\x7fELF\x02\x01\x01",
            "shanhai deploy --precompiled",
        ),
    ];
    for (name, bytes, says) in cases {
        let file = format!("{name}.wasm");
        std::fs::write(dir.path().join(&file), bytes).unwrap();
        let (ok, _, err) = shanhai(&["run", &file, "--no-cache"], dir.path());
        assert!(!ok, "{file} ran");
        let refusal: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
        assert_eq!(refusal.len(), 1, "{file}: {err}");
        assert!(
            refusal[0].contains(&file)
                && refusal[0].contains("invalid module: not a WebAssembly binary")
                && refusal[0].contains(says),
            "{file}: {err}"
        );
    }
}

#[test]
fn version_and_help() {
    let dir = std::env::temp_dir();
    let (ok, out, _) = shanhai(&["version"], &dir);
    assert!(ok && out.starts_with("shanhai "), "{out}");
    // The ABI it names is the one the host checks guests against.
    let abi = format!("guest ABI v{}", shanhai_abi::ABI_VERSION);
    assert!(out.contains(&abi), "{out}");
    for command in ["serve", "run", "new", "compile"] {
        let (ok, out, _) = shanhai(&[command, "--help"], &dir);
        assert!(ok && out.contains("Usage: shanhai"), "{command}: {out}");
    }
    // Examples and build commands keep a line each (clap joins the lines
    // of a paragraph unless told not to).
    for (command, line) in [
        ("run", "  shanhai run add.wasm add 2.5 3.7"),
        (
            "new",
            "  Rust:  cargo build --release --target wasm32-wasip1",
        ),
    ] {
        let (ok, out, _) = shanhai(&[command, "--help"], &dir);
        assert!(
            ok && out.lines().any(|l| l.starts_with(line)),
            "{command}: {out}"
        );
    }
}

#[test]
fn new_go_module_builds_and_runs() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, out, err) = shanhai(&["new", "greeter", "--lang", "go"], dir.path());
    assert!(ok, "{err}");
    assert!(out.contains("go build -buildmode=c-shared"), "{out}");
    let project = dir.path().join("greeter");
    let status = Command::new("go")
        .args(["build", "-buildmode=c-shared", "-o", "greeter.wasm", "."])
        .env("GOOS", "wasip1")
        .env("GOARCH", "wasm")
        .current_dir(&project)
        .status()
        .unwrap();
    assert!(status.success());
    let status = Command::new("go")
        .args(["test", "./..."])
        .current_dir(&project)
        .status()
        .unwrap();
    assert!(status.success(), "the scaffold's own test fails");
    let (ok, out, err) = shanhai(
        &[
            "run",
            "greeter.wasm",
            "--path",
            "/greeter?name=scaffold",
            "--no-cache",
        ],
        &project,
    );
    assert!(ok, "{err}");
    assert_eq!(out, "Hello, scaffold, from greeter\n");
    let (ok, _, err) = shanhai(&["new", "greeter"], dir.path());
    assert!(!ok && err.contains("already exists"), "{err}");
}

#[test]
fn new_rust_module_builds_and_runs() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, _, err) = shanhai(&["new", "rusty", "--lang", "rust"], dir.path());
    assert!(ok, "{err}");
    let project = dir.path().join("rusty");
    let status = Command::new("cargo")
        .args(["build", "--release", "--target", "wasm32-wasip1", "--quiet"])
        .env(
            "CARGO_TARGET_DIR",
            crate::util::repo_root().join("target/scaffold"),
        )
        .current_dir(&project)
        .status()
        .unwrap();
    assert!(status.success());
    let wasm = crate::util::repo_root().join("target/scaffold/wasm32-wasip1/release/rusty.wasm");
    std::fs::copy(wasm, project.join("rusty.wasm")).unwrap();
    let (ok, out, err) = shanhai(
        &[
            "run",
            "rusty.wasm",
            "--path",
            "/rusty?name=crab",
            "--no-cache",
        ],
        &project,
    );
    assert!(ok, "{err}");
    assert_eq!(out, "Hello, crab, from rusty\n");
}

/// `status` against an address where no gateway listens says what to
/// check, beside the socket's error.
#[test]
fn status_without_a_gateway_says_what_to_check() {
    let dir = tempfile::tempdir().unwrap();
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let admin = format!("http://127.0.0.1:{port}");
    let (ok, _, err) = shanhai(&["status", "--admin", &admin], dir.path());
    assert!(!ok, "status succeeded without a gateway");
    assert!(
        err.contains(&admin) && err.contains("is a gateway running at that address"),
        "{err}"
    );
}
