//! Which names the server answers to: the `Host` header, checked against
//! DNS rebinding.
//!
//! A page on the internet can make its own name resolve to the Pi's LAN
//! address; the browser then sends the page's requests to the Pi with
//! `Host: attacker.example`, and treats the answers (`/api`, the
//! dashboard) as same-origin, readable by the page. Such a name is always
//! a public DNS name, so the server answers only names a public resolver
//! cannot hand out:
//!
//! * IP addresses (`192.168.1.20:3000`, `[fe80::1]:3000`) and no `Host`
//!   at all (an HTTP/1.0 client; browsers always send one);
//! * `localhost` and `*.localhost`;
//! * this machine's host name, and any single-label name (`raspberrypi`:
//!   only the LAN's own resolver can answer those);
//! * names under suffixes that are not in the public DNS: `.local` (mDNS,
//!   `raspberrypi.local`), `.lan`, `.home`, `.home.arpa`, `.internal`,
//!   `.localdomain`;
//! * what `host.http_allowed_hosts` lists: exact names, `*.example.com`
//!   for every name under a domain, or `"*"` for any name (behind a reverse
//!   proxy that checks names itself).
//!
//! Anything else gets `421 Misdirected Request`, naming the key to change.

use std::net::IpAddr;

use super::{Request, Response};

/// Suffixes no public DNS name can have.
const PRIVATE_SUFFIXES: &[&str] = &[
    "localhost",
    "local",
    "lan",
    "home",
    "home.arpa",
    "internal",
    "localdomain",
];

/// The names this server answers to, besides the built-in rules.
#[derive(Debug, Clone, Default)]
pub struct AllowedHosts {
    /// This machine's host name, lowercase.
    machine: Option<String>,
    /// `host.http_allowed_hosts`, lowercase.
    configured: Vec<String>,
}

impl AllowedHosts {
    /// The built-in rules, this machine's host name and `configured`.
    pub fn new(configured: &[String]) -> AllowedHosts {
        AllowedHosts {
            machine: machine_name(),
            configured: configured.iter().map(|n| n.to_ascii_lowercase()).collect(),
        }
    }

    /// Like [`AllowedHosts::new`] with a given machine name (for tests).
    pub fn with_machine(machine: &str, configured: &[String]) -> AllowedHosts {
        AllowedHosts {
            machine: Some(machine.to_ascii_lowercase()),
            configured: configured.iter().map(|n| n.to_ascii_lowercase()).collect(),
        }
    }

    /// Whether `request`'s `Host` is one of ours; the `421` otherwise.
    pub fn check(&self, request: &Request) -> Result<(), Response> {
        let Some(host) = request.header("host") else {
            return Ok(());
        };
        if self.allows(host) {
            return Ok(());
        }
        let shown = crate::text::truncate(host, 100);
        Err(Response::error(
            421,
            format!(
                "this host does not answer to the name `{shown}` (a protection against DNS \
                 rebinding): use its IP address, `{}.local` or its host name, or add the name \
                 to host.http_allowed_hosts in the config",
                self.machine.as_deref().unwrap_or("raspberrypi")
            ),
        ))
    }

    /// Whether a `Host` header value (name or address, with or without a
    /// port) is allowed.
    pub fn allows(&self, host: &str) -> bool {
        let Some(name) = name_of(host) else {
            return false;
        };
        if name.parse::<IpAddr>().is_ok() {
            return true;
        }
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        if name.is_empty() {
            return false;
        }
        if !name.contains('.') || self.machine.as_deref() == Some(name.as_str()) {
            return true;
        }
        if PRIVATE_SUFFIXES
            .iter()
            .any(|s| name == *s || name.ends_with(&format!(".{s}")))
        {
            return true;
        }
        self.configured.iter().any(|pattern| {
            pattern == "*"
                || *pattern == name
                || pattern
                    .strip_prefix('*')
                    .is_some_and(|dot_suffix| name.ends_with(dot_suffix))
        })
    }
}

/// The name or address in a `Host` value: without the port, an IPv6
/// address without its brackets. `None` when it is malformed.
fn name_of(host: &str) -> Option<&str> {
    let host = host.trim();
    if let Some(rest) = host.strip_prefix('[') {
        let (addr, after) = rest.split_once(']')?;
        return (after.is_empty() || port_ok(after.strip_prefix(':')?)).then_some(addr);
    }
    match host.rsplit_once(':') {
        Some((name, port)) => port_ok(port).then_some(name),
        None => Some(host),
    }
}

fn port_ok(port: &str) -> bool {
    !port.is_empty() && port.len() <= 5 && port.bytes().all(|b| b.is_ascii_digit())
}

/// This machine's host name (what `hostname` prints), lowercase.
fn machine_name() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|n| n.trim().to_ascii_lowercase())
        .filter(|n| !n.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_names_are_refused_and_local_ones_answered() {
        let hosts = AllowedHosts::with_machine(
            "Kitchen-Pi",
            &["pi.example.com".into(), "*.home.example".into()],
        );
        for (host, allowed) in [
            ("192.168.1.20:3000", true),
            ("192.168.1.20", true),
            ("[fe80::1]:3000", true),
            ("[::1]", true),
            ("localhost:3000", true),
            ("app.localhost", true),
            ("kitchen-pi:3000", true),
            ("KITCHEN-PI.local:3000", true),
            ("raspberrypi", true),
            ("raspberrypi.local.", true),
            ("pi.lan", true),
            ("pi.home.arpa:80", true),
            ("pi.internal", true),
            ("pi.example.com", true),
            ("PI.EXAMPLE.COM:3000", true),
            ("a.b.home.example", true),
            // DNS rebinding: a public name that resolves to the Pi.
            ("attacker.example:3000", false),
            ("rebind.192.168.1.20.nip.io", false),
            ("example.com", false),
            ("evil-pi.example.com", false),
            ("home.example", false),
            ("local.attacker.example", false),
            // Malformed values are not names of ours either.
            ("pi.local:port", false),
            ("[fe80::1", false),
            ("", false),
            (":3000", false),
        ] {
            assert_eq!(hosts.allows(host), allowed, "{host:?}");
        }
        let anything = AllowedHosts::with_machine("pi", &["*".into()]);
        assert!(anything.allows("attacker.example"));
    }

    #[test]
    fn a_refusal_is_421_and_names_the_key_to_change() {
        let hosts = AllowedHosts::with_machine("pi", &[]);
        let request = |host: Option<&str>| Request {
            method: "GET".into(),
            path: "/api".into(),
            headers: host
                .map(|h| vec![("host".to_string(), h.to_string())])
                .unwrap_or_default(),
            ..Request::default()
        };
        assert!(hosts.check(&request(None)).is_ok(), "HTTP/1.0 without Host");
        assert!(hosts.check(&request(Some("pi.local:3000"))).is_ok());
        let refused = hosts
            .check(&request(Some("attacker.example:3000")))
            .unwrap_err();
        assert_eq!(refused.status, 421);
        let text = refused.text();
        assert!(
            text.contains("attacker.example:3000") && text.contains("host.http_allowed_hosts"),
            "{text}"
        );
    }
}
