//! End-to-end dashboard tests in headless Chromium, driven over WebDriver
//! (Debian's `chromium` + `chromium-driver`, installed by scripts/setup.sh),
//! against a real host on simulated hardware. Screenshots land in
//! `target/test-artifacts/`.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::{temp_dir, wait_until, TestHost, TEST_TOKEN};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// One chromedriver process and one browser session.
struct Browser {
    driver: Child,
    addr: SocketAddr,
    session: String,
}

impl Browser {
    /// A desktop-sized window.
    fn start() -> Browser {
        Self::start_with(json!({}))
    }

    /// A phone `width` CSS pixels wide (844 high), touch, mobile user agent.
    fn phone_of_width(width: u64) -> Browser {
        Self::start_with(json!({
            "mobileEmulation": {
                "deviceMetrics": {"width": width, "height": 844, "pixelRatio": 2.0, "touch": true},
                "userAgent": "Mozilla/5.0 (Linux; Android 14; Pixel 8) Mobile"
            }
        }))
    }

    fn start_with(extra: Value) -> Browser {
        for tool in ["chromedriver", "chromium"] {
            let found = Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .output()
                .is_ok_and(|o| o.status.success());
            assert!(
                found,
                "`{tool}` is not installed: run scripts/setup.sh (it installs Debian's chromium \
                 and chromium-driver)"
            );
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        wait_until("chromedriver to listen", Duration::from_secs(20), || {
            TcpStream::connect(addr).ok()
        });
        let profile = temp_dir("chromium-profile");
        let mut options = json!({
            "binary": "/usr/bin/chromium",
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--disable-dev-shm-usage", "--window-size=1280,900",
                format!("--user-data-dir={}", profile.display()),
            ],
        });
        if let (Some(o), Some(e)) = (options.as_object_mut(), extra.as_object()) {
            o.extend(e.clone());
        }
        let mut browser = Browser {
            driver,
            addr,
            session: String::new(),
        };
        let created = browser.call(
            "POST",
            "/session",
            Some(json!({"capabilities": {"alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": options,
            }}})),
        );
        browser.session = created["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("chromedriver made no session: {created}"))
            .to_string();
        browser
    }

    /// One WebDriver command; panics with the driver's message on error.
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let value = self.try_call(method, path, body);
        if let Some(error) = value.get("error") {
            panic!("WebDriver {method} {path}: {error}: {}", value["message"]);
        }
        value
    }

    fn try_call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let mut stream = TcpStream::connect(self.addr).expect("chromedriver answers");
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            self.addr,
            body.len()
        );
        stream.write_all(request.as_bytes()).unwrap();
        // chromedriver keeps the connection open: read by Content-Length.
        let mut bytes = Vec::new();
        let mut chunk = [0u8; 16 * 1024];
        let body = loop {
            let n = stream.read(&mut chunk).expect("chromedriver replies");
            assert!(
                n > 0,
                "chromedriver closed the connection: {:?}",
                String::from_utf8_lossy(&bytes)
            );
            bytes.extend_from_slice(&chunk[..n]);
            let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") else {
                continue;
            };
            let head = String::from_utf8_lossy(&bytes[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or_else(|| panic!("chromedriver sent no Content-Length: {head}"));
            if bytes.len() >= end + 4 + length {
                break bytes[end + 4..end + 4 + length].to_vec();
            }
        };
        let reply: Value = serde_json::from_slice(&body).unwrap_or_else(|e| {
            panic!(
                "chromedriver sent no JSON ({e}): {}",
                String::from_utf8_lossy(&body)
            )
        });
        reply.get("value").cloned().unwrap_or(Value::Null)
    }

    fn session_path(&self, rest: &str) -> String {
        format!("/session/{}{rest}", self.session)
    }

    fn goto(&self, url: &str) {
        self.call(
            "POST",
            &self.session_path("/url"),
            Some(json!({ "url": url })),
        );
    }

    /// Runs `script` (a function body; `arguments` holds `args`) in the
    /// current frame and returns its value.
    fn js(&self, script: &str, args: Value) -> Value {
        self.call(
            "POST",
            &self.session_path("/execute/sync"),
            Some(json!({ "script": script, "args": args })),
        )
    }

    /// Like [`Browser::js`], for a script that must be refused: the error.
    fn js_err(&self, script: &str) -> String {
        let v = self.try_call(
            "POST",
            &self.session_path("/execute/sync"),
            Some(json!({ "script": script, "args": [] })),
        );
        v.get("message")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| panic!("the script should have failed, it returned {v}"))
    }

    /// Runs an async script: `arguments[arguments.length-1]` is the callback.
    fn js_async(&self, script: &str) -> Value {
        self.call(
            "POST",
            &self.session_path("/execute/async"),
            Some(json!({ "script": script, "args": [] })),
        )
    }

    fn find(&self, css: &str) -> Value {
        let found = self.call(
            "POST",
            &self.session_path("/element"),
            Some(json!({"using": "css selector", "value": css})),
        );
        found[ELEMENT].clone()
    }

    fn click(&self, css: &str) {
        let id = self.find(css);
        let id = id.as_str().expect("an element id");
        self.call(
            "POST",
            &self.session_path(&format!("/element/{id}/click")),
            Some(json!({})),
        );
    }

    fn type_into(&self, css: &str, text: &str) {
        let id = self.find(css);
        let id = id.as_str().expect("an element id");
        self.call(
            "POST",
            &self.session_path(&format!("/element/{id}/value")),
            Some(json!({ "text": text })),
        );
    }

    /// Enters the dashboard plugin's frame.
    fn enter_view(&self) {
        wait_until("the dashboard frame", Duration::from_secs(20), || {
            let v = self.try_call(
                "POST",
                &self.session_path("/element"),
                Some(json!({"using": "css selector", "value": "#view"})),
            );
            v.get(ELEMENT).cloned()
        });
        let frame = self.find("#view");
        self.call(
            "POST",
            &self.session_path("/frame"),
            Some(json!({ "id": { ELEMENT: frame } })),
        );
    }

    fn leave_frame(&self) {
        self.call(
            "POST",
            &self.session_path("/frame"),
            Some(json!({ "id": null })),
        );
    }

    /// Text of the first element matching `css` in the current frame.
    fn text(&self, css: &str) -> Option<String> {
        self.js(
            "var e=document.querySelector(arguments[0]);return e?e.textContent:null",
            json!([css]),
        )
        .as_str()
        .map(str::to_string)
    }

    /// Polls `script` (in the current frame) until it returns a truthy value.
    fn wait_js(&self, what: &str, timeout: Duration, script: &str) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let v = self.js(script, json!([]));
            let truthy =
                !matches!(v, Value::Null | Value::Bool(false)) && v != json!("") && v != json!(0);
            if truthy {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {timeout:?} waiting for {what}; the page says: {}",
                self.text("body").unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Saves a PNG screenshot to target/test-artifacts/NAME.png.
    fn screenshot(&self, name: &str) -> PathBuf {
        let b64 = self.call("GET", &self.session_path("/screenshot"), None);
        let png = base64_decode(b64.as_str().expect("screenshot data"));
        assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .parent()
            .expect("target dir")
            .join("test-artifacts");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap();
        path
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let path = self.session_path("");
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.try_call("DELETE", &path, None)
            }));
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for v in text.bytes().filter_map(value) {
        acc = acc << 6 | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

fn url(host: &TestHost, path: &str) -> String {
    format!("http://{}{path}", host.addr)
}

/// The dashboard shows values, they change by themselves, history turns into
/// sparklines, and the host's font is used.
#[test]
fn dashboard_renders_live_values_history_and_font() {
    let host = TestHost::start();
    let browser = Browser::start();
    browser.goto(&url(&host, "/"));
    browser.enter_view();
    browser.wait_js(
        "a DHT22 temperature on the page",
        Duration::from_secs(20),
        "var e=document.querySelector('#dht [data-f=temp]');return e&&/\\d/.test(e.textContent)",
    );
    // Pin a value: the page follows without a reload.
    host.force(json!({"device": "dht22", "pin": 4, "temperature": 31.7, "humidity": 44.4}));
    browser.wait_js(
        "the pinned temperature to appear",
        Duration::from_secs(20),
        "return document.querySelector('#dht [data-f=temp]').textContent=='31.7'",
    );
    let marker = browser.js(
        "window.__same_document=1;return document.querySelector('#dht [data-f=hum]').textContent",
        json!([]),
    );
    assert_eq!(marker, "44.4");
    host.force(json!({"device": "dht22", "pin": 4, "temperature": 18.2, "humidity": 60.5}));
    browser.wait_js(
        "the page to update in place",
        Duration::from_secs(20),
        "return window.__same_document===1&&\
         document.querySelector('#dht [data-f=temp]').textContent=='18.2'",
    );
    // The history the host page sends becomes charts.
    browser.wait_js(
        "a temperature sparkline",
        Duration::from_secs(45),
        "return !!document.querySelector('#dht [data-c=temperature] svg polyline')",
    );
    let label = browser.text("#dht [data-c=temperature] .cl").unwrap();
    assert!(label.starts_with("temp "), "{label}");
    // System health, plugins card details filled from /api.
    let cpu = browser.text("#sys [data-f=cpu]").unwrap();
    assert!(cpu.parse::<f32>().is_ok(), "cpu temperature {cpu}");
    let version = browser
        .text("#plugins [data-k=dht22] [data-f=ver]")
        .unwrap();
    assert_ne!(version, "\u{2014}", "the plugin version is shown");
    // The terminal font is served by the host and loads in the sandbox.
    let font = browser.js_async(
        "var done=arguments[arguments.length-1];document.fonts.load('20px Terminal3270')\
         .then(function(f){done(f.length)},function(e){done('error '+e)})",
    );
    assert_eq!(font, 1, "the Terminal3270 font loads from /assets");
    browser.leave_frame();
    browser.screenshot("dashboard-desktop");
}

/// Requests the host has answered on its control routes (`/api/buzzer`,
/// `/api/sim`), whatever their status, from `/metrics`.
fn control_requests(host: &TestHost) -> u64 {
    host.get("/metrics")
        .body
        .lines()
        .filter(|l| {
            l.starts_with(r#"whp_http_requests_total{route="/api/buzzer","#)
                || l.starts_with(r#"whp_http_requests_total{route="/api/sim","#)
        })
        .map(|l| {
            l.rsplit(' ')
                .next()
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or_else(|| panic!("a count in {l}"))
        })
        .sum()
}

/// Beep is locked until the browser logs in; the plugin's own script can
/// reach neither the API nor the cookie nor the host's page.
#[test]
fn beep_needs_login_and_plugin_script_cannot_reach_controls() {
    let host = TestHost::start();
    let browser = Browser::start();
    browser.goto(&url(&host, "/"));
    browser.enter_view();
    browser.wait_js(
        "live data in the frame",
        Duration::from_secs(20),
        "return document.getElementById('live').textContent=='LIVE'&&\
         document.querySelector('#dht [data-f=temp]')",
    );
    let before = host.api()["buzzer"]["beeps_total"].as_u64().unwrap();

    browser.click("button");
    let refused = browser.wait_js(
        "the refusal",
        Duration::from_secs(10),
        "var t=document.getElementById('bzmsg').textContent;return /error/.test(t)&&t",
    );
    assert!(refused.as_str().unwrap().contains("log in"), "{refused}");

    // What a malicious plugin page could try, from inside the frame.
    let fetch = browser.js_async(
        "var done=arguments[arguments.length-1];\
         fetch('/api/buzzer',{method:'POST',body:'{\"pattern\":\"beep\"}'})\
         .then(function(r){done('answered '+r.status)},function(e){done('blocked')})",
    );
    assert_eq!(fetch, "blocked", "connect-src 'none' stops requests");
    let cookie = browser.js_err("return document.cookie");
    assert!(
        cookie.to_lowercase().contains("sandbox") || cookie.contains("SecurityError"),
        "{cookie}"
    );
    let parent = browser.js_err("return parent.document.body.innerHTML");
    assert!(
        parent.contains("cross-origin") || parent.contains("Blocked"),
        "{parent}"
    );
    // Asking the shell for anything beyond the two patterns does nothing.
    // It answers messages in order: once it has answered a press sent
    // after them, it has been through both, and sent the host nothing.
    let requests = control_requests(&host);
    browser.js(
        "document.getElementById('bzmsg').textContent='';\
         parent.postMessage({type:'buzzer',pattern:'siren'},'*');\
         parent.postMessage({type:'sim',temperature:99},'*');\
         parent.postMessage({type:'buzzer',pattern:'beep'},'*')",
        json!([]),
    );
    let answer = browser.wait_js(
        "the shell's answer to the press after them",
        Duration::from_secs(10),
        "var t=document.getElementById('bzmsg').textContent;return /^error: /.test(t)&&t",
    );
    // That press reaches the host only while the click above still counts
    // as a user gesture, and is then refused for want of a login.
    let answer = answer.as_str().unwrap();
    let pressed = u64::from(answer.contains("log in"));
    assert!(
        pressed == 1 || answer.contains("press the button yourself"),
        "{answer}"
    );
    assert_eq!(
        control_requests(&host),
        requests + pressed,
        "the shell sent the host a request for `siren` or `sim`"
    );
    assert_eq!(
        host.api()["buzzer"]["beeps_total"],
        before,
        "no beep so far"
    );
    browser.leave_frame();
    assert_eq!(
        browser.js("return document.getElementById('bar').hidden", json!([])),
        false,
        "the shell offers the login link"
    );

    // Log in with the token, as a user would.
    browser.goto(&url(&host, "/login"));
    browser.type_into("#token", "wrong-token-000000000");
    browser.click("form[action='/login'] button");
    browser.wait_js(
        "the wrong token to be refused",
        Duration::from_secs(10),
        "var n=document.getElementById('note');return n&&n.textContent=='Wrong token.'",
    );
    browser.type_into("#token", TEST_TOKEN);
    browser.click("form[action='/login'] button");
    wait_until("the dashboard after login", Duration::from_secs(10), || {
        browser
            .call("GET", &browser.session_path("/url"), None)
            .as_str()
            .is_some_and(|u| u.ends_with('/'))
            .then_some(())
    });
    // The cookie is HttpOnly: not even the host's own page can read it.
    assert_eq!(browser.js("return document.cookie", json!([])), "");
    browser.enter_view();
    browser.wait_js(
        "live data after login",
        Duration::from_secs(20),
        "return document.getElementById('live').textContent=='LIVE'",
    );
    // Logged in, the plugin's script pressing Beep by itself (no click, so
    // no user activation) is still not sent.
    browser.js(
        "parent.postMessage({type:'buzzer',pattern:'beep'},'*')",
        json!([]),
    );
    browser.wait_js(
        "the press without a click to be refused",
        Duration::from_secs(10),
        "return /press the button yourself/.test(document.getElementById('bzmsg').textContent)",
    );
    assert_eq!(
        host.api()["buzzer"]["beeps_total"],
        before,
        "no beep without a user gesture"
    );
    browser.click("button");
    browser.wait_js(
        "the beep to be sent",
        Duration::from_secs(10),
        "return document.getElementById('bzmsg').textContent=='sent: beep'",
    );
    let after = host.api()["buzzer"]["beeps_total"].as_u64().unwrap();
    assert_eq!(after, before + 1, "the simulated buzzer beeped once");
}

/// A forced alarm shows on the reading and on the LED card.
#[test]
fn forced_alarm_shows_on_page_and_led_card() {
    let host = TestHost::start();
    let browser = Browser::start();
    browser.goto(&url(&host, "/"));
    browser.enter_view();
    browser.wait_js(
        "the DHT22 row",
        Duration::from_secs(20),
        "return document.querySelector('#dht .rd')",
    );
    host.force(json!({"device": "dht22", "pin": 4, "temperature": 45.0, "humidity": 30.0}));
    browser.wait_js(
        "the alarm on the reading",
        Duration::from_secs(20),
        "var r=document.querySelector('#dht .rd');\
         return r.classList.contains('alarm')&&r.querySelector('[data-f=alert]').textContent=='ALARM'",
    );
    // The DHT22 plugin drives LED 1 red in alarm.
    let led = browser.wait_js(
        "LED 1 to turn red on the LED card",
        Duration::from_secs(20),
        "var i=document.querySelector('#leds [data-k=\"1\"] i');\
         var c=i&&i.style.getPropertyValue('--c');return c=='#ff0000'&&c",
    );
    assert_eq!(led, "#ff0000");
    browser.leave_frame();
    browser.screenshot("dashboard-alarm");
}

/// At a phone's width (360 and 390 px) nothing overflows sideways — no
/// card's content sticks out of its card, a new sensor's card included —
/// and the cards stack.
#[test]
fn phone_layout_fits() {
    let host = TestHost::builder()
        .config(crate::support::add_telemetry_plugin)
        .start();
    for width in [390, 360] {
        let browser = Browser::phone_of_width(width);
        browser.goto(&url(&host, "/"));
        browser.enter_view();
        browser.wait_js(
            "values and the sensor card on the phone",
            Duration::from_secs(30),
            "var e=document.querySelector('#dht [data-f=temp]'),g=document.querySelector('#gen [data-f=x_answer]');\
             return e&&/\\d/.test(e.textContent)&&g&&g.textContent=='42'",
        );
        let inner = browser.js("return window.innerWidth", json!([]));
        assert!(
            inner.as_u64().is_some_and(|w| w <= width),
            "the frame is phone-sized: {inner}"
        );
        let overflow = browser.js(
            "var d=document.documentElement;return d.scrollWidth-d.clientWidth",
            json!([]),
        );
        assert_eq!(overflow, 0, "{width} px: no horizontal scrolling");
        // Every element inside a card ends within the card's right edge.
        let sticking_out = browser.js(
            "var out=[];document.querySelectorAll('main section').forEach(function(s){\
               var edge=s.getBoundingClientRect().right+0.5;\
               s.querySelectorAll('*').forEach(function(e){var r=e.getBoundingClientRect();\
                 if(r.width&&r.right>edge)out.push(e.tagName+' '+(e.textContent||'').slice(0,30)+' '+Math.round(r.right-edge)+'px')})});\
             return out",
            json!([]),
        );
        assert_eq!(
            sticking_out,
            json!([]),
            "{width} px: content sticking out of its card"
        );
        let columns = browser.js(
            "var s=[].map.call(document.querySelectorAll('main section'),function(e){return e.getBoundingClientRect().left});\
             return new Set(s).size",
            json!([]),
        );
        assert_eq!(columns, 1, "{width} px: one column of cards");
        browser.leave_frame();
        let shot = browser.screenshot(&format!("dashboard-phone-{width}"));
        assert!(std::fs::metadata(shot).unwrap().len() > 10_000);
    }
}

/// Any sensor gets a card with its values and, from the history, a
/// sparkline per field; no host change for a new sensor.
#[test]
fn a_new_sensor_gets_its_own_card_with_sparklines() {
    let host = TestHost::builder()
        .config(crate::support::add_telemetry_plugin)
        .start();
    let browser = Browser::start();
    browser.goto(&url(&host, "/"));
    browser.enter_view();
    browser.wait_js(
        "the sensor's value on its card",
        Duration::from_secs(30),
        "var e=document.querySelector('#gen [data-k=telem] [data-f=x_answer]');return e&&e.textContent=='42'",
    );
    browser.wait_js(
        "its sparkline",
        Duration::from_secs(60),
        "return !!document.querySelector('#gen [data-k=telem] [data-c=answer] svg polyline')",
    );
    let label = browser
        .text("#gen [data-k=telem] [data-c=answer] .cl")
        .unwrap();
    assert!(
        label.starts_with("answer ") && label.ends_with("units"),
        "{label}"
    );
    // The seed's sensors keep their cards, and are not shown twice.
    let dht = browser.js(
        "return document.querySelectorAll('[data-k=\"dht22-gpio-4\"]').length",
        json!([]),
    );
    assert_eq!(dht, 1);
    browser.leave_frame();
    browser.screenshot("dashboard-new-sensor");
}

/// A dashboard plugin that fails leaves the user the host's plain page with
/// the readings and the error.
#[test]
fn fallback_page_when_the_dashboard_plugin_fails() {
    let host = TestHost::builder()
        .config(|config| {
            // A dashboard whose every render fails.
            let dir = crate::support::plugin_dir(config, "dashboard");
            std::fs::write(
                dir.join("app.py"),
                "from wit_world import exports\n\n\
             class Dashboard(exports.Dashboard):\n    def render(self, data):\n        \
             raise RuntimeError('cannot draw today')\n",
            )
            .unwrap();
        })
        .start();
    let browser = Browser::start();
    browser.goto(&url(&host, "/"));
    browser.enter_view();
    let why = browser.wait_js(
        "the fallback page",
        Duration::from_secs(30),
        "var e=document.getElementById('fallback-reason');return e&&e.textContent",
    );
    let why = why.as_str().unwrap();
    assert!(
        why.contains("dashboard plugin failed") && why.contains("cannot draw today"),
        "{why}"
    );
    browser.wait_js(
        "readings in the fallback table",
        Duration::from_secs(20),
        "return /dht22/.test(document.body.textContent)",
    );
    browser.leave_frame();
    browser.screenshot("dashboard-fallback");
}
