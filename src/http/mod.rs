//! The HTTP surface: tiny_http workers around a pure router.
//!
//! N worker threads share one `tiny_http::Server` and block in `recv()`.
//! Each request is read into a bounded [`Request`] and answered by
//! [`handle`], a plain function from request to [`Response`] that the tests
//! call without sockets. Nothing here waits on a plugin: the dashboard page
//! comes from the scheduler's cache, readings from its last round, and
//! hardware requests time out on their own.

mod api;
pub mod auth;
mod fallback;
mod metrics;
mod shell;

use std::collections::BTreeMap;
use std::io::Read as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use crate::control::Control;
use crate::hardware::HardwareHandle;
use crate::scheduler::Shared;

/// Largest request body accepted (control requests are tiny JSON).
pub const MAX_BODY_BYTES: usize = 4 * 1024;
/// Longest request target accepted.
pub const MAX_URL_BYTES: usize = 2048;

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
        }
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
    if let Ok(mut counts) = state.requests.lock() {
        *counts.entry((route, response.status)).or_insert(0) += 1;
    }
    response
}

fn route(request: &Request, state: &AppState) -> (&'static str, Response) {
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
        "/logout" => allow("/logout", "POST", &|| shell::logout(request)),
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
                        crate::capabilities::log::truncate(path, 200)
                    ),
                ),
            ),
        },
    }
}

/// The running server and its workers.
pub struct HttpServer {
    server: Arc<tiny_http::Server>,
    workers: Vec<JoinHandle<()>>,
    pub addr: SocketAddr,
}

impl HttpServer {
    /// Binds `listen` and starts `workers` threads.
    pub fn start(
        listen: SocketAddr,
        workers: usize,
        state: Arc<AppState>,
    ) -> anyhow::Result<HttpServer> {
        let server = tiny_http::Server::http(listen)
            .map_err(|e| anyhow::anyhow!("cannot listen on {listen}: {e} (is another program using the port? choose another with --listen)"))?;
        let addr = server
            .server_addr()
            .to_ip()
            .ok_or_else(|| anyhow::anyhow!("listening on a non-IP address"))?;
        let server = Arc::new(server);
        let workers = (0..workers)
            .map(|i| {
                let server = server.clone();
                let state = state.clone();
                std::thread::Builder::new()
                    .name(format!("http-{i}"))
                    .spawn(move || worker(&server, &state))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(HttpServer {
            server,
            workers,
            addr,
        })
    }

    /// Stops accepting and joins the workers.
    pub fn stop(mut self) {
        for _ in &self.workers {
            self.server.unblock();
        }
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

fn worker(server: &tiny_http::Server, state: &AppState) {
    while let Ok(mut raw) = server.recv() {
        let response = match read_request(&mut raw) {
            Ok(request) => handle(&request, state),
            Err(response) => response,
        };
        let head_only = *raw.method() == tiny_http::Method::Head;
        let _ = raw.respond(to_tiny(response, head_only));
    }
}

/// Reads a tiny_http request into our bounded form.
fn read_request(raw: &mut tiny_http::Request) -> Result<Request, Response> {
    let url = raw.url();
    if url.len() > MAX_URL_BYTES {
        return Err(Response::error(
            414,
            format!("request target longer than {MAX_URL_BYTES} bytes"),
        ));
    }
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    let (path, query) = (path.to_string(), query.to_string());
    if raw.body_length().is_some_and(|n| n > MAX_BODY_BYTES) {
        return Err(Response::error(
            413,
            format!("request body larger than {MAX_BODY_BYTES} bytes"),
        ));
    }
    let content_type = raw
        .headers()
        .iter()
        .find(|h| h.field.equiv("Content-Type"))
        .map(|h| h.value.as_str().to_string());
    let headers = raw
        .headers()
        .iter()
        .map(|h| {
            (
                h.field.as_str().as_str().to_ascii_lowercase(),
                h.value.as_str().to_string(),
            )
        })
        .collect();
    let mut body = Vec::new();
    // One byte more than allowed tells a chunked body that is too large.
    if raw
        .as_reader()
        .take(MAX_BODY_BYTES as u64 + 1)
        .read_to_end(&mut body)
        .is_err()
    {
        return Err(Response::error(400, "could not read the request body"));
    }
    if body.len() > MAX_BODY_BYTES {
        return Err(Response::error(
            413,
            format!("request body larger than {MAX_BODY_BYTES} bytes"),
        ));
    }
    Ok(Request {
        method: raw.method().as_str().to_string(),
        path,
        query,
        content_type,
        headers,
        body,
    })
}

fn to_tiny(response: Response, head_only: bool) -> tiny_http::Response<std::io::Cursor<Vec<u8>>> {
    let body = if head_only { Vec::new() } else { response.body };
    let mut out = tiny_http::Response::from_data(body).with_status_code(response.status);
    let mut add = |name: &str, value: &str| {
        if let Ok(h) = tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes()) {
            out.add_header(h);
        }
    };
    add("Content-Type", response.content_type);
    add("Cache-Control", "no-store");
    add("X-Content-Type-Options", "nosniff");
    for (name, value) in &response.headers {
        add(name, value);
    }
    out
}
