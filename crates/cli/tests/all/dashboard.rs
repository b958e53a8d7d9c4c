//! The web dashboard end to end: a headless Chromium signs in to a real
//! gateway's admin listener and watches real Go modules serve, take
//! traffic, get replaced, run canaries and log. Screenshots of the key
//! steps land in `target/dashboard-screenshots/` (not committed).
//!
//! Also the dashboard's endpoints against hostile and greedy clients,
//! without a browser.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::browser::{Browser, Page};
use crate::util::{Gateway, Http, examples, repo_root, version_module, version_module_with};

const TOKEN: &str = "dash-token-0123456789";

/// A gateway with a token, no socket, and a quick canary judge.
fn config(extra: &str) -> String {
    format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\ntoken = \"{TOKEN}\"\nsocket = \"\"\ntoken_file = \"\"\n{extra}\n\
         [canary]\nmin_requests = 10\n"
    )
}

fn screenshots() -> PathBuf {
    repo_root().join("target/dashboard-screenshots")
}

/// Evaluates `expression` in `page` until it yields `true`; panics after
/// 60 s with `what`, what the page shows and the gateway's log.
async fn wait_until(
    browser: &mut Browser,
    page: &Page,
    gw: &Gateway,
    what: &str,
    expression: &str,
) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        // An error means the page is between two documents: try again.
        if browser.eval(page, expression).await == Ok(Value::Bool(true)) {
            return;
        }
        if Instant::now() > deadline {
            let shown = browser
                .eval(page, "document.querySelector('main')?.innerText")
                .await;
            browser
                .screenshot(page, &screenshots().join("failure.png"))
                .await;
            panic!(
                "the dashboard never showed {what} ({expression})\nit shows {shown:#?}\ngateway log:\n{}",
                gw.logs()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn eval_ok(browser: &mut Browser, page: &Page, expression: &str) -> Value {
    browser
        .eval(page, expression)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

/// A JavaScript string literal.
fn js(text: &str) -> String {
    Value::from(text).to_string()
}

/// The text of module `name`'s row in the modules table.
fn row(name: &str) -> String {
    format!(
        "(document.querySelector('#module-table tr[data-module={}]')?.innerText ?? '')",
        js(name)
    )
}

async fn click(browser: &mut Browser, page: &Page, selector: &str) {
    let script = format!(
        "(() => {{ const el = document.querySelector({}); if (!el) return false; el.click(); return true; }})()",
        js(selector)
    );
    assert_eq!(
        eval_ok(browser, page, &script).await,
        Value::Bool(true),
        "nothing to click at {selector}"
    );
}

/// Clicks the button labelled `label` in module `name`'s row.
async fn row_button(browser: &mut Browser, page: &Page, name: &str, label: &str) {
    let script = format!(
        "(() => {{ const b = [...document.querySelectorAll('#module-table tr[data-module={}] button')]\
         .find((b) => b.textContent === {}); if (!b) return false; b.click(); return true; }})()",
        js(name),
        js(label)
    );
    assert_eq!(
        eval_ok(browser, page, &script).await,
        Value::Bool(true),
        "no {label} button for {name}"
    );
}

async fn go(browser: &mut Browser, page: &Page, view: &str) {
    eval_ok(
        browser,
        page,
        &format!("location.hash = {}; true", js(view)),
    )
    .await;
}

/// Deploys `file` through the deploy form, as an upload or a canary.
async fn deploy(
    browser: &mut Browser,
    page: &Page,
    gw: &Gateway,
    name: &str,
    file: &Path,
    canary: Option<u32>,
) {
    go(browser, page, "#modules").await;
    wait_until(
        browser,
        page,
        gw,
        "the modules",
        &format!("{}.includes('serving')", row(name)),
    )
    .await;
    row_button(
        browser,
        page,
        name,
        if canary.is_some() { "Canary" } else { "Upload" },
    )
    .await;
    browser.set_files(page, "#deploy-file", &[file]).await;
    let weight = canary.map_or(String::new(), |w| {
        format!("document.getElementById('deploy-weight').value = '{w}';")
    });
    eval_ok(
        browser,
        page,
        &format!(
            "document.getElementById('deploy-file').dispatchEvent(new Event('change')); {weight} \
             document.getElementById('deploy-result').textContent = ''; true"
        ),
    )
    .await;
    wait_until(
        browser,
        page,
        gw,
        "the chosen file",
        "document.getElementById('deploy-files').textContent.includes('.wasm')",
    )
    .await;
    click(browser, page, "#deploy-go").await;
    let done = if canary.is_some() {
        "started"
    } else {
        "swapped"
    };
    wait_until(
        browser,
        page,
        gw,
        &format!("the deploy of {}", file.display()),
        &format!(
            "document.getElementById('deploy-result').textContent.includes({})",
            js(done)
        ),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_dashboard_shows_and_drives_a_real_gateway() {
    // First, so that a missing Chromium fails the test before the builds.
    let mut browser = Browser::launch().await;
    let stable = version_module("A");
    let upgrade = version_module("B");
    let failing = version_module_with("failing", &[("status", "500")]);
    let healthy = version_module("C");
    let modules = tempfile::tempdir().unwrap();
    std::fs::copy(&stable, modules.path().join("version.wasm")).unwrap();
    std::fs::copy(
        examples().join("hello.wasm"),
        modules.path().join("hello.wasm"),
    )
    .unwrap();
    let gw = Gateway::start(modules.path(), Some(&config("")));
    let admin = gw.admin.unwrap();
    let http = Http::new();
    let shots = screenshots();

    // `/` leads to the sign-in form.
    let page = browser.open(&format!("http://{admin}/")).await;
    browser.viewport(&page, 1280, 800, false).await;
    wait_until(
        &mut browser,
        &page,
        &gw,
        "the sign-in form",
        "location.pathname === '/ui/' && !document.getElementById('login').hidden",
    )
    .await;
    browser.screenshot(&page, &shots.join("01-login.png")).await;

    // A wrong token is refused, and says so.
    let submit = |token: &str| {
        format!(
            "document.getElementById('token').value = {}; document.getElementById('login-form').requestSubmit(); true",
            js(token)
        )
    };
    eval_ok(&mut browser, &page, &submit("not-the-token")).await;
    wait_until(
        &mut browser,
        &page,
        &gw,
        "the wrong-token error",
        "document.getElementById('login-error').textContent.includes('Wrong token')",
    )
    .await;
    assert_eq!(
        eval_ok(
            &mut browser,
            &page,
            "document.getElementById('tabs').hidden"
        )
        .await,
        Value::Bool(true)
    );
    browser
        .screenshot(&page, &shots.join("02-wrong-token.png"))
        .await;

    // The right one opens the overview; it lives in sessionStorage only.
    eval_ok(&mut browser, &page, &submit(TOKEN)).await;
    wait_until(&mut browser, &page, &gw, "the overview", "!document.getElementById('overview').hidden && document.getElementById('facts').innerText.includes('Uptime')").await;
    assert_eq!(
        eval_ok(&mut browser, &page, &format!("sessionStorage.getItem('shanhai.admin.token') === {} && localStorage.length === 0 && document.cookie === '' && !location.href.includes({})", js(TOKEN), js(TOKEN))).await,
        Value::Bool(true)
    );

    // Both modules are listed, serving.
    go(&mut browser, &page, "#modules").await;
    for name in ["hello", "version"] {
        wait_until(
            &mut browser,
            &page,
            &gw,
            &format!("{name} serving"),
            &format!("{}.includes('serving')", row(name)),
        )
        .await;
    }
    assert!(
        eval_ok(&mut browser, &page, &row("version"))
            .await
            .as_str()
            .unwrap()
            .contains("/version"),
        "the routes are listed"
    );
    browser
        .screenshot(&page, &shots.join("03-modules.png"))
        .await;

    // Traffic moves the request count and the chart.
    go(&mut browser, &page, "#overview").await;
    let count = "Number((document.getElementById('total-requests')?.textContent ?? '0').replace(/[^0-9]/g, ''))";
    let before = eval_ok(&mut browser, &page, count).await.as_f64().unwrap();
    for i in 0..150 {
        let path = if i % 3 == 0 {
            "/hello?name=traffic"
        } else {
            "/version"
        };
        assert_eq!(http.get(&gw.url(path)).await.status, 200);
    }
    wait_until(
        &mut browser,
        &page,
        &gw,
        "the requests counted",
        &format!("{count} >= {}", before + 150.0),
    )
    .await;
    wait_until(&mut browser, &page, &gw, "the req/s chart moving", "(() => { const c = document.querySelector('svg[data-key=rps]'); return !!c && Number(c.dataset.points) > 0 && c.querySelector('path.line') !== null; })()").await;
    browser
        .screenshot(&page, &shots.join("04-overview-traffic.png"))
        .await;

    // A new version, uploaded from the page, serves.
    deploy(&mut browser, &page, &gw, "version", &upgrade, None).await;
    assert_eq!(
        http.get(&gw.url("/version")).await.header("x-version"),
        Some("B")
    );
    wait_until(
        &mut browser,
        &page,
        &gw,
        "the new version serving",
        &format!("{}.includes('serving')", row("version")),
    )
    .await;
    browser
        .screenshot(&page, &shots.join("05-uploaded.png"))
        .await;

    // A failing canary, started from the page, is rolled back by the
    // gateway; the page says why.
    deploy(&mut browser, &page, &gw, "version", &failing, Some(50)).await;
    go(&mut browser, &page, "#canaries").await;
    wait_until(
        &mut browser,
        &page,
        &gw,
        "the canary running",
        "!!document.querySelector('.canary-card[data-module=version] .sides')",
    )
    .await;
    let mut canary_errors = 0;
    for _ in 0..400 {
        if http.get(&gw.url("/version")).await.status == 500 {
            canary_errors += 1;
        }
        if canary_errors == 10 {
            break;
        }
    }
    assert_eq!(canary_errors, 10, "the canary never took its share");
    wait_until(&mut browser, &page, &gw, "the rollback and its reason", "(() => { const c = document.querySelector('.canary-card[data-module=version]'); return !!c && !c.querySelector('.sides') && c.querySelector('.outcome.rolled_back .reason')?.textContent === 'error_rate'; })()").await;
    browser
        .screenshot(&page, &shots.join("06-canary-rolled-back.png"))
        .await;

    // A healthy canary, promoted with the button, becomes the version.
    deploy(&mut browser, &page, &gw, "version", &healthy, Some(50)).await;
    go(&mut browser, &page, "#canaries").await;
    for _ in 0..20 {
        assert_eq!(http.get(&gw.url("/version")).await.status, 200);
    }
    wait_until(&mut browser, &page, &gw, "both versions' figures", "(() => { const c = document.querySelector('.canary-card[data-module=version]'); return !!c && c.querySelector('button')?.textContent === 'Promote' && [...c.querySelectorAll('.side dd:first-of-type')].filter((dd) => Number(dd.textContent.replace(/[^0-9]/g, '')) > 0).length === 2; })()").await;
    browser
        .screenshot(&page, &shots.join("07-canary-running.png"))
        .await;
    click(
        &mut browser,
        &page,
        ".canary-card[data-module=version] button",
    )
    .await;
    wait_until(
        &mut browser,
        &page,
        &gw,
        "the promotion",
        "!!document.querySelector('.canary-card[data-module=version] .outcome.promoted')",
    )
    .await;
    for _ in 0..20 {
        assert_eq!(
            http.get(&gw.url("/version")).await.header("x-version"),
            Some("C")
        );
    }

    // A module's own log line reaches the live tail, filtered by module.
    go(&mut browser, &page, "#logs").await;
    eval_ok(&mut browser, &page, "document.getElementById('log-module').value = 'hello'; document.getElementById('log-module').dispatchEvent(new Event('change')); true").await;
    wait_until(
        &mut browser,
        &page,
        &gw,
        "the module filter",
        "document.getElementById('log-module').value === 'hello'",
    )
    .await;
    assert_eq!(http.get(&gw.url("/hello?name=tail-e2e")).await.status, 200);
    wait_until(&mut browser, &page, &gw, "hello's log line", "[...document.querySelectorAll('#log-lines li')].some((li) => li.innerText.includes('tail-e2e'))").await;
    assert_eq!(
        eval_ok(&mut browser, &page, "[...document.querySelectorAll('#log-lines li .mod')].every((m) => m.textContent === 'hello')").await,
        Value::Bool(true),
        "the module filter let other lines through"
    );
    browser.screenshot(&page, &shots.join("08-logs.png")).await;

    go(&mut browser, &page, "#triggers").await;
    wait_until(
        &mut browser,
        &page,
        &gw,
        "the trigger tables",
        "document.getElementById('trigger-tables').innerText.includes('Timers')",
    )
    .await;
    browser
        .screenshot(&page, &shots.join("09-triggers.png"))
        .await;

    // Dark, and at phone width: nothing wider than the screen.
    browser.color_scheme(&page, "dark").await;
    go(&mut browser, &page, "#overview").await;
    browser
        .screenshot(&page, &shots.join("10-overview-dark.png"))
        .await;
    browser.viewport(&page, 390, 844, true).await;
    for view in ["#overview", "#modules", "#canaries"] {
        go(&mut browser, &page, view).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let width = eval_ok(&mut browser, &page, "document.documentElement.scrollWidth").await;
        assert!(
            width.as_u64().unwrap() <= 391,
            "{view} is {width} px wide on a 390 px screen"
        );
    }
    go(&mut browser, &page, "#overview").await;
    browser
        .screenshot(&page, &shots.join("11-phone-dark.png"))
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_dashboard_endpoints_hold_their_limits() {
    let modules = tempfile::tempdir().unwrap();
    std::fs::copy(
        examples().join("hello.wasm"),
        modules.path().join("hello.wasm"),
    )
    .unwrap();
    let gw = Gateway::start(
        modules.path(),
        Some(&config(
            "[admin.dashboard]\nmax_log_clients = 2\nlog_buffer_lines = 50\nlog_poll_timeout_ms = 30000\n",
        )),
    );
    let http = Http::new();
    let bearer = format!("Bearer {TOKEN}");
    let auth = [("authorization", bearer.as_str())];
    let get = |path: &str| {
        let (http, url) = (http.clone(), gw.admin_url(path));
        async move {
            let bearer = format!("Bearer {TOKEN}");
            http.send("GET", &url, &[("authorization", &bearer)], Vec::new())
                .await
        }
    };

    // The page is public and locked down; the data is not.
    let root = http.get(&gw.admin_url("/")).await;
    assert_eq!((root.status, root.header("location")), (302, Some("/ui/")));
    let index = http.get(&gw.admin_url("/ui/")).await;
    assert_eq!(index.status, 200);
    assert!(index.text().contains("<title>Shanhai</title>"));
    let csp = index.header("content-security-policy").unwrap();
    assert!(
        csp.contains("connect-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert_eq!(
        http.get(&gw.admin_url("/ui/app.js"))
            .await
            .header("content-type"),
        Some("text/javascript; charset=utf-8")
    );
    assert_eq!(http.get(&gw.admin_url("/ui/secret.txt")).await.status, 404);
    for path in ["/admin/stats", "/admin/logs?wait_ms=0"] {
        let reply = http.get(&gw.admin_url(path)).await;
        assert_eq!(reply.status, 401, "{path}");
        assert_eq!(reply.error_kind(), "unauthorized");
    }
    // The page's own origin may call; another may not.
    let origin = format!("http://{}", gw.admin.unwrap());
    let same = http
        .send(
            "GET",
            &gw.admin_url("/admin/stats"),
            &[auth[0], ("origin", &origin)],
            Vec::new(),
        )
        .await;
    assert_eq!(same.status, 200, "{}", same.text());
    let foreign = http
        .send(
            "GET",
            &gw.admin_url("/admin/stats"),
            &[auth[0], ("origin", "http://evil.example")],
            Vec::new(),
        )
        .await;
    assert_eq!(foreign.error_kind(), "forbidden_origin");

    // Nonsense parameters are refused with a reason.
    for (path, needle) in [
        ("/admin/stats?since=yesterday", "since"),
        ("/admin/logs?level=loud", "level"),
        ("/admin/logs?after=-1", "after"),
        ("/admin/logs?colour=red", "colour"),
    ] {
        let reply = get(path).await;
        assert_eq!(reply.status, 400, "{path}: {}", reply.text());
        assert!(
            reply.json()["message"].as_str().unwrap().contains(needle),
            "{}",
            reply.text()
        );
    }

    // The sampler fills the ring once a second and counts the traffic.
    for _ in 0..30 {
        assert_eq!(http.get(&gw.url("/hello?name=stats")).await.status, 200);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let stats = loop {
        let stats = get("/admin/stats").await.json();
        if stats["modules"]["hello"]["requests"].as_f64() >= Some(30.0)
            && stats["series"].as_array().unwrap().len() >= 2
        {
            break stats;
        }
        assert!(
            Instant::now() < deadline,
            "the sampler never counted the requests: {stats}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(stats["rss_bytes"].as_u64().unwrap() > 1 << 20, "{stats}");
    assert_eq!(stats["samples_kept"], 900);
    assert_eq!(stats["listeners"]["http"], gw.addr.to_string());
    let newest = stats["now"]["t"].as_u64().unwrap();
    let later = get(&format!("/admin/stats?since={newest}")).await.json();
    assert!(
        later["series"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["t"].as_u64().unwrap() > newest),
        "since= returned older samples: {later}"
    );

    // A reader that falls behind the 50-line buffer is told how many lines
    // it missed; the gateway did not wait for it.
    let first = get("/admin/logs?wait_ms=0").await.json();
    let mark = first["next"].as_u64().unwrap();
    for i in 0..80 {
        let reply = http.get(&gw.url(&format!("/hello?name=flood{i}"))).await;
        assert_eq!(reply.status, 200);
    }
    let behind = get(&format!("/admin/logs?after={mark}&module=hello"))
        .await
        .json();
    assert!(behind["dropped"].as_u64().unwrap() > 0, "{behind}");
    let lines = behind["lines"].as_array().unwrap();
    assert!(!lines.is_empty() && lines.len() <= 50, "{behind}");
    assert!(lines.iter().all(|l| l["module"] == "hello"), "{behind}");
    assert!(
        lines
            .iter()
            .any(|l| l["message"].as_str().unwrap().contains("flood79")),
        "{behind}"
    );
    let stats = get("/admin/stats").await.json();
    assert!(
        stats["log_tail"]["dropped_total"].as_u64().unwrap() > 0,
        "{stats}"
    );

    // Two waiting tail clients are the limit: a third gets 503.
    let next = get("/admin/logs?wait_ms=0").await.json()["next"]
        .as_u64()
        .unwrap();
    let waiting: Vec<_> = (0..2)
        .map(|_| {
            let poll = get(&format!("/admin/logs?after={next}&module=nobody"));
            tokio::spawn(poll)
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    while get("/admin/stats").await.json()["log_tail"]["clients"] != 2 {
        assert!(Instant::now() < deadline, "the two polls never waited");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let refused = get("/admin/logs?wait_ms=0").await;
    assert_eq!(refused.status, 503, "{}", refused.text());
    assert_eq!(refused.error_kind(), "too_many_clients");
    // The gateway kept serving throughout.
    assert_eq!(http.get(&gw.url("/hello")).await.status, 200);
    for poll in waiting {
        poll.abort();
    }
}
