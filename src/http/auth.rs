//! Who may change things: the control token, the browser session cookie
//! derived from it, and the checks every control endpoint runs.
//!
//! API clients send `Authorization: Bearer <token>`. A browser logs in once
//! at `/login` and gets an `HttpOnly; SameSite=Strict` cookie holding a
//! random session id (never the token); the host keeps only a hash of each
//! live session, in `<state_dir>/sessions.json`, so a session survives a
//! restart and `/logout` ends it for good (the cookie no longer authorizes,
//! even if it was copied). A request authorised by the cookie must also
//! carry an `Origin` naming this host, so another site cannot ride on it.
//! The dashboard plugin's page runs in a sandboxed, opaque-origin frame
//! with `connect-src 'none'`: its script can neither read the cookie nor
//! send a request — it asks the host's shell page by `postMessage`, and
//! the shell only forwards the fixed set of actions it knows (see
//! `shell.js`).
//!
//! Guessing the token is throttled per client (an IPv4 address or an IPv6
//! /64): [`FAILURE_BURST`] wrong tokens (bearer or login form), then one per
//! [`FAILURE_REFILL`]; past that every attempt from that client gets `429`
//! with `Retry-After`, before the token is even compared. Wrong tokens are
//! logged as one line, then at most one summary line a minute.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

use super::server::Client;
use super::{Request, Response};
use crate::config::rules::check_token_text;
use crate::config::{Config, ControlMode};
use crate::ratelimit::RateLimited;

/// The session cookie's name.
pub const COOKIE: &str = "whp_session";
/// The file the generated token lives in, inside the state directory.
pub const TOKEN_FILE: &str = "control-token";
/// The file the live sessions (hashes) live in, inside the state directory.
pub const SESSIONS_FILE: &str = "sessions.json";
/// A session cookie lasts this long (and the host forgets it then).
pub const SESSION_LIFETIME: Duration = Duration::from_secs(365 * 24 * 3600);
/// Live sessions kept at most; logging in past it ends the oldest.
pub const MAX_SESSIONS: usize = 32;
/// Wrong tokens a client may send at once ...
pub const FAILURE_BURST: u32 = 10;
/// ... and then one per this long.
pub const FAILURE_REFILL: Duration = Duration::from_secs(6);
/// Clients whose failures are remembered at most.
const MAX_TRACKED_CLIENTS: usize = 1024;
/// Wrong tokens are logged at most once per this long (a summary).
const FAILURE_LOG_EVERY: Duration = Duration::from_secs(60);

/// The loaded control policy.
#[derive(Clone)]
pub struct Auth {
    token: Option<String>,
    sessions: Arc<Mutex<Sessions>>,
    failures: Arc<Mutex<Failures>>,
    /// Where the token came from, for messages (`host.control_token` or a path).
    pub source: String,
}

impl Auth {
    /// Control endpoints refused (`host.control = "off"`).
    pub fn off() -> Auth {
        Auth {
            token: None,
            sessions: Arc::new(Mutex::new(Sessions::in_memory(""))),
            failures: Arc::default(),
            source: "host.control = \"off\"".into(),
        }
    }

    /// Control endpoints open to holders of `token`; sessions kept in
    /// memory only.
    pub fn with_token(token: &str, source: impl Into<String>) -> Auth {
        Auth {
            token: Some(token.to_string()),
            sessions: Arc::new(Mutex::new(Sessions::in_memory(token))),
            failures: Arc::default(),
            source: source.into(),
        }
    }

    /// The policy `config` asks for; generates and stores a token on first
    /// run when the config names none. Sessions live in
    /// `<state_dir>/sessions.json`.
    pub fn load(config: &Config) -> anyhow::Result<Auth> {
        let (token, source) = match (config.host.control, &config.host.control_token) {
            (ControlMode::Off, _) => return Ok(Auth::off()),
            (ControlMode::Token, Some(token)) => (token.clone(), "host.control_token".to_string()),
            (ControlMode::Token, None) => {
                let path = token_path(&config.state_dir());
                (load_or_create(&path)?, path.display().to_string())
            }
        };
        let mut auth = Auth::with_token(&token, source);
        auth.sessions = Arc::new(Mutex::new(Sessions::load(
            &token,
            config.state_dir().join(SESSIONS_FILE),
        )));
        Ok(auth)
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
            self.throttle(request)
                .map_err(|refusal| Response::rate_limited(&refusal))?;
            let presented = value
                .strip_prefix("Bearer ")
                .or_else(|| value.strip_prefix("bearer "))
                .unwrap_or("");
            return if token_matches(presented.trim(), token) {
                Ok(())
            } else {
                self.failed(request, "bearer token");
                Err(unauthorized("the bearer token is wrong"))
            };
        }
        if self.session_ok(request) {
            return same_origin(request);
        }
        Err(unauthorized("this endpoint needs the control token"))
    }

    /// Whether the request carries the cookie of a live session.
    pub fn session_ok(&self, request: &Request) -> bool {
        cookie(request, COOKIE)
            .is_some_and(|v| lock(&self.sessions, "auth sessions lock").is_live(v))
    }

    /// Whether `presented` is the token, for the login form: a client past
    /// its failure allowance is refused instead, and a wrong token counts
    /// against it.
    pub fn check_login(&self, request: &Request, presented: &str) -> Result<bool, RateLimited> {
        self.throttle(request)?;
        let right = self
            .token
            .as_ref()
            .is_some_and(|t| token_matches(presented, t));
        if !right {
            self.failed(request, "login");
        }
        Ok(right)
    }

    /// Starts a browser session: the `Set-Cookie` value that logs it in.
    pub fn start_session(&self) -> Option<String> {
        self.token.as_ref()?;
        let id = random_hex(32).ok()?;
        lock(&self.sessions, "auth sessions lock").start(&id);
        Some(format!(
            "{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}",
            SESSION_LIFETIME.as_secs()
        ))
    }

    /// Ends the session whose cookie `request` carries, for good.
    pub fn end_session(&self, request: &Request) {
        if let Some(id) = cookie(request, COOKIE) {
            lock(&self.sessions, "auth sessions lock").end(id);
        }
    }

    /// Wrong tokens refused since start (for `/metrics`).
    pub fn failures_total(&self) -> u64 {
        lock(&self.failures, "auth failures lock").total
    }

    /// Refused when the request's client has used up its wrong tokens.
    fn throttle(&self, request: &Request) -> Result<(), RateLimited> {
        let client = request.peer.map(Client::of);
        match lock(&self.failures, "auth failures lock").throttle(client, Instant::now()) {
            None => Ok(()),
            Some(wait) => Err(RateLimited::new(
                format!(
                    "too many wrong control tokens from this address (each may send \
                     {FAILURE_BURST}, then one per {} s; print the right one with \
                     `wasi-python-host token`)",
                    FAILURE_REFILL.as_secs()
                ),
                wait,
            )),
        }
    }

    /// Counts a wrong token against the request's client, and logs it
    /// within the log budget.
    fn failed(&self, request: &Request, what: &str) {
        let client = request.peer.map(Client::of);
        let line = lock(&self.failures, "auth failures lock").failed(client, what, Instant::now());
        if let Some(line) = line {
            log::warn!(target: "auth", "{line}");
        }
    }
}

/// Fails closed: a throttle or session table a panic left half-changed
/// must not go on deciding who gets in.
fn lock<'a, T>(m: &'a Mutex<T>, what: &str) -> std::sync::MutexGuard<'a, T> {
    m.lock().expect(what)
}

/// Per-client allowance of wrong tokens (a token bucket each) and the
/// log budget for reporting them.
#[derive(Default)]
struct Failures {
    clients: HashMap<Option<Client>, Allowance>,
    total: u64,
    /// When the last line was logged.
    logged: Option<Instant>,
    /// Failures since, attempts refused with `429` since, and from whom,
    /// for the next summary.
    unlogged: u64,
    throttled: u64,
    unlogged_clients: HashSet<Option<Client>>,
}

#[derive(Clone, Copy)]
struct Allowance {
    /// Wrong tokens this client may still send now (fractional: refilling).
    left: f64,
    at: Instant,
}

impl Allowance {
    fn now(self, now: Instant) -> f64 {
        let refilled =
            now.saturating_duration_since(self.at).as_secs_f64() / FAILURE_REFILL.as_secs_f64();
        (self.left + refilled).min(f64::from(FAILURE_BURST))
    }
}

impl Failures {
    /// How long `client` must wait before its next attempt, if at all.
    fn wait(&self, client: Option<Client>, now: Instant) -> Option<Duration> {
        let left = self.clients.get(&client)?.now(now);
        (left < 1.0).then(|| FAILURE_REFILL.mul_f64(1.0 - left))
    }

    /// Like [`Failures::wait`], counting a refused attempt for the summary.
    fn throttle(&mut self, client: Option<Client>, now: Instant) -> Option<Duration> {
        let wait = self.wait(client, now)?;
        self.throttled += 1;
        self.unlogged_clients.insert(client);
        Some(wait)
    }

    /// Counts a wrong token; returns the line to log, if one is due.
    fn failed(&mut self, client: Option<Client>, what: &str, now: Instant) -> Option<String> {
        self.total += 1;
        if !self.clients.contains_key(&client) && self.clients.len() >= MAX_TRACKED_CLIENTS {
            // Forget clients that have their whole allowance back; failing
            // that, the one that failed longest ago.
            self.clients
                .retain(|_, a| a.now(now) < f64::from(FAILURE_BURST));
            if self.clients.len() >= MAX_TRACKED_CLIENTS {
                if let Some(oldest) = self
                    .clients
                    .iter()
                    .min_by_key(|(_, a)| a.at)
                    .map(|(c, _)| *c)
                {
                    self.clients.remove(&oldest);
                }
            }
        }
        let allowance = self.clients.entry(client).or_insert(Allowance {
            left: f64::from(FAILURE_BURST),
            at: now,
        });
        *allowance = Allowance {
            left: (allowance.now(now) - 1.0).max(0.0),
            at: now,
        };
        let due = self
            .logged
            .is_none_or(|t| now.saturating_duration_since(t) >= FAILURE_LOG_EVERY);
        if !due {
            self.unlogged += 1;
            self.unlogged_clients.insert(client);
            return None;
        }
        let from = client.map_or_else(|| "an unknown address".to_string(), |c| c.to_string());
        let mut line = format!("refused a wrong control token ({what}) from {from}");
        if self.unlogged + self.throttled > 0 {
            line.push_str(&format!(
                "; since the last report {} more wrong tokens and {} attempts refused with 429, \
                 from {} address(es)",
                self.unlogged,
                self.throttled,
                self.unlogged_clients.len()
            ));
        }
        line.push_str(&format!(
            " ({} in all; each address may try {FAILURE_BURST}, then one per {} s; \
             at most one such line a minute)",
            self.total,
            FAILURE_REFILL.as_secs()
        ));
        self.logged = Some(now);
        self.unlogged = 0;
        self.throttled = 0;
        self.unlogged_clients.clear();
        Some(line)
    }
}

/// The live browser sessions: a hash of each session id (the cookie) and
/// when it started, bound to the token (a new token ends them all) and
/// kept in a file when there is one.
struct Sessions {
    /// Identifies the token the sessions belong to (a salted hash).
    token_tag: String,
    /// SHA-256 of each live session id → its start, Unix seconds.
    live: BTreeMap<String, u64>,
    file: Option<PathBuf>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct SessionsFile {
    token: String,
    sessions: BTreeMap<String, u64>,
}

impl Sessions {
    fn in_memory(token: &str) -> Sessions {
        Sessions {
            token_tag: hex(&Sha256::digest(format!(
                "wasi-python-host sessions v2\0{token}"
            ))),
            live: BTreeMap::new(),
            file: None,
        }
    }

    /// The sessions in `file` that belong to `token` and have not expired.
    fn load(token: &str, file: PathBuf) -> Sessions {
        let mut sessions = Sessions::in_memory(token);
        match std::fs::read(&file) {
            Ok(bytes) => match serde_json::from_slice::<SessionsFile>(&bytes) {
                Ok(saved) if saved.token == sessions.token_tag => sessions.live = saved.sessions,
                // Another token: its sessions end with it.
                Ok(_) => {}
                Err(e) => log::warn!(
                    "ignoring unreadable {} ({e}): browsers log in again",
                    file.display()
                ),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => log::warn!(
                "cannot read {} ({e}): browsers log in again",
                file.display()
            ),
        }
        sessions.file = Some(file);
        sessions.expire();
        sessions
    }

    fn key(id: &str) -> String {
        hex(&Sha256::digest(id.as_bytes()))
    }

    fn is_live(&self, id: &str) -> bool {
        // A lookup by the hash of a secret: its timing says nothing about
        // the secret.
        self.live
            .get(&Self::key(id))
            .is_some_and(|&start| unix_now().saturating_sub(start) < SESSION_LIFETIME.as_secs())
    }

    fn start(&mut self, id: &str) {
        self.expire();
        while self.live.len() >= MAX_SESSIONS {
            let Some(oldest) = self
                .live
                .iter()
                .min_by_key(|(_, &t)| t)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            self.live.remove(&oldest);
        }
        self.live.insert(Self::key(id), unix_now());
        self.save();
    }

    fn end(&mut self, id: &str) {
        if self.live.remove(&Self::key(id)).is_some() {
            self.save();
        }
    }

    fn expire(&mut self) {
        let now = unix_now();
        self.live
            .retain(|_, &mut start| now.saturating_sub(start) < SESSION_LIFETIME.as_secs());
    }

    fn save(&self) {
        let Some(file) = &self.file else { return };
        let saved = SessionsFile {
            token: self.token_tag.clone(),
            sessions: self.live.clone(),
        };
        let text = serde_json::to_string_pretty(&saved).unwrap_or_default() + "\n";
        if let Err(e) = crate::fsutil::write_private(file, text.as_bytes()) {
            log::error!(
                "cannot save the browser sessions to {} ({e}): a logout holds only until the \
                 host restarts; is host.state_dir writable?",
                file.display()
            );
        }
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `bytes` random bytes from the kernel, as hex.
fn random_hex(bytes: usize) -> std::io::Result<String> {
    let mut buf = vec![0u8; bytes];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut buf))?;
    Ok(hex(&buf))
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

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether `presented` is `token`, in time that does not depend on where
/// they differ (only on the length, which a generated token does not hide).
fn token_matches(presented: &str, token: &str) -> bool {
    presented.as_bytes().ct_eq(token.as_bytes()).into()
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
            let token =
                random_hex(32).context("cannot read /dev/urandom to generate the control token")?;
            crate::fsutil::write_private(path, format!("{token}\n").as_bytes()).with_context(
                || {
                    format!(
                        "cannot write the control token to {} (is host.state_dir writable?)",
                        path.display()
                    )
                },
            )?;
            log::info!(
                "generated a control token in {}; print it with `wasi-python-host token`",
                path.display()
            );
            Ok(token)
        }
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
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

    /// The `name=value` part of a `Set-Cookie`.
    fn cookie_of(set_cookie: &str) -> String {
        set_cookie.split(';').next().unwrap().to_string()
    }

    #[test]
    fn session_cookie_needs_same_origin() {
        let auth = Auth::with_token(T, "test");
        let cookie = format!("a=b; {}", cookie_of(&auth.start_session().unwrap()));
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
        // The cookie is a random session id, not the token.
        assert!(!cookie.contains(T));
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
        assert!(auth.start_session().is_none());
    }

    fn from(ip: &str, headers: &[(&str, &str)]) -> Request {
        Request {
            peer: Some(ip.parse().unwrap()),
            ..req(headers)
        }
    }

    #[test]
    fn wrong_tokens_are_throttled_per_client() {
        let auth = Auth::with_token(T, "test");
        let wrong = [("authorization", "Bearer guess-guess-guess")];
        let right = format!("Bearer {T}");
        for i in 0..FAILURE_BURST {
            let r = auth.authorize(&from("10.0.0.9", &wrong)).unwrap_err();
            assert_eq!(r.status, 401, "guess {i}");
        }
        // Past the allowance: 429 with Retry-After, the right token too
        // (else the status would tell a guesser when it hit).
        for headers in [&wrong[..], &[("authorization", right.as_str())]] {
            let r = auth.authorize(&from("10.0.0.9", headers)).unwrap_err();
            assert_eq!(r.status, 429, "{}", r.text());
            let retry = r.headers.iter().find(|(n, _)| *n == "Retry-After").unwrap();
            let secs: u64 = retry.1.parse().unwrap();
            assert!((1..=FAILURE_REFILL.as_secs()).contains(&secs), "{secs}");
            assert!(
                r.text().contains(&format!("try again in {secs} s")),
                "{}",
                r.text()
            );
        }
        // The login form shares the allowance.
        let refusal = auth.check_login(&from("10.0.0.9", &[]), T).unwrap_err();
        assert!(refusal.limit.contains("wrong control tokens"), "{refusal}");
        // Another address is not affected; an IPv6 /64 is one client.
        auth.authorize(&from("10.0.0.10", &[("authorization", &right)]))
            .unwrap();
        for i in 0..FAILURE_BURST {
            let ip = format!("2001:db8::{i:x}");
            assert!(!auth.check_login(&from(&ip, &[]), "guess").unwrap());
        }
        assert!(auth.check_login(&from("2001:db8::ffff", &[]), T).is_err());
        assert!(auth.check_login(&from("2001:db8:0:1::1", &[]), T).unwrap());
        assert_eq!(auth.failures_total(), u64::from(2 * FAILURE_BURST));
    }

    #[test]
    fn wrong_tokens_are_logged_once_a_minute_at_most() {
        let mut f = Failures::default();
        let t0 = Instant::now();
        let a = Some(Client::of("10.0.0.1".parse().unwrap()));
        let b = Some(Client::of("10.0.0.2".parse().unwrap()));
        let first = f.failed(a, "login", t0).expect("the first is logged");
        assert!(
            first.contains("10.0.0.1") && first.contains("login"),
            "{first}"
        );
        for i in 1..2000u64 {
            let client = if i % 2 == 0 { a } else { b };
            assert_eq!(
                f.failed(client, "bearer token", t0 + Duration::from_millis(i)),
                None
            );
        }
        assert!(f.throttle(a, t0 + Duration::from_secs(3)).is_some());
        let summary = f
            .failed(b, "bearer token", t0 + FAILURE_LOG_EVERY)
            .expect("a summary after a minute");
        assert!(
            summary.contains(
                "1999 more wrong tokens and 1 attempts refused with 429, from 2 address(es)"
            ) && summary.contains("2001 in all"),
            "{summary}"
        );
        // A refill: one more guess per FAILURE_REFILL.
        assert!(f.wait(a, t0 + Duration::from_secs(1)).is_some());
        assert_eq!(f.wait(a, t0 + FAILURE_REFILL * 2), None);
    }

    #[test]
    fn logout_ends_the_session_on_the_host_and_sessions_survive_a_restart() {
        let dir = crate::fsutil::test_dir("sessions");
        let file = dir.join(SESSIONS_FILE);
        let open = |token: &str| {
            let mut auth = Auth::with_token(token, "test");
            auth.sessions = Arc::new(Mutex::new(Sessions::load(token, file.clone())));
            auth
        };
        let auth = open(T);
        let kept = cookie_of(&auth.start_session().unwrap());
        let ended = cookie_of(&auth.start_session().unwrap());
        let with = |c: &str| {
            req(&[
                ("cookie", c),
                ("host", "pi:3000"),
                ("origin", "http://pi:3000"),
            ])
        };
        assert!(auth.authorize(&with(&ended)).is_ok());
        auth.end_session(&with(&ended));
        assert_eq!(auth.authorize(&with(&ended)).unwrap_err().status, 401);
        // The file holds hashes only, readable by the owner only.
        use std::os::unix::fs::PermissionsExt as _;
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(!text.contains(kept.split('=').nth(1).unwrap()), "{text}");
        assert_eq!(
            std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
            0o600
        );
        // A restart keeps the live one, not the ended one ...
        let again = open(T);
        assert!(again.authorize(&with(&kept)).is_ok());
        assert_eq!(again.authorize(&with(&ended)).unwrap_err().status, 401);
        // ... and a new token ends every session.
        let other = open("another-token-0123456789");
        assert_eq!(other.authorize(&with(&kept)).unwrap_err().status, 401);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn generated_token_is_stored_privately_and_reused() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = crate::fsutil::test_dir("auth");
        let path = token_path(&dir);
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
    fn tokens_match_only_whole() {
        assert!(token_matches(T, T));
        for other in [
            "",
            "0123456789abcdef012",
            "0123456789abcdef01234",
            "1123456789abcdef0123",
        ] {
            assert!(!token_matches(other, T), "{other:?}");
        }
    }
}
