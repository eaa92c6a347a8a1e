//! Who may change things: the control token, the browser session cookie
//! derived from it, and the checks every control endpoint runs.
//!
//! API clients send `Authorization: Bearer <token>`. A browser logs in once
//! at `/login` and gets an `HttpOnly; SameSite=Strict` cookie holding a hash
//! of the token (never the token itself); a request authorised by that
//! cookie must also carry an `Origin` naming this host, so another site
//! cannot ride on it. The dashboard plugin's page runs in a sandboxed,
//! opaque-origin frame with `connect-src 'none'`: its script can neither
//! read the cookie nor send a request — it asks the host's shell page by
//! `postMessage`, and the shell only forwards the fixed set of actions it
//! knows (see `shell.js`).

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use sha2::{Digest as _, Sha256};

use super::{Request, Response};
use crate::config::{Config, ControlMode};

/// The session cookie's name.
pub const COOKIE: &str = "whp_session";
/// The file the generated token lives in, inside the state directory.
pub const TOKEN_FILE: &str = "control-token";

/// The loaded control policy.
#[derive(Clone)]
pub struct Auth {
    token: Option<String>,
    session: Option<String>,
    /// Where the token came from, for messages (`host.control_token` or a path).
    pub source: String,
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

impl Auth {
    /// Control endpoints refused (`host.control = "off"`).
    pub fn off() -> Auth {
        Auth {
            token: None,
            session: None,
            source: "host.control = \"off\"".into(),
        }
    }

    /// Control endpoints open to holders of `token`.
    pub fn with_token(token: &str, source: impl Into<String>) -> Auth {
        Auth {
            token: Some(token.to_string()),
            session: Some(session_value(token)),
            source: source.into(),
        }
    }

    /// The policy `config` asks for; generates and stores a token on first
    /// run when the config names none.
    pub fn load(config: &Config) -> anyhow::Result<Auth> {
        match (config.host.control, &config.host.control_token) {
            (ControlMode::Off, _) => Ok(Auth::off()),
            (ControlMode::Token, Some(token)) => Ok(Auth::with_token(token, "host.control_token")),
            (ControlMode::Token, None) => {
                let path = token_path(&config.state_dir());
                let token = load_or_create(&path)?;
                Ok(Auth::with_token(&token, path.display().to_string()))
            }
        }
    }

    /// The token, when control endpoints are on.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    pub fn enabled(&self) -> bool {
        self.token.is_some()
    }

    /// Whether `request` may use a control endpoint; the refusal otherwise.
    pub fn authorize(&self, request: &Request) -> Result<(), Response> {
        let Some(token) = &self.token else {
            return Err(Response::error(
                403,
                "control endpoints are disabled on this host (host.control = \"off\" in the config)",
            ));
        };
        if let Some(value) = request.header("authorization") {
            let presented = value
                .strip_prefix("Bearer ")
                .or_else(|| value.strip_prefix("bearer "))
                .unwrap_or("");
            return if constant_time_eq(presented.trim().as_bytes(), token.as_bytes()) {
                Ok(())
            } else {
                Err(unauthorized("the bearer token is wrong"))
            };
        }
        if self.session_ok(request) {
            return same_origin(request);
        }
        Err(unauthorized("this endpoint needs the control token"))
    }

    /// Whether the request carries a valid session cookie.
    pub fn session_ok(&self, request: &Request) -> bool {
        let Some(session) = &self.session else {
            return false;
        };
        cookie(request, COOKIE).is_some_and(|v| constant_time_eq(v.as_bytes(), session.as_bytes()))
    }

    /// Whether `presented` is the token.
    pub fn token_matches(&self, presented: &str) -> bool {
        self.token
            .as_ref()
            .is_some_and(|t| constant_time_eq(presented.as_bytes(), t.as_bytes()))
    }

    /// The `Set-Cookie` value that logs a browser in.
    pub fn login_cookie(&self) -> Option<String> {
        self.session
            .as_ref()
            .map(|s| format!("{COOKIE}={s}; Path=/; HttpOnly; SameSite=Strict; Max-Age=31536000"))
    }
}

/// The `Set-Cookie` value that logs a browser out.
pub fn logout_cookie() -> String {
    format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0")
}

/// `<state_dir>/control-token`.
pub fn token_path(state_dir: &Path) -> PathBuf {
    state_dir.join(TOKEN_FILE)
}

fn unauthorized(why: &str) -> Response {
    Response::error(
        401,
        format!(
            "{why}: send `Authorization: Bearer <token>` (print the token with \
             `wasi-python-host token`), or log in at /login in a browser"
        ),
    )
    .with_header("WWW-Authenticate", "Bearer realm=\"wasi-python-host\"")
}

/// A cookie-authorised request must come from this host's own pages.
pub fn same_origin(request: &Request) -> Result<(), Response> {
    let host = request.header("host").unwrap_or("");
    let ok = request.header("origin").is_some_and(|origin| {
        !host.is_empty()
            && (origin.strip_prefix("http://") == Some(host)
                || origin.strip_prefix("https://") == Some(host))
    });
    if ok {
        Ok(())
    } else {
        Err(Response::error(
            403,
            "cross-origin request refused: the session cookie is only accepted from this \
             host's own pages (an Origin header naming this host); API clients send \
             `Authorization: Bearer <token>` instead",
        ))
    }
}

/// The value of cookie `name` in the request's `Cookie` header.
pub fn cookie<'a>(request: &'a Request, name: &str) -> Option<&'a str> {
    request
        .headers
        .iter()
        .filter(|(n, _)| n == "cookie")
        .flat_map(|(_, v)| v.split(';'))
        .find_map(|pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k == name).then_some(v)
        })
}

/// What the session cookie holds: a hash of the token, so the cookie never
/// reveals it and a new token logs every browser out.
fn session_value(token: &str) -> String {
    let digest = Sha256::digest(format!("wasi-python-host session v1\0{token}"));
    hex(&digest)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Reads the generated token, creating it (0600, written atomically) on
/// first run.
pub fn load_or_create(path: &Path) -> anyhow::Result<String> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let token = text.trim().to_string();
            check_token_text(&token).map_err(|why| {
                anyhow::anyhow!(
                    "the control token in {} is not usable: it {why}; delete the file to have \
                     a new one generated",
                    path.display()
                )
            })?;
            Ok(token)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut bytes = [0u8; 32];
            std::fs::File::open("/dev/urandom")
                .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
                .context("cannot read /dev/urandom to generate the control token")?;
            let token = hex(&bytes);
            write_private(path, &token).with_context(|| {
                format!(
                    "cannot write the control token to {} (is host.state_dir writable?)",
                    path.display()
                )
            })?;
            log::info!(
                "generated a control token in {}; print it with `wasi-python-host token`",
                path.display()
            );
            Ok(token)
        }
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(text.as_bytes())?;
    file.write_all(b"\n")?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// Decodes `application/x-www-form-urlencoded` field `name`.
pub fn form_field(body: &[u8], name: &str) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    text.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(k)? == name).then(|| percent_decode(v))?
    })
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = s.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(headers: &[(&str, &str)]) -> Request {
        Request {
            method: "POST".into(),
            path: "/api/buzzer".into(),
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Request::default()
        }
    }

    const T: &str = "0123456789abcdef0123";

    #[test]
    fn bearer_token_must_match() {
        let auth = Auth::with_token(T, "test");
        assert!(auth
            .authorize(&req(&[("authorization", &format!("Bearer {T}"))]))
            .is_ok());
        let wrong = auth
            .authorize(&req(&[("authorization", "Bearer nope")]))
            .unwrap_err();
        assert_eq!(wrong.status, 401);
        assert!(wrong.text().contains("wrong"), "{}", wrong.text());
        let none = auth.authorize(&req(&[])).unwrap_err();
        assert_eq!(none.status, 401);
        assert!(none.text().contains("/login"), "{}", none.text());
    }

    #[test]
    fn session_cookie_needs_same_origin() {
        let auth = Auth::with_token(T, "test");
        let cookie = format!("a=b; {COOKIE}={}", session_value(T));
        let ok = req(&[
            ("cookie", &cookie),
            ("host", "pi:3000"),
            ("origin", "http://pi:3000"),
        ]);
        assert!(auth.authorize(&ok).is_ok());
        for origin in ["null", "http://evil.example", "http://pi:3000.evil"] {
            let r = req(&[("cookie", &cookie), ("host", "pi:3000"), ("origin", origin)]);
            assert_eq!(auth.authorize(&r).unwrap_err().status, 403, "{origin}");
        }
        let no_origin = req(&[("cookie", &cookie), ("host", "pi:3000")]);
        assert_eq!(auth.authorize(&no_origin).unwrap_err().status, 403);
        // The cookie is a hash of the token, not the token.
        let raw = req(&[
            ("cookie", &format!("{COOKIE}={T}")),
            ("host", "pi:3000"),
            ("origin", "http://pi:3000"),
        ]);
        assert_eq!(auth.authorize(&raw).unwrap_err().status, 401);
    }

    #[test]
    fn off_refuses_everything() {
        let auth = Auth::off();
        let r = auth
            .authorize(&req(&[("authorization", &format!("Bearer {T}"))]))
            .unwrap_err();
        assert_eq!(r.status, 403);
        assert!(r.text().contains("host.control"), "{}", r.text());
        assert!(auth.login_cookie().is_none());
    }

    #[test]
    fn generated_token_is_stored_privately_and_reused() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = std::env::temp_dir().join(format!("whp-auth-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = token_path(&dir);
        let _ = std::fs::remove_file(&path);
        let first = load_or_create(&path).unwrap();
        assert_eq!(first.len(), 64);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(load_or_create(&path).unwrap(), first);
        std::fs::write(&path, "short").unwrap();
        let e = load_or_create(&path).unwrap_err().to_string();
        assert!(e.contains("delete the file"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn form_fields_are_decoded() {
        assert_eq!(
            form_field(b"x=1&token=a%2Bb+c", "token").as_deref(),
            Some("a+b c")
        );
        assert_eq!(form_field(b"token=%zz", "token"), None);
        assert_eq!(form_field(b"other=1", "token"), None);
    }
}
