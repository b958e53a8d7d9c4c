//! The chat example end to end: two headless Chromium pages load it from a
//! real gateway and chat over its WebSocket route.

use std::time::{Duration, Instant};

use crate::browser::{Browser, Page};
use crate::util::{Gateway, modules_with};

/// The lines of the page's `#log`, read as a user sees them.
const LOG: &str = "(document.getElementById('log')?.innerText ?? '').split('\\n').filter(Boolean)";

#[tokio::test(flavor = "multi_thread")]
async fn two_browser_pages_chat_through_the_gateway() {
    // First, so that a missing Chromium fails the test before the build.
    let mut browser = Browser::launch().await;
    let modules = modules_with(&["chat"]);
    let gw = Gateway::start(modules.path(), None);
    let page = |query: &str| gw.url(&format!("/chat?room=e2e&{query}"));

    // One after the other: a message only reaches those already in the
    // room, and the module keeps no history.
    let alice = browser.open(&page("name=alice")).await;
    wait_for_log(&mut browser, &gw, "alice", &alice, &["* alice joined"]).await;
    // Bob's page says its `say` once connected.
    let bob = browser.open(&page("name=bob&say=hi%20from%20bob")).await;
    let mut alice_sees = vec!["* alice joined", "* bob joined", "bob: hi from bob"];
    let mut bob_sees = vec!["* bob joined", "bob: hi from bob"];
    wait_for_log(&mut browser, &gw, "bob", &bob, &bob_sees).await;
    wait_for_log(&mut browser, &gw, "alice", &alice, &alice_sees).await;

    // Alice types and presses the send button; markup in a message stays
    // text.
    let typed = "hello from alice <img src=x onerror=alert(1)>";
    type_and_send(&mut browser, &alice, typed).await;
    let line = format!("alice: {typed}");
    alice_sees.push(&line);
    bob_sees.push(&line);
    wait_for_log(&mut browser, &gw, "alice", &alice, &alice_sees).await;
    wait_for_log(&mut browser, &gw, "bob", &bob, &bob_sees).await;
    for (who, page) in [("alice", &alice), ("bob", &bob)] {
        let images = browser
            .eval(page, "document.querySelectorAll('#log img').length")
            .await;
        assert_eq!(
            images,
            Ok(0.into()),
            "{who}'s page turned a message into markup"
        );
    }

    // Too long a message (the input's maxlength does not bind a script)
    // earns bob alone an error.
    type_and_send(&mut browser, &bob, &"x".repeat(1001)).await;
    bob_sees.push("! the message has 1001 bytes; at most 1000 are allowed");
    wait_for_log(&mut browser, &gw, "bob", &bob, &bob_sees).await;

    // Bob closes his tab; alice hears he left.
    browser.close(bob).await;
    alice_sees.push("* bob left");
    wait_for_log(&mut browser, &gw, "alice", &alice, &alice_sees).await;
}

/// Types `text` into the page's input and clicks its send button.
async fn type_and_send(browser: &mut Browser, page: &Page, text: &str) {
    let script = format!(
        "document.getElementById('text').value = {}; document.getElementById('send').click(); true",
        serde_json::Value::from(text)
    );
    assert_eq!(browser.eval(page, &script).await, Ok(true.into()));
}

/// Polls `page` until its log shows exactly `want`; panics after 30 s with
/// what it shows and the gateway's log.
async fn wait_for_log(browser: &mut Browser, gw: &Gateway, who: &str, page: &Page, want: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        // An error means the page is still loading: try again.
        let seen = browser.eval(page, LOG).await;
        if let Ok(lines) = &seen
            && *lines == serde_json::json!(want)
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{who}'s page never showed {want:#?}\nit shows {seen:#?}\ngateway log:\n{}",
            gw.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
