//! Module signing: `shanhai keygen` and `shanhai sign` as real commands, and
//! a real gateway with `[signing] require_signed = true`.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::util::{
    Gateway, Http, cache_entries, examples, keygen, modules_with, sha256_hex, shanhai,
    version_module, wait_for_version,
};

/// Runs `shanhai sign FILE --key KEY`.
fn sign(file: &Path, key: &Path) {
    sign_with(file, key, &[]);
}

/// Runs `shanhai sign FILE --key KEY` with more arguments; returns what it
/// printed.
fn sign_with(file: &Path, key: &Path, more: &[&str]) -> String {
    let mut args = vec![
        "sign",
        file.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
    ];
    args.extend_from_slice(more);
    let (ok, stdout, stderr) = shanhai(&args, file.parent().unwrap());
    assert!(ok, "sign failed: {stderr}");
    stdout
}

fn config(require_signed: bool, trusted: &[&str]) -> String {
    let keys: Vec<String> = trusted.iter().map(|k| format!("{k:?}")).collect();
    format!(
        "[signing]\nrequire_signed = {require_signed}\ntrusted_keys = [{}]\n",
        keys.join(", ")
    )
}

/// Asserts that `module` is not loaded: not listed by `/readyz`, and
/// unknown to the gateway (a 404 from a guest would prove nothing).
async fn assert_not_loaded(http: &Http, gw: &Gateway, module: &str) {
    let ready = http.get(&gw.url("/readyz")).await.json();
    assert!(
        !ready["modules"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m == module),
        "{module} is loaded: {ready}"
    );
    let reply = http
        .post(&gw.url(&format!("/api/exec/{module}/upper")), "x")
        .await;
    assert_eq!(reply.status, 404, "{}", reply.text());
    assert_eq!(reply.error_kind(), "unknown_module", "{}", reply.text());
}

/// The `/readyz` failure of `module`, waiting up to 20 s for one containing
/// `reason`.
async fn wait_for_failure(http: &Http, gw: &Gateway, module: &str, reason: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let ready = http.get(&gw.admin_url("/readyz")).await.json();
        if let Some(message) = ready["failed"][module].as_str()
            && message.contains(reason)
        {
            return message.to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "{module} was not refused with `{reason}`: {ready}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[test]
fn keygen_writes_a_private_key_and_never_overwrites() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let (key, public) = keygen(dir.path(), "release");
    assert!(
        public.starts_with("ed25519:") && public.len() == 8 + 64,
        "{public}"
    );
    let mode = std::fs::metadata(&key).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "the secret key is readable by others");
    let secret = std::fs::read_to_string(&key).unwrap();

    let (ok, _, stderr) = shanhai(&["keygen", "--out", "release"], dir.path());
    assert!(!ok);
    assert!(stderr.contains("already exists"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&key).unwrap(), secret);

    // Signing with the public key by mistake says so.
    std::fs::copy(examples().join("add.wasm"), dir.path().join("add.wasm")).unwrap();
    let (ok, _, stderr) = shanhai(&["sign", "add.wasm", "--key", "release.pub"], dir.path());
    assert!(!ok);
    assert!(stderr.contains("public key"), "{stderr}");
    assert!(!dir.path().join("add.wasm.sig").exists());

    sign(&dir.path().join("add.wasm"), &key);
    let signature = std::fs::read_to_string(dir.path().join("add.wasm.sig")).unwrap();
    assert!(
        signature.starts_with("shanhai-signature-v2 module=add sequence=")
            && signature.contains(" expires=never ")
            && signature.contains(&format!(" key={public} signature=")),
        "{signature}"
    );

    // The name, sequence and lifetime can be set; a file whose name is not
    // a module name needs --module.
    let printed = sign_with(
        &dir.path().join("add.wasm"),
        &key,
        &["--module", "adder", "--sequence", "7", "--expires-in", "1d"],
    );
    assert!(
        printed.contains("for module `adder`, sequence 7, expires at "),
        "{printed}"
    );
    std::fs::copy(examples().join("add.wasm"), dir.path().join("add.v2.wasm")).unwrap();
    let (ok, _, stderr) = shanhai(&["sign", "add.v2.wasm", "--key", "release.key"], dir.path());
    assert!(!ok && stderr.contains("--module NAME"), "{stderr}");
    let (ok, _, stderr) = shanhai(
        &[
            "sign",
            "add.wasm",
            "--key",
            "release.key",
            "--expires-in",
            "soon",
        ],
        dir.path(),
    );
    assert!(!ok && stderr.contains("e.g. 90d"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_signature_binds_the_module_name_and_refuses_rollbacks() {
    let keys = tempfile::tempdir().unwrap();
    let (key, public) = keygen(keys.path(), "release");
    let state = tempfile::tempdir().unwrap();
    let sequences = state.path().join("signing.sequences");
    let config = format!(
        "{}sequence_file = {:?}\n",
        config(true, &[&public]),
        sequences.display().to_string()
    );
    let modules = tempfile::tempdir().unwrap();
    let dir = modules.path();
    let target = dir.join("version.wasm");
    // Version A, signed as sequence 2, kept aside to be put back later.
    let old = keys.path().join("version.wasm");
    std::fs::copy(version_module("A"), &old).unwrap();
    sign_with(&old, &key, &["--sequence", "2"]);
    std::fs::copy(&old, &target).unwrap();
    std::fs::copy(
        keys.path().join("version.wasm.sig"),
        dir.join("version.wasm.sig"),
    )
    .unwrap();
    // The same signed file and signature under another name: the name
    // `billing` would give it billing's grants and secrets.
    std::fs::copy(&old, dir.join("billing.wasm")).unwrap();
    std::fs::copy(
        keys.path().join("version.wasm.sig"),
        dir.join("billing.wasm.sig"),
    )
    .unwrap();
    // A version 1 signature (over the digest alone), as older releases wrote.
    std::fs::copy(examples().join("hello.wasm"), dir.join("legacy.wasm")).unwrap();
    std::fs::write(
        dir.join("legacy.wasm.sig"),
        format!("{public}:{}\n", "ab".repeat(64)),
    )
    .unwrap();

    let gw = Gateway::start(dir, Some(&config));
    let http = Http::new();
    wait_for_version(&http, &gw, "A").await;
    let message = wait_for_failure(&http, &gw, "billing", "signed for another module").await;
    assert!(
        message.contains("for module `version`, not `billing`"),
        "{message}"
    );
    assert_not_loaded(&http, &gw, "billing").await;
    let message = wait_for_failure(&http, &gw, "legacy", "old signature").await;
    assert!(message.contains("shanhai sign"), "{message}");

    // B, sequence 3, replaces A through the watcher (signature first).
    let new = dir.join("version.new");
    std::fs::copy(version_module("B"), &new).unwrap();
    sign_with(&new, &key, &["--module", "version", "--sequence", "3"]);
    std::fs::rename(dir.join("version.new.sig"), dir.join("version.wasm.sig")).unwrap();
    std::fs::rename(&new, &target).unwrap();
    wait_for_version(&http, &gw, "B").await;

    // Putting A back with its own valid signature is a rollback: refused,
    // and B keeps serving.
    std::fs::copy(
        keys.path().join("version.wasm.sig"),
        dir.join("version.wasm.sig"),
    )
    .unwrap();
    std::fs::copy(&old, dir.join("version.tmp")).unwrap();
    std::fs::rename(dir.join("version.tmp"), &target).unwrap();
    let message = wait_for_failure(&http, &gw, "version", "rollback refused").await;
    assert!(
        message.contains("has sequence 2, but module `version` has already loaded sequence 3"),
        "{message}"
    );
    assert_eq!(
        http.get(&gw.url("/version")).await.header("x-version"),
        Some("B")
    );

    // After a restart the gateway still knows: A on disk stays refused.
    drop(gw);
    assert_eq!(std::fs::read_to_string(&sequences).unwrap(), "version 3\n");
    let gw = Gateway::start(dir, Some(&config));
    wait_for_failure(&http, &gw, "version", "rollback refused").await;
    assert_not_loaded(&http, &gw, "version").await;

    // Re-signing A with a higher sequence is how to go back on purpose.
    sign_with(&target, &key, &["--sequence", "4"]);
    wait_for_version(&http, &gw, "A").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn require_signed_refuses_unsigned_tampered_and_untrusted_modules() {
    let keys = tempfile::tempdir().unwrap();
    let (trusted, trusted_public) = keygen(keys.path(), "trusted");
    let (stranger, _) = keygen(keys.path(), "stranger");

    let modules = modules_with(&["hello", "add"]);
    let dir = modules.path();
    sign(&dir.join("hello.wasm"), &trusted);
    // Same bytes as hello, but never signed.
    std::fs::copy(dir.join("hello.wasm"), dir.join("unsigned.wasm")).unwrap();
    // Signed, then replaced by other (valid) code.
    std::fs::copy(dir.join("hello.wasm"), dir.join("tampered.wasm")).unwrap();
    sign(&dir.join("tampered.wasm"), &trusted);
    std::fs::copy(examples().join("add.wasm"), dir.join("tampered.wasm")).unwrap();
    // Signed correctly, by a key the gateway does not trust.
    std::fs::copy(dir.join("hello.wasm"), dir.join("stranger.wasm")).unwrap();
    sign(&dir.join("stranger.wasm"), &stranger);

    let gw = Gateway::start(dir, Some(&config(true, &[&trusted_public])));
    let http = Http::new();

    let reply = http.get(&gw.url("/hello?name=edge")).await;
    assert_eq!(
        reply.status,
        200,
        "the signed module does not serve: {}",
        reply.text()
    );

    for (module, reason) in [
        ("add", "unsigned"),
        ("unsigned", "unsigned"),
        ("tampered", "does not match the module"),
        ("stranger", "not signed by a trusted key"),
    ] {
        let message = wait_for_failure(&http, &gw, module, reason).await;
        assert!(message.contains(&format!("{module}.wasm")), "{message}");
        assert_not_loaded(&http, &gw, module).await;
    }
    let logs = gw.logs();
    assert!(logs.contains("not signed by a trusted key"), "{logs}");

    // The public listener names the failures; only the admin listener says
    // why, with paths and signer keys.
    let public = http.get(&gw.url("/readyz")).await.text();
    assert!(public.contains("\"stranger\""), "{public}");
    for detail in ["ed25519:", dir.to_str().unwrap(), "trusted"] {
        assert!(!public.contains(detail), "{detail} leaks: {public}");
    }
    let admin = http.get(&gw.admin_url("/readyz")).await.json();
    let reason = admin["failed"]["stranger"].as_str().unwrap();
    assert!(reason.contains("ed25519:"), "{admin}");
}

#[tokio::test(flavor = "multi_thread")]
async fn signatures_are_checked_when_present_even_if_not_required() {
    let keys = tempfile::tempdir().unwrap();
    let (trusted, trusted_public) = keygen(keys.path(), "trusted");
    let (stranger, _) = keygen(keys.path(), "stranger");
    let modules = modules_with(&["hello", "add"]);
    let dir = modules.path();
    sign(&dir.join("hello.wasm"), &trusted);
    sign(&dir.join("add.wasm"), &stranger);
    std::fs::copy(examples().join("hello.wasm"), dir.join("plain.wasm")).unwrap();

    let gw = Gateway::start(dir, Some(&config(false, &[&trusted_public])));
    let http = Http::new();
    assert_eq!(http.get(&gw.url("/hello")).await.status, 200);
    let reply = http.post(&gw.url("/api/exec/plain/upper"), "edge").await;
    assert_eq!(
        (reply.status, reply.text().as_str()),
        (200, "EDGE"),
        "an unsigned module was refused"
    );
    wait_for_failure(&http, &gw, "add", "not signed by a trusted key").await;
    assert_not_loaded(&http, &gw, "add").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn require_signed_without_trusted_keys_refuses_everything() {
    let keys = tempfile::tempdir().unwrap();
    let (key, _) = keygen(keys.path(), "k");
    let modules = modules_with(&["hello"]);
    sign(&modules.path().join("hello.wasm"), &key);
    let gw = Gateway::start(modules.path(), Some(&config(true, &[])));
    let http = Http::new();
    wait_for_failure(&http, &gw, "hello", "signing.trusted_keys is empty").await;
    assert_not_loaded(&http, &gw, "hello").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn hot_plug_keeps_the_signed_version_until_the_new_one_is_signed() {
    let keys = tempfile::tempdir().unwrap();
    let (key, public) = keygen(keys.path(), "release");
    let modules = tempfile::tempdir().unwrap();
    let target = modules.path().join("version.wasm");
    std::fs::copy(version_module("A"), &target).unwrap();
    sign(&target, &key);
    let gw = Gateway::start(modules.path(), Some(&config(true, &[&public])));
    let http = Http::new();
    wait_for_version(&http, &gw, "A").await;

    // B arrives next to A's signature: refused, A keeps serving.
    let tmp = modules.path().join("version.tmp");
    std::fs::copy(version_module("B"), &tmp).unwrap();
    std::fs::rename(&tmp, &target).unwrap();
    wait_for_failure(&http, &gw, "version", "does not match the module").await;
    assert_eq!(
        http.get(&gw.url("/version")).await.header("x-version"),
        Some("A")
    );

    // The signature goes away: still refused (now unsigned), A still serves.
    std::fs::remove_file(modules.path().join("version.wasm.sig")).unwrap();
    wait_for_failure(&http, &gw, "version", "unsigned").await;
    assert_eq!(
        http.get(&gw.url("/version")).await.header("x-version"),
        Some("A")
    );

    // Signing B in place is a change the watcher sees: B loads.
    sign(&target, &key);
    wait_for_version(&http, &gw, "B").await;
    let ready = http.get(&gw.admin_url("/readyz")).await.json();
    assert!(ready["failed"].get("version").is_none(), "{ready}");
}

/// The cache entries (`KEY.cwasm` and `KEY.mac`) in `cache`, by extension.
#[tokio::test(flavor = "multi_thread")]
async fn compiled_code_planted_in_the_cache_does_not_run() {
    let keys = tempfile::tempdir().unwrap();
    let (trusted, trusted_public) = keygen(keys.path(), "trusted");
    let modules = modules_with(&["hello"]);
    let dir = modules.path();
    sign(&dir.join("hello.wasm"), &trusted);

    // An attacker who can write to the cache compiles another module and
    // files its code (authentication code included) under the signed
    // module's key: the SHA-256 of hello.wasm.
    let root = tempfile::tempdir().unwrap();
    let cache = root.path().join("cache");
    let add = examples().join("add.wasm");
    let (ok, _, stderr) = shanhai(
        &[
            "compile",
            add.to_str().unwrap(),
            "--cache-dir",
            cache.to_str().unwrap(),
        ],
        root.path(),
    );
    assert!(ok, "{stderr}");
    let planted = cache_entries(&cache);
    assert_eq!(planted.len(), 2, "{planted:?}");
    let hello_sha = sha256_hex(&std::fs::read(dir.join("hello.wasm")).unwrap());
    for entry in &planted {
        let name = entry.file_name().unwrap().to_str().unwrap();
        let (_, engine_and_ext) = name.split_once('-').unwrap();
        std::fs::rename(entry, cache.join(format!("{hello_sha}-{engine_and_ext}"))).unwrap();
    }

    let gw = Gateway::start_with(dir, Some(&config(true, &[&trusted_public])), &cache);
    let reply = Http::new().get(&gw.url("/hello?name=edge")).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.text(), "Hello, edge");
    let logs = gw.logs();
    assert!(
        logs.contains("compile-cache entry failed authentication"),
        "{logs}"
    );
    // The signed module was compiled afresh, and its entry replaced the
    // planted one.
    assert!(logs.contains("module compiled"), "{logs}");
}

#[test]
fn a_compile_cache_others_can_write_to_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let root = tempfile::tempdir().unwrap();
    let cache = root.path().join("cache");
    std::fs::create_dir(&cache).unwrap();
    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o777)).unwrap();
    let modules = modules_with(&[]);
    let output = std::process::Command::new(crate::util::shanhai_bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--modules"])
        .arg(modules.path())
        .arg("--cache-dir")
        .arg(&cache)
        .arg("--config")
        .arg({
            let path = root.path().join("shanhai.toml");
            std::fs::write(&path, "[admin]\nenabled = false\n").unwrap();
            path
        })
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("writable by group or others (mode 777)") && stderr.contains("chmod 700"),
        "{stderr}"
    );

    // A fresh folder is made private, and its key sits beside it.
    let fresh = root.path().join("fresh");
    let (ok, _, stderr) = shanhai(
        &[
            "compile",
            examples().join("add.wasm").to_str().unwrap(),
            "--cache-dir",
            fresh.to_str().unwrap(),
        ],
        root.path(),
    );
    assert!(ok, "{stderr}");
    let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&fresh), 0o700);
    assert_eq!(mode(&root.path().join("fresh.key")), 0o600);
}
