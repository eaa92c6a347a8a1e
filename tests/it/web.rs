//! The host's own web surface over a real socket: control token and login,
//! the CSPs that keep the plugin's page away from them, assets, history.

use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::{raw_http, raw_http_from, TestHost, ATTACKER, BIN, TEST_TOKEN};

const BEEP: &str = r#"{"pattern":"beep"}"#;

/// POST /api/buzzer with these extra header lines.
fn beep(host: &TestHost, headers: &str) -> crate::support::Resp {
    raw_http(
        host.addr,
        format!(
            "POST /api/buzzer HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n{headers}\r\n{BEEP}",
            host.addr,
            BEEP.len()
        )
        .as_bytes(),
    )
}

/// [`beep`] from another address.
fn beep_from(source: &str, host: &TestHost, headers: &str) -> crate::support::Resp {
    raw_http_from(
        source,
        host.addr,
        format!(
            "POST /api/buzzer HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n{headers}\r\n{BEEP}",
            host.addr,
            BEEP.len()
        )
        .as_bytes(),
    )
}

fn login(host: &TestHost, token: &str, origin: Option<&str>) -> crate::support::Resp {
    login_from("127.0.0.1", host, token, origin)
}

fn login_from(
    source: &str,
    host: &TestHost,
    token: &str,
    origin: Option<&str>,
) -> crate::support::Resp {
    let body = format!("token={token}");
    let origin = origin
        .map(|o| format!("Origin: {o}\r\n"))
        .unwrap_or_default();
    raw_http_from(
        source,
        host.addr,
        format!(
            "POST /login HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n{origin}\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
            host.addr,
            body.len()
        )
        .as_bytes(),
    )
}

#[test]
fn control_endpoints_need_the_token_or_a_same_origin_session() {
    let host = TestHost::start();
    let origin = format!("http://{}", host.addr);

    let none = beep(&host, "");
    assert_eq!(none.status, 401, "{}", none.body);
    assert!(
        none.body.contains("wasi-python-host token"),
        "{}",
        none.body
    );
    assert!(none.body.contains("/login"), "{}", none.body);
    assert_eq!(
        none.header("WWW-Authenticate").as_deref(),
        Some("Bearer realm=\"wasi-python-host\"")
    );
    let wrong = beep(&host, "Authorization: Bearer not-the-token-at-all\r\n");
    assert_eq!(wrong.status, 401);
    assert!(wrong.body.contains("wrong"), "{}", wrong.body);
    let sim = host.post_json_with("/api/sim", &json!({"clear": true}), &[]);
    assert_eq!(sim.status, 401, "the simulator is a control endpoint too");
    let right = beep(&host, &format!("Authorization: Bearer {TEST_TOKEN}\r\n"));
    assert_eq!(right.status, 202, "{}", right.body);

    // Browser login: a wrong token, a cross-site form, then the real thing.
    assert_eq!(
        login(&host, "nope-nope-nope-nope", Some(&origin)).status,
        401
    );
    assert_eq!(
        login(&host, TEST_TOKEN, Some("http://evil.example")).status,
        403
    );
    assert_eq!(login(&host, TEST_TOKEN, None).status, 403);
    let ok = login(&host, TEST_TOKEN, Some(&origin));
    assert_eq!(ok.status, 303, "{}", ok.body);
    assert_eq!(ok.header("Location").as_deref(), Some("/"));
    let cookie = ok.header("Set-Cookie").expect("a session cookie");
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(attr), "{cookie}");
    }
    assert!(
        !cookie.contains(TEST_TOKEN),
        "the cookie does not carry the token"
    );
    let session = cookie.split(';').next().unwrap().to_string();

    let same = beep(&host, &format!("Cookie: {session}\r\nOrigin: {origin}\r\n"));
    assert_eq!(same.status, 202, "{}", same.body);
    let cross = beep(
        &host,
        &format!("Cookie: {session}\r\nOrigin: http://evil.example\r\n"),
    );
    assert_eq!(cross.status, 403, "{}", cross.body);
    let sandboxed = beep(&host, &format!("Cookie: {session}\r\nOrigin: null\r\n"));
    assert_eq!(sandboxed.status, 403, "an opaque-origin frame is refused");

    let status = |cookie: &str| {
        raw_http(
            host.addr,
            format!(
                "GET /api/session HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n{cookie}\r\n",
                host.addr
            )
            .as_bytes(),
        )
        .json()
    };
    assert_eq!(
        status(&format!("Cookie: {session}\r\n")),
        json!({"control": true, "authorized": true})
    );
    assert_eq!(status(""), json!({"control": true, "authorized": false}));
    let beeps = host.api()["buzzer"]["beeps_total"].as_u64().unwrap();
    assert_eq!(beeps, 2, "exactly the two authorised beeps");
}

#[test]
fn control_off_refuses_control_endpoints() {
    let host = TestHost::builder()
        .config(|config| {
            let host = crate::support::table(config, &["host"]);
            host.insert("control".into(), "off".into());
            host.remove("control_token");
        })
        .start();
    let r = beep(&host, &format!("Authorization: Bearer {TEST_TOKEN}\r\n"));
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.body.contains("host.control"), "{}", r.body);
    assert_eq!(host.get("/api/session").json()["control"], false);
    assert_eq!(
        login(&host, TEST_TOKEN, Some(&format!("http://{}", host.addr))).status,
        403
    );
}

/// A token-less config: the host makes its own.
fn without_token(config: &mut toml::Table) {
    crate::support::table(config, &["host"]).remove("control_token");
}

#[test]
fn a_token_is_generated_once_and_printed_by_the_token_command() {
    let dir = crate::support::temp_dir("token");
    let host = TestHost::builder().dir(&dir).config(without_token).start();
    let path = dir.join("control-token");
    let token = std::fs::read_to_string(&path)
        .expect("the token file exists")
        .trim()
        .to_string();
    assert_eq!(token.len(), 64);
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "only the host's user can read it");
    assert!(
        !host.log().contains(&token),
        "the token never appears in the log"
    );
    let out = Command::new(BIN)
        .arg("token")
        .arg("--config")
        .arg(&host.config_path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), token);
    let r = beep(&host, &format!("Authorization: Bearer {token}\r\n"));
    assert_eq!(r.status, 202, "{}", r.body);
    drop(host);
    // A restart keeps the same token.
    let again = TestHost::builder().dir(&dir).config(without_token).start();
    assert_eq!(std::fs::read_to_string(&path).unwrap().trim(), token);
    drop(again);
}

#[test]
fn pages_carry_strict_content_security_policies() {
    let host = TestHost::start();
    let shell = host.get("/");
    assert_eq!(shell.status, 200);
    let csp = shell.header("Content-Security-Policy").unwrap();
    for part in [
        "script-src 'self'",
        "frame-ancestors 'none'",
        "default-src 'none'",
    ] {
        assert!(csp.contains(part), "{csp}");
    }
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert!(
        shell.body.contains("sandbox=\"allow-scripts\""),
        "{}",
        shell.body
    );
    assert!(
        !shell.body.contains("<script>"),
        "no inline script in the shell"
    );

    let view = host.get("/view");
    assert_eq!(view.status, 200);
    let csp = view.header("Content-Security-Policy").unwrap();
    for part in [
        "sandbox allow-scripts",
        "connect-src 'none'",
        "form-action 'none'",
    ] {
        assert!(csp.contains(part), "{csp}");
    }
    assert!(!csp.contains("allow-same-origin"), "{csp}");

    let font = host.get("/assets/terminal.woff2");
    assert_eq!(font.status, 200);
    assert_eq!(font.header("Content-Type").as_deref(), Some("font/woff2"));
    assert_eq!(
        font.header("Access-Control-Allow-Origin").as_deref(),
        Some("*")
    );
    let js = host.get("/assets/shell.js");
    assert!(js.body.contains("postMessage"), "{}", js.body);
    assert_eq!(host.get("/assets/nope.js").status, 404);
    assert_eq!(host.get("/login").status, 200);
    let post_view = host.post_json("/view", &json!({}));
    assert_eq!(post_view.status, 405);
}

#[test]
fn history_collects_readings_in_bounded_buckets() {
    let host = TestHost::start();
    let series = crate::support::wait_until(
        "history for the DHT22 temperature",
        Duration::from_secs(20),
        || {
            let h = host.get("/api/history").json();
            h["series"]
                .as_array()?
                .iter()
                .find(|s| s["key"] == "dht22-gpio-4/temperature")
                .filter(|s| !s["points"].as_array().unwrap().is_empty())
                .cloned()
        },
    );
    assert_eq!(series["unit"], "°C");
    assert_eq!(series["plugin"], "dht22");
    let p = &series["points"][0];
    let (avg, min, max) = (f(&p[1]), f(&p[2]), f(&p[3]));
    assert!(min <= avg && avg <= max, "{p}");
    assert_eq!(p[0].as_u64().unwrap() % 10_000, 0, "10 s buckets");

    let all = host.get("/api/history").json();
    assert_eq!(all["resolution_s"], 10);
    let keys: Vec<&str> = all["series"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["key"].as_str().unwrap())
        .collect();
    for key in [
        "bme680-i2c-0x77/pressure",
        "bme680-i2c-0x77/iaq_score",
        "system/cpu_temp_c",
    ] {
        crate::support::wait_until(key, Duration::from_secs(20), || {
            let h = host.get("/api/history").json();
            h["series"]
                .as_array()?
                .iter()
                .any(|s| s["key"] == key)
                .then_some(())
        });
    }
    assert!(keys.len() >= 2, "{keys:?}");
    let day = host.get("/api/history?range=24h").json();
    assert_eq!(day["resolution_s"], 300);
    let one = host.get("/api/history?sensor=dht22-gpio-4").json();
    assert!(one["series"]
        .as_array()
        .unwrap()
        .iter()
        .all(|s| s["sensor_id"] == "dht22-gpio-4"));
    for (query, words) in [
        ("range=7d", "range must be 1h"),
        ("since=yesterday", "since must be"),
        ("limit=5", "unknown query parameter `limit`"),
    ] {
        let r = host.get(&format!("/api/history?{query}"));
        assert_eq!(r.status, 400, "{query}");
        assert!(r.body.contains(words), "{query}: {}", r.body);
    }
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap()
}

/// The `name=value` part of a login's `Set-Cookie`.
fn session_of(r: &crate::support::Resp) -> String {
    assert_eq!(r.status, 303, "{}", r.body);
    let cookie = r.header("Set-Cookie").expect("a session cookie");
    cookie.split(';').next().unwrap().to_string()
}

/// Issue 16, item 5: a client guessing the token (bearer or login form)
/// gets 429 with Retry-After after a few tries, and the log gets a summary,
/// not a line per guess.
#[test]
fn guessing_the_token_is_throttled_per_client_and_logged_in_summary() {
    let host = TestHost::start();
    let wrong = "Authorization: Bearer guess-guess-guess-0000\r\n";
    let mut statuses = Vec::new();
    for _ in 0..40 {
        statuses.push(beep_from(ATTACKER, &host, wrong).status);
    }
    let unauthorized = statuses.iter().filter(|&&s| s == 401).count();
    assert_eq!(
        unauthorized, 10,
        "10 wrong tokens are answered: {statuses:?}"
    );
    assert!(
        statuses[10..].iter().all(|&s| s == 429),
        "then 429: {statuses:?}"
    );
    // 429 says when to come back, and holds for the right token too (else
    // the status would tell a guesser when it hit).
    let right = format!("Authorization: Bearer {TEST_TOKEN}\r\n");
    let throttled = beep_from(ATTACKER, &host, &right);
    assert_eq!(throttled.status, 429, "{}", throttled.body);
    let retry: u64 = throttled
        .header("Retry-After")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no Retry-After: {}", throttled.head));
    assert!((1..=6).contains(&retry), "{retry}");
    assert!(
        throttled.body.contains("try again in"),
        "{}",
        throttled.body
    );
    // Another client is not locked out by the guesser.
    assert_eq!(beep(&host, &right).status, 202);

    // The login form, from a third address.
    let origin = format!("http://{}", host.addr);
    let guesser = "127.0.0.3";
    let statuses: Vec<u16> = (0..20)
        .map(|i| login_from(guesser, &host, &format!("wrong-{i:016}"), Some(&origin)).status)
        .collect();
    assert_eq!(&statuses[..10], &[401; 10], "{statuses:?}");
    assert!(statuses[10..].iter().all(|&s| s == 429), "{statuses:?}");
    let page = login_from(guesser, &host, TEST_TOKEN, Some(&origin));
    assert_eq!(page.status, 429);
    let retry = page.header("Retry-After").expect("a Retry-After header");
    assert!(
        page.body.contains("Too many wrong control tokens")
            && page.body.contains(&format!("try again in {retry} s.")),
        "{}",
        page.body
    );
    assert_eq!(login(&host, TEST_TOKEN, Some(&origin)).status, 303);

    // 20 wrong tokens counted, 2 log lines at most (the first, and no
    // summary before a minute has passed).
    let metrics = host.get("/metrics").body;
    assert!(
        metrics.contains("whp_http_auth_failures_total 20"),
        "{metrics}"
    );
    let lines = host.log().matches("wrong control token").count();
    assert!(
        (1..=2).contains(&lines),
        "{lines} log lines for 20 wrong tokens:\n{}",
        host.log()
    );
    assert!(host.log().contains(ATTACKER), "the log names the address");
}

/// Issue 16, low item: logging out ends the session on the host, so a
/// copy of the cookie no longer authorizes; a live session survives a
/// restart.
#[test]
fn logout_revokes_the_session_and_sessions_survive_a_restart() {
    let dir = crate::support::temp_dir("sessions");
    let host = TestHost::builder().dir(&dir).start();
    let origin = format!("http://{}", host.addr);
    let ended = session_of(&login(&host, TEST_TOKEN, Some(&origin)));
    let kept = session_of(&login(&host, TEST_TOKEN, Some(&origin)));
    assert_ne!(ended, kept, "each login is its own session");
    let with = |session: &str| format!("Cookie: {session}\r\nOrigin: {origin}\r\n");
    assert_eq!(beep(&host, &with(&ended)).status, 202);

    let out = raw_http(
        host.addr,
        format!(
            "POST /logout HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nCookie: {ended}\r\n\
             Origin: {origin}\r\nContent-Length: 0\r\n\r\n",
            host.addr
        )
        .as_bytes(),
    );
    assert_eq!(out.status, 303, "{}", out.body);
    assert!(out.header("Set-Cookie").unwrap().contains("Max-Age=0"));
    // The browser forgets the cookie; a copy of it is refused by the host.
    let replayed = beep(&host, &with(&ended));
    assert_eq!(replayed.status, 401, "{}", replayed.body);
    assert_eq!(beep(&host, &with(&kept)).status, 202, "other sessions stay");

    let sessions = std::fs::read_to_string(dir.join("sessions.json")).expect("sessions are kept");
    let kept_id = kept.split('=').nth(1).unwrap();
    assert!(
        !sessions.contains(kept_id),
        "only hashes on disk: {sessions}"
    );
    drop(host);
    let host = TestHost::builder().dir(&dir).start();
    let origin = format!("http://{}", host.addr);
    let with = |session: &str| format!("Cookie: {session}\r\nOrigin: {origin}\r\n");
    assert_eq!(
        beep(&host, &with(&kept)).status,
        202,
        "kept across a restart"
    );
    assert_eq!(beep(&host, &with(&ended)).status, 401, "still ended");
}

/// Issue 16, low item: a DNS-rebinding page reaches the host under its own
/// (public) name; the host answers only its own names.
#[test]
fn requests_for_a_foreign_host_name_are_refused() {
    let get = |host: &TestHost, name: &str, path: &str| {
        raw_http(
            host.addr,
            format!("GET {path} HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
    };
    let host = TestHost::start();
    for path in ["/api", "/", "/view", "/healthz", "/metrics"] {
        let r = get(&host, "rebind.attacker.example:3000", path);
        assert_eq!(r.status, 421, "{path}: {}", r.body);
        assert!(r.body.contains("host.http_allowed_hosts"), "{}", r.body);
    }
    for name in [
        host.addr.to_string(),
        "raspberrypi.local:3000".into(),
        "localhost:3000".into(),
        "raspberrypi".into(),
    ] {
        assert_eq!(get(&host, &name, "/api").status, 200, "{name}");
    }
    assert_eq!(get(&host, "pi.example.com", "/api").status, 421);
    let metrics = host.get("/metrics").body;
    assert!(
        metrics.contains(r#"route="host",status="421""#),
        "refusals are counted: {metrics}"
    );
    drop(host);
    // A name of the user's own DNS, allowed in the config.
    let host = TestHost::builder()
        .config(|config| {
            crate::support::table(config, &["host"]).insert(
                "http_allowed_hosts".into(),
                toml::Value::Array(vec!["pi.example.com".into()]),
            );
        })
        .start();
    assert_eq!(get(&host, "pi.example.com:3000", "/api").status, 200);
    assert_eq!(get(&host, "rebind.attacker.example", "/api").status, 421);
}
