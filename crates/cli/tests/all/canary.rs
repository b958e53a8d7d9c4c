//! Canary releases against a real gateway: a failing canary is rolled back
//! by the gateway itself, a slow one too, a healthy one is promoted and
//! survives a restart. Canaries are deployed through each transport (the
//! `shanhai` command, HTTP, JSON-RPC).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};

use crate::admin::{Rpc, counter};
use crate::util::{Gateway, Http, shanhai, version_module, version_module_with};

/// A modules folder whose `version.wasm` is the `stable` build.
fn folder_with(stable: &Path) -> tempfile::TempDir {
    let modules = tempfile::tempdir().unwrap();
    std::fs::copy(stable, modules.path().join("version.wasm")).unwrap();
    modules
}

async fn canary_view(http: &Http, gw: &Gateway) -> Value {
    let reply = http
        .get(&gw.admin_url("/admin/modules/version/canary"))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.json()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_canary_is_rolled_back_automatically() {
    let stable = version_module("A");
    let failing = version_module_with("failing", &[("status", "500")]);
    let modules = folder_with(&stable);
    let gw = Gateway::start(modules.path(), Some("[canary]\nmin_requests = 20\n"));
    let http = Http::new();

    let admin = format!("http://{}", gw.admin.unwrap());
    let failing_path = failing.to_str().unwrap();
    let args = [
        "deploy",
        failing_path,
        "--to",
        &admin,
        "--name",
        "version",
        "--canary",
        "50",
    ];
    let (ok, stdout, stderr) = shanhai(&args, modules.path());
    assert!(ok, "deploy --canary failed: {stdout}{stderr}");
    assert!(
        stdout.contains("takes 50% of the traffic (started)"),
        "{stdout}"
    );

    // Sequential requests: the one that tips the canary over the threshold
    // removes it before its response is sent.
    let (mut stable_served, mut canary_served) = (0, 0);
    for _ in 0..400 {
        let reply = http.get(&gw.url("/version")).await;
        match reply.header("x-version") {
            Some("A") => {
                assert_eq!(reply.status, 200);
                stable_served += 1;
            }
            Some("failing") => {
                assert_eq!(reply.status, 500);
                canary_served += 1;
            }
            other => panic!("unexpected version {other:?}: {}", reply.text()),
        }
        if canary_served == 20 {
            break;
        }
    }
    assert_eq!(canary_served, 20, "the canary never reached min_requests");
    assert!(stable_served > 0);

    let view = canary_view(&http, &gw).await;
    assert!(view["canary"].is_null(), "canary still running: {view}");
    let last = &view["last_canary"];
    assert_eq!(last["action"], "rolled_back", "{view}");
    assert_eq!(last["rollback"]["reason"], "error_rate", "{view}");
    assert_eq!(last["rollback"]["errors"], 20, "{view}");
    assert_eq!(last["figures"]["canary"]["requests"], 20, "{view}");
    assert_eq!(view["stable"], gw_version(&http, &gw).await);

    // Every request now goes to the stable version.
    for _ in 0..50 {
        let reply = http.get(&gw.url("/version")).await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.header("x-version"), Some("A"));
    }
    // The stable file was never touched.
    assert_eq!(
        std::fs::read(modules.path().join("version.wasm")).unwrap(),
        std::fs::read(&stable).unwrap()
    );
    let metrics = gw.metrics().await;
    let rollbacks = counter(
        &metrics,
        "shanhai_canary_rollbacks_total",
        &[("module", "version"), ("reason", "error_rate")],
    );
    assert_eq!(rollbacks, 1.0, "{metrics}");
    let logs = gw.logs();
    assert!(
        logs.lines().any(|line| line.contains("canary rolled back")
            && line.contains("\"module\":\"version\"")
            && line.contains("error rate 20/20")),
        "no rollback log line:\n{logs}"
    );
}

/// The stable version of module `version`, from the admin API.
async fn gw_version(http: &Http, gw: &Gateway) -> Value {
    let reply = http.get(&gw.admin_url("/admin/modules/version")).await;
    reply.json()["version"].clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_canary_is_rolled_back_for_latency() {
    let stable = version_module("A");
    let slow = version_module_with("slow", &[("delayMs", "60")]);
    let modules = folder_with(&stable);
    let socket_config = "[canary]\nmin_requests = 10\nlatency_floor_ms = 10\n";
    let gw = Gateway::start(modules.path(), Some(socket_config));
    let http = Http::new();

    let mut rpc = Rpc::connect(gw.admin_socket.as_ref().unwrap());
    let wasm = base64::engine::general_purpose::STANDARD.encode(std::fs::read(&slow).unwrap());
    let started = rpc.result(
        "canary.deploy",
        json!({"name": "version", "wasm_base64": wasm, "weight": 50}),
    );
    assert_eq!(started["outcome"], "started", "{started}");
    assert_eq!(started["canary"]["weight_percent"], 50.0, "{started}");

    let deadline = Instant::now() + Duration::from_secs(60);
    let mut slow_served = 0;
    loop {
        let reply = http.get(&gw.url("/version")).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        slow_served += usize::from(reply.header("x-version") == Some("slow"));
        let view = rpc.result("canary.get", json!({"name": "version"}));
        if view["canary"].is_null() {
            assert_eq!(
                view["last_canary"]["rollback"]["reason"], "latency",
                "{view}"
            );
            let p95 = view["last_canary"]["rollback"]["canary_p95_ms"]
                .as_f64()
                .unwrap();
            assert!(p95 >= 60.0, "{view}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the slow canary was never rolled back: {view}"
        );
    }
    assert!(
        slow_served >= 10,
        "judged after {slow_served} slow requests"
    );
    // Rolling back what is not running is a conflict, not a crash.
    let (code, message) = rpc.error_code("canary.rollback", json!({"name": "version"}));
    assert_eq!(code, -32002, "{message}");
    assert!(message.contains("has no canary"), "{message}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_healthy_canary_splits_traffic_and_is_promoted() {
    let stable = version_module("A");
    let healthy = version_module("B");
    let modules = folder_with(&stable);
    // This test is about the split and the promotion: a generous latency
    // floor keeps scheduling noise of a busy test machine from judging
    // sub-millisecond responses (the latency rule has its own test).
    let config = "[canary]\nlatency_floor_ms = 1000\n";
    let gw = Gateway::start(modules.path(), Some(config));
    let http = Http::new();
    let canary_url = gw.admin_url("/admin/modules/version/canary");
    let healthy_wasm = std::fs::read(&healthy).unwrap();

    // Refused: no weight, a weight out of range, the stable version itself,
    // a module with no stable version, a promotion with nothing to promote.
    let refusals: [(&str, String, Vec<u8>, u16); 4] = [
        ("PUT", canary_url.clone(), healthy_wasm.clone(), 400),
        (
            "PUT",
            format!("{canary_url}?weight=150"),
            healthy_wasm.clone(),
            400,
        ),
        (
            "PUT",
            format!("{canary_url}?weight=10"),
            std::fs::read(&stable).unwrap(),
            409,
        ),
        (
            "PUT",
            gw.admin_url("/admin/modules/nothing/canary?weight=10"),
            healthy_wasm.clone(),
            409,
        ),
    ];
    for (method, url, body, status) in refusals {
        let reply = http.send(method, &url, &[], body).await;
        assert_eq!(reply.status, status, "{url}: {}", reply.text());
    }
    let reply = http
        .post(&gw.admin_url("/admin/modules/version/canary/promote"), "")
        .await;
    assert_eq!(reply.status, 409, "{}", reply.text());
    assert_eq!(reply.json()["error"], "conflict");

    let reply = http
        .send(
            "PUT",
            &format!("{canary_url}?weight=30"),
            &[],
            healthy_wasm.clone(),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["outcome"], "started");

    // Without a key: about 30% to the canary.
    let mut served: BTreeMap<String, usize> = BTreeMap::new();
    for _ in 0..300 {
        let reply = http.get(&gw.url("/version")).await;
        assert_eq!(reply.status, 200);
        *served
            .entry(reply.header("x-version").unwrap().to_owned())
            .or_default() += 1;
    }
    let to_canary = served.get("B").copied().unwrap_or(0);
    assert!(
        (45..=135).contains(&to_canary),
        "30% of 300 went {served:?}"
    );

    // With a key: one version per key, and both versions among 40 keys.
    let mut versions_seen = BTreeSet::new();
    for key in 0..40 {
        let key = format!("user-{key}");
        let mut versions = BTreeSet::new();
        for _ in 0..5 {
            let reply = http
                .send(
                    "GET",
                    &gw.url("/version"),
                    &[("x-shanhai-key", &key)],
                    Vec::new(),
                )
                .await;
            versions.insert(reply.header("x-version").unwrap().to_owned());
        }
        assert_eq!(versions.len(), 1, "{key} met {versions:?}");
        versions_seen.extend(versions);
    }
    assert_eq!(versions_seen.len(), 2, "{versions_seen:?}");
    // The split is the one every gateway of a fleet makes (the golden
    // buckets in crates/gateway/src/canary.rs): at 30%, "alice" (bucket
    // 1941) meets the canary and "user-7" (bucket 7532) the stable version.
    for (key, version) in [("alice", "B"), ("user-7", "A")] {
        let reply = http
            .send(
                "GET",
                &gw.url("/version"),
                &[("x-shanhai-key", key)],
                Vec::new(),
            )
            .await;
        assert_eq!(reply.header("x-version"), Some(version), "{key}");
    }

    // The figures are visible, and nothing was judged wrong.
    let view = canary_view(&http, &gw).await;
    assert_eq!(
        view["canary"]["version"],
        shanhai_runtime::module_version(&healthy_wasm),
        "{view}"
    );
    let canary_requests = view["canary"]["canary"]["requests"].as_u64().unwrap();
    let stable_requests = view["canary"]["stable"]["requests"].as_u64().unwrap();
    assert_eq!(canary_requests + stable_requests, 502, "{view}");
    assert_eq!(view["canary"]["canary"]["errors"], 0, "{view}");
    assert!(view["canary"]["canary"]["p95_ms"].as_f64().unwrap() > 0.0);
    let list = http.get(&gw.admin_url("/admin/modules")).await.json();
    assert_eq!(
        list["modules"][0]["canary"]["weight_percent"], 30.0,
        "{list}"
    );

    // The same version again only changes the weight; figures are kept.
    let reply = http
        .send(
            "PUT",
            &format!("{canary_url}?weight=100"),
            &[],
            healthy_wasm.clone(),
        )
        .await;
    assert_eq!(reply.json()["outcome"], "reweighted", "{}", reply.text());
    assert_eq!(
        http.get(&gw.url("/version")).await.header("x-version"),
        Some("B")
    );

    let admin = format!("http://{}", gw.admin.unwrap());
    let (ok, stdout, stderr) = shanhai(
        &["canary", "promote", "version", "--admin", &admin],
        modules.path(),
    );
    assert!(ok, "promote failed: {stdout}{stderr}");
    assert!(stdout.contains("is now stable"), "{stdout}");
    for _ in 0..20 {
        let reply = http.get(&gw.url("/version")).await;
        assert_eq!(reply.header("x-version"), Some("B"));
    }
    assert_eq!(
        std::fs::read(modules.path().join("version.wasm")).unwrap(),
        healthy_wasm,
        "the promoted canary's file did not replace the stable one"
    );
    let view = canary_view(&http, &gw).await;
    assert_eq!(view["last_canary"]["action"], "promoted", "{view}");
    assert!(view["canary"].is_null());
    let metrics = gw.metrics().await;
    assert_eq!(
        counter(
            &metrics,
            "shanhai_canary_promotions_total",
            &[("module", "version")]
        ),
        1.0
    );
    assert_eq!(
        counter(&metrics, "shanhai_canary_rollbacks_total", &[]),
        0.0,
        "{metrics}"
    );

    // A restart serves the promoted version.
    drop(gw);
    let gw = Gateway::start(modules.path(), None);
    assert_eq!(
        http.get(&gw.url("/version")).await.header("x-version"),
        Some("B")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_configured_canary_starts_with_the_gateway() {
    let stable = version_module("A");
    let next = version_module("B");
    let modules = folder_with(&stable);
    std::fs::copy(&next, modules.path().join("version-next.wasm")).unwrap();
    let config = "[modules.version.canary]\nfile = \"version-next.wasm\"\nweight = 100\n";
    let gw = Gateway::start(modules.path(), Some(config));
    let http = Http::new();
    assert_eq!(
        http.get(&gw.url("/version")).await.header("x-version"),
        Some("B")
    );
    // The canary file is not a module of its own.
    assert_eq!(http.get(&gw.url("/version-next")).await.status, 404);
    let (ok, stdout, stderr) = shanhai(
        &[
            "status",
            "--admin",
            &format!("http://{}", gw.admin.unwrap()),
        ],
        modules.path(),
    );
    assert!(ok, "{stderr}");
    assert!(stdout.contains("@100%"), "{stdout}");
}
