//! Rules for values whose meaning belongs to another part of the host
//! (the HTTP control token, the MQTT broker's TLS name and CA file, plugin
//! names), written here so that the config can check them at load, naming
//! the key, and the parts that use the values check them the same way
//! without the config knowing those parts.

use std::path::Path;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::RootCertStore;

/// Longest plugin name: the name is the sensor id of the plugin's own
/// readings (its telemetry), and a sensor id is at most 64 characters.
pub const MAX_PLUGIN_NAME_LEN: usize = 64;

/// Checks a plugin name, for the config and for `new`: the name becomes a
/// folder of the plugins folder, a TOML key (`[plugins.NAME]`), the sensor
/// id of the plugin's own readings and part of MQTT topics. `Err` says what
/// a name may be.
pub fn check_plugin_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= MAX_PLUGIN_NAME_LEN
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !ok {
        return Err(format!(
            "plugin names are 1–{MAX_PLUGIN_NAME_LEN} characters of letters, digits, `_` and \
             `-`: `{}` is not one",
            crate::text::truncate(name, 80)
        ));
    }
    if super::RESERVED_PLUGIN_NAMES.contains(&name) {
        return Err(format!(
            "`{name}` is a folder of the plugins folder that is not a plugin (`common` holds \
             the modules every plugin shares, `testing` the test kit): choose another name"
        ));
    }
    Ok(())
}

/// A token a user may set: 16–256 printable ASCII characters, no spaces.
pub fn check_token_text(token: &str) -> Result<(), String> {
    if token.len() < 16 || token.len() > 256 {
        return Err(format!(
            "must be 16 to 256 characters (got {}); remove it to have one generated",
            token.len()
        ));
    }
    if !token.chars().all(|c| c.is_ascii_graphic()) {
        return Err("may only contain printable ASCII characters without spaces".into());
    }
    Ok(())
}

/// Largest CA file read: a full system bundle is ~220 KB.
const MAX_CA_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// The name the broker's certificate must carry, from `mqtt.host`.
pub fn server_name(host: &str) -> Result<ServerName<'static>, String> {
    ServerName::try_from(host.trim().to_string()).map_err(|_| {
        format!(
            "`{host}` is neither a DNS name nor an IP address, so the broker's certificate \
             cannot be checked against it: use the name (or address) the certificate was issued for"
        )
    })
}

/// Reads a PEM file of CA certificates. `Err` says what is wrong and what
/// the file should be.
pub fn load_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let shown = path.display();
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read CA file {shown}: {e}"))?;
    if !meta.is_file() {
        return Err(format!("CA file {shown} is not a file"));
    }
    if meta.len() > MAX_CA_FILE_BYTES {
        return Err(format!(
            "CA file {shown} is {} bytes: too big for a PEM bundle of CA certificates",
            meta.len()
        ));
    }
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read CA file {shown}: {e}"))?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("CA file {shown} is not valid PEM: {e}"))?;
    if certs.is_empty() {
        return Err(format!(
            "CA file {shown} holds no certificate: expected PEM blocks starting with \
             `-----BEGIN CERTIFICATE-----` (the CA that signed the broker's certificate)"
        ));
    }
    let mut roots = RootCertStore::empty();
    for (i, cert) in certs.iter().enumerate() {
        roots.add(cert.clone()).map_err(|e| {
            format!(
                "CA file {shown}: certificate {} of {} cannot be used as a CA: {e}",
                i + 1,
                certs.len()
            )
        })?;
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_names_are_letters_digits_underscores_and_hyphens() {
        let long = "a".repeat(MAX_PLUGIN_NAME_LEN);
        let too_long = "a".repeat(MAX_PLUGIN_NAME_LEN + 1);
        for (name, fault) in [
            ("dht22", None),
            ("air_quality_light", None),
            ("Greenhouse-2", None),
            ("1wire", None),
            (long.as_str(), None),
            ("", Some("1–64 characters")),
            (too_long.as_str(), Some("1–64 characters")),
            ("my plugin", Some("`my plugin` is not one")),
            ("a.b", Some("letters, digits, `_` and `-`")),
            ("../etc", Some("letters, digits")),
            ("ünï", Some("letters, digits")),
            ("a\nb", Some("`a\\nb` is not one")),
            ("common", Some("choose another name")),
            ("testing", Some("the test kit")),
        ] {
            match (check_plugin_name(name), fault) {
                (Ok(()), None) => {}
                (Err(e), Some(want)) => assert!(e.contains(want), "{name:?}: {e}"),
                (got, want) => panic!("{name:?}: got {got:?}, wanted an error with {want:?}"),
            }
        }
    }

    #[test]
    fn server_names_are_dns_names_or_addresses() {
        assert!(server_name("broker.local").is_ok());
        assert!(server_name("127.0.0.1").is_ok());
        assert!(server_name("::1").is_ok());
        let e = server_name("bad name!").unwrap_err();
        assert!(e.contains("neither a DNS name nor an IP address"), "{e}");
    }

    #[test]
    fn a_ca_file_without_certificates_is_refused_with_what_to_put_there() {
        let dir = crate::fsutil::test_dir("tls-unit");
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "just text\n").unwrap();
        let e = load_ca_file(&empty).unwrap_err();
        assert!(e.contains("holds no certificate"), "{e}");
        assert!(e.contains("BEGIN CERTIFICATE"), "{e}");
        let broken = dir.join("broken.pem");
        std::fs::write(
            &broken,
            "-----BEGIN CERTIFICATE-----\nnot base64 at all!\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let e = load_ca_file(&broken).unwrap_err();
        assert!(
            e.contains("not valid PEM") || e.contains("cannot be used"),
            "{e}"
        );
        let e = load_ca_file(&dir.join("missing.pem")).unwrap_err();
        assert!(e.contains("cannot read CA file"), "{e}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
