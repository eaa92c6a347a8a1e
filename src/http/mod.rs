//! The HTTP surface: our own small HTTP/1.1 server around a pure router.
//!
//! [`wire`] turns bytes into a bounded [`Request`] and a [`Response`] into
//! bytes (all the limits are there); [`server`] owns the connections
//! (acceptor, caps, deadlines, eviction, reader threads); [`handle`] is a
//! plain function from request to response that the tests call without
//! sockets. Nothing here waits on a plugin: the dashboard page
//! comes from the scheduler's cache, readings from its last round, and
//! hardware requests time out on their own.

mod api;
pub mod auth;
mod fallback;
pub mod hosts;
mod metrics;
pub mod server;
mod shell;
pub mod wire;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::control::Control;
use crate::hardware::HardwareHandle;
use crate::scheduler::Shared;

pub use api::ApiCache;
pub use server::{Limits, Server as HttpServer};
pub use wire::{MAX_BODY_BYTES, MAX_URL_BYTES};

/// Everything a request handler can see.
pub struct AppState {
    pub shared: Arc<Shared>,
    pub hardware: HardwareHandle,
    /// Buzzer presses, rate-limited across HTTP and MQTT.
    pub control: Arc<Control>,
    /// The MQTT thread's broker and counters (when `[mqtt]` is enabled).
    pub mqtt: Option<Arc<crate::mqtt::Service>>,
    /// `sim` or `pi`.
    pub hardware_name: String,
    pub started: Instant,
    /// Requests answered, by (route, status).
    pub requests: Mutex<BTreeMap<(&'static str, u16), u64>>,
    /// Who may use control endpoints.
    pub auth: auth::Auth,
    /// The names (`Host`) the server answers to.
    pub hosts: hosts::AllowedHosts,
    /// `/api`'s body, rebuilt only when something it shows changed.
    pub api_cache: api::ApiCache,
}

impl AppState {
    pub fn new(
        shared: Arc<Shared>,
        hardware: HardwareHandle,
        control: Arc<Control>,
        hardware_name: String,
        auth: auth::Auth,
    ) -> AppState {
        AppState {
            shared,
            hardware,
            control,
            mqtt: None,
            hardware_name,
            started: Instant::now(),
            requests: Mutex::new(BTreeMap::new()),
            auth,
            hosts: hosts::AllowedHosts::new(&[]),
            api_cache: api::ApiCache::default(),
        }
    }

    /// Counts an answered request (`whp_http_requests_total`).
    pub fn count(&self, route: &'static str, status: u16) {
        *self
            .requests
            .lock()
            .expect("http request counters lock")
            .entry((route, status))
            .or_insert(0) += 1;
    }
}

/// A request as the router sees it.
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub method: String,
    /// Path without the query string.
    pub path: String,
    pub query: String,
    pub content_type: Option<String>,
    /// Header fields as received, names lowercased, in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The client's address (the server fills it in; `None` in tests that
    /// build requests by hand).
    pub peer: Option<std::net::IpAddr>,
}

impl Request {
    /// The first header with this (lowercase) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A response as the router builds it.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
    pub headers: Vec<(&'static str, String)>,
}

impl Response {
    pub fn new(status: u16, content_type: &'static str, body: impl Into<Vec<u8>>) -> Response {
        Response {
            status,
            content_type,
            body: body.into(),
            headers: Vec::new(),
        }
    }

    pub fn json(status: u16, value: &serde_json::Value) -> Response {
        Response::new(
            status,
            "application/json",
            serde_json::to_vec(value).unwrap_or_default(),
        )
    }

    /// A JSON error body: `{"error": "..."}`.
    pub fn error(status: u16, message: impl Into<String>) -> Response {
        Response::json(status, &serde_json::json!({ "error": message.into() }))
    }

    /// `429` for a request over a rate limit: the refusal's words as the
    /// JSON error, its wait in `Retry-After`.
    pub fn rate_limited(refusal: &crate::ratelimit::RateLimited) -> Response {
        Response::error(429, refusal.to_string())
            .with_header("Retry-After", refusal.retry_after_secs().to_string())
    }

    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Response {
        self.headers.push((name, value.into()));
        self
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Routes a request. Never panics on any input.
pub fn handle(request: &Request, state: &AppState) -> Response {
    let (route, response) = route(request, state);
    state.count(route, response.status);
    response
}

fn route(request: &Request, state: &AppState) -> (&'static str, Response) {
    if let Err(refused) = state.hosts.check(request) {
        return ("host", refused);
    }
    let method = request.method.as_str();
    let allow = |route: &'static str,
                 allowed: &'static str,
                 f: &dyn Fn() -> Response|
     -> (&'static str, Response) {
        if allowed.split(", ").any(|m| m == method) || (method == "HEAD" && allowed.contains("GET"))
        {
            (route, f())
        } else {
            (
                route,
                Response::error(
                    405,
                    format!("{method} is not allowed on {}; use {allowed}", request.path),
                )
                .with_header("Allow", allowed),
            )
        }
    };
    let control = |f: &dyn Fn() -> Response| match state.auth.authorize(request) {
        Ok(()) => f(),
        Err(refused) => refused,
    };
    match request.path.as_str() {
        "/" | "/index.html" => allow("/", "GET", &shell::shell),
        "/view" => allow("/view", "GET", &|| shell::view(state)),
        "/login" => allow("/login", "GET, POST", &|| {
            if method == "POST" {
                shell::login(request, state)
            } else {
                shell::login_page(request, state)
            }
        }),
        "/logout" => allow("/logout", "POST", &|| shell::logout(request, state)),
        "/favicon.ico" => allow("/favicon.ico", "GET", &|| {
            Response::new(204, "image/x-icon", "")
        }),
        "/api" => allow("/api", "GET", &|| api::readings(state)),
        "/api/history" => allow("/api/history", "GET", &|| api::history(request, state)),
        "/api/session" => allow("/api/session", "GET", &|| shell::session(request, state)),
        "/api/buzzer" => allow("/api/buzzer", "POST", &|| {
            control(&|| api::buzzer(request, state))
        }),
        "/api/sim" => allow("/api/sim", "POST", &|| {
            control(&|| api::sim(request, state))
        }),
        "/api/plugins" => allow("/api/plugins", "GET", &|| api::plugins(state)),
        "/healthz" => allow("/healthz", "GET", &|| api::healthz(state)),
        "/metrics" => allow("/metrics", "GET", &|| metrics::render(state)),
        path => match path.strip_prefix("/assets/").and_then(shell::asset) {
            Some(asset) => allow("/assets", "GET", &|| asset.clone()),
            None => (
                "other",
                Response::error(
                    404,
                    format!(
                        "no such page: {}; try /, /api, /api/history, /api/plugins, /healthz \
                         or /metrics",
                        crate::text::truncate(path, 200)
                    ),
                ),
            ),
        },
    }
}
