//! The MQTT trigger against real brokers: the gateway's embedded broker and
//! a real `mosquitto` started per test on a free port, with real clients
//! (rumqttc in the test, `mosquitto_pub` as a device would). The
//! `mqttprobe` fixture (tests/fixtures/mqttprobe) says what it got.
//!
//! Every wait has a deadline; no test sleeps for an outcome.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{Packet, PublishProperties};
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use tokio::sync::mpsc;

use crate::util::{Gateway, Http, fixture, modules_with};

fn mqttprobe() -> &'static PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| fixture("mqttprobe", "mqttprobe", ""))
}

fn probe_folder() -> tempfile::TempDir {
    let modules = tempfile::tempdir().unwrap();
    std::fs::copy(mqttprobe(), modules.path().join("probe.wasm")).unwrap();
    modules
}

/// A port nobody listens on right now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A real mosquitto on 127.0.0.1, killed on drop.
struct Mosquitto {
    child: Child,
    addr: SocketAddr,
    /// The TLS listener, when started with certificates.
    tls: Option<SocketAddr>,
    dir: tempfile::TempDir,
}

impl Mosquitto {
    fn start(persistent: bool) -> Self {
        Self::start_with(persistent, None)
    }

    /// With `certs` (a folder holding `ca.pem`, `server.pem`, `server.key`),
    /// a second listener speaks TLS.
    fn start_with(persistent: bool, certs: Option<&std::path::Path>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        // The port is free when chosen; another process may take it before
        // mosquitto binds, so a failed start is retried on another port.
        for _ in 0..5 {
            let port = free_port();
            let tls = certs.map(|_| SocketAddr::from(([127, 0, 0, 1], free_port())));
            let tls_conf = match (certs, tls) {
                (Some(certs), Some(tls)) => format!(
                    "set_tcp_nodelay true\nlistener {} 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}\n",
                    tls.port(),
                    certs.join("ca.pem").display(),
                    certs.join("server.pem").display(),
                    certs.join("server.key").display()
                ),
                _ => String::new(),
            };
            let conf = dir.path().join("mosquitto.conf");
            std::fs::write(
                &conf,
                format!(
                    "listener {port} 127.0.0.1\nallow_anonymous true\npersistence {persistent}\npersistence_location {}/\nmax_queued_messages 0\nuser root\nlog_dest file {}\nlog_type error\nlog_type warning\nlog_type notice\nlog_type information\n",
                    dir.path().display(),
                    dir.path().join("mosquitto.log").display()
                ) + &tls_conf,
            )
            .unwrap();
            // Debian installs it in /usr/sbin, which may not be on PATH.
            let bin = ["/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"]
                .into_iter()
                .find(|p| std::path::Path::new(p).exists())
                .unwrap_or("mosquitto");
            let mut child = Command::new(bin)
                .arg("-c")
                .arg(&conf)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("starting mosquitto (apt package mosquitto)");
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if child.try_wait().unwrap().is_some() {
                    break;
                }
                if std::net::TcpStream::connect(addr).is_ok()
                    && tls.is_none_or(|tls| std::net::TcpStream::connect(tls).is_ok())
                {
                    return Self {
                        child,
                        addr,
                        tls,
                        dir,
                    };
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!(
            "mosquitto did not start; its log:\n{}",
            std::fs::read_to_string(dir.path().join("mosquitto.log")).unwrap_or_default()
        );
    }

    fn url(&self) -> String {
        format!("mqtt://{}", self.addr)
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("mosquitto.log")).unwrap_or_default()
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A message a test client received.
#[derive(Debug, Clone)]
struct Msg {
    topic: String,
    payload: Vec<u8>,
    properties: BTreeMap<String, String>,
}

impl Msg {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.payload).into_owned()
    }
}

/// A real MQTT 5 client (rumqttc) with its event loop on a task.
struct Client {
    client: AsyncClient,
    received: mpsc::UnboundedReceiver<Msg>,
    acked: Arc<AtomicUsize>,
    subscribed: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Client {
    async fn connect(addr: SocketAddr, id: &str) -> Self {
        Self::connect_with(addr, id, false).await
    }

    /// With `persistent`, the session (subscriptions, QoS 1 messages owed)
    /// outlives the connection for an hour.
    async fn connect_with(addr: SocketAddr, id: &str, persistent: bool) -> Self {
        let mut options = MqttOptions::new(id, addr.ip().to_string(), addr.port());
        options
            .set_keep_alive(Duration::from_secs(30))
            .set_max_packet_size(Some(2 << 20));
        if persistent {
            options
                .set_clean_start(false)
                .set_session_expiry_interval(Some(3600));
        }
        Self::connect_options(options).await
    }

    /// A client with `options`, once connected.
    async fn connect_options(options: MqttOptions) -> Self {
        let (client, mut eventloop) = AsyncClient::new(options, 1000);
        let (tx, received) = mpsc::unbounded_channel();
        let acked = Arc::new(AtomicUsize::new(0));
        let subscribed = Arc::new(AtomicUsize::new(0));
        let (connected_tx, connected) = tokio::sync::oneshot::channel();
        let mut connected_tx = Some(connected_tx);
        let (a, s) = (acked.clone(), subscribed.clone());
        let task = tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        if let Some(tx) = connected_tx.take() {
                            let _ = tx.send(());
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let properties = p
                            .properties
                            .map(|p| p.user_properties.into_iter().collect())
                            .unwrap_or_default();
                        let _ = tx.send(Msg {
                            topic: String::from_utf8_lossy(&p.topic).into_owned(),
                            payload: p.payload.to_vec(),
                            properties,
                        });
                    }
                    Ok(Event::Incoming(Packet::PubAck(_))) => {
                        a.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        s.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(10), connected)
            .await
            .expect("the test client could not connect")
            .unwrap();
        Self {
            client,
            received,
            acked,
            subscribed,
            task,
        }
    }

    /// Subscribes and waits for the SUBACK.
    async fn subscribe(&self, filter: &str) {
        let before = self.subscribed.load(Ordering::SeqCst);
        self.client
            .subscribe(filter, QoS::AtLeastOnce)
            .await
            .unwrap();
        wait_until("the SUBACK", Duration::from_secs(10), || {
            self.subscribed.load(Ordering::SeqCst) > before
        })
        .await;
    }

    async fn publish(&self, topic: &str, qos: u8, payload: impl Into<Vec<u8>>) {
        self.publish_with(topic, qos, payload, PublishProperties::default())
            .await;
    }

    async fn publish_with(
        &self,
        topic: &str,
        qos: u8,
        payload: impl Into<Vec<u8>>,
        properties: PublishProperties,
    ) {
        let qos = if qos == 0 {
            QoS::AtMostOnce
        } else {
            QoS::AtLeastOnce
        };
        self.client
            .publish_with_properties(topic, qos, false, payload.into(), properties)
            .await
            .unwrap();
    }

    /// The next message, within `within`.
    async fn next(&mut self, within: Duration) -> Option<Msg> {
        tokio::time::timeout(within, self.received.recv())
            .await
            .ok()
            .flatten()
    }

    /// The next message, or a panic that shows `gw`'s log.
    async fn expect(&mut self, gw: &Gateway, what: &str) -> Msg {
        match self.next(Duration::from_secs(15)).await {
            Some(msg) => msg,
            None => panic!("no message: {what}; gateway log:\n{}", gw.logs()),
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn wait_until(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until every trigger in `triggers` has logged its SUBACK, `times`
/// times each (a restarted gateway logs again into a new log).
async fn wait_subscribed(gw: &Gateway, triggers: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let logs = gw.logs();
        let missing: Vec<&&str> = triggers
            .iter()
            .filter(|t| {
                !logs.lines().any(|line| {
                    line.contains("MQTT trigger subscribed")
                        && line.contains(&format!("\"trigger\":\"{t}\""))
                })
            })
            .collect();
        if missing.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "triggers {missing:?} never subscribed; log:\n{}",
            logs
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The `[mqtt]` section for an external broker, or for the embedded one on
/// free ports.
fn mqtt_section(url: Option<&str>, client_id: &str) -> String {
    match url {
        Some(url) => format!("[mqtt]\nurl = \"{url}\"\nclient_id = \"{client_id}\"\n"),
        None => format!(
            "[mqtt]\nlisten = \"127.0.0.1:0\"\nlisten_v5 = \"127.0.0.1:0\"\nclient_id = \"{client_id}\"\n"
        ),
    }
}

/// Writes one MQTT packet of type and flags `kind` (its first byte).
fn write_packet(stream: &mut std::net::TcpStream, kind: u8, body: &[u8]) {
    use std::io::Write;
    let mut packet = vec![kind];
    let mut len = body.len();
    loop {
        let byte = (len % 128) as u8;
        len /= 128;
        packet.push(if len > 0 { byte | 0x80 } else { byte });
        if len == 0 {
            break;
        }
    }
    packet.extend_from_slice(body);
    stream.write_all(&packet).unwrap();
}

/// Reads one MQTT packet: its first byte and its body.
fn read_packet(stream: &mut std::net::TcpStream) -> std::io::Result<(u8, Vec<u8>)> {
    use std::io::Read;
    let mut byte = [0u8; 1];
    stream.read_exact(&mut byte)?;
    let kind = byte[0];
    let (mut len, mut shift) = (0usize, 0);
    loop {
        stream.read_exact(&mut byte)?;
        len |= usize::from(byte[0] & 0x7f) << shift;
        shift += 7;
        if byte[0] & 0x80 == 0 {
            break;
        }
    }
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body)?;
    Ok((kind, body))
}

/// A CONNECT's body with clean start and keep-alive `keep_alive`: MQTT 5
/// (no properties) or 3.1.1.
fn connect_body(v5: bool, keep_alive: u16, client_id: &str) -> Vec<u8> {
    let level = if v5 { 5 } else { 4 };
    // Protocol name, level, flags (clean session), keep-alive.
    let mut connect = vec![0, 4, b'M', b'Q', b'T', b'T', level, 0x02];
    connect.extend_from_slice(&keep_alive.to_be_bytes());
    if v5 {
        connect.push(0); // properties: none
    }
    connect.extend_from_slice(&(client_id.len() as u16).to_be_bytes());
    connect.extend_from_slice(client_id.as_bytes());
    connect
}

/// Publishes one QoS 1 message as a device that switches keep-alive off
/// (0 in its CONNECT), on MQTT 3.1.1 or 5, and returns once the broker
/// acknowledged it. The packets are written here: mosquitto_pub refuses
/// `-k 0`, and so does rumqttc's MQTT 5 client.
fn publish_with_keep_alive_0(addr: SocketAddr, v5: bool, topic: &str, payload: &[u8]) {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let client_id = format!("keep-alive-0-v{}", if v5 { 5 } else { 4 });
    let connect = connect_body(v5, 0, &client_id);
    let mut publish = (topic.len() as u16).to_be_bytes().to_vec();
    publish.extend_from_slice(topic.as_bytes());
    publish.extend_from_slice(&[0, 1]); // packet id
    if v5 {
        publish.push(0); // properties: none
    }
    publish.extend_from_slice(payload);
    // CONNECT → CONNACK, PUBLISH (QoS 1) → PUBACK.
    for (kind, body, answer) in [(0x10u8, connect, 0x20u8), (0x32, publish, 0x40)] {
        write_packet(&mut stream, kind, &body);
        let (head, rest) = read_packet(&mut stream).unwrap_or_else(|err| {
            panic!(
                "no answer to packet {kind:#x} of a client with keep-alive 0 (MQTT 5: {v5}): {err}"
            )
        });
        assert_eq!(head & 0xf0, answer, "answer {head:#x} {rest:?}");
        if answer == 0x20 {
            assert_eq!(rest[1], 0, "the CONNACK refuses: {rest:?}");
        }
        if v5 && answer == 0x40 && rest.len() > 2 {
            assert!(rest[2] < 0x80, "the PUBACK reports a failure: {rest:?}");
        }
    }
    write_packet(&mut stream, 0xe0, &[]); // DISCONNECT
}

/// `mosquitto_pub`, the way a device publishes (MQTT 3.1.1 unless told).
fn mosquitto_pub(addr: SocketAddr, args: &[&str]) {
    let status = Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &addr.port().to_string()])
        .args(args)
        .status()
        .expect("running mosquitto_pub (apt package mosquitto-clients)");
    assert!(status.success(), "mosquitto_pub {args:?}");
}

const ROUTING: &str = r#"
[mqtt.triggers.raw]
filter = "sensors/+/raw/#"
module = "probe"
output_topic = "out/{1}/{2}"

[mqtt.triggers.copy]
filter = "copy/#"
module = "probe"
qos = 0
output_topic = "copied/{topic}"
"#;

/// Wildcard routing and output topics against the broker at `url`
/// (`None`: the embedded one); `addrs` says where MQTT 3.1.1 devices and
/// MQTT 5 clients connect.
async fn routing(url: Option<&str>, addrs: impl Fn(&Gateway) -> (SocketAddr, SocketAddr)) {
    let modules = probe_folder();
    let config = format!("{}{ROUTING}", mqtt_section(url, "routing"));
    let gw = Gateway::start(modules.path(), Some(&config));
    wait_subscribed(&gw, &["raw", "copy"]).await;
    let (addr, v5) = addrs(&gw);
    let mut sub = Client::connect(v5, "routing-sub").await;
    sub.subscribe("out/#").await;
    sub.subscribe("copied/#").await;

    // A device on MQTT 3.1.1, QoS 1: `+` is {1}, the rest after `#` is {2}.
    mosquitto_pub(
        addr,
        &["-q", "1", "-t", "sensors/t1/raw/a/b", "-m", "hello"],
    );
    let msg = sub.expect(&gw, "the raw trigger's output").await;
    assert_eq!(msg.topic, "out/t1/a/b");
    assert_eq!(msg.text(), "sensors/t1/raw/a/b|hello|q1|rfalse|a1|");

    // `#` matching no level at all: {2} is empty.
    mosquitto_pub(addr, &["-q", "1", "-t", "sensors/t2/raw", "-m", "x"]);
    let msg = sub.expect(&gw, "the raw trigger's output").await;
    assert_eq!(msg.topic, "out/t2/");

    // Devices that switch keep-alive off (0 in CONNECT), as many do, on
    // MQTT 3.1.1 and 5.
    publish_with_keep_alive_0(addr, false, "sensors/t3/raw", b"k0");
    let msg = sub.expect(&gw, "the raw trigger's output").await;
    assert_eq!(msg.topic, "out/t3/");
    publish_with_keep_alive_0(v5, true, "sensors/t4/raw", b"k0");
    let msg = sub.expect(&gw, "the raw trigger's output").await;
    assert_eq!(msg.topic, "out/t4/");

    // A QoS 0 publication reaches a QoS 1 trigger at QoS 0: a message goes
    // out at the lower of its own QoS and the subscription's.
    mosquitto_pub(addr, &["-q", "0", "-t", "sensors/t5/raw", "-m", "q"]);
    let msg = sub.expect(&gw, "the raw trigger's output").await;
    assert_eq!(msg.topic, "out/t5/");
    assert_eq!(msg.text(), "sensors/t5/raw|q|q0|rfalse|a1|");

    // An MQTT 5 client's user properties and content type reach the module;
    // a subscription of QoS 0 delivers at QoS 0.
    let properties = PublishProperties {
        user_properties: vec![("unit".into(), "celsius".into())],
        content_type: Some("text/plain".into()),
        ..PublishProperties::default()
    };
    let publisher = Client::connect(v5, "routing-pub").await;
    publisher.publish_with("copy/x/y", 1, "p", properties).await;
    let msg = sub.expect(&gw, "the copy trigger's output").await;
    assert_eq!(msg.topic, "copied/copy/x/y");
    assert_eq!(
        msg.text(),
        "copy/x/y|p|q0|rfalse|a1|$content_type=text/plain;unit=celsius"
    );

    // Topics no filter matches reach no module.
    publisher.publish("sensors/t1/cooked", 1, "no").await;
    publisher.publish("copyx/y", 1, "no").await;
    publisher.publish("copy/z", 0, "yes").await;
    let msg = sub.expect(&gw, "the copy trigger's output").await;
    assert_eq!(msg.topic, "copied/copy/z", "{}", msg.text());
    assert!(
        sub.next(Duration::from_millis(300)).await.is_none(),
        "nothing else is published"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn wildcards_route_to_output_topics_on_the_embedded_broker() {
    routing(None, |gw| gw.mqtt.expect("the embedded broker runs")).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn wildcards_route_to_output_topics_on_mosquitto() {
    let broker = Mosquitto::start(false);
    let addr = broker.addr;
    routing(Some(&broker.url()), move |gw| {
        assert!(gw.mqtt.is_none(), "no embedded broker with a url");
        (addr, addr)
    })
    .await;
}

/// A throwaway CA (`ca.pem`) and a certificate for 127.0.0.1 and localhost
/// it signed (`server.pem`, `server.key`), made with the `openssl` command.
fn test_certs(dir: &std::path::Path) {
    let openssl = |args: &[&str]| {
        let output = Command::new("openssl")
            .current_dir(dir)
            .args(args)
            .output()
            .expect("running openssl");
        assert!(
            output.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];
    openssl(
        &[
            &["req", "-x509", "-nodes", "-days", "2"],
            &ec[..],
            &[
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-subj",
                "/CN=shanhai test CA",
            ],
        ]
        .concat(),
    );
    openssl(
        &[
            &["req", "-nodes"],
            &ec[..],
            &[
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
                "-subj",
                "/CN=127.0.0.1",
            ],
        ]
        .concat(),
    );
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName = IP:127.0.0.1, DNS:localhost\nbasicConstraints = CA:FALSE\nkeyUsage = digitalSignature\nextendedKeyUsage = serverAuth\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "server.ext",
        "-out",
        "server.pem",
    ]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_trigger_works_over_mqtts_with_a_private_ca_and_not_without_it() {
    let certs = tempfile::tempdir().unwrap();
    test_certs(certs.path());
    let ca = certs.path().join("ca.pem");
    let broker = Mosquitto::start_with(false, Some(certs.path()));
    let tls = broker.tls.unwrap();
    let url = format!("mqtts://{tls}");
    let modules = probe_folder();
    let trigger =
        "[mqtt.triggers.t]\nfilter = \"jobs/+\"\nmodule = \"probe\"\noutput_topic = \"done/{1}\"\n";
    // The test's subscriber watches on the plain listener of the same broker.
    let mut sub = Client::connect(broker.addr, "tls-sub").await;
    sub.subscribe("done/#").await;

    // With ca_file: the trigger subscribes over TLS; a device publishing
    // over TLS gets its message through the module.
    let config = format!(
        "{}ca_file = {:?}\n{trigger}",
        mqtt_section(Some(&url), "tls"),
        ca.display().to_string()
    );
    let gw = Gateway::start(modules.path(), Some(&config));
    wait_subscribed(&gw, &["t"]).await;
    let ca_arg = ca.display().to_string();
    mosquitto_pub(
        tls,
        &[
            "--cafile", &ca_arg, "-q", "1", "-t", "jobs/1", "-m", "over-tls",
        ],
    );
    let msg = sub.expect(&gw, "the output over TLS").await;
    assert_eq!(msg.topic, "done/1");
    assert_eq!(msg.text(), "jobs/1|over-tls|q1|rfalse|a1|");
    drop(gw);

    // Without ca_file the system roots do not know the test CA: no
    // connection (a certificate error in the log), no message processed.
    let config = format!("{}{trigger}", mqtt_section(Some(&url), "tls-noca"));
    let started = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        Gateway::start(modules.path(), Some(&config))
    }));
    let gw = match started {
        Ok(gw) => gw,
        Err(panic) => {
            // No system CA certificates at all on this machine.
            let text = panic.downcast_ref::<String>().cloned().unwrap_or_default();
            assert!(
                text.contains("no system CA certificates were found: set mqtt.ca_file"),
                "{text}"
            );
            return;
        }
    };
    wait_until("a TLS certificate error", Duration::from_secs(15), || {
        gw.logs().lines().any(|l| {
            l.contains("MQTT connection failed; reconnecting")
                && l.contains("invalid peer certificate: UnknownIssuer")
                && l.contains("\"connection\":\"t\"")
        })
    })
    .await;
    mosquitto_pub(
        tls,
        &[
            "--cafile", &ca_arg, "-q", "1", "-t", "jobs/2", "-m", "unseen",
        ],
    );
    assert!(
        sub.next(Duration::from_millis(500)).await.is_none(),
        "nothing processed without the CA"
    );
    let logs = gw.logs();
    assert!(!logs.contains("MQTT trigger subscribed"), "{logs}");
}

/// The probe's tag: what follows the last `:` of the payload echoed in
/// the reply's second field (`TOPIC|sleep:MS:TAG|...`).
fn probe_tag(msg: &Msg) -> String {
    let text = msg.text();
    let payload = text.split('|').nth(1).unwrap_or_default();
    payload.rsplit(':').next().unwrap_or_default().to_owned()
}

/// Messages on one topic are handled, and their outputs published, in the
/// order they arrived, retries included, while other topics go ahead;
/// `order_by = "none"` lets a later message overtake.
#[tokio::test(flavor = "multi_thread")]
async fn messages_on_one_topic_keep_their_order_and_other_topics_go_ahead() {
    let modules = probe_folder();
    let config = format!(
        "{}[mqtt.triggers.t]\nfilter = \"in/+\"\nmodule = \"probe\"\noutput_topic = \"out/{{1}}\"\nconcurrency = 8\nretry_initial_ms = 300\n\
         [mqtt.triggers.free]\nfilter = \"free/+\"\nmodule = \"probe\"\noutput_topic = \"freed/{{1}}\"\norder_by = \"none\"\n",
        mqtt_section(None, "order")
    );
    let gw = Gateway::start(modules.path(), Some(&config));
    wait_subscribed(&gw, &["t", "free"]).await;
    let (_, v5) = gw.mqtt.expect("the embedded broker runs");
    let mut sub = Client::connect(v5, "order-sub").await;
    sub.subscribe("out/#").await;
    sub.subscribe("freed/#").await;
    let publisher = Client::connect(v5, "order-pub").await;

    // 4 topics, 25 messages each, interleaved; each sleeps 0 to 12 ms, so
    // unordered handling would finish them out of order.
    let topics = ["a", "b", "c", "d"];
    for seq in 0..25 {
        for (i, topic) in topics.iter().enumerate() {
            let ms = (seq * 7 + i * 5) % 13;
            publisher
                .publish(&format!("in/{topic}"), 1, format!("sleep:{ms}:{seq}"))
                .await;
        }
    }
    let mut seen: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for _ in 0..100 {
        let msg = sub.expect(&gw, "an output of the 100 messages").await;
        seen.entry(msg.topic.clone())
            .or_default()
            .push(probe_tag(&msg));
    }
    let expected: Vec<String> = (0..25).map(|seq| seq.to_string()).collect();
    for topic in topics {
        assert_eq!(seen[&format!("out/{topic}")], expected, "{seen:?}");
    }
    assert!(
        sub.next(Duration::from_millis(300)).await.is_none(),
        "no duplicates"
    );

    // A slow message holds back its own topic only.
    publisher.publish("in/slow", 1, "sleep:1500:1").await;
    publisher.publish("in/slow", 1, "2").await;
    publisher.publish("in/fast", 1, "3").await;
    let order: Vec<(String, String)> = [
        sub.expect(&gw, "the fast topic's output").await,
        sub.expect(&gw, "the slow topic's first output").await,
        sub.expect(&gw, "the slow topic's second output").await,
    ]
    .iter()
    .map(|m| (m.topic.clone(), probe_tag(m)))
    .collect();
    assert_eq!(
        order,
        [("out/fast", "3"), ("out/slow", "1"), ("out/slow", "2")]
            .map(|(t, tag)| (t.to_owned(), tag.to_owned())),
        "{}",
        gw.logs()
    );

    // So does a message being retried (300 ms, then 600 ms), and its
    // topic's next message waits until it succeeded.
    publisher.publish("in/retry", 1, "fail-until:3:1").await;
    publisher.publish("in/retry", 1, "2").await;
    publisher.publish("in/other", 1, "3").await;
    let other = sub.expect(&gw, "the other topic's output").await;
    assert_eq!(
        (other.topic.as_str(), probe_tag(&other).as_str()),
        ("out/other", "3")
    );
    let first = sub.expect(&gw, "the retried message's output").await;
    assert_eq!(first.text(), "in/retry|fail-until:3:1|q1|rfalse|a3|");
    let second = sub.expect(&gw, "the message after it").await;
    assert_eq!(second.text(), "in/retry|2|q1|rfalse|a1|");

    // Without order, the second message overtakes the slow first one.
    publisher.publish("free/x", 1, "sleep:1500:1").await;
    publisher.publish("free/x", 1, "2").await;
    let overtaking = sub.expect(&gw, "the unordered trigger's output").await;
    assert_eq!(probe_tag(&overtaking), "2", "{}", overtaking.text());
    let slow = sub.expect(&gw, "the unordered trigger's slow output").await;
    assert_eq!(probe_tag(&slow), "1", "{}", slow.text());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_qos1_message_is_retried_until_it_succeeds() {
    let broker = Mosquitto::start(false);
    let modules = probe_folder();
    // mosquitto allows anonymous clients, and takes any login too: enough
    // to check the password never shows.
    let config = format!(
        "{}username = \"gw\"\n[mqtt.triggers.t]\nfilter = \"jobs/+\"\nmodule = \"probe\"\noutput_topic = \"done/{{1}}\"\nretry_initial_ms = 50\n",
        mqtt_section(Some(&broker.url()), "retry")
    );
    let gw = Gateway::start_env(
        modules.path(),
        Some(&config),
        &[("SHANHAI_MQTT_PASSWORD", "pw-s3cret-77")],
    );
    wait_subscribed(&gw, &["t"]).await;
    let mut sub = Client::connect(broker.addr, "retry-sub").await;
    sub.subscribe("done/#").await;

    let started = Instant::now();
    mosquitto_pub(
        broker.addr,
        &["-q", "1", "-t", "jobs/1", "-m", "fail-until:3"],
    );
    let msg = sub.expect(&gw, "the output after two retries").await;
    assert_eq!(msg.topic, "done/1");
    assert_eq!(msg.text(), "jobs/1|fail-until:3|q1|rfalse|a3|");
    // Backoff: 50 ms, then 100 ms.
    assert!(started.elapsed() >= Duration::from_millis(150));
    let logs = gw.logs();
    let retries: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("MQTT message failed; retrying"))
        .collect();
    assert_eq!(retries.len(), 2, "{logs}");
    assert!(
        retries[0].contains("attempt 1 failed on purpose")
            && retries[0].contains("\"request_id\":\"mqtt-t-"),
        "{}",
        retries[0]
    );
    // The password is in no log line and not in /admin/config.
    let http = Http::new();
    let shown = http.get(&gw.admin_url("/admin/config")).await;
    assert_eq!(shown.status, 200, "{}", shown.text());
    assert_eq!(
        shown.json()["mqtt"]["password_env"],
        "SHANHAI_MQTT_PASSWORD"
    );
    assert!(!shown.text().contains("pw-s3cret-77"), "{}", shown.text());
    assert!(!gw.logs().contains("pw-s3cret-77"));
    // Counted: two retries, three module runs.
    let metrics = gw.metrics().await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("shanhai_mqtt_retries_total{trigger=\"t\"} 2")),
        "{metrics}"
    );
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("shanhai_requests_total")
                && l.contains("trigger=\"mqtt\"")
                && l.contains("status=\"guest_error\"")
                && l.ends_with(" 2")),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn after_max_attempts_a_message_goes_to_the_dead_letter_topic_and_is_acknowledged() {
    let broker = Mosquitto::start(true);
    let modules = probe_folder();
    let config = format!(
        "{}[mqtt.triggers.t]\nfilter = \"jobs/+\"\nmodule = \"probe\"\noutput_topic = \"done/{{1}}\"\nmax_attempts = 3\nretry_initial_ms = 10\n",
        mqtt_section(Some(&broker.url()), "dead")
    );
    let mut gw = Gateway::start(modules.path(), Some(&config));
    wait_subscribed(&gw, &["t"]).await;
    let mut sub = Client::connect(broker.addr, "dead-sub").await;
    sub.subscribe("shanhai/dead-letter/#").await;
    sub.subscribe("done/#").await;

    mosquitto_pub(
        broker.addr,
        &[
            "-V",
            "mqttv5",
            "-q",
            "1",
            "-t",
            "jobs/7",
            "-m",
            "fail",
            "-D",
            "publish",
            "user-property",
            "origin",
            "device-7",
        ],
    );
    let dead = sub.expect(&gw, "the dead letter").await;
    assert_eq!(dead.topic, "shanhai/dead-letter/t");
    assert_eq!(dead.text(), "fail", "the original payload");
    let p = &dead.properties;
    assert_eq!(p["error"], "asked to fail", "{p:?}");
    assert_eq!(p["error_kind"], "guest_error");
    assert_eq!(p["original_topic"], "jobs/7");
    assert_eq!(p["attempts"], "3");
    assert_eq!(p["trigger"], "t");
    assert_eq!(p["module"], "probe");
    assert!(p["request_id"].starts_with("mqtt-t-"), "{p:?}");
    assert!(
        gw.logs().contains("sending it to the dead-letter topic"),
        "{}",
        gw.logs()
    );

    // The message was acknowledged: after a graceful restart (the session
    // persists) it is not delivered again, and new messages are.
    gw.terminate();
    assert!(gw.wait_exit(Duration::from_secs(20)).is_some());
    let gw = Gateway::start(modules.path(), Some(&config));
    wait_subscribed(&gw, &["t"]).await;
    mosquitto_pub(broker.addr, &["-q", "1", "-t", "jobs/8", "-m", "ok"]);
    let msg = sub.expect(&gw, "the output after the restart").await;
    assert_eq!(msg.topic, "done/8", "{}", msg.text());
    assert!(
        sub.next(Duration::from_millis(500)).await.is_none(),
        "no second dead letter"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_output_topic_rendered_empty_fails_the_event_not_the_connection() {
    // `{1}` of `in/#` on the topic `in` is empty, and a PUBLISH to an empty
    // topic is a protocol error for which the broker drops the connection.
    let broker = Mosquitto::start(true);
    let modules = probe_folder();
    let config = format!(
        "{}[mqtt.triggers.t]\nfilter = \"in/#\"\nmodule = \"probe\"\noutput_topic = \"{{1}}\"\nmax_attempts = 2\nretry_initial_ms = 10\n",
        mqtt_section(Some(&broker.url()), "empty")
    );
    let gw = Gateway::start(modules.path(), Some(&config));
    wait_subscribed(&gw, &["t"]).await;
    let mut sub = Client::connect(broker.addr, "empty-sub").await;
    sub.subscribe("shanhai/dead-letter/#").await;
    sub.subscribe("out/#").await;

    mosquitto_pub(broker.addr, &["-q", "1", "-t", "in", "-m", "ok"]);
    let dead = sub.expect(&gw, "the dead letter").await;
    assert_eq!(dead.topic, "shanhai/dead-letter/t");
    let p = &dead.properties;
    assert_eq!(p["error_kind"], "bad_output", "{p:?}");
    assert!(p["error"].contains("the topic is empty"), "{p:?}");
    // The connection stayed up: the next message is served at once.
    mosquitto_pub(broker.addr, &["-q", "1", "-t", "in/out/x", "-m", "ok"]);
    let msg = sub.expect(&gw, "the output of a good message").await;
    assert_eq!(msg.topic, "out/x", "{}", msg.text());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_shared_subscription_splits_messages_between_two_gateways() {
    const N: usize = 200;
    let broker = Mosquitto::start(false);
    let modules = probe_folder();
    let config = |name: &str| {
        format!(
            "{}[mqtt.triggers.t]\nfilter = \"jobs/+\"\nmodule = \"probe\"\nshared_group = \"workers\"\noutput_topic = \"done/{name}/{{1}}\"\n",
            mqtt_section(Some(&broker.url()), &format!("shared-{name}"))
        )
    };
    let a = Gateway::start(modules.path(), Some(&config("a")));
    let b = Gateway::start(modules.path(), Some(&config("b")));
    wait_subscribed(&a, &["t"]).await;
    wait_subscribed(&b, &["t"]).await;
    let mut sub = Client::connect(broker.addr, "shared-sub").await;
    sub.subscribe("done/#").await;
    let publisher = Client::connect(broker.addr, "shared-pub").await;
    for i in 0..N {
        publisher
            .publish(&format!("jobs/{i}"), 1, format!("{i}"))
            .await;
    }

    let mut seen: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen.len() < N {
        let Some(msg) = sub.next(Duration::from_secs(1)).await else {
            assert!(
                Instant::now() < deadline,
                "{} of {N} processed; logs:\n{}\n{}",
                seen.len(),
                a.logs(),
                b.logs()
            );
            continue;
        };
        let mut levels = msg.topic.split('/').skip(1);
        let gateway = levels.next().unwrap().to_owned();
        let i: usize = levels.next().unwrap().parse().unwrap();
        seen.entry(i).or_default().push(gateway);
    }
    // Nothing arrives twice.
    while let Some(msg) = sub.next(Duration::from_millis(500)).await {
        let i: usize = msg.topic.rsplit('/').next().unwrap().parse().unwrap();
        seen.entry(i).or_default().push(msg.topic);
    }
    let twice: Vec<_> = seen.iter().filter(|(_, g)| g.len() > 1).collect();
    assert!(twice.is_empty(), "processed more than once: {twice:?}");
    let by_a = seen.values().filter(|g| g[0] == "a").count();
    assert!(
        by_a > 0 && by_a < N,
        "both gateways take a share: a {by_a}, b {}",
        N - by_a
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn messages_streaming_in_survive_a_killed_gateway() {
    const N: usize = 300;
    let broker = Mosquitto::start(true);
    let modules = probe_folder();
    let config = format!(
        "{}[mqtt.triggers.t]\nfilter = \"stream/+\"\nmodule = \"probe\"\noutput_topic = \"acks/{{1}}\"\n",
        mqtt_section(Some(&broker.url()), "crash")
    );
    let gw = Gateway::start(modules.path(), Some(&config));
    wait_subscribed(&gw, &["t"]).await;
    let mut sub = Client::connect(broker.addr, "crash-sub").await;
    sub.subscribe("acks/#").await;
    let publisher = Arc::new(Client::connect(broker.addr, "crash-pub").await);

    // A steady stream while the gateway is killed and restarted.
    let stream = {
        let publisher = publisher.clone();
        tokio::spawn(async move {
            for i in 0..N {
                publisher
                    .publish(&format!("stream/{i}"), 1, "sleep:20")
                    .await;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };
    let mut processed = BTreeSet::new();
    let mut runs = 0usize;
    let mut record = |msg: Msg, processed: &mut BTreeSet<usize>| {
        runs += 1;
        let i: usize = msg.topic.rsplit('/').next().unwrap().parse().unwrap();
        processed.insert(i);
    };
    while processed.len() < N / 4 {
        let msg = sub.expect(&gw, "acks before the kill").await;
        record(msg, &mut processed);
    }
    let before_kill = processed.len();
    let accepted_at_kill = publisher.acked.load(Ordering::SeqCst);
    drop(gw); // SIGKILL: no drain, no DISCONNECT.
    // Restart once the broker has taken messages for the dead gateway's
    // session, so that some wait for it while it is down.
    let while_down = (accepted_at_kill + 10).min(N);
    wait_until(
        "messages accepted while the gateway is down",
        Duration::from_secs(30),
        || publisher.acked.load(Ordering::SeqCst) >= while_down,
    )
    .await;
    let gw = Gateway::start(modules.path(), Some(&config));
    stream.await.unwrap();
    wait_until("the broker's PUBACKs", Duration::from_secs(30), || {
        publisher.acked.load(Ordering::SeqCst) == N
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while processed.len() < N {
        match sub.next(Duration::from_secs(1)).await {
            Some(msg) => record(msg, &mut processed),
            None => assert!(
                Instant::now() < deadline,
                "{} of {N} processed ({before_kill} before the kill); missing {:?}; log:\n{}\nmosquitto:\n{}",
                processed.len(),
                (0..N)
                    .filter(|i| !processed.contains(i))
                    .collect::<Vec<_>>(),
                gw.logs(),
                broker.logs()
            ),
        }
    }
    // Messages the broker had accepted but the gateway had not finished
    // (in its hands, unacknowledged, or queued for it) when it died.
    assert!(
        before_kill < accepted_at_kill && accepted_at_kill < N,
        "the kill happened mid-stream: {before_kill} processed, {accepted_at_kill} accepted"
    );
    eprintln!(
        "crash test: {N} messages; at the kill {accepted_at_kill} accepted, {before_kill} processed; {runs} outputs ({} duplicates)",
        runs - N
    );
}

const PUBLISH_GRANTS: &str = r#"
[mqtt.triggers.cmd]
filter = "cmd"
module = "probe"
qos = 0
output_topic = "cmd/out"

[modules.probe.grants]
mqtt_publish = ["allowed/#"]
"#;

#[tokio::test(flavor = "multi_thread")]
async fn mqtt_publish_needs_a_grant_and_a_refusal_is_an_error_not_a_trap() {
    let modules = probe_folder();
    let config = format!("{}{PUBLISH_GRANTS}", mqtt_section(None, "grants"));
    let gw = Gateway::start(modules.path(), Some(&config));
    wait_subscribed(&gw, &["cmd"]).await;
    let addr = gw.mqtt.unwrap().1;
    let mut sub = Client::connect(addr, "grants-sub").await;
    sub.subscribe("allowed/#").await;
    sub.subscribe("denied/#").await;
    sub.subscribe("cmd/out").await;
    let publisher = Client::connect(addr, "grants-pub").await;

    // Granted: the host call's message and the event's reply both arrive.
    publisher.publish("cmd", 0, "publish:allowed/x").await;
    let mut got = BTreeMap::new();
    for _ in 0..2 {
        let msg = sub.expect(&gw, "the granted publish").await;
        got.insert(msg.topic.clone(), msg.text());
    }
    assert_eq!(got["allowed/x"], "from-probe");
    assert_eq!(got["cmd/out"], "published");

    // Denied: PublishMQTT returns the SDK's error; the event goes on.
    publisher.publish("cmd", 0, "publish:denied/x").await;
    let msg = sub.expect(&gw, "the reply after a denied publish").await;
    assert_eq!(msg.topic, "cmd/out");
    let text = msg.text();
    assert!(
        text.starts_with("publish error: shanhai: mqtt_publish: denied")
            && text.contains("denied/x"),
        "{text}"
    );
    let logs = gw.logs();
    assert!(
        logs.lines().any(|l| l.contains("capability denied")
            && l.contains("mqtt_publish")
            && l.contains("denied/x")),
        "{logs}"
    );
    assert!(!logs.contains("trap"), "{logs}");

    // An explicit output topic needs the grant too; a refused one fails the
    // event, which drops a QoS 0 message with a log line.
    publisher.publish("cmd", 0, "explicit:denied/y").await;
    publisher.publish("cmd", 0, "explicit:allowed/y").await;
    let msg = sub.expect(&gw, "the granted explicit output").await;
    assert_eq!(
        (msg.topic.as_str(), msg.text().as_str()),
        ("allowed/y", "explicit")
    );
    wait_until("the refusal's log line", Duration::from_secs(10), || {
        gw.logs().lines().any(|l| {
            l.contains("dropping a QoS 0 message: the module failed")
                && l.contains("no mqtt_publish grant of module probe matches topic `denied/y`")
        })
    })
    .await;
    assert!(
        sub.next(Duration::from_millis(300)).await.is_none(),
        "nothing reached denied/y"
    );
}

#[test]
fn bad_mqtt_configs_are_refused_at_start() {
    let modules = tempfile::tempdir().unwrap();
    for (config, expected) in [
        (
            "[mqtt.triggers.t]\nfilter = \"a/#/b\"\nmodule = \"m\"\n",
            "mqtt.triggers.t.filter",
        ),
        (
            "[mqtt.triggers.t]\nfilter = \"a/b+\"\nmodule = \"m\"\n",
            "`+` must be a whole level",
        ),
        (
            "[mqtt.triggers.t]\nfilter = \"a\"\nmodule = \"m\"\ntopic = \"x\"\n",
            "unknown field `topic`",
        ),
        ("[mqtt]\nbroker = \"mqtt://x\"\n", "unknown field `broker`"),
        (
            "[mqtt.triggers.t]\nfilter = \"a/+\"\nmodule = \"m\"\noutput_topic = \"o/{2}\"\n",
            "mqtt.triggers.t.output_topic",
        ),
        ("[mqtt]\nurl = \"mqtt://u:p@host\"\n", "mqtt.url"),
    ] {
        let stderr = crate::util::serve_refused(modules.path(), config);
        assert!(stderr.contains(expected), "{config}: {stderr}");
    }
}

/// A broker log the embedded broker cannot use fails the start naming the
/// key, rather than a broker that silently keeps nothing.
#[test]
fn an_unusable_broker_store_is_refused_at_start() {
    let modules = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let not_a_log = dir.path().join("garbage");
    std::fs::create_dir(&not_a_log).unwrap();
    std::fs::write(not_a_log.join("broker.log"), "not a log\n").unwrap();
    let a_file = dir.path().join("file");
    std::fs::write(&a_file, "").unwrap();
    for (store, expected) in [
        (&not_a_log, "is not a Shanhai broker log"),
        (&a_file, "File exists"),
    ] {
        let config = format!("[mqtt]\nstore_dir = {:?}\n", store.display().to_string());
        let stderr = crate::util::serve_refused(modules.path(), &config);
        assert!(
            stderr.contains("mqtt.store_dir") && stderr.contains(expected),
            "{config}: {stderr}"
        );
    }
}

fn reading_json() -> &'static str {
    r#"{"sensor":258,"time":1735689600,"temperature_c":21.5,"humidity_pct":45.25,"battery_mv":3300}"#
}

fn reading_binary() -> Vec<u8> {
    vec![
        0x01, 0x01, 0x02, 0x67, 0x74, 0x85, 0x80, 0x08, 0x66, 0x11, 0xad, 0x0c, 0xe4,
    ]
}

const TRANSFORM: &str = r#"
[mqtt.triggers.raw]
filter = "sensors/+/raw"
module = "mqtt-transform"
qos = 1
output_topic = "sensors/{1}/json"

[mqtt.triggers.set]
filter = "sensors/+/set"
module = "mqtt-transform"
qos = 1

[modules.mqtt-transform.grants]
mqtt_publish = ["devices/+/cmd"]
"#;

#[tokio::test(flavor = "multi_thread")]
async fn mqtt_transform_converts_binary_to_json_and_back() {
    let modules = modules_with(&["mqtt-transform"]);
    let config = format!("{}{TRANSFORM}", mqtt_section(None, "transform"));
    let gw = Gateway::start(modules.path(), Some(&config));
    wait_subscribed(&gw, &["raw", "set"]).await;
    let (v4, v5) = gw.mqtt.unwrap();
    let mut sub = Client::connect(v5, "transform-sub").await;
    sub.subscribe("sensors/+/json").await;
    sub.subscribe("devices/#").await;

    let device = Client::connect(v5, "transform-device").await;
    device.publish("sensors/258/raw", 1, reading_binary()).await;
    let msg = sub.expect(&gw, "the JSON reading").await;
    assert_eq!(msg.topic, "sensors/258/json");
    assert_eq!(msg.text(), reading_json());

    // JSON → binary, from an MQTT 3.1.1 device.
    mosquitto_pub(
        v4,
        &["-q", "1", "-t", "sensors/258/set", "-m", reading_json()],
    );
    let msg = sub.expect(&gw, "the binary command").await;
    assert_eq!(msg.topic, "devices/258/cmd");
    assert_eq!(msg.payload, reading_binary());
}

#[tokio::test(flavor = "multi_thread")]
async fn sensor_poll_publishes_readings_on_its_timer() {
    let modules = modules_with(&["sensor-poll"]);
    let config = format!(
        "{}[timers.poll]\nmodule = \"sensor-poll\"\nevery_ms = 200\npayload = \"1,2\"\n\n[modules.sensor-poll.grants]\nmqtt_publish = [\"sensors/+/reading\"]\n",
        mqtt_section(None, "poll")
    );
    let gw = Gateway::start(modules.path(), Some(&config));
    let mut sub = Client::connect(gw.mqtt.unwrap().1, "poll-sub").await;
    sub.subscribe("sensors/+/reading").await;
    let mut runs: BTreeMap<u64, BTreeSet<u64>> = BTreeMap::new();
    // Two complete runs after subscribing (the first may be partial).
    while runs.values().filter(|s| s.len() == 2).count() < 2 {
        let msg = sub.expect(&gw, "a reading").await;
        let reading: serde_json::Value = serde_json::from_slice(&msg.payload).unwrap();
        let sensor = reading["sensor"].as_u64().unwrap();
        assert_eq!(msg.topic, format!("sensors/{sensor}/reading"));
        for field in ["time", "temperature_c", "humidity_pct", "battery_mv"] {
            assert!(reading[field].is_number(), "{reading}");
        }
        runs.entry(reading["run"].as_u64().unwrap())
            .or_default()
            .insert(sensor);
    }
    assert!(runs.values().all(|s| s.is_subset(&BTreeSet::from([1, 2]))));
}

#[tokio::test(flavor = "multi_thread")]
async fn modbus_requests_are_published_to_mqtt() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let modules = modules_with(&["modbus"]);
    let config = format!(
        "{}[tcp.plc]\nlisten = \"127.0.0.1:0\"\nmodule = \"modbus\"\nframing = \"modbus\"\n\n[modules.modbus]\nmax_instances = 1\n[modules.modbus.vars]\nmqtt_topic = \"plc/requests\"\n[modules.modbus.grants]\nmqtt_publish = [\"plc/requests\"]\n",
        mqtt_section(None, "modbus")
    );
    let gw = Gateway::start(modules.path(), Some(&config));
    let mut sub = Client::connect(gw.mqtt.unwrap().1, "modbus-sub").await;
    sub.subscribe("plc/requests").await;
    let mut plc = tokio::net::TcpStream::connect(gw.tcp["plc"]).await.unwrap();
    // FC 16: write 7, 8 at register 10, transaction 2, unit 1.
    let request = [0, 2, 0, 0, 0, 11, 1, 16, 0, 10, 0, 2, 4, 0, 7, 0, 8];
    plc.write_all(&request).await.unwrap();
    let mut reply = [0u8; 12];
    tokio::time::timeout(Duration::from_secs(10), plc.read_exact(&mut reply))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reply, [0, 2, 0, 0, 0, 6, 1, 16, 0, 10, 0, 2]);
    let msg = sub.expect(&gw, "the decoded request").await;
    assert_eq!(
        msg.text(),
        r#"{"transaction":2,"unit":1,"function":16,"address":10,"quantity":2,"values":[7,8]}"#
    );
    // A read is published without values.
    plc.write_all(&[0, 3, 0, 0, 0, 6, 1, 3, 0, 10, 0, 2])
        .await
        .unwrap();
    let mut reply = [0u8; 13];
    tokio::time::timeout(Duration::from_secs(10), plc.read_exact(&mut reply))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&reply[9..], &[0, 7, 0, 8]);
    let msg = sub.expect(&gw, "the decoded read").await;
    assert_eq!(
        msg.text(),
        r#"{"transaction":3,"unit":1,"function":3,"address":10,"quantity":2}"#
    );
}

#[test]
fn an_embedded_broker_open_to_the_network_without_credentials_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("shanhai.toml");
    // Refused before anything binds: no socket on 0.0.0.0 is ever opened.
    std::fs::write(
        &config,
        "[admin]\nenabled = false\n[mqtt]\nlisten = \"0.0.0.0:0\"\n",
    )
    .unwrap();
    let output = Command::new(crate::util::shanhai_bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--modules"])
        .arg(dir.path())
        .arg("--config")
        .arg(&config)
        .current_dir(dir.path())
        .env_remove("SHANHAI_MQTT_PASSWORD")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("mqtt.listen = 0.0.0.0:0 is not a loopback address")
            && stderr.contains("mqtt.username")
            && stderr.contains("SHANHAI_MQTT_PASSWORD"),
        "{stderr}"
    );
}

/// One MQTT 5 connection of client `id` to the embedded broker: connects
/// with `clean_start` and a session expiry interval, subscribes to
/// `filter` (QoS 1) if given, waits for `expect` messages (or, expecting
/// none, half a second), disconnects with a DISCONNECT packet, and returns
/// the CONNACK's session-present flag and the payloads received.
async fn mqtt5_session(
    addr: SocketAddr,
    id: &str,
    clean_start: bool,
    expiry_s: Option<u32>,
    filter: Option<&str>,
    expect: usize,
) -> (bool, Vec<String>) {
    let mut options = MqttOptions::new(id, addr.ip().to_string(), addr.port());
    options
        .set_keep_alive(Duration::from_secs(30))
        .set_clean_start(clean_start)
        .set_session_expiry_interval(expiry_s);
    let (client, mut eventloop) = AsyncClient::new(options, 10);
    if let Some(filter) = filter {
        client.subscribe(filter, QoS::AtLeastOnce).await.unwrap();
    }
    let (mut present, mut subscribed, mut got) = (None, filter.is_none(), Vec::new());
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut quiet_until = None;
    loop {
        if present.is_some() && subscribed && got.len() >= expect {
            // Expecting nothing: give a stray message half a second.
            let until =
                *quiet_until.get_or_insert_with(|| Instant::now() + Duration::from_millis(500));
            if expect > 0 || Instant::now() >= until {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{id}: {got:?} of {expect} messages, subscribed {subscribed}"
        );
        let event = tokio::time::timeout(Duration::from_millis(100), eventloop.poll()).await;
        match event {
            Ok(Ok(Event::Incoming(Packet::ConnAck(ack)))) => present = Some(ack.session_present),
            Ok(Ok(Event::Incoming(Packet::SubAck(_)))) => subscribed = true,
            Ok(Ok(Event::Incoming(Packet::Publish(p)))) => {
                got.push(String::from_utf8_lossy(&p.payload).into_owned())
            }
            Ok(Ok(_)) | Err(_) => {}
            Ok(Err(err)) => panic!("{id}: {err}"),
        }
    }
    client.disconnect().await.unwrap();
    // Until the DISCONNECT is out and the broker closes the connection.
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while eventloop.poll().await.is_ok() {}
    })
    .await;
    (present.unwrap(), got)
}

/// The embedded broker keeps an MQTT 5 session as its expiry interval
/// says, whatever the clean start flag (MQTT 5 §3.1.2.4, §3.1.2.11): what
/// the Paho interoperability tests found (test_offline_message_queueing,
/// test_session_expiry).
#[tokio::test(flavor = "multi_thread")]
async fn the_embedded_broker_keeps_mqtt5_sessions_for_their_expiry_interval() {
    let modules = tempfile::tempdir().unwrap();
    let gw = Gateway::start(modules.path(), Some(&mqtt_section(None, "sessions")));
    let (v4, v5) = gw.mqtt.expect("the embedded broker runs");

    // Clean start with an interval: the session outlives the connection,
    // and a QoS 1 message published meanwhile waits in it.
    let (present, _) = mqtt5_session(v5, "kept", true, Some(60), Some("kept/#"), 0).await;
    assert!(!present);
    mosquitto_pub(v4, &["-q", "1", "-t", "kept/x", "-m", "while away"]);
    let (present, got) = mqtt5_session(v5, "kept", false, Some(60), None, 1).await;
    assert!(present, "the session is gone");
    assert_eq!(got, ["while away"]);

    // Interval 0 (or none): the session ends with the connection.
    let (_, _) = mqtt5_session(v5, "gone", true, Some(0), Some("gone/#"), 0).await;
    mosquitto_pub(v4, &["-q", "1", "-t", "gone/x", "-m", "lost"]);
    let (present, got) = mqtt5_session(v5, "gone", false, None, None, 0).await;
    assert!(!present && got.is_empty(), "{present} {got:?}");

    // A 1 s interval: the session is there within it, gone after it.
    let (_, _) = mqtt5_session(v5, "short", true, Some(1), Some("short/#"), 0).await;
    let left = Instant::now();
    mosquitto_pub(v4, &["-q", "1", "-t", "short/x", "-m", "late"]);
    // The condition is the clock itself: wait until the interval is over.
    tokio::time::sleep(Duration::from_millis(2500).saturating_sub(left.elapsed())).await;
    let (present, got) = mqtt5_session(v5, "short", false, Some(1), None, 0).await;
    assert!(!present && got.is_empty(), "{present} {got:?}");
}

/// The embedded broker's durable log (`mqtt.store_dir`): 1,000 QoS 1
/// messages, each acknowledged to mosquitto_pub, wait for a slow trigger;
/// the gateway is killed (SIGKILL: no drain, nothing flushed) mid-way and
/// restarted on the same folder. Every message is processed at least once,
/// and the outputs published for a persistent observer before and after
/// the kill reach it too.
#[tokio::test(flavor = "multi_thread")]
async fn the_embedded_broker_loses_no_acknowledged_message_when_the_gateway_is_killed() {
    const N: usize = 1000;
    let modules = probe_folder();
    let store = tempfile::tempdir().unwrap();
    let config = format!(
        "{}store_dir = {:?}\n[mqtt.triggers.t]\nfilter = \"jobs/+\"\nmodule = \"probe\"\noutput_topic = \"done/{{1}}\"\n",
        mqtt_section(None, "durable"),
        store.path().display().to_string()
    );
    let gw = Gateway::start(modules.path(), Some(&config));
    wait_subscribed(&gw, &["t"]).await;
    let (v4, v5) = gw.mqtt.expect("the embedded broker runs");
    let mut observer = Client::connect_with(v5, "observer", true).await;
    observer.subscribe("done/#").await;

    // One topic, so the trigger takes the messages one at a time (order
    // per topic), each sleeping 3 ms: slow next to the publisher.
    let lines: String = (0..N).map(|i| format!("sleep:3:{i}\n")).collect();
    let mut publisher = Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &v4.port().to_string()])
        .args(["-i", "device", "-q", "1", "-t", "jobs/x", "-l"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("running mosquitto_pub (apt package mosquitto-clients)");
    {
        use std::io::Write;
        publisher
            .stdin
            .take()
            .unwrap()
            .write_all(lines.as_bytes())
            .unwrap();
    }
    // mosquitto_pub -l exits 0 once every message is acknowledged.
    let status = tokio::task::spawn_blocking(move || publisher.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "mosquitto_pub: {status}");

    let mut processed = BTreeSet::new();
    let mut outputs = 0usize;
    let mut record = |msg: Msg, processed: &mut BTreeSet<usize>| {
        outputs += 1;
        let payload = String::from_utf8_lossy(&msg.payload).into_owned();
        // "jobs/x|sleep:3:ID|q1|..."
        let id = payload.split('|').nth(1).and_then(|p| p.rsplit(':').next());
        let id: usize = id
            .and_then(|id| id.parse().ok())
            .unwrap_or_else(|| panic!("output {payload:?}"));
        processed.insert(id);
    };
    while processed.len() < N / 10 {
        let msg = observer.expect(&gw, "outputs before the kill").await;
        record(msg, &mut processed);
    }
    let before_kill = processed.len();
    drop(observer);
    drop(gw); // SIGKILL
    assert!(before_kill < N, "the trigger finished before the kill");

    let gw = Gateway::start(modules.path(), Some(&config));
    let logs = gw.logs();
    assert!(
        logs.contains("restored persistent sessions and the QoS 1 messages they are owed"),
        "{logs}"
    );
    let (_, v5) = gw.mqtt.expect("the embedded broker runs");
    let mut observer = Client::connect_with(v5, "observer", true).await;
    let deadline = Instant::now() + Duration::from_secs(120);
    while processed.len() < N {
        match observer.next(Duration::from_secs(1)).await {
            Some(msg) => record(msg, &mut processed),
            None => assert!(
                Instant::now() < deadline,
                "{} of {N} processed ({before_kill} before the kill); missing {:?}; log:\n{}",
                processed.len(),
                (0..N)
                    .filter(|i| !processed.contains(i))
                    .take(20)
                    .collect::<Vec<_>>(),
                gw.logs()
            ),
        }
    }
    eprintln!(
        "durable broker: {N} messages, {before_kill} processed before the kill, {outputs} outputs ({} again)",
        outputs - N
    );
}

/// MQTT 5 no-local (§3.8.3.1): a subscription with it gets no message its
/// own client published, and every other client's. The Paho test
/// `test_request_response` relies on it (rumqttd patch 7).
#[tokio::test(flavor = "multi_thread")]
async fn a_no_local_subscription_gets_no_messages_of_its_own() {
    let modules = tempfile::tempdir().unwrap();
    let gw = Gateway::start(modules.path(), Some(&mqtt_section(None, "nolocal")));
    let (v4, v5) = gw.mqtt.expect("the embedded broker runs");
    let mut options = MqttOptions::new("requester", v5.ip().to_string(), v5.port());
    options.set_keep_alive(Duration::from_secs(30));
    let (client, mut eventloop) = AsyncClient::new(options, 10);
    let mut filter = rumqttc::v5::mqttbytes::v5::Filter::new("nl/#", QoS::AtLeastOnce);
    filter.nolocal = true;
    client.subscribe_many([filter]).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut got = Vec::new();
    let mut acked = 0;
    while !got.iter().any(|p| p == "theirs") {
        assert!(Instant::now() < deadline, "got {got:?}");
        let event = tokio::time::timeout(Duration::from_millis(100), eventloop.poll()).await;
        match event {
            Ok(Ok(Event::Incoming(Packet::SubAck(_)))) => {
                for i in 0..3 {
                    client
                        .publish("nl/x", QoS::AtLeastOnce, false, format!("own-{i}"))
                        .await
                        .unwrap();
                }
            }
            Ok(Ok(Event::Incoming(Packet::PubAck(_)))) => {
                acked += 1;
                if acked == 3 {
                    // Our three are in the log: another client's comes after.
                    mosquitto_pub(v4, &["-q", "1", "-t", "nl/y", "-m", "theirs"]);
                }
            }
            Ok(Ok(Event::Incoming(Packet::Publish(p)))) => {
                got.push(String::from_utf8_lossy(&p.payload).into_owned())
            }
            Ok(Ok(_)) | Err(_) => {}
            Ok(Err(err)) => panic!("{err}"),
        }
    }
    assert_eq!(got, ["theirs"]);
}

/// The gateway process's anonymous resident memory (`RssAnon`), in bytes.
fn rss_anon(gw: &Gateway) -> usize {
    crate::util::proc_status_bytes(gw.pid(), "RssAnon") as usize
}

/// A gateway with no module and the embedded broker (its folder of
/// modules, kept for its life), and the broker's MQTT 5 address.
fn embedded_broker_gateway(client_id: &str) -> (tempfile::TempDir, Gateway, SocketAddr) {
    let modules = tempfile::tempdir().unwrap();
    let gw = Gateway::start(modules.path(), Some(&mqtt_section(None, client_id)));
    let (_, v5) = gw.mqtt.expect("the embedded broker runs");
    (modules, gw, v5)
}

/// Publishes `count` messages of `size` bytes on `topic`, each payload
/// starting with its number, and waits until the broker acknowledged them
/// all (QoS 1).
async fn publish_numbered(publisher: &Client, topic: &str, count: usize, size: usize) {
    let before = publisher.acked.load(Ordering::SeqCst);
    for i in 0..count {
        let mut payload = format!("{i:06}").into_bytes();
        payload.resize(size, b'.');
        publisher.publish(topic, 1, payload).await;
    }
    wait_until("the broker's PUBACKs", Duration::from_secs(60), || {
        publisher.acked.load(Ordering::SeqCst) >= before + count
    })
    .await;
}

/// Receives `count` messages numbered from 0, in order.
async fn expect_numbered(client: &mut Client, gw: &Gateway, count: usize, size: usize) {
    for i in 0..count {
        let msg = client.expect(gw, &format!("message {i} of {count}")).await;
        assert_eq!(msg.payload.len(), size, "message {i}");
        assert_eq!(
            &msg.payload[..6],
            format!("{i:06}").as_bytes(),
            "message {i} out of order"
        );
    }
}

/// The embedded broker frees the messages its subscribers have read: 48 MiB
/// through one filter leave the gateway's memory near where it was.
/// rumqttd kept every filter's last 64 MiB in memory whether read or not
/// (vendored rumqttd, patch 8).
#[tokio::test(flavor = "multi_thread")]
async fn the_embedded_broker_frees_the_messages_its_subscribers_have_read() {
    const SIZE: usize = 64 << 10;
    const COUNT: usize = 768; // 48 MiB
    let (_modules, gw, v5) = embedded_broker_gateway("freeing");
    let mut subscriber = Client::connect(v5, "reader").await;
    subscriber.subscribe("bulk/#").await;
    let publisher = Client::connect(v5, "writer").await;
    // A first round sizes the buffers and the allocator's arenas.
    publish_numbered(&publisher, "bulk/a", 64, SIZE).await;
    expect_numbered(&mut subscriber, &gw, 64, SIZE).await;
    let before = rss_anon(&gw);

    // In rounds, so the test's own clients never hold much unread.
    for _ in 0..COUNT / 64 {
        publish_numbered(&publisher, "bulk/a", 64, SIZE).await;
        expect_numbered(&mut subscriber, &gw, 64, SIZE).await;
    }
    let grew = rss_anon(&gw).saturating_sub(before);
    // The segment being filled (2 MiB), what the router freed but has not
    // handed back yet (under 8 MiB), and room for the allocator.
    assert!(
        grew < 20 << 20,
        "the gateway grew by {} MiB over {} MiB of messages its subscriber read",
        grew >> 20,
        (COUNT * SIZE) >> 20
    );
}

/// Freeing read segments keeps what a persistent session that is away is
/// owed: another subscriber of the same filter reads 6 MiB (three
/// segments) while it is away, and it gets every message when it is back,
/// in order.
#[tokio::test(flavor = "multi_thread")]
async fn a_session_that_is_away_keeps_the_segments_other_subscribers_have_read() {
    const SIZE: usize = 64 << 10;
    const COUNT: usize = 96; // 6 MiB
    let (_modules, gw, v5) = embedded_broker_gateway("away");
    let away = Client::connect_with(v5, "away", true).await;
    away.subscribe("fleet/#").await;
    // Gone without a DISCONNECT; the session stays for its hour.
    drop(away);
    let mut present = Client::connect(v5, "present").await;
    present.subscribe("fleet/#").await;
    let publisher = Client::connect(v5, "writer").await;
    publish_numbered(&publisher, "fleet/a", COUNT, SIZE).await;
    expect_numbered(&mut present, &gw, COUNT, SIZE).await;
    // One more message fills a segment after the last read, so the router
    // frees what it can once more before the session returns.
    publish_numbered(&publisher, "fleet/b", 40, SIZE).await;
    let mut back = Client::connect_with(v5, "away", true).await;
    expect_numbered(&mut back, &gw, COUNT, SIZE).await;
    assert!(
        !gw.logs().contains("jumping to head"),
        "the session's cursor fell behind the log:\n{}",
        gw.logs()
    );
}

/// Freeing read segments keeps what a connected subscriber has been sent
/// but not acknowledged: it is sent again from the log after a reconnect.
/// A subscriber that never acknowledges is sent 96 messages (6 MiB) that
/// another subscriber reads, more follow so the router frees again while
/// it is connected, and once back it gets all 96 again, in order.
#[tokio::test(flavor = "multi_thread")]
async fn unacknowledged_messages_keep_their_segments_for_a_resend() {
    const SIZE: usize = 64 << 10;
    const COUNT: usize = 96;
    let (_modules, gw, v5) = embedded_broker_gateway("unacked");

    // A persistent subscriber that acknowledges nothing.
    let mut options = MqttOptions::new("silent", "127.0.0.1", v5.port());
    options
        .set_keep_alive(Duration::from_secs(30))
        .set_clean_start(false)
        .set_session_expiry_interval(Some(3600))
        .set_manual_acks(true)
        .set_max_packet_size(Some(2 << 20));
    let mut silent = Client::connect_options(options).await;
    silent.subscribe("fleet/#").await;
    let mut present = Client::connect(v5, "present").await;
    present.subscribe("fleet/#").await;
    let publisher = Client::connect(v5, "writer").await;

    publish_numbered(&publisher, "fleet/a", COUNT, SIZE).await;
    expect_numbered(&mut present, &gw, COUNT, SIZE).await;
    expect_numbered(&mut silent, &gw, COUNT, SIZE).await;
    // More segments fill while it is connected and owes every PUBACK.
    publish_numbered(&publisher, "fleet/b", 40, SIZE).await;
    expect_numbered(&mut present, &gw, 40, SIZE).await;
    // Gone, its event loop and connection with it.
    silent.task.abort();
    let _ = (&mut silent.task).await;
    drop(silent);

    let mut back = Client::connect_with(v5, "silent", true).await;
    expect_numbered(&mut back, &gw, COUNT, SIZE).await;
}

/// A connection that closes before its CONNECT (a port probe, a TCP health
/// check, the gateway's own start-up check) is no error of the broker's:
/// a start and a probe leave no ERROR line in the log (vendored rumqttd,
/// patch 9).
#[tokio::test(flavor = "multi_thread")]
async fn the_embedded_broker_logs_no_error_for_a_port_probe() {
    let (_modules, gw, v5) = embedded_broker_gateway("probed");
    let (v4, _) = gw.mqtt.unwrap();
    for addr in [v4, v5] {
        drop(std::net::TcpStream::connect(addr).unwrap());
    }
    // A client connecting after the probes has been handled after them.
    let client = Client::connect(v5, "after-probes").await;
    client.subscribe("probe/#").await;
    let logs = gw.logs();
    let errors = error_lines(&logs);
    assert!(errors.is_empty(), "errors logged:\n{}", errors.join("\n"));
}

/// A client that connects with an empty client id (clean start) is given
/// one: on MQTT 5 the CONNACK names it (Assigned Client Identifier),
/// `rumqtt-` and 32 hex digits, a new one for each connection (vendored
/// rumqttd, patch 11); on MQTT 3.1.1 it is accepted and named nowhere.
#[tokio::test(flavor = "multi_thread")]
async fn a_client_without_an_id_is_given_one() {
    let (_modules, gw, v5) = embedded_broker_gateway("unnamed");
    let (v4, _) = gw.mqtt.unwrap();
    let connect = |addr: SocketAddr, v5: bool| {
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        write_packet(&mut stream, 0x10, &connect_body(v5, 30, ""));
        let (kind, connack) = read_packet(&mut stream).expect("a CONNACK");
        assert_eq!(kind, 0x20, "a CONNACK, got {kind:#x} {connack:?}");
        assert_eq!(connack[1], 0, "the CONNACK refuses: {connack:?}");
        // The connection is usable: PINGREQ → PINGRESP.
        write_packet(&mut stream, 0xc0, &[]);
        assert_eq!(read_packet(&mut stream).expect("a PINGRESP").0, 0xd0);
        connack
    };
    let mut assigned = Vec::new();
    for _ in 0..2 {
        let connack = connect(v5, true);
        // Flags, reason code, properties: (length < 128) id, value.
        let properties = &connack[3..3 + usize::from(connack[2])];
        // The property: identifier 0x12, a two-byte length, the string.
        let at = properties
            .windows(7)
            .position(|w| w == b"rumqtt-")
            .filter(|&at| at >= 3 && properties[at - 3] == 0x12)
            .unwrap_or_else(|| panic!("no Assigned Client Identifier in {connack:?}"));
        let len = usize::from(u16::from_be_bytes([properties[at - 2], properties[at - 1]]));
        let id = std::str::from_utf8(&properties[at..at + len]).unwrap();
        let hex = &id["rumqtt-".len()..];
        assert!(
            hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()),
            "assigned {id}"
        );
        assigned.push(id.to_owned());
    }
    assert_ne!(assigned[0], assigned[1], "one id for two clients");
    assert_eq!(
        connect(v4, false).len(),
        2,
        "an MQTT 3.1.1 CONNACK is two bytes"
    );
}

/// The lines of a gateway's JSON log at level ERROR.
fn error_lines(logs: &str) -> Vec<&str> {
    logs.lines()
        .filter(|line| line.contains("\"level\":\"ERROR\""))
        .collect()
}

/// Clients that disconnect cleanly, on MQTT 3.1.1 and 5, and a gateway
/// stopped with SIGTERM (its triggers' clients disconnect from its own
/// broker) leave no ERROR line in the log: rumqttd logged the router's end
/// of each clean disconnect, and the second notice of one, as errors
/// (vendored rumqttd, patch 10).
#[tokio::test(flavor = "multi_thread")]
async fn clean_disconnects_and_a_shutdown_log_no_error() {
    let modules = probe_folder();
    let config = format!("{}{ROUTING}", mqtt_section(None, "stopping"));
    let mut gw = Gateway::start(modules.path(), Some(&config));
    wait_subscribed(&gw, &["raw", "copy"]).await;
    let (v4, v5) = gw.mqtt.unwrap();
    let mut sub = Client::connect(v5, "stopping-sub").await;
    sub.subscribe("copied/#").await;
    for (addr, version) in [(v4, "mqttv311"), (v5, "mqttv5")] {
        for i in 0..3 {
            let payload = format!("{version}-{i}");
            mosquitto_pub(
                addr,
                &["-V", version, "-q", "1", "-t", "copy/x", "-m", &payload],
            );
            let msg = sub.expect(&gw, "the copy trigger's output").await;
            let expected = format!("copy/x|{payload}|");
            assert!(msg.text().starts_with(&expected), "{}", msg.text());
        }
    }
    gw.terminate();
    assert!(
        gw.wait_exit(Duration::from_secs(30))
            .is_some_and(|status| status.success()),
        "the gateway did not stop cleanly; logs:\n{}",
        gw.logs()
    );
    let logs = gw.logs();
    assert!(
        logs.contains("draining connections"),
        "no shutdown in the log:\n{logs}"
    );
    let errors = error_lines(&logs);
    assert!(errors.is_empty(), "errors logged:\n{}", errors.join("\n"));
}
