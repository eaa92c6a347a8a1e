//! The host's own pages: the shell around the dashboard plugin's page, the
//! login page, and the static assets they use.
//!
//! `GET /` is a small host-owned page (strict CSP, no inline script) that
//! frames `GET /view` — the dashboard plugin's HTML, or the fallback page —
//! in `<iframe sandbox="allow-scripts">`. `/view` itself is served with a CSP
//! that sandboxes it (opaque origin even when opened directly) and forbids
//! every network request (`connect-src 'none'`, `form-action 'none'`), so a
//! plugin's script cannot reach the API, the session cookie or the shell's
//! DOM; it gets live data and asks for actions by `postMessage` (see
//! `assets/shell.js`).

use super::auth;
use super::wire::form_field;
use super::{fallback, AppState, Request, Response};

/// CSP of the host's own pages: only the host's files, framing only `/view`.
pub const SHELL_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     font-src 'self'; img-src 'self'; connect-src 'self'; frame-src 'self'; \
     form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// CSP of the plugin's page: a sandbox with scripts but no origin, no
/// requests, no forms, no navigation of the shell, no plugins; the host's
/// font is the only thing it may load.
pub const VIEW_CSP: &str = "sandbox allow-scripts; default-src 'none'; \
     script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:; font-src 'self'; \
     connect-src 'none'; form-action 'none'; base-uri 'none'; frame-ancestors 'self'";

const SHELL_JS: &str = include_str!("assets/shell.js");
const SHELL_CSS: &str = include_str!("assets/shell.css");
/// The IBM 3270 terminal font (BSD-3-Clause, see assets/LICENSE-3270.txt),
/// Latin subset as WOFF2: the Pi's LAN may have no internet.
const FONT: &[u8] = include_bytes!("assets/terminal.woff2");

const HTML: &str = "text/html; charset=utf-8";

fn html(status: u16, body: String, csp: &str) -> Response {
    // `same-origin`, not `no-referrer`: with no referrer a browser sends
    // `Origin: null` on form posts, and /login checks the origin.
    Response::new(status, HTML, body)
        .with_header("Content-Security-Policy", csp)
        .with_header("Referrer-Policy", "same-origin")
}

/// `GET /`.
pub fn shell() -> Response {
    html(
        200,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <meta name=\"color-scheme\" content=\"dark\"><title>wasi-python-host</title>\
         <link rel=\"stylesheet\" href=\"/assets/shell.css\"></head><body>\
         <iframe id=\"view\" src=\"/view\" sandbox=\"allow-scripts\" title=\"dashboard\"></iframe>\
         <div id=\"bar\" hidden>controls locked &middot; <a href=\"/login\">log in</a></div>\
         <script src=\"/assets/shell.js\"></script></body></html>"
            .to_string(),
        SHELL_CSP,
    )
    .with_header("X-Frame-Options", "DENY")
}

/// `GET /view`: the plugin's page, or the host's fallback page.
pub fn view(state: &AppState) -> Response {
    let page = state.shared.page.read().expect("page cache lock").clone();
    let body = match page {
        Some(page) => page.as_str().to_string(),
        None => fallback::page(state),
    };
    html(200, body, VIEW_CSP).with_header("X-Frame-Options", "SAMEORIGIN")
}

/// `GET /assets/<name>`.
pub fn asset(name: &str) -> Option<Response> {
    let response = match name {
        "shell.js" => Response::new(200, "text/javascript; charset=utf-8", SHELL_JS),
        "shell.css" => Response::new(200, "text/css; charset=utf-8", SHELL_CSS),
        // Fonts load in CORS mode; the sandboxed page's origin is opaque.
        "terminal.woff2" => {
            Response::new(200, "font/woff2", FONT).with_header("Access-Control-Allow-Origin", "*")
        }
        _ => return None,
    };
    Some(response.with_header("Cache-Control", "public, max-age=86400"))
}

/// `GET /api/session`: whether control endpoints exist and whether this
/// browser may use them.
pub fn session(request: &Request, state: &AppState) -> Response {
    Response::json(
        200,
        &serde_json::json!({
            "control": state.auth.enabled(),
            "authorized": state.auth.session_ok(request),
        }),
    )
}

/// `GET /login`.
pub fn login_page(request: &Request, state: &AppState) -> Response {
    let note = if !state.auth.enabled() {
        "Control endpoints are disabled on this host (host.control = \"off\")."
    } else if state.auth.session_ok(request) {
        "This browser is logged in."
    } else {
        ""
    };
    login_html(200, note, state)
}

fn login_html(status: u16, note: &str, state: &AppState) -> Response {
    let form = if state.auth.enabled() {
        "<form method=\"post\" action=\"/login\"><label for=\"token\">control token</label>\
         <input id=\"token\" name=\"token\" type=\"password\" autocomplete=\"current-password\" \
         required autofocus><button type=\"submit\">log in</button></form>\
         <form method=\"post\" action=\"/logout\"><button type=\"submit\">log out</button></form>\
         <p class=\"dim\">Print the token on the host with <code>wasi-python-host token</code>.</p>"
    } else {
        ""
    };
    html(
        status,
        format!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
             <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
             <title>log in · wasi-python-host</title>\
             <link rel=\"stylesheet\" href=\"/assets/shell.css\"></head>\
             <body class=\"login\"><main><h1>wasi-python-host</h1>\
             <p id=\"note\" role=\"status\">{}</p>{form}<p><a href=\"/\">dashboard</a></p>\
             </main></body></html>",
            fallback::escape(note)
        ),
        SHELL_CSP,
    )
    .with_header("X-Frame-Options", "DENY")
}

/// `POST /login` (an HTML form): sets the session cookie.
pub fn login(request: &Request, state: &AppState) -> Response {
    if !state.auth.enabled() {
        return login_html(
            403,
            "Control endpoints are disabled on this host (host.control = \"off\").",
            state,
        );
    }
    if let Err(refused) = auth::same_origin(request) {
        return refused;
    }
    let token = form_field(&request.body, "token").unwrap_or_default();
    match state.auth.check_login(request, token.trim()) {
        Ok(true) => {}
        Ok(false) => return login_html(401, "Wrong token.", state),
        Err(refusal) => {
            return login_html(429, &sentence(&refusal.to_string()), state)
                .with_header("Retry-After", refusal.retry_after_secs().to_string());
        }
    }
    let Some(cookie) = state.auth.start_session() else {
        return login_html(
            500,
            "Could not start a session (no random numbers from the kernel?); see the host's log.",
            state,
        );
    };
    Response::new(303, HTML, "logged in")
        .with_header("Location", "/")
        .with_header("Set-Cookie", cookie)
}

/// `text` as a sentence on a page: capitalised, with a full stop.
fn sentence(text: &str) -> String {
    let mut chars = text.chars();
    chars.next().map_or_else(String::new, |first| {
        format!("{}{}.", first.to_uppercase(), chars.as_str())
    })
}

/// `POST /logout`: ends the session on the host (its cookie no longer
/// authorizes anything, wherever it was copied) and clears the cookie.
pub fn logout(request: &Request, state: &AppState) -> Response {
    if let Err(refused) = auth::same_origin(request) {
        return refused;
    }
    state.auth.end_session(request);
    Response::new(303, HTML, "logged out")
        .with_header("Location", "/login")
        .with_header("Set-Cookie", auth::logout_cookie())
}
