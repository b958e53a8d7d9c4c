//! Embeds the guest SDK sources so that `shanhai new` can scaffold a module
//! that builds offline, without fetching the SDK from anywhere.

use std::fmt::Write;
use std::path::{Path, PathBuf};

fn main() {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap()).join("../..");
    let mut out = String::new();
    embed(&mut out, "GO_SDK", &root.join("sdk/go"), &|p| {
        let name = p.file_name().unwrap().to_string_lossy();
        (name.ends_with(".go") && !name.ends_with("_test.go"))
            || name == "go.mod"
            || name == "README.md"
    });
    embed(&mut out, "RUST_SDK", &root.join("sdk/rust/src"), &|p| {
        p.extension().is_some_and(|e| e == "rs")
    });
    embed(&mut out, "RUST_ABI", &root.join("crates/abi/src"), &|p| {
        p.extension().is_some_and(|e| e == "rs")
    });
    let dest = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("embedded_sdk.rs");
    std::fs::write(dest, out).unwrap();
}

fn embed(out: &mut String, name: &str, dir: &Path, keep: &dyn Fn(&Path) -> bool) {
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut files = Vec::new();
    walk(dir, dir, keep, &mut files);
    files.sort();
    writeln!(out, "pub(crate) static {name}: &[(&str, &[u8])] = &[").unwrap();
    for (relative, absolute) in files {
        println!("cargo:rerun-if-changed={}", absolute.display());
        writeln!(
            out,
            "    ({relative:?}, include_bytes!({:?})),",
            absolute.display().to_string()
        )
        .unwrap();
    }
    writeln!(out, "];").unwrap();
}

fn walk(root: &Path, dir: &Path, keep: &dyn Fn(&Path) -> bool, files: &mut Vec<(String, PathBuf)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            let dir_name = path.file_name().unwrap().to_string_lossy().into_owned();
            // Fixtures and the SDK's own wasm inspection tool are not part of
            // what a module needs.
            if !matches!(dir_name.as_str(), "testdata" | "cmd" | "wasmfile") {
                walk(root, &path, keep, files);
            }
        } else if keep(&path) {
            let relative = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            files.push((relative, path.canonicalize().unwrap()));
        }
    }
}
