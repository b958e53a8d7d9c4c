//! The seeds' scenario examples (rules, fsm, dp-noise, etl, crypto, exif)
//! in a real `shanhai serve`, with their state in the embedded KV store and
//! real SQLite databases in a fresh data folder per test.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};

use crate::util::{Gateway, Http, Reply, modules_with};

/// A gateway serving the `modules` examples with `config` (module
/// sections), its data folder and the modules folder, kept alive with it.
struct Served {
    gw: Gateway,
    http: Http,
    _modules: tempfile::TempDir,
    _data: tempfile::TempDir,
}

fn serve(modules: &[&str], config: &str, env: &[(&str, &str)]) -> Served {
    let dir = modules_with(modules);
    let data = tempfile::tempdir().unwrap();
    let text = format!(
        "[state]\ndata_dir = {:?}\n{config}\n",
        data.path().display().to_string()
    );
    let gw = Gateway::start_env(dir.path(), Some(&text), env);
    Served {
        gw,
        http: Http::new(),
        _modules: dir,
        _data: data,
    }
}

impl Served {
    async fn get(&self, path: &str) -> Reply {
        self.http.get(&self.gw.url(path)).await
    }

    async fn post(&self, path: &str, body: impl Into<Vec<u8>>) -> Reply {
        self.http.post(&self.gw.url(path), body).await
    }

    async fn put(&self, path: &str, body: &str) -> Reply {
        self.http
            .send("PUT", &self.gw.url(path), &[], body.as_bytes().to_vec())
            .await
    }

    /// `count` copies of the same POST at once; the statuses and bodies.
    async fn concurrent_posts(&self, path: &str, body: &str, count: usize) -> Vec<(u16, Value)> {
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..count {
            let (http, url, body) = (self.http.clone(), self.gw.url(path), body.to_owned());
            tasks.spawn(async move {
                let reply = http.post(&url, body).await;
                (reply.status, reply.json())
            });
        }
        tasks.join_all().await
    }
}

/// Asserts the status and returns the JSON body.
#[track_caller]
fn expect(reply: &Reply, status: u16) -> Value {
    assert_eq!(reply.status, status, "{}", reply.text());
    reply.json()
}

#[tokio::test(flavor = "multi_thread")]
async fn rules_changed_at_run_time_apply_to_the_next_request() {
    let s = serve(&["rules"], "[modules.rules.grants]\nkv = true\n", &[]);
    let set = r#"{"fields": {"n": {"type": "integer", "required": true, "max": 10}, "email": {"type": "string", "pattern": "^[^@]+@[^@]+$"}}}"#;
    let stored = expect(&s.put("/rules/sets/limits", set).await, 200);
    assert_eq!(stored, json!({"name": "limits", "fields": 2}));
    assert_eq!(s.get("/rules/sets/limits").await.text(), set);

    // Warm several instances, so the change below must reach each of them.
    for (status, body) in s
        .concurrent_posts("/rules/validate/limits", r#"{"n": 7}"#, 8)
        .await
    {
        assert_eq!((status, body), (200, json!({"valid": true})));
    }
    let reply = expect(
        &s.post("/rules/validate/limits", r#"{"n": 7.5, "email": "nobody"}"#)
            .await,
        422,
    );
    assert_eq!(
        reply["violations"],
        json!([
            {"path": "$.email", "message": "must match the pattern ^[^@]+@[^@]+$"},
            {"path": "$.n", "message": "must be an integer, not the number 7.5"},
        ])
    );

    let stricter = r#"{"fields": {"n": {"type": "integer", "required": true, "max": 5}}}"#;
    expect(&s.put("/rules/sets/limits", stricter).await, 200);
    for (status, body) in s
        .concurrent_posts("/rules/validate/limits", r#"{"n": 7}"#, 8)
        .await
    {
        assert_eq!(status, 422, "{body}");
        assert_eq!(
            body["violations"],
            json!([{"path": "$.n", "message": "must be at most 5"}])
        );
    }

    let bad = expect(
        &s.put(
            "/rules/sets/limits",
            r#"{"fields": {"n": {"type": "int"}}}"#,
        )
        .await,
        400,
    );
    assert!(
        bad["error"].as_str().unwrap().contains("unknown type"),
        "{bad}"
    );
    assert_eq!(
        s.get("/rules/sets/limits").await.text(),
        stricter,
        "a refused set replaced the stored one"
    );
    expect(&s.post("/rules/validate/missing", "{}").await, 404);
    expect(&s.post("/rules/validate/limits", "{").await, 400);
    let list = expect(&s.get("/rules/sets").await, 200);
    assert_eq!(list, json!({"sets": ["limits"]}));
}

#[tokio::test(flavor = "multi_thread")]
async fn fsm_rejects_invalid_transitions_and_races_have_one_winner() {
    let s = serve(&["fsm"], "[modules.fsm.grants]\nkv = true\n", &[]);
    let created = expect(&s.post("/fsm/orders/o-1", "").await, 201);
    assert_eq!(created["state"], "created");
    expect(&s.post("/fsm/orders/o-1", "").await, 409);

    let refused = expect(&s.post("/fsm/orders/o-1/ship", "").await, 409);
    assert_eq!(refused["state"], "created");
    assert_eq!(refused["allowed"], json!(["pay", "cancel"]));
    assert_eq!(refused["error"], "cannot ship an order that is created");

    let results = s
        .concurrent_posts("/fsm/orders/o-1/pay", r#"{"note": "race"}"#, 16)
        .await;
    let winners = results.iter().filter(|(status, _)| *status == 200).count();
    assert_eq!(winners, 1, "{results:?}");
    for (status, body) in results.iter().filter(|(status, _)| *status != 200) {
        assert_eq!(*status, 409, "{body}");
        assert_eq!(body["state"], "paid", "{body}");
        assert_eq!(body["allowed"], json!(["ship", "cancel"]), "{body}");
    }

    expect(&s.post("/fsm/orders/o-1/ship", "").await, 200);
    expect(&s.post("/fsm/orders/o-1/deliver", "").await, 200);
    let done = expect(&s.post("/fsm/orders/o-1/cancel", "").await, 409);
    assert_eq!(done["allowed"], json!([]));
    let order = expect(&s.get("/fsm/orders/o-1").await, 200);
    assert_eq!(order["state"], "delivered");
    let steps: Vec<(&str, &str)> = order["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["event"].as_str().unwrap(), s["to"].as_str().unwrap()))
        .collect();
    assert_eq!(
        steps,
        [
            ("create", "created"),
            ("pay", "paid"),
            ("ship", "shipped"),
            ("deliver", "delivered")
        ]
    );
    assert_eq!(order["history"][1]["note"], "race");
    expect(&s.get("/fsm/orders/nope").await, 404);
    expect(&s.post("/fsm/orders/o-1/refund", "").await, 400);
}

#[tokio::test(flavor = "multi_thread")]
async fn dp_noise_never_overspends_the_budget() {
    let s = serve(
        &["dp-noise"],
        "[modules.dp-noise.grants]\nkv = true\n[modules.dp-noise.vars]\nbudget = \"5\"\n",
        &[],
    );
    let body =
        r#"{"key": "sensor-7", "values": [20.5, 21.0, 21.5], "epsilon": 0.5, "sensitivity": 1}"#;
    let results = s.concurrent_posts("/dp-noise", body, 20).await;
    let released: Vec<&Value> = results
        .iter()
        .filter(|(status, _)| *status == 200)
        .map(|(_, body)| body)
        .collect();
    assert_eq!(
        released.len(),
        10,
        "budget 5 holds ten releases of 0.5: {results:?}"
    );
    for (status, body) in &results {
        match status {
            200 => {
                assert_eq!(body["values"].as_array().unwrap().len(), 3);
                assert_eq!(body["scale"], 2.0);
            }
            429 => {
                assert_eq!(body["error"], "privacy budget exhausted", "{body}");
                assert_eq!(body["remaining"], 0.0, "{body}");
            }
            other => panic!("{other}: {body}"),
        }
    }
    // Every successful release saw a different total: none was lost.
    let mut spent: Vec<f64> = released
        .iter()
        .map(|b| b["spent"].as_f64().unwrap())
        .collect();
    spent.sort_by(f64::total_cmp);
    assert_eq!(
        spent,
        (1..=10).map(|i| f64::from(i) * 0.5).collect::<Vec<_>>()
    );
    let budget = expect(&s.get("/dp-noise/budget/sensor-7").await, 200);
    assert_eq!(
        budget,
        json!({"key": "sensor-7", "budget": 5, "spent": 5, "remaining": 0})
    );
    // The noise is real: released values differ from the readings.
    assert!(
        released
            .iter()
            .any(|b| b["values"][0].as_f64() != Some(20.5))
    );
    expect(
        &s.post("/dp-noise", r#"{"key": "k", "values": [1], "epsilon": 0}"#)
            .await,
        400,
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn etl_stores_and_queries_real_sqlite_rows() {
    let s = serve(&["etl"], "[modules.etl.grants]\nsqlite = true\n", &[]);
    let batch = r#"[
        {"Device_ID": " Boiler-1 ", "timestamp": "2024-05-01 10:00:00", "Temp": "71.6 F", "humidity": "40%"},
        {"device": "boiler-1", "ts": 1714561200, "temperature": "23,5", "unit": "celsius"},
        {"sensor": "Attic", "time": "2024-05-01T12:00:00+02:00", "temp": "294.65K"},
        {"device": "boiler-1", "time": "2024-05-01T12:00:00Z", "temp_f": 77},
        {"device": "boiler-1", "time": "2024-05-01T13:00:00Z", "temp": "warm"},
        {"time": "2024-05-01T13:00:00Z", "temp": 1}
    ]"#;
    let result = expect(&s.post("/etl/batch", batch).await, 200);
    assert_eq!(result["accepted"], 4, "{result}");
    assert_eq!(result["stored"], 4, "{result}");
    assert_eq!(
        result["rejections"],
        json!([
            {"record": 5, "reason": "temperature \"warm\" is not a number"},
            {"record": 6, "reason": "device is missing"},
        ])
    );
    // JSON lines, with one reading already stored: a duplicate.
    let lines = "{\"device\":\"attic\",\"time\":\"2024-05-01T10:00:00Z\",\"temp\":99}\n\
                 {\"device\":\"attic\",\"time\":\"2024-05-01T11:00:00Z\",\"temp\":20.5}\n";
    let result = expect(&s.post("/etl/batch", lines).await, 200);
    assert_eq!(
        (&result["stored"], &result["duplicates"]),
        (&json!(1), &json!(1)),
        "{result}"
    );

    // Go writes a float64 such as 22.0 as 22, which serde_json reads as an
    // integer, so the expected JSON writes those as integers too.
    let all = expect(&s.get("/etl/query").await, 200);
    assert_eq!(
        all["rows"],
        json!([
            {"device": "attic", "ts": "2024-05-01T10:00:00.000Z", "temp_c": 21.5, "humidity": null},
            {"device": "boiler-1", "ts": "2024-05-01T10:00:00.000Z", "temp_c": 22, "humidity": 40},
            {"device": "attic", "ts": "2024-05-01T11:00:00.000Z", "temp_c": 20.5, "humidity": null},
            {"device": "boiler-1", "ts": "2024-05-01T11:00:00.000Z", "temp_c": 23.5, "humidity": null},
            {"device": "boiler-1", "ts": "2024-05-01T12:00:00.000Z", "temp_c": 25, "humidity": null},
        ])
    );
    assert_eq!(all["truncated"], false);
    assert_eq!(
        all["devices"],
        json!([
            {"device": "attic", "count": 2, "avg_temp_c": 21, "min_temp_c": 20.5, "max_temp_c": 21.5,
             "avg_humidity": null, "first": "2024-05-01T10:00:00.000Z", "last": "2024-05-01T11:00:00.000Z"},
            {"device": "boiler-1", "count": 3, "avg_temp_c": 23.5, "min_temp_c": 22, "max_temp_c": 25,
             "avg_humidity": 40, "first": "2024-05-01T10:00:00.000Z", "last": "2024-05-01T12:00:00.000Z"},
        ])
    );

    let some = expect(
        &s.get("/etl/query?device=BOILER-1&since=2024-05-01T13:00:00%2B02:00&limit=1")
            .await,
        200,
    );
    assert_eq!(
        some["rows"],
        json!([{"device": "boiler-1", "ts": "2024-05-01T11:00:00.000Z", "temp_c": 23.5, "humidity": null}])
    );
    assert_eq!(some["truncated"], true);
    assert_eq!(some["devices"][0]["count"], 2);
    expect(&s.get("/etl/query?since=soon").await, 400);
    expect(&s.post("/etl/batch", "[{").await, 400);
}

const AES_KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
/// RFC 8032, test 1: the seed, and its public key in base64.
const SEED: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
const PUBLIC_KEY: &str = "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=";

#[tokio::test(flavor = "multi_thread")]
async fn crypto_round_trips_and_refuses_tampered_ciphertext() {
    let s = serve(
        &["crypto"],
        "[modules.crypto.secrets]\naes_key = \"${TEST_AES_KEY}\"\ned25519_seed = \"${TEST_ED25519_SEED}\"\n",
        &[("TEST_AES_KEY", AES_KEY), ("TEST_ED25519_SEED", SEED)],
    );
    let sealed = expect(
        &s.post(
            "/crypto/encrypt",
            json!({"plaintext": "山海 edge", "aad": "order-7"}).to_string(),
        )
        .await,
        200,
    );
    let ciphertext = sealed["ciphertext"].as_str().unwrap();
    let opened = expect(
        &s.post(
            "/crypto/decrypt",
            json!({"ciphertext": ciphertext, "aad": "order-7"}).to_string(),
        )
        .await,
        200,
    );
    assert_eq!(opened, json!({"plaintext": "山海 edge"}));

    let mut raw = B64.decode(ciphertext).unwrap();
    assert_eq!(raw.len(), 12 + "山海 edge".len() + 16);
    raw[14] ^= 1;
    let tampered = expect(
        &s.post(
            "/crypto/decrypt",
            json!({"ciphertext": B64.encode(&raw), "aad": "order-7"}).to_string(),
        )
        .await,
        400,
    );
    assert!(
        tampered["error"]
            .as_str()
            .unwrap()
            .starts_with("decryption failed"),
        "{tampered}"
    );
    let wrong_aad = s
        .post(
            "/crypto/decrypt",
            json!({"ciphertext": ciphertext, "aad": "order-8"}).to_string(),
        )
        .await;
    assert_eq!(wrong_aad.status, 400, "{}", wrong_aad.text());

    let signed = expect(
        &s.post("/crypto/sign", json!({"message": "pay 10"}).to_string())
            .await,
        200,
    );
    assert_eq!(signed["public_key"], PUBLIC_KEY);
    let signature = signed["signature"].as_str().unwrap();
    let valid = expect(
        &s.post(
            "/crypto/verify",
            json!({"message": "pay 10", "signature": signature}).to_string(),
        )
        .await,
        200,
    );
    assert_eq!(valid, json!({"valid": true}));
    let forged = expect(
        &s.post(
            "/crypto/verify",
            json!({"message": "pay 99", "signature": signature}).to_string(),
        )
        .await,
        200,
    );
    assert_eq!(forged, json!({"valid": false}));
    let key = expect(&s.get("/crypto/public-key").await, 200);
    assert_eq!(key["public_key"], PUBLIC_KEY);

    let logs = s.gw.logs();
    assert!(
        !logs.contains(AES_KEY) && !logs.contains(SEED),
        "a secret in the logs"
    );
}

/// A JPEG holding an EXIF APP1 segment, little-endian TIFF: Make, Model,
/// Orientation in IFD0, DateTimeOriginal in the Exif IFD, and a position
/// south and west in the GPS IFD, as examples/exif's test builds them.
fn jpeg_with_exif() -> Vec<u8> {
    // (tag, type, count, value bytes); values over 4 bytes go after the IFD.
    type Entry = (u16, u16, u32, Vec<u8>);
    fn ascii(tag: u16, s: &str) -> Entry {
        let mut v = s.as_bytes().to_vec();
        v.push(0);
        (tag, 2, v.len() as u32, v)
    }
    fn rationals(tag: u16, pairs: &[(u32, u32)]) -> Entry {
        let v = pairs
            .iter()
            .flat_map(|(n, d)| [n.to_le_bytes(), d.to_le_bytes()].concat())
            .collect();
        (tag, 5, pairs.len() as u32, v)
    }
    fn ifd(out: &mut Vec<u8>, entries: &[Entry]) {
        let data_at = out.len() + 2 + 12 * entries.len() + 4;
        let mut data = Vec::new();
        out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
        for (tag, typ, count, value) in entries {
            out.extend_from_slice(&tag.to_le_bytes());
            out.extend_from_slice(&typ.to_le_bytes());
            out.extend_from_slice(&count.to_le_bytes());
            if value.len() <= 4 {
                let mut inline = value.clone();
                inline.resize(4, 0);
                out.extend_from_slice(&inline);
            } else {
                out.extend_from_slice(&((data_at + data.len()) as u32).to_le_bytes());
                data.extend_from_slice(value);
            }
        }
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&data);
    }
    let mut tiff = b"II*\0\0\0\0\0".to_vec();
    let exif_at = tiff.len() as u32;
    ifd(&mut tiff, &[ascii(0x9003, "2024:05:01 12:34:56")]);
    let gps_at = tiff.len() as u32;
    ifd(
        &mut tiff,
        &[
            ascii(0x0001, "S"),
            rationals(0x0002, &[(33, 1), (51, 1), (3540, 100)]),
            ascii(0x0003, "W"),
            rationals(0x0004, &[(70, 1), (40, 1), (0, 1)]),
        ],
    );
    let ifd0_at = tiff.len() as u32;
    tiff[4..8].copy_from_slice(&ifd0_at.to_le_bytes());
    ifd(
        &mut tiff,
        &[
            ascii(0x010F, "Canon"),
            ascii(0x0110, "Canon EOS R5"),
            (0x0112, 3, 1, 6u16.to_le_bytes().to_vec()),
            (0x8769, 4, 1, exif_at.to_le_bytes().to_vec()),
            (0x8825, 4, 1, gps_at.to_le_bytes().to_vec()),
        ],
    );
    let segment = |marker: u8, data: &[u8]| {
        let mut s = vec![0xFF, marker];
        s.extend_from_slice(&((data.len() + 2) as u16).to_be_bytes());
        s.extend_from_slice(data);
        s
    };
    let mut jpeg = vec![0xFF, 0xD8];
    jpeg.extend(segment(0xE0, b"JFIF\0\x01\x02\0\0\x01\0\x01\0\0"));
    jpeg.extend(segment(0xE1, &[b"Exif\0\0".as_slice(), &tiff].concat()));
    jpeg.extend(segment(0xDA, &[1, 1, 0, 0, 0x3F, 0]));
    jpeg.extend([0x12, 0x34, 0xFF, 0xD9]);
    jpeg
}

#[tokio::test(flavor = "multi_thread")]
async fn exif_reads_a_jpeg_built_here() {
    let s = serve(&["exif"], "", &[]);
    let md = expect(&s.post("/exif", jpeg_with_exif()).await, 200);
    assert_eq!(md["make"], "Canon");
    assert_eq!(md["model"], "Canon EOS R5");
    assert_eq!(md["orientation"], 6);
    assert_eq!(md["orientation_text"], "rotate 90° clockwise to view");
    assert_eq!(md["datetime_original"], "2024-05-01T12:34:56");
    let lat = md["gps"]["latitude"].as_f64().unwrap();
    let lon = md["gps"]["longitude"].as_f64().unwrap();
    assert!(
        (lat + (33.0 + 51.0 / 60.0 + 35.4 / 3600.0)).abs() < 1e-9,
        "{md}"
    );
    assert!((lon + (70.0 + 40.0 / 60.0)).abs() < 1e-9, "{md}");

    let not_jpeg = expect(&s.post("/exif", "GIF89a").await, 400);
    assert_eq!(
        not_jpeg["error"],
        "not a JPEG: the body does not start with the SOI marker FF D8"
    );
    let cut = jpeg_with_exif()[..60].to_vec();
    let truncated = expect(&s.post("/exif", cut).await, 400);
    assert!(
        truncated["error"]
            .as_str()
            .unwrap()
            .starts_with("truncated JPEG: segment FFE1"),
        "{truncated}"
    );
}

/// Without their grants and secrets the examples answer 500 with the
/// host's reason, and the gateway keeps serving.
#[tokio::test(flavor = "multi_thread")]
async fn state_examples_without_grants_or_secrets_fail_cleanly() {
    let s = serve(&["rules", "fsm", "dp-noise", "etl", "crypto"], "", &[]);
    for (reply, want) in [
        (
            s.post("/rules/validate/x", "{}").await,
            "reading rule set x: shanhai: kv_get: denied",
        ),
        (
            s.post("/fsm/orders/o-1", "").await,
            "creating order o-1: shanhai: kv_cas: denied",
        ),
        (
            s.post("/dp-noise", r#"{"key": "k", "values": [1], "epsilon": 1}"#)
                .await,
            "privacy budget: shanhai: kv_get: denied",
        ),
        (
            s.post("/etl/batch", r#"[{"device": "a", "time": 1, "temp": 1}]"#)
                .await,
            "creating the table: shanhai: sql_exec: denied",
        ),
        (
            s.post("/crypto/encrypt", r#"{"plaintext": "x"}"#).await,
            "the secret aes_key is not set",
        ),
    ] {
        let body = expect(&reply, 500);
        let error = body["error"].as_str().unwrap();
        assert!(error.starts_with(want), "{error}, want {want}");
    }
    let logs = s.gw.logs();
    assert!(logs.contains("denied"), "denials are logged:\n{logs}");
}

/// The quick start's config (`examples/shanhai.toml`, what `scripts/serve.sh`
/// serves) loads every example and grants what each needs. Its fixed ports
/// (1883, 5020) are moved to free ones so tests can run side by side.
#[tokio::test(flavor = "multi_thread")]
async fn the_quick_start_config_serves_every_example() {
    let root = crate::util::repo_root();
    let text = std::fs::read_to_string(root.join("examples/shanhai.toml")).unwrap();
    assert!(text.contains("listen = \"127.0.0.1:5020\"") && text.contains("[mqtt]\n"));
    let text = text
        .replace("listen = \"127.0.0.1:5020\"", "listen = \"127.0.0.1:0\"")
        .replace("[mqtt]\n", "[mqtt]\nlisten = \"127.0.0.1:0\"\n");
    let names = [
        "hello",
        "rules",
        "fsm",
        "dp-noise",
        "etl",
        "crypto",
        "exif",
        "modbus",
        "mqtt-transform",
        "sensor-poll",
    ];
    let served = serve(
        &names,
        &text,
        &[
            ("CRYPTO_AES_KEY", &"ab".repeat(32)),
            ("CRYPTO_ED25519_SEED", &"cd".repeat(32)),
        ],
    );
    let ready = served.get("/readyz").await;
    assert_eq!(ready.status, 200, "{}", ready.text());
    assert_eq!(ready.json()["failed"], json!([]), "{}", ready.text());
    expect(
        &served
            .put(
                "/rules/sets/sensor",
                r#"{"fields":{"temp":{"type":"number","required":true,"max":80}}}"#,
            )
            .await,
        200,
    );
    let verdict = expect(
        &served
            .post("/rules/validate/sensor", r#"{"temp":95}"#)
            .await,
        422,
    );
    assert_eq!(verdict["violations"][0]["path"], "$.temp");
    expect(&served.post("/fsm/orders/o-1", "").await, 201);
    expect(&served.post("/fsm/orders/o-1/pay", "").await, 200);
    expect(&served.get("/crypto/public-key").await, 200);
    expect(
        &served
            .post(
                "/etl/batch",
                r#"[{"device":"d1","ts":"2026-01-01T00:00:00Z","temperature":"21.5 C"}]"#,
            )
            .await,
        200,
    );
}
