//! TLS to the broker: rustls (crypto from `ring`) over the same blocking
//! `TcpStream`, so the MQTT thread stays one plain synchronous loop.
//!
//! The broker's certificate is verified against `mqtt.ca_file` when set
//! (a PEM bundle, typically the CA of a self-run Mosquitto), else against
//! the system trust store (`/etc/ssl/certs`, Debian's `ca-certificates`),
//! and its name against `mqtt.host` (a DNS name or an IP address in the
//! certificate's subjectAltName). There is no "insecure" switch and no
//! fallback to plain MQTT: a failed verification is reported and retried
//! with the usual backoff.

use std::io::{self, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Instant;

use rustls::pki_types::ServerName;
use rustls::{CertificateError, ClientConfig, ClientConnection, RootCertStore, StreamOwned};

use crate::config::rules::load_ca_file;

/// Where the trusted CAs come from, for messages.
#[derive(Debug, Clone)]
pub enum Trust {
    CaFile(std::path::PathBuf),
    System,
}

impl std::fmt::Display for Trust {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Trust::CaFile(p) => write!(f, "the CA file {} (mqtt.ca_file)", p.display()),
            Trust::System => f.write_str("the system trust store"),
        }
    }
}

/// A client config trusting `trust`, with `ring` as the crypto provider.
pub fn client_config(trust: &Trust) -> Result<Arc<ClientConfig>, String> {
    let mut roots = RootCertStore::empty();
    match trust {
        Trust::CaFile(path) => {
            for cert in load_ca_file(path)? {
                roots
                    .add(cert)
                    .map_err(|e| format!("CA file {}: {e}", path.display()))?;
            }
        }
        Trust::System => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                let why = found
                    .errors
                    .first()
                    .map(|e| format!(" ({e})"))
                    .unwrap_or_default();
                return Err(format!(
                    "no CA certificates in the system trust store{why}: install them \
                     (`apt-get install ca-certificates`) or set mqtt.ca_file to the broker's CA"
                ));
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Runs the TLS handshake on `sock` (which has a short read timeout) until
/// it completes or `deadline` passes.
pub fn handshake(
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
    mut sock: TcpStream,
    deadline: Instant,
) -> Result<StreamOwned<ClientConnection, TcpStream>, HandshakeError> {
    let mut conn = ClientConnection::new(config, name).map_err(HandshakeError::Tls)?;
    while conn.is_handshaking() {
        match conn.complete_io(&mut sock) {
            Ok((0, 0)) if conn.wants_read() => return Err(HandshakeError::Closed),
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(HandshakeError::from_io(e)),
        }
        if conn.is_handshaking() && Instant::now() > deadline {
            return Err(HandshakeError::Timeout);
        }
    }
    Ok(StreamOwned::new(conn, sock))
}

/// Why a TLS handshake failed.
#[derive(Debug)]
pub enum HandshakeError {
    Tls(rustls::Error),
    Io(io::Error),
    /// The broker closed the connection mid-handshake.
    Closed,
    Timeout,
}

impl HandshakeError {
    fn from_io(e: io::Error) -> HandshakeError {
        // A broker that does not speak TLS on this port hangs up on the
        // ClientHello, cleanly or with a reset.
        if matches!(
            e.kind(),
            ErrorKind::UnexpectedEof
                | ErrorKind::ConnectionReset
                | ErrorKind::ConnectionAborted
                | ErrorKind::BrokenPipe
        ) {
            return HandshakeError::Closed;
        }
        match e
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            Some(tls) => HandshakeError::Tls(tls.clone()),
            None => HandshakeError::Io(e),
        }
    }

    /// What went wrong and what to do about it. `host` is `mqtt.host`.
    pub fn explain(&self, host: &str, trust: &Trust) -> String {
        use rustls::Error as E;
        match self {
            HandshakeError::Tls(E::InvalidCertificate(c)) => explain_certificate(c, host, trust),
            HandshakeError::Tls(E::AlertReceived(alert)) => format!(
                "TLS handshake failed: the broker sent the alert `{alert:?}` (check the broker's \
                 TLS settings, e.g. `tls_version`, and its log)"
            ),
            HandshakeError::Tls(E::InvalidMessage(_) | E::InappropriateMessage { .. }) => format!(
                "TLS handshake failed: the broker did not answer in TLS; is mqtt.port a TLS \
                 listener of the broker (usually {}; {} is plain MQTT)?",
                crate::config::MQTT_TLS_PORT,
                crate::config::MQTT_PORT
            ),
            HandshakeError::Tls(E::PeerIncompatible(p)) => format!(
                "TLS handshake failed: the broker offers nothing this host accepts ({p:?}); \
                 it needs TLS 1.2 or 1.3 with a modern cipher suite"
            ),
            HandshakeError::Tls(e) => format!("TLS handshake failed: {e}"),
            HandshakeError::Io(e) => format!("TLS handshake failed: {e}"),
            HandshakeError::Closed => format!(
                "TLS handshake failed: the broker closed the connection; is mqtt.port a TLS \
                 listener of the broker (usually {}; {} is plain MQTT)?",
                crate::config::MQTT_TLS_PORT,
                crate::config::MQTT_PORT
            ),
            HandshakeError::Timeout => "TLS handshake failed: no answer from the broker in time \
                 (is mqtt.port a TLS listener of the broker?)"
                .into(),
        }
    }
}

fn explain_certificate(c: &CertificateError, host: &str, trust: &Trust) -> String {
    use CertificateError as C;
    match c {
        C::UnknownIssuer => format!(
            "TLS: the broker's certificate is not trusted: it is not signed by a CA in {trust}; \
             set mqtt.ca_file to the PEM file of the CA that signed the broker's certificate \
             (for Mosquitto, the file its `cafile` option names)"
        ),
        C::NotValidForName => format!(
            "TLS: the broker's certificate is not valid for `{host}`: set mqtt.host to a name \
             the certificate was issued for, or reissue it with `{host}` in its subjectAltName"
        ),
        C::NotValidForNameContext { presented, .. } => format!(
            "TLS: the broker's certificate is not valid for `{host}` (it names {}): set \
             mqtt.host to one of those, or reissue the certificate with `{host}` in its \
             subjectAltName",
            if presented.is_empty() {
                "nothing".to_string()
            } else {
                presented.join(", ")
            }
        ),
        C::Expired | C::ExpiredContext { .. } => "TLS: the broker's certificate has expired \
             (or this device's clock is wrong: a Pi has no battery clock, check that NTP has \
             synced with `timedatectl`); renew the broker's certificate"
            .into(),
        C::NotValidYet | C::NotValidYetContext { .. } => "TLS: the broker's certificate is not \
             valid yet: this device's clock is probably behind (a Pi has no battery clock, check \
             that NTP has synced with `timedatectl`)"
            .into(),
        C::BadSignature => format!(
            "TLS: the broker's certificate has a bad signature: it does not match a CA in \
             {trust}; check mqtt.ca_file"
        ),
        other => format!("TLS: the broker's certificate was refused: {other:?}"),
    }
}

impl std::fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HandshakeError::Tls(e) => write!(f, "{e}"),
            HandshakeError::Io(e) => write!(f, "{e}"),
            HandshakeError::Closed => f.write_str("closed during the handshake"),
            HandshakeError::Timeout => f.write_str("timed out"),
        }
    }
}

/// The broker connection: plain TCP or TLS over it.
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explanations_say_what_to_fix() {
        let trust = Trust::CaFile("/etc/mqtt/ca.pem".into());
        let e = HandshakeError::Tls(rustls::Error::InvalidCertificate(
            CertificateError::UnknownIssuer,
        ));
        let m = e.explain("broker", &trust);
        assert!(
            m.contains("not trusted") && m.contains("mqtt.ca_file"),
            "{m}"
        );
        let e = HandshakeError::Tls(rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName,
        ));
        let m = e.explain("broker", &trust);
        assert!(m.contains("not valid for `broker`"), "{m}");
        let m = HandshakeError::Closed.explain("broker", &Trust::System);
        assert!(m.contains("mqtt.port"), "{m}");
    }
}
