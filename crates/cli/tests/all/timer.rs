//! The timer trigger against a real gateway: the `timerprobe` Go fixture
//! logs every run, and the tests read the gateway's JSON log.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::util::{Gateway, fixture};

fn timerprobe() -> &'static PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| fixture("timerprobe", "timerprobe", ""))
}

/// One run as the fixture logged it.
#[derive(Debug)]
struct Tick {
    timer: String,
    run: u64,
    skipped: u64,
    scheduled_ms: u64,
    payload: String,
    /// When the gateway logged it, ms since the Unix epoch.
    logged_ms: u64,
}

/// The runs logged so far, in order.
fn ticks(gw: &Gateway) -> Vec<Tick> {
    gw.logs()
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|line| line["target"] == "shanhai::guest")
        .filter_map(|line| {
            let message = line["message"].as_str()?.strip_prefix("tick ")?.to_owned();
            let fields: BTreeMap<&str, &str> = message
                .split(' ')
                .filter_map(|pair| pair.split_once('='))
                .collect();
            let timestamp = line["timestamp"].as_str()?;
            Some(Tick {
                timer: fields["timer"].to_owned(),
                run: fields["run"].parse().ok()?,
                skipped: fields["skipped"].parse().ok()?,
                scheduled_ms: fields["scheduled_ms"].parse().ok()?,
                payload: fields.get("payload").copied().unwrap_or("").to_owned(),
                logged_ms: rfc3339_ms(timestamp),
            })
        })
        .collect()
}

/// Milliseconds since the epoch of a `2026-11-23T18:01:54.123456Z` stamp.
fn rfc3339_ms(stamp: &str) -> u64 {
    let (date, time) = stamp.trim_end_matches('Z').split_once('T').unwrap();
    let mut d = date.split('-').map(|p| p.parse::<i64>().unwrap());
    let (y, m, day) = (d.next().unwrap(), d.next().unwrap(), d.next().unwrap());
    // Days from civil (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let mut t = time.split(':');
    let (h, min) = (
        t.next().unwrap().parse::<i64>().unwrap(),
        t.next().unwrap().parse::<i64>().unwrap(),
    );
    let secs: f64 = t.next().unwrap().parse().unwrap();
    ((days * 86_400 + h * 3600 + min * 60) * 1000 + (secs * 1000.0) as i64) as u64
}

async fn wait_for_ticks(gw: &Gateway, timer: &str, n: usize, within: Duration) -> Vec<Tick> {
    let deadline = Instant::now() + within;
    loop {
        let ticks: Vec<Tick> = ticks(gw).into_iter().filter(|t| t.timer == timer).collect();
        if ticks.len() >= n {
            return ticks;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {n} runs of {timer} within {within:?}:\n{}",
            ticks.len(),
            gw.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn folder() -> tempfile::TempDir {
    let modules = tempfile::tempdir().unwrap();
    std::fs::copy(timerprobe(), modules.path().join("probe.wasm")).unwrap();
    modules
}

#[tokio::test(flavor = "multi_thread")]
async fn intervals_and_cron_fire_on_schedule_with_their_payload() {
    let modules = folder();
    let config = r#"
[timers.fast]
module = "probe"
every_ms = 200
payload = "reading"

[timers.second]
module = "probe"
cron = "* * * * * *"
"#;
    let gw = Gateway::start(modules.path(), Some(config));
    let fast = wait_for_ticks(&gw, "fast", 8, Duration::from_secs(20)).await;
    for (i, tick) in fast.iter().enumerate() {
        assert_eq!(tick.run, i as u64 + 1, "{fast:?}");
        assert_eq!(tick.payload, "reading");
        assert_eq!(tick.skipped, 0);
        // Fixed rate: due times are exactly 200 ms apart...
        if i > 0 {
            assert_eq!(
                tick.scheduled_ms - fast[i - 1].scheduled_ms,
                200,
                "{fast:?}"
            );
        }
        // ...and each run happens close to its due time (never before).
        let late = tick.logged_ms as i64 - tick.scheduled_ms as i64;
        assert!(
            (0..500).contains(&late),
            "run {} was {late} ms late",
            tick.run
        );
    }
    let second = wait_for_ticks(&gw, "second", 3, Duration::from_secs(20)).await;
    for (i, tick) in second.iter().enumerate() {
        assert_eq!(
            tick.scheduled_ms % 1000,
            0,
            "cron runs on whole seconds: {second:?}"
        );
        if i > 0 {
            assert_eq!(tick.scheduled_ms - second[i - 1].scheduled_ms, 1000);
        }
        let late = tick.logged_ms as i64 - tick.scheduled_ms as i64;
        assert!(
            (0..500).contains(&late),
            "cron run {} was {late} ms late",
            tick.run
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn jitter_delays_each_run_by_a_random_share_of_its_bound() {
    let modules = folder();
    let config = "[timers.spread]\nmodule = \"probe\"\nevery_ms = 500\njitter_ms = 400\n";
    let gw = Gateway::start(modules.path(), Some(config));
    let runs = wait_for_ticks(&gw, "spread", 12, Duration::from_secs(40)).await;
    let late: Vec<i64> = runs
        .iter()
        .map(|t| t.logged_ms as i64 - t.scheduled_ms as i64)
        .collect();
    // The due times keep their grid; jitter only delays each run.
    for pair in runs.windows(2) {
        assert_eq!(pair[1].scheduled_ms - pair[0].scheduled_ms, 500, "{runs:?}");
    }
    assert!(late.iter().all(|l| (0..900).contains(l)), "{late:?}");
    // Uniform over 400 ms: twelve runs all under 150 ms late (what a
    // timer without jitter gives), or all within 100 ms of one another,
    // have odds below 1e-5.
    let (min, max) = (late.iter().min().unwrap(), late.iter().max().unwrap());
    assert!(
        *max >= 150 && max - min >= 100,
        "runs were {late:?} ms late: no jitter"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_run_skips_ticks_instead_of_overlapping() {
    let modules = folder();
    let config = r#"
[timers.slow]
module = "probe"
every_ms = 100
payload = "sleep:350"
"#;
    let gw = Gateway::start(modules.path(), Some(config));
    let slow = wait_for_ticks(&gw, "slow", 5, Duration::from_secs(30)).await;
    // Each run takes 350 ms on a 100 ms grid: the next run is at least 350
    // ms after the previous due time, and reports the ticks it replaced.
    for pair in slow.windows(2) {
        let gap = pair[1].scheduled_ms - pair[0].scheduled_ms;
        assert!(gap >= 400, "runs overlapped: {pair:?}");
        assert_eq!(
            pair[1].skipped,
            gap / 100 - 1,
            "skipped ticks are reported: {pair:?}"
        );
    }
    let metrics = gw.metrics().await;
    let skipped: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("shanhai_timer_skipped_total{timer=\"slow\"} "))
        .unwrap_or_else(|| panic!("no skip counter:\n{metrics}"))
        .parse()
        .unwrap();
    assert!(skipped >= 8.0, "{skipped}");
}

#[tokio::test(flavor = "multi_thread")]
async fn failing_runs_are_logged_and_counted_and_the_timer_goes_on() {
    let modules = folder();
    let config = "[timers.bad]\nmodule = \"probe\"\nevery_ms = 150\npayload = \"fail\"\n";
    let gw = Gateway::start(modules.path(), Some(config));
    wait_for_ticks(&gw, "bad", 3, Duration::from_secs(20)).await;
    let logs = gw.logs();
    assert!(
        logs.lines().any(|l| l.contains("timer run failed")
            && l.contains("\"timer\":\"bad\"")
            && l.contains("failed on purpose")),
        "{logs}"
    );
    let metrics = gw.metrics().await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("shanhai_requests_total{")
                && l.contains("trigger=\"timer\"")
                && l.contains("status=\"guest_error\"")),
        "{metrics}"
    );
}

#[test]
fn bad_timer_configs_are_refused_at_start() {
    let modules = folder();
    for (config, expected) in [
        (
            "[timers.t]\nmodule = \"probe\"\n",
            "exactly one of every_ms and cron",
        ),
        (
            "[timers.t]\nmodule = \"probe\"\ncron = \"every day\"\n",
            "timers.t.cron",
        ),
        (
            "[timers.t]\nmodule = \"probe\"\nevery_ms = 0\n",
            "every_ms must be positive",
        ),
    ] {
        let stderr = crate::util::serve_refused(modules.path(), config);
        assert!(stderr.contains(expected), "{config}: {stderr}");
    }
}
