//! Connection options for the gateway's MQTT 5 connections: the broker's
//! address, credentials, TLS, keep-alive and the persistent session.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use rumqttc::v5::MqttOptions;
use rumqttc::{TlsConfiguration, Transport};

use super::config::{BrokerAddress, MqttConfig};

/// What every connection of this gateway shares; one [`MqttOptions`] per
/// client id is made from it.
#[derive(Clone)]
pub(crate) struct ConnectionOptions {
    address: BrokerAddress,
    username: Option<String>,
    password: Option<String>,
    tls: Option<Arc<rustls::ClientConfig>>,
    keep_alive: Duration,
    session_expiry_s: u32,
    max_packet_bytes: u32,
}

/// Room for the topic, properties and headers of a packet beside its
/// payload.
const PACKET_OVERHEAD: usize = 128 << 10;

/// QoS 1 publications one connection may have unacknowledged. rumqttc
/// preallocates a slot (about 220 bytes) per permitted publication and
/// defaults to 65,535 of them: 14 MB of written memory per connection, and
/// the gateway holds one connection per trigger plus the publisher's. 1,024
/// is four times the embedded broker's own in-flight window and keeps the
/// table at 220 KB. A broker that announces a smaller Receive Maximum gets
/// the smaller window.
const OUTGOING_INFLIGHT: u16 = 1024;

impl ConnectionOptions {
    /// Options for `address` with the config's credentials and TLS files
    /// (read now, so a missing file fails the start).
    pub(crate) fn new(config: &MqttConfig, address: BrokerAddress) -> anyhow::Result<Self> {
        let password = std::env::var(&config.password_env)
            .ok()
            .filter(|p| !p.is_empty());
        let tls = if address.tls {
            Some(Arc::new(tls_config(config)?))
        } else {
            None
        };
        Ok(Self {
            address,
            username: config.username.clone(),
            password,
            tls,
            keep_alive: Duration::from_secs(config.keep_alive_s),
            session_expiry_s: config.session_expiry_s,
            max_packet_bytes: u32::try_from(config.max_payload_bytes + PACKET_OVERHEAD)
                .unwrap_or(u32::MAX),
        })
    }

    /// The broker's address as `host:port`, for logs.
    pub(crate) fn describe(&self) -> String {
        let scheme = if self.address.tls { "mqtts" } else { "mqtt" };
        if self.address.host.contains(':') {
            format!("{scheme}://[{}]:{}", self.address.host, self.address.port)
        } else {
            format!("{scheme}://{}:{}", self.address.host, self.address.port)
        }
    }

    /// Options for one connection. A `persistent` one keeps its session
    /// (clean start off, the configured expiry) so the broker holds QoS 1
    /// messages for it while it is away, and acknowledges by hand.
    pub(crate) fn for_client(
        &self,
        client_id: &str,
        persistent: bool,
        receive_maximum: u16,
    ) -> MqttOptions {
        let mut options = MqttOptions::new(client_id, &self.address.host, self.address.port);
        options
            .set_keep_alive(self.keep_alive)
            .set_clean_start(!persistent)
            .set_manual_acks(true)
            .set_connection_timeout(10)
            .set_max_packet_size(Some(self.max_packet_bytes))
            .set_receive_maximum(Some(receive_maximum.max(1)))
            .set_outgoing_inflight_upper_limit(OUTGOING_INFLIGHT);
        // Small packets (acknowledgements, outputs) go out at once instead
        // of waiting for the peer's delayed ACK.
        let mut network = rumqttc::NetworkOptions::new();
        network.set_tcp_nodelay(true);
        options.set_network_options(network);
        if persistent {
            options.set_session_expiry_interval(Some(self.session_expiry_s));
        }
        match (&self.username, &self.password) {
            (Some(user), password) => {
                options.set_credentials(user, password.clone().unwrap_or_default());
            }
            (None, Some(password)) => {
                options.set_credentials("", password);
            }
            (None, None) => {}
        }
        if let Some(tls) = &self.tls {
            options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
                tls.clone(),
            )));
        }
        options
    }
}

fn tls_config(config: &MqttConfig) -> anyhow::Result<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    let mut roots = rustls::RootCertStore::empty();
    match &config.ca_file {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .with_context(|| format!("mqtt.ca_file: reading {}", path.display()))?;
            if certs.is_empty() {
                anyhow::bail!("mqtt.ca_file: {} holds no certificate", path.display());
            }
            for cert in certs {
                roots
                    .add(cert)
                    .with_context(|| format!("mqtt.ca_file: {}", path.display()))?;
            }
        }
        None => {
            let native = rustls_native_certs::load_native_certs();
            for cert in native.certs {
                // One unusable system certificate is no reason to refuse
                // the others.
                let _ = roots.add(cert);
            }
            if roots.is_empty() {
                anyhow::bail!(
                    "mqtt.url is mqtts:// but no system CA certificates were found: set mqtt.ca_file"
                );
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_root_certificates(roots);
    let config = match (&config.client_cert_file, &config.client_key_file) {
        (Some(cert), Some(key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .with_context(|| format!("mqtt.client_cert_file: reading {}", cert.display()))?;
            let key = PrivateKeyDer::from_pem_file(key)
                .with_context(|| format!("mqtt.client_key_file: reading {}", key.display()))?;
            builder.with_client_auth_cert(chain, key).context(
                "mqtt.client_cert_file and client_key_file do not make a client identity",
            )?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(config)
}
