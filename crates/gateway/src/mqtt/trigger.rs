//! One trigger: its own connection and persistent session, the messages it
//! receives, the module runs, retries, dead letters and acknowledgements.
//!
//! The connection's event loop never waits on anything but the network:
//! messages go to a dispatcher that runs at most `concurrency` of them at a
//! time, and those with the same order key (the topic by default) one
//! after another, in arrival order. QoS 1 messages are bounded by the
//! broker's flow control (our receive maximum); QoS 0 ones by `max_queue`,
//! beyond which they are dropped and counted.
//!
//! MQTT requires PUBACKs in the order the messages arrived (and rumqttd
//! refuses any other), so a finished message is acknowledged only once
//! every message before it is: [`AckQueue`]. Acknowledgements of a
//! connection that has since dropped are never sent on the next one; the
//! broker redelivers those messages instead.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{
    Filter, Packet, Publish, PublishProperties, SubscribeProperties, SubscribeReasonCode,
};
use rumqttc::v5::{AsyncClient, Event, EventLoop};
use shanhai_abi::EventKind;
use shanhai_abi::wire::{Header, MqttMessage, MqttOutput};
use shanhai_runtime::{Grants, invalid_topic};
use tokio::sync::{Semaphore, mpsc, oneshot, watch};
use tokio::task::JoinSet;

use super::config::TriggerSettings;
use super::{Throttle, reconnect_delay};
use crate::metered::{self, TriggerMetrics};
use crate::registry::ModuleRegistry;

/// A running trigger, shared by its tasks.
pub(crate) struct Trigger {
    settings: TriggerSettings,
    registry: Arc<ModuleRegistry>,
    grants: Grants,
    client: AsyncClient,
    max_payload: usize,
    acks: Mutex<AckQueue>,
    ack_tx: mpsc::UnboundedSender<AckRequest>,
    /// Bumped on every CONNACK; acknowledgements carry the generation they
    /// belong to.
    generation: AtomicU64,
    next_event: AtomicU64,
    /// QoS 0 messages waiting for a slot.
    queued: AtomicUsize,
    dropped_log: Throttle,
    metrics: TriggerMetrics,
}

/// A received message on its way through the trigger.
struct Job {
    publish: Publish,
    ticket: Option<Ticket>,
}

/// Why one delivery to the module failed.
#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error("the module is not loaded")]
    Unloaded,
    #[error("{0}")]
    Module(#[from] shanhai_runtime::InvokeError),
    #[error("bad output: {0}")]
    BadOutput(String),
    #[error("the MQTT client stopped")]
    ClientGone,
}

impl Failure {
    fn kind(&self) -> &'static str {
        match self {
            Self::Unloaded => "unknown_module",
            Self::Module(err) => err.kind(),
            Self::BadOutput(_) => "bad_output",
            Self::ClientGone => "client_stopped",
        }
    }
}

/// What `handle` did with a message.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// Processed (or dead-lettered, or dropped with a log line): acknowledge.
    Ack,
    /// Not handed to the client (it stopped): leave it for redelivery.
    Leave,
}

impl Trigger {
    pub(crate) fn new(
        settings: TriggerSettings,
        registry: Arc<ModuleRegistry>,
        grants: Grants,
        client: AsyncClient,
        max_payload: usize,
    ) -> (Arc<Self>, mpsc::UnboundedReceiver<AckRequest>) {
        let (ack_tx, ack_rx) = mpsc::unbounded_channel();
        let trigger = Arc::new(Self {
            settings,
            registry,
            grants,
            client,
            max_payload,
            acks: Mutex::new(AckQueue::default()),
            ack_tx,
            generation: AtomicU64::new(0),
            next_event: AtomicU64::new(1),
            queued: AtomicUsize::new(0),
            dropped_log: Throttle::default(),
            metrics: TriggerMetrics::new("mqtt"),
        });
        (trigger, ack_rx)
    }

    fn name(&self) -> &str {
        &self.settings.name
    }

    /// Drives the connection until `stop`, then finishes the messages
    /// already received, sends their acknowledgements and disconnects.
    pub(crate) async fn run(
        self: Arc<Self>,
        mut eventloop: EventLoop,
        ack_rx: mpsc::UnboundedReceiver<AckRequest>,
        mut stop: watch::Receiver<bool>,
    ) {
        // Connect (and so receive) only once the module serves: until then
        // the broker keeps the session's QoS 1 messages.
        tokio::select! {
            () = self.registry.settled(&self.settings.module) => {}
            _ = stop.changed() => return,
        }
        let (jobs, job_rx) = mpsc::unbounded_channel();
        let mut dispatcher = tokio::spawn(self.clone().dispatch(job_rx));
        let acker = tokio::spawn(self.clone().send_acks(ack_rx));
        let mut failures = 0u32;
        // Requests left unsent by a dropped connection, resent only if the
        // broker resumes the session.
        let mut unsent = 0;
        loop {
            tokio::select! {
                _ = stop.changed() => break,
                event = eventloop.poll() => match event {
                    Ok(event) => {
                        if let Event::Incoming(Packet::ConnAck(ack)) = &event {
                            failures = 0;
                            super::pending_discarded(self.name(), ack.session_present, unsent);
                            unsent = 0;
                        }
                        self.on_event(event, Some(&jobs));
                    }
                    Err(err) => {
                        unsent = eventloop.pending.len();
                        failures += 1;
                        super::connection_failed(self.name(), failures, &err);
                        tokio::select! {
                            _ = stop.changed() => break,
                            () = tokio::time::sleep(reconnect_delay(failures)) => {}
                        }
                    }
                },
            }
        }
        // Stop taking messages; finish those received. The event loop keeps
        // running meanwhile: outputs and acknowledgements go through it.
        drop(jobs);
        let (flushed_tx, mut flushed) = oneshot::channel();
        let mut flush = Some(flushed_tx);
        let mut dispatched = false;
        loop {
            tokio::select! {
                _ = &mut dispatcher, if !dispatched => {
                    dispatched = true;
                    // Every acknowledgement is queued now: wait for the
                    // acker to hand them to the client.
                    let _ = self.ack_tx.send(AckRequest::Flush(flush.take().expect("flushed once")));
                }
                _ = &mut flushed, if dispatched => break,
                event = eventloop.poll() => match event {
                    Ok(event) => self.on_event(event, None),
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                },
            }
        }
        acker.abort();
        super::disconnect(&self.client, &mut eventloop, self.name()).await;
    }

    fn on_event(self: &Arc<Self>, event: Event, jobs: Option<&mpsc::UnboundedSender<Job>>) {
        match event {
            Event::Incoming(Packet::ConnAck(ack)) => {
                let generation = self.generation.fetch_add(1, Ordering::AcqRel) + 1;
                self.acks.lock().unwrap().reset(generation);
                tracing::info!(
                    trigger = self.name(),
                    session_present = ack.session_present,
                    "MQTT trigger connected"
                );
                // Subscribe on every connection: a resumed session already
                // has the subscription, and subscribing again is harmless.
                let this = self.clone();
                tokio::spawn(async move { this.subscribe().await });
            }
            Event::Incoming(Packet::Publish(publish)) => self.received(publish, jobs),
            Event::Incoming(Packet::SubAck(ack)) => {
                for code in &ack.return_codes {
                    if let SubscribeReasonCode::Success(qos) = code {
                        tracing::info!(
                            trigger = self.name(),
                            subscription = %self.settings.subscription(),
                            granted_qos = *qos as u8,
                            "MQTT trigger subscribed"
                        );
                    } else {
                        let reason = ack
                            .properties
                            .as_ref()
                            .and_then(|p| p.reason_string.clone());
                        tracing::error!(
                            trigger = self.name(),
                            subscription = %self.settings.subscription(),
                            ?code,
                            reason,
                            "the broker refused the trigger's subscription"
                        );
                    }
                }
            }
            Event::Incoming(Packet::Disconnect(disconnect)) => {
                tracing::warn!(
                    trigger = self.name(),
                    reason = ?disconnect.reason_code,
                    "the broker closed the trigger's connection"
                );
            }
            _ => {}
        }
    }

    async fn subscribe(&self) {
        let qos = if self.settings.qos == 0 {
            QoS::AtMostOnce
        } else {
            QoS::AtLeastOnce
        };
        let filter = Filter::new(self.settings.subscription(), qos);
        let properties = SubscribeProperties {
            id: None,
            user_properties: Vec::new(),
        };
        if self
            .client
            .subscribe_many_with_properties([filter], properties)
            .await
            .is_err()
        {
            tracing::warn!(trigger = self.name(), "not subscribing: the client stopped");
        }
    }

    /// A message from the broker: queue it, or (QoS 0 over `max_queue`, or
    /// during shutdown) drop it with a log line.
    fn received(&self, publish: Publish, jobs: Option<&mpsc::UnboundedSender<Job>>) {
        let qos1 = publish.qos != QoS::AtMostOnce;
        let Some(jobs) = jobs else {
            // Shutting down: a QoS 1 message stays unacknowledged, so the
            // broker delivers it again after the restart.
            if !qos1 {
                self.dropped("shutdown", &publish);
            }
            return;
        };
        if !qos1 && self.queued.load(Ordering::Acquire) >= self.settings.max_queue {
            self.dropped("queue_full", &publish);
            return;
        }
        let ticket = qos1.then(|| self.acks.lock().unwrap().push(&publish));
        if !qos1 {
            self.queued.fetch_add(1, Ordering::AcqRel);
        }
        let _ = jobs.send(Job { publish, ticket });
    }

    fn dropped(&self, reason: &'static str, publish: &Publish) {
        metrics::counter!("shanhai_mqtt_dropped_total", "trigger" => self.settings.name.clone(), "reason" => reason)
            .increment(1);
        if self.dropped_log.ready() {
            tracing::warn!(
                trigger = self.name(),
                topic = %String::from_utf8_lossy(&publish.topic),
                reason,
                "dropping a QoS 0 message (further drops this second are only counted in shanhai_mqtt_dropped_total)"
            );
        }
    }

    /// Runs jobs as slots free up, at most `concurrency` at once; jobs with
    /// the same order key ([`super::config::OrderBy`]) one after another,
    /// in arrival order.
    ///
    /// A running key has a chain: a queue in `chains` that the task running
    /// its job drains, on the same slot, before it lets the slot go. So a
    /// message waiting behind another of its key holds no slot (other keys
    /// go ahead), and a retried message holds back only its own key.
    async fn dispatch(self: Arc<Self>, mut jobs: mpsc::UnboundedReceiver<Job>) {
        let slots = Arc::new(Semaphore::new(self.settings.concurrency));
        let chains: Arc<Mutex<HashMap<String, VecDeque<Job>>>> = Arc::default();
        let mut running = JoinSet::new();
        while let Some(job) = jobs.recv().await {
            let key = self.order_key(&job.publish);
            if let Some(key) = &key {
                let mut chains = chains.lock().unwrap();
                if let Some(waiting) = chains.get_mut(key) {
                    // Its key runs: the task running it takes this job next.
                    waiting.push_back(job);
                    continue;
                }
                chains.insert(key.clone(), VecDeque::new());
            }
            let slot = slots.clone().acquire_owned().await.expect("never closed");
            while running.try_join_next().is_some() {}
            let this = self.clone();
            let chains = chains.clone();
            running.spawn(async move {
                let mut job = job;
                loop {
                    // Boxed: the job's future is about 2.5 KB, which tokio
                    // would otherwise copy into the task, out of it and
                    // over it when it ends, once per message.
                    Box::pin(this.run_job(job)).await;
                    let Some(key) = &key else { break };
                    let mut waiting = chains.lock().unwrap();
                    match waiting.get_mut(key).and_then(VecDeque::pop_front) {
                        Some(next) => job = next,
                        None => {
                            waiting.remove(key);
                            break;
                        }
                    }
                }
                drop(slot);
            });
        }
        while running.join_next().await.is_some() {}
    }

    /// The key whose messages keep their order, `None` for no order.
    fn order_key(&self, publish: &Publish) -> Option<String> {
        let topic = String::from_utf8_lossy(&publish.topic);
        self.settings.order_by.key(&self.settings.filter, &topic)
    }

    /// Handles one job and, for QoS 1, queues its acknowledgement.
    async fn run_job(&self, job: Job) {
        let Job { publish, ticket } = job;
        if ticket.is_none() {
            self.queued.fetch_sub(1, Ordering::AcqRel);
        }
        let outcome = self.handle(&publish).await;
        if let Some(ticket) = ticket
            && outcome == Outcome::Ack
        {
            self.complete(ticket);
        }
    }

    fn complete(&self, ticket: Ticket) {
        let mut acks = self.acks.lock().unwrap();
        // Sent under the lock, so the acker receives them in order.
        for ack in acks.complete(ticket) {
            let _ = self.ack_tx.send(AckRequest::Ack(ticket.generation, ack));
        }
    }

    async fn send_acks(self: Arc<Self>, mut requests: mpsc::UnboundedReceiver<AckRequest>) {
        while let Some(request) = requests.recv().await {
            match request {
                AckRequest::Ack(generation, pkid) => {
                    // The acknowledgement needs the packet id and QoS only.
                    let publish = Publish {
                        qos: QoS::AtLeastOnce,
                        pkid,
                        ..Publish::default()
                    };
                    if generation == self.generation.load(Ordering::Acquire)
                        && self.client.ack(&publish).await.is_err()
                    {
                        return;
                    }
                }
                AckRequest::Flush(done) => {
                    let _ = done.send(());
                }
            }
        }
    }

    /// Runs the module on one message, with retries for QoS 1; sends it to
    /// the dead-letter topic when they run out.
    async fn handle(&self, publish: &Publish) -> Outcome {
        let qos1 = publish.qos != QoS::AtMostOnce;
        let n = self.next_event.fetch_add(1, Ordering::Relaxed);
        let request_id: Arc<str> = Arc::from(format!("mqtt-{}-{n}", self.settings.name));
        let Ok(topic) = std::str::from_utf8(&publish.topic) else {
            self.discard(publish, &request_id, "the topic is not UTF-8");
            return Outcome::Ack;
        };
        let Some(captures) = super::topic::captures(&self.settings.filter, topic) else {
            // A subscription left in the persistent session by an earlier
            // filter of this trigger.
            self.discard(
                publish,
                &request_id,
                "the topic does not match the trigger's filter (a subscription left from an earlier config?)",
            );
            return Outcome::Ack;
        };
        let started = Instant::now();
        let mut attempt = 1;
        loop {
            match self
                .attempt(publish, topic, &captures, attempt, &request_id)
                .await
            {
                Ok(published) => {
                    tracing::debug!(
                        trigger = self.name(),
                        module = %self.settings.module,
                        request_id = &*request_id,
                        topic,
                        attempt,
                        published,
                        elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
                        "MQTT message handled"
                    );
                    return Outcome::Ack;
                }
                Err(Failure::ClientGone) => return Outcome::Leave,
                Err(err) if !qos1 => {
                    tracing::warn!(
                        trigger = self.name(),
                        module = %self.settings.module,
                        request_id = &*request_id,
                        topic,
                        kind = err.kind(),
                        "dropping a QoS 0 message: the module failed: {err}"
                    );
                    metrics::counter!("shanhai_mqtt_dropped_total", "trigger" => self.settings.name.clone(), "reason" => "failed")
                        .increment(1);
                    return Outcome::Ack;
                }
                Err(err) if attempt >= self.settings.max_attempts => {
                    return self
                        .dead_letter(publish, topic, &captures, attempt, &request_id, &err)
                        .await;
                }
                Err(err) => {
                    let wait = self.settings.backoff(attempt);
                    tracing::warn!(
                        trigger = self.name(),
                        module = %self.settings.module,
                        request_id = &*request_id,
                        topic,
                        attempt,
                        kind = err.kind(),
                        retry_in_ms = wait.as_millis() as u64,
                        "MQTT message failed; retrying: {err}"
                    );
                    metrics::counter!("shanhai_mqtt_retries_total", "trigger" => self.settings.name.clone())
                        .increment(1);
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
            }
        }
    }

    fn discard(&self, publish: &Publish, request_id: &str, why: &str) {
        tracing::warn!(
            trigger = self.name(),
            request_id,
            topic = %String::from_utf8_lossy(&publish.topic),
            "dropping an MQTT message: {why}"
        );
        metrics::counter!("shanhai_mqtt_dropped_total", "trigger" => self.settings.name.clone(), "reason" => "no_match")
            .increment(1);
    }

    /// One delivery to the module; on success its output has been handed
    /// to the client, and the count of messages is returned.
    async fn attempt(
        &self,
        publish: &Publish,
        topic: &str,
        captures: &[&str],
        attempt: u32,
        request_id: &Arc<str>,
    ) -> Result<usize, Failure> {
        let module = &self.settings.module;
        let Some(selected) = self.registry.select_keyed(module, None) else {
            self.metrics.count_unloaded(module);
            return Err(Failure::Unloaded);
        };
        let properties = properties(publish.properties.as_ref());
        let envelope = MqttMessage {
            topic,
            trigger: &self.settings.name,
            request_id,
            qos: u8::from(publish.qos != QoS::AtMostOnce),
            retain: publish.retain,
            attempt,
            properties: properties
                .iter()
                .map(|(name, value)| Header { name, value })
                .collect(),
            payload: &publish.payload,
        }
        .encode();
        let (result, _) = metered::invoke(
            &self.metrics,
            &selected.module,
            EventKind::Mqtt,
            &envelope,
            request_id.clone(),
        )
        .await;
        let output = result?;
        let output = MqttOutput::decode(&output)
            .map_err(|err| Failure::BadOutput(format!("the output is not an MqttOutput: {err}")))?;
        // Check every message before publishing any, so a refused one
        // publishes nothing (a retry would publish the others again).
        let mut outgoing = Vec::with_capacity(output.messages.len());
        for message in &output.messages {
            let to = if message.topic.is_empty() {
                match &self.settings.output_topic {
                    // A capture may be empty (`a/#` on `a`): an empty topic
                    // would make the broker drop the connection, and the
                    // message would come back for ever.
                    Some(template) => template
                        .topic_for(topic, captures)
                        .map_err(Failure::BadOutput)?,
                    None => {
                        return Err(Failure::BadOutput(
                            "a message without a topic, and the trigger has no output_topic".into(),
                        ));
                    }
                }
            } else {
                if let Some(why) = invalid_topic(message.topic) {
                    return Err(Failure::BadOutput(format!(
                        "topic `{}`: {why}",
                        message.topic
                    )));
                }
                if !self.grants.allows_mqtt_publish(message.topic) {
                    metrics::counter!("shanhai_mqtt_publish_failures_total", "module" => module.clone(), "reason" => "denied")
                        .increment(1);
                    return Err(Failure::BadOutput(format!(
                        "no mqtt_publish grant of module {module} matches topic `{}`",
                        message.topic
                    )));
                }
                message.topic.to_owned()
            };
            let qos = match message.qos {
                0 => QoS::AtMostOnce,
                1 => QoS::AtLeastOnce,
                other => {
                    return Err(Failure::BadOutput(format!(
                        "QoS {other} for `{to}`: use 0 or 1"
                    )));
                }
            };
            if message.payload.len() > self.max_payload {
                return Err(Failure::BadOutput(format!(
                    "a payload of {} bytes for `{to}` exceeds mqtt.max_payload_bytes ({})",
                    message.payload.len(),
                    self.max_payload
                )));
            }
            outgoing.push((
                to,
                qos,
                message.retain,
                Bytes::copy_from_slice(message.payload),
            ));
        }
        let count = outgoing.len();
        for (to, qos, retain, payload) in outgoing {
            self.client
                .publish(to, qos, retain, payload)
                .await
                .map_err(|_| Failure::ClientGone)?;
        }
        metrics::counter!("shanhai_mqtt_published_total", "source" => "trigger")
            .increment(count as u64);
        Ok(count)
    }

    async fn dead_letter(
        &self,
        publish: &Publish,
        topic: &str,
        captures: &[&str],
        attempts: u32,
        request_id: &str,
        err: &Failure,
    ) -> Outcome {
        let to = match self.settings.dead_letter_topic.topic_for(topic, captures) {
            Ok(to) => to,
            Err(why) => {
                // Nowhere to put it: keeping it would only bring it back.
                tracing::error!(
                    trigger = self.name(),
                    module = %self.settings.module,
                    request_id,
                    topic,
                    attempts,
                    kind = err.kind(),
                    "dropping an MQTT message that failed {attempts} times: no dead-letter topic for it ({why}): {err}"
                );
                metrics::counter!("shanhai_mqtt_dropped_total", "trigger" => self.settings.name.clone(), "reason" => "bad_dead_letter_topic")
                    .increment(1);
                return Outcome::Ack;
            }
        };
        let original = publish.properties.clone().unwrap_or_default();
        let properties = PublishProperties {
            content_type: original.content_type,
            user_properties: vec![
                ("error".into(), err.to_string()),
                ("error_kind".into(), err.kind().into()),
                ("original_topic".into(), topic.into()),
                ("attempts".into(), attempts.to_string()),
                ("request_id".into(), request_id.into()),
                ("trigger".into(), self.settings.name.clone()),
                ("module".into(), self.settings.module.clone()),
            ],
            ..PublishProperties::default()
        };
        tracing::error!(
            trigger = self.name(),
            module = %self.settings.module,
            request_id,
            topic,
            attempts,
            dead_letter_topic = %to,
            kind = err.kind(),
            "MQTT message failed {attempts} times; sending it to the dead-letter topic: {err}"
        );
        match self
            .client
            .publish_with_properties(
                to,
                QoS::AtLeastOnce,
                false,
                publish.payload.clone(),
                properties,
            )
            .await
        {
            Ok(()) => {
                metrics::counter!("shanhai_mqtt_dead_letters_total", "trigger" => self.settings.name.clone())
                    .increment(1);
                Outcome::Ack
            }
            Err(_) => Outcome::Leave,
        }
    }
}

/// A message's properties as the envelope carries them: user properties,
/// then `$content_type`, `$response_topic` and `$correlation_data`.
fn properties(properties: Option<&PublishProperties>) -> Vec<(Vec<u8>, Vec<u8>)> {
    let Some(p) = properties else {
        return Vec::new();
    };
    let mut out: Vec<(Vec<u8>, Vec<u8>)> = p
        .user_properties
        .iter()
        .map(|(k, v)| (k.clone().into_bytes(), v.clone().into_bytes()))
        .collect();
    if let Some(v) = &p.content_type {
        out.push((b"$content_type".to_vec(), v.clone().into_bytes()));
    }
    if let Some(v) = &p.response_topic {
        out.push((b"$response_topic".to_vec(), v.clone().into_bytes()));
    }
    if let Some(v) = &p.correlation_data {
        out.push((b"$correlation_data".to_vec(), v.to_vec()));
    }
    out
}

/// For the acker task.
pub(crate) enum AckRequest {
    /// Acknowledge packet id `.1` of connection generation `.0`.
    Ack(u64, u16),
    Flush(oneshot::Sender<()>),
}

/// A QoS 1 message's place in the acknowledgement order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Ticket {
    generation: u64,
    seq: u64,
}

/// QoS 1 messages of the current connection in arrival order, each with
/// whether it is done; acknowledgements are released from the front.
#[derive(Debug, Default)]
struct AckQueue {
    generation: u64,
    next: u64,
    /// Sequence number, packet id, done.
    entries: VecDeque<(u64, u16, bool)>,
}

impl AckQueue {
    fn push(&mut self, publish: &Publish) -> Ticket {
        let seq = self.next;
        self.next += 1;
        self.entries.push_back((seq, publish.pkid, false));
        Ticket {
            generation: self.generation,
            seq,
        }
    }

    /// Marks `ticket` done; returns the acknowledgements now due, in order.
    fn complete(&mut self, ticket: Ticket) -> Vec<u16> {
        if ticket.generation != self.generation {
            return Vec::new();
        }
        if let Some(entry) = self
            .entries
            .iter_mut()
            .find(|(seq, _, _)| *seq == ticket.seq)
        {
            entry.2 = true;
        }
        let mut due = Vec::new();
        while self.entries.front().is_some_and(|(_, _, done)| *done) {
            due.push(self.entries.pop_front().expect("non-empty").1);
        }
        due
    }

    /// A new connection: what was pending belongs to the old one.
    fn reset(&mut self, generation: u64) {
        self.generation = generation;
        self.entries.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn publish(pkid: u16) -> Publish {
        Publish {
            qos: QoS::AtLeastOnce,
            pkid,
            ..Publish::default()
        }
    }

    #[test]
    fn acknowledgements_leave_in_arrival_order() {
        let mut queue = AckQueue::default();
        let a = queue.push(&publish(1));
        let b = queue.push(&publish(2));
        let c = queue.push(&publish(3));
        assert!(queue.complete(c).is_empty());
        assert!(queue.complete(b).is_empty());
        assert_eq!(queue.complete(a), [1, 2, 3]);
        assert!(queue.entries.is_empty());
    }

    #[test]
    fn a_new_connection_forgets_the_old_one() {
        let mut queue = AckQueue::default();
        let old = queue.push(&publish(1));
        queue.reset(1);
        let new = queue.push(&publish(1));
        assert!(queue.complete(old).is_empty());
        assert_eq!(queue.complete(new).len(), 1);
    }

    #[test]
    fn properties_follow_the_envelope_order() {
        let p = PublishProperties {
            user_properties: vec![("a".into(), "1".into())],
            content_type: Some("application/json".into()),
            correlation_data: Some(Bytes::from_static(b"\x01\x02")),
            ..PublishProperties::default()
        };
        let out = properties(Some(&p));
        assert_eq!(out[0], (b"a".to_vec(), b"1".to_vec()));
        assert_eq!(out[1].0, b"$content_type");
        assert_eq!(out[2], (b"$correlation_data".to_vec(), vec![1, 2]));
    }
}
