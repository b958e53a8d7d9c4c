//! [`Timer`]: one run of a timer, as the module's timer handler sees it.

use std::time::{SystemTime, UNIX_EPOCH};

use shanhai_abi::wire::TimerEvent;

/// One run of a timer configured in the gateway (`[timers.NAME]`), as the
/// handler set with [`Handlers::timer`](crate::Handlers::timer) gets it.
///
/// The SDK builds it from the event; [`Timer::new`] and the `with_`
/// methods build one for tests, such as a run for
/// [`MockHost::timer`](crate::mock::MockHost::timer):
///
/// ```
/// use shanhai_sdk::Timer;
///
/// let run = Timer::new("cleanup").with_run(3).with_payload("tmp/");
/// assert_eq!((run.name(), run.run(), run.skipped()), ("cleanup", 3, 0));
/// assert_eq!(run.payload(), b"tmp/");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Timer {
    name: String,
    scheduled_unix_ms: u64,
    run: u64,
    skipped: u32,
    payload: Vec<u8>,
}

impl Timer {
    /// The first run of timer `name`, due now, with no runs skipped and an
    /// empty payload.
    pub fn new(name: impl Into<String>) -> Self {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| {
                u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
            });
        Self {
            name: name.into(),
            scheduled_unix_ms: now,
            run: 1,
            skipped: 0,
            payload: Vec::new(),
        }
    }

    pub(crate) fn from_wire(event: &TimerEvent<'_>) -> Self {
        Self {
            name: event.timer.to_owned(),
            scheduled_unix_ms: event.scheduled_unix_ms,
            run: event.run,
            skipped: event.skipped,
            payload: event.payload.to_vec(),
        }
    }

    /// Sets when the run was due, in milliseconds since the Unix epoch.
    #[must_use]
    pub fn with_scheduled_unix_ms(mut self, scheduled_unix_ms: u64) -> Self {
        self.scheduled_unix_ms = scheduled_unix_ms;
        self
    }

    /// Sets the run number.
    #[must_use]
    pub fn with_run(mut self, run: u64) -> Self {
        self.run = run;
        self
    }

    /// Sets how many runs were skipped before this one.
    #[must_use]
    pub fn with_skipped(mut self, skipped: u32) -> Self {
        self.skipped = skipped;
        self
    }

    /// Sets the payload.
    #[must_use]
    pub fn with_payload(mut self, payload: impl Into<Vec<u8>>) -> Self {
        self.payload = payload.into();
        self
    }

    /// The timer's name, `NAME` in `[timers.NAME]`: one handler serves
    /// every timer that targets the module, and this tells them apart.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// When this run was due (before jitter), in milliseconds since the
    /// Unix epoch.
    pub fn scheduled_unix_ms(&self) -> u64 {
        self.scheduled_unix_ms
    }

    /// 1 for the timer's first run since the gateway started, then 2, 3, ...
    pub fn run(&self) -> u64 {
        self.run
    }

    /// How many runs were skipped since the previous one because it was
    /// still going.
    pub fn skipped(&self) -> u32 {
        self.skipped
    }

    /// The timer's payload from the gateway's config.
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }

    /// The run as a TimerEvent envelope.
    #[cfg(not(target_arch = "wasm32"))]
    pub(crate) fn encode(&self) -> Vec<u8> {
        TimerEvent {
            timer: &self.name,
            scheduled_unix_ms: self.scheduled_unix_ms,
            run: self.run,
            skipped: self.skipped,
            payload: &self.payload,
        }
        .encode()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_runs_are_first_runs_due_now() {
        let before = SystemTime::now();
        let run = Timer::new("t");
        let after = SystemTime::now();
        let ms = |t: SystemTime| t.duration_since(UNIX_EPOCH).unwrap().as_millis();
        assert!((ms(before)..=ms(after)).contains(&u128::from(run.scheduled_unix_ms())));
        assert_eq!((run.run(), run.skipped(), run.payload()), (1, 0, &b""[..]));
    }

    #[test]
    fn runs_round_trip_through_the_envelope() {
        let run = Timer::new("nightly")
            .with_scheduled_unix_ms(u64::MAX)
            .with_run(1 << 40)
            .with_skipped(u32::MAX)
            .with_payload(vec![0, 255]);
        let envelope = run.encode();
        assert_eq!(
            Timer::from_wire(&TimerEvent::decode(&envelope).unwrap()),
            run
        );
    }
}
