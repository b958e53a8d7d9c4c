//! Code compiled on a build machine (`shanhai compile --target`), sent with
//! `shanhai deploy --precompiled` or `PUT /admin/compiled/SHA256`, against
//! a real gateway: signed code for this machine loads without compiling;
//! anything else is refused with its reason, changes nothing, and the
//! gateway compiles the module itself. scripts/arm_smoke.py does the same
//! across architectures under qemu.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::util::{Gateway, Http, Launch, cache_entries, examples, keygen, sha256_hex, shanhai};

const TOKEN: &str = "t0k3n-for-precompiled-tests";

fn config(trusted: &[&str]) -> String {
    let keys: Vec<String> = trusted.iter().map(|k| format!("{k:?}")).collect();
    format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\ntoken = \"{TOKEN}\"\nsocket = \"\"\n\n[signing]\ntrusted_keys = [{}]\n",
        keys.join(", ")
    )
}

/// A gateway with an empty modules folder and a compile cache of its own
/// in `work`, trusting `public`.
fn start_trusting(work: &Path, public: &str) -> (tempfile::TempDir, PathBuf, Gateway) {
    let modules = tempfile::tempdir().unwrap();
    let cache = work.join("cache");
    let gw = Gateway::launch(Launch {
        cache: &cache,
        ..Launch::new(modules.path(), Some(&config(&[public])))
    });
    (modules, cache, gw)
}

/// Example module `example` with a custom section naming `tag` appended:
/// the same behaviour under another SHA-256, so no compile cache (the
/// tests' shared one included) knows it yet.
fn unique_module(dir: &Path, example: &str, tag: &str) -> PathBuf {
    let mut wasm = std::fs::read(examples().join(format!("{example}.wasm"))).unwrap();
    let payload = [&[tag.len() as u8], tag.as_bytes()].concat();
    wasm.extend_from_slice(&[0, payload.len() as u8]);
    wasm.extend_from_slice(&payload);
    let path = dir.join(format!("{tag}.wasm"));
    std::fs::write(&path, wasm).unwrap();
    path
}

/// `shanhai compile --target TARGET --key KEY --cache-dir OUT FILE` plus
/// `more`; returns its stdout.
fn compile_for(target: &str, key: &Path, out: &Path, file: &Path, more: &[&str]) -> String {
    let mut args = vec![
        "compile",
        "--target",
        target,
        "--key",
        key.to_str().unwrap(),
        "--cache-dir",
        out.to_str().unwrap(),
        file.to_str().unwrap(),
    ];
    args.extend_from_slice(more);
    let (ok, stdout, stderr) = shanhai(&args, out.parent().unwrap());
    assert!(ok, "compile --target {target}: {stderr}");
    stdout
}

/// How many log lines (JSON) about `module` have the message `message`
/// and, when given, field `field` set to true.
fn log_lines(gw: &Gateway, module: &str, message: &str, field: Option<&str>) -> usize {
    gw.logs()
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|line| {
            line["module"] == module
                && line["message"] == message
                && field.is_none_or(|field| line[field] == true)
        })
        .count()
}

fn deploy(file: &Path, gw: &Gateway, precompiled: &Path) -> (bool, String) {
    let admin = format!("http://{}", gw.admin.unwrap());
    let (ok, stdout, stderr) = shanhai(
        &[
            "deploy",
            file.to_str().unwrap(),
            "--to",
            &admin,
            "--token",
            TOKEN,
            "--precompiled",
            precompiled.to_str().unwrap(),
        ],
        file.parent().unwrap(),
    );
    (ok, format!("{stdout}{stderr}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn signed_code_compiled_elsewhere_loads_without_compiling() {
    let work = tempfile::tempdir().unwrap();
    let (key, public) = keygen(work.path(), "build");
    let module = unique_module(work.path(), "add", "add-precompiled");
    let out = work.path().join("compiled");
    let said = compile_for("x86_64", &key, &out, &module, &[]);
    assert!(
        said.contains("compiling x86_64 code for x86_64: guarded pool"),
        "{said}"
    );
    let code = out.join("add-precompiled.x86_64.cwasm");
    let signature = std::fs::read_to_string(out.join("add-precompiled.x86_64.cwasm.sig")).unwrap();
    let wasm_sha = sha256_hex(&std::fs::read(&module).unwrap());
    assert!(
        signature.starts_with(&format!(
            "shanhai-compiled-v1 module-sha256={wasm_sha} isa=x86_64 code-sha256={} key={public} signature=",
            sha256_hex(&std::fs::read(&code).unwrap())
        )),
        "{signature}"
    );

    let (_modules, _, gw) = start_trusting(work.path(), &public);
    let http = Http::new();
    let (ok, said) = deploy(&module, &gw, &out);
    assert!(ok, "{said}");
    assert!(
        said.contains("sent compiled code") && said.contains("deployed add-precompiled"),
        "{said}"
    );
    let reply = http
        .post(&gw.url("/api/exec/add-precompiled/add"), "[2.5, 3.7]")
        .await;
    assert_eq!((reply.status, reply.text()), (200, "6.2".to_owned()));
    assert_eq!(
        log_lines(&gw, "add-precompiled", "module loaded", Some("from_cache")),
        1,
        "{}",
        gw.logs()
    );
    assert_eq!(
        log_lines(&gw, "add-precompiled", "compiling module", None),
        0,
        "{}",
        gw.logs()
    );
    assert!(
        gw.logs().contains("compiled code imported"),
        "{}",
        gw.logs()
    );

    // /admin/config names the code this gateway runs, which is what
    // `deploy --precompiled` picked the file by.
    let config = http
        .send(
            "GET",
            &gw.admin_url("/admin/config"),
            &[("authorization", &format!("Bearer {TOKEN}"))],
            Vec::new(),
        )
        .await
        .json();
    assert_eq!(config["runtime"]["code_isa"], "x86_64");
}

#[tokio::test(flavor = "multi_thread")]
async fn compiled_code_that_is_not_proven_for_this_gateway_is_refused_and_changes_nothing() {
    let work = tempfile::tempdir().unwrap();
    let (key, public) = keygen(work.path(), "build");
    let (stranger, _) = keygen(work.path(), "stranger");
    let module = unique_module(work.path(), "hello-rs", "rs-refusals");
    let wasm = std::fs::read(&module).unwrap();
    let wasm_sha = sha256_hex(&wasm);
    let out = work.path().join("compiled");
    compile_for("x86_64", &key, &out, &module, &[]);
    let good = std::fs::read(out.join("rs-refusals.x86_64.cwasm")).unwrap();
    let good_sig = std::fs::read_to_string(out.join("rs-refusals.x86_64.cwasm.sig")).unwrap();
    let mut tampered = good.clone();
    let middle = tampered.len() / 2;
    tampered[middle] ^= 0xff;

    let other = work.path().join("other");
    compile_for("x86_64", &stranger, &other, &module, &[]);
    let stranger_sig = std::fs::read_to_string(other.join("rs-refusals.x86_64.cwasm.sig")).unwrap();
    // 39-bit addresses: a bounds-checked layout, not this gateway's.
    let said = compile_for("x86_64", &key, &other, &module, &["--va-bits", "39"]);
    assert!(said.contains("bounded pool"), "{said}");
    let layout = std::fs::read(other.join("rs-refusals.x86_64.cwasm")).unwrap();
    let layout_sig = std::fs::read_to_string(other.join("rs-refusals.x86_64.cwasm.sig")).unwrap();
    let said = compile_for("aarch64", &key, &other, &module, &[]);
    assert!(
        said.contains("compiling aarch64 code for aarch64"),
        "{said}"
    );
    let arm = std::fs::read(other.join("rs-refusals.aarch64.cwasm")).unwrap();
    let arm_sig = std::fs::read_to_string(other.join("rs-refusals.aarch64.cwasm.sig")).unwrap();

    let (_modules, cache, gw) = start_trusting(work.path(), &public);
    let http = Http::new();
    let bearer = format!("Bearer {TOKEN}");
    let import = |sha: String, code: Vec<u8>, signature: Option<String>| {
        let (http, bearer, url) = (
            &http,
            &bearer,
            gw.admin_url(&format!("/admin/compiled/{sha}")),
        );
        async move {
            let mut headers = vec![("authorization", bearer.as_str())];
            let signature = signature.map(|s| s.trim().to_owned());
            if let Some(signature) = &signature {
                headers.push(("x-shanhai-signature", signature.as_str()));
            }
            http.send("PUT", &url, &headers, code).await
        }
    };
    let before = cache_entries(&cache);
    for (what, sha, code, signature, status, expected) in [
        (
            "no signature",
            wasm_sha.clone(),
            good.clone(),
            None,
            422,
            "unsigned compiled code",
        ),
        (
            "an untrusted key",
            wasm_sha.clone(),
            good.clone(),
            Some(stranger_sig),
            422,
            "untrusted key",
        ),
        (
            "changed code",
            wasm_sha.clone(),
            tampered,
            Some(good_sig.clone()),
            422,
            "does not match the code",
        ),
        (
            "another module",
            sha256_hex(b"another module"),
            good.clone(),
            Some(good_sig.clone()),
            422,
            "not from module",
        ),
        (
            "aarch64 code",
            wasm_sha.clone(),
            arm,
            Some(arm_sig),
            422,
            "the code is for aarch64, but this gateway runs x86_64 code",
        ),
        (
            "another layout",
            wasm_sha.clone(),
            layout,
            Some(layout_sig),
            422,
            "Module was compiled with a memory reservation",
        ),
        (
            "a malformed hash",
            "ABC".into(),
            good.clone(),
            Some(good_sig.clone()),
            400,
            "64 lowercase hex digits",
        ),
    ] {
        let reply = import(sha, code, signature).await;
        assert_eq!(reply.status, status, "{what}: {}", reply.text());
        let body = reply.json();
        assert!(
            body["message"].as_str().unwrap().contains(expected),
            "{what}: {body}"
        );
        if status == 422 {
            assert_eq!(body["error"], "compiled_refused", "{what}: {body}");
        }
        assert_eq!(cache_entries(&cache), before, "{what} changed the cache");
    }
    assert!(
        gw.logs().contains("compiled code refused: untrusted key"),
        "{}",
        gw.logs()
    );

    // A body announced past the limit is refused before it is read.
    let mut stream = std::net::TcpStream::connect(gw.admin.unwrap()).unwrap();
    write!(
        stream,
        "PUT /admin/compiled/{wasm_sha} HTTP/1.1\r\nHost: {}\r\nAuthorization: {bearer}\r\nContent-Length: {}\r\n\r\n",
        gw.admin.unwrap(),
        200u64 << 20
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("body_too_large"), "{answer}");

    // deploy --precompiled with changed code: a warning, then the gateway
    // compiles the module and serves it.
    std::fs::write(out.join("rs-refusals.x86_64.cwasm"), {
        let mut code = good;
        code[middle] ^= 0x01;
        code
    })
    .unwrap();
    let (ok, said) = deploy(&module, &gw, &out);
    assert!(ok, "{said}");
    assert!(
        said.contains("warning:") && said.contains("does not match the code"),
        "{said}"
    );
    assert!(said.contains("deployed rs-refusals"), "{said}");
    let reply = http
        .post(&gw.url("/api/exec/rs-refusals/upper"), "edge")
        .await;
    assert_eq!((reply.status, reply.text()), (200, "EDGE".to_owned()));
    assert_eq!(
        log_lines(&gw, "rs-refusals", "compiling module", None),
        1,
        "{}",
        gw.logs()
    );

    // Without a trusted key no compiled code is taken at all.
    let modules = tempfile::tempdir().unwrap();
    let bare = Gateway::launch(Launch {
        cache: &cache,
        ..Launch::new(modules.path(), Some(&config(&[])))
    });
    let reply = http
        .send(
            "PUT",
            &bare.admin_url(&format!("/admin/compiled/{wasm_sha}")),
            &[
                ("authorization", bearer.as_str()),
                ("x-shanhai-signature", good_sig.trim()),
            ],
            std::fs::read(out.join("rs-refusals.x86_64.cwasm")).unwrap(),
        )
        .await;
    assert_eq!(reply.status, 422, "{}", reply.text());
    assert!(
        reply.text().contains("none is configured"),
        "{}",
        reply.text()
    );
}
