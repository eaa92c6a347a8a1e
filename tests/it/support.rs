//! Test helpers: start the real binary with the real plugins on an
//! ephemeral port, talk HTTP to it over a real socket, and wait for
//! conditions with a deadline.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Once, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_wasi-python-host");
pub const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// How long a host may take to load its (cached) plugins.
pub const LOAD_TIMEOUT: Duration = Duration::from_secs(60);

/// A fresh folder under the target's temp dir.
pub fn temp_dir(label: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "{label}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir under CARGO_TARGET_TMPDIR is writable");
    dir
}

/// The artifact cache every test host shares, so the Python runtime is
/// compiled once per test run (and once per machine while it does not
/// change).
pub fn shared_cache_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("artifact-cache")
}

/// The shared Python runtime, built by scripts/build-runtime.sh.
pub fn runtime_wasm() -> PathBuf {
    Path::new(ROOT).join("runtime/python-runtime.wasm")
}

/// The plugins every test host runs: the shipped ones.
pub const SHIPPED: &[&str] = &["dht22", "bme680", "pi_monitor", "dashboard"];

/// Copies the Python modules (`*.py`, tests included: they are never
/// loaded) of folder `from` into `to`.
pub fn copy_sources(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("plugin folder is writable");
    for entry in std::fs::read_dir(from).unwrap_or_else(|e| panic!("{}: {e}", from.display())) {
        let path = entry.expect("readable folder").path();
        if path.extension().is_some_and(|x| x == "py") {
            std::fs::copy(&path, to.join(path.file_name().unwrap())).expect("copy a module");
        }
    }
}

/// The shipped config/host.toml, pointed at a private copy of the shipped
/// plugins (`<state_dir>/plugins`, so a test can edit them), a private
/// state dir, the repo's runtime and the shared cache.
pub fn base_config(state_dir: &Path) -> toml::Table {
    let text = std::fs::read_to_string(Path::new(ROOT).join("config/host.toml"))
        .expect("config/host.toml is readable");
    let mut config: toml::Table = text.parse().expect("config/host.toml is valid TOML");
    let plugins = state_dir.join("plugins");
    for name in SHIPPED.iter().chain(&["common"]) {
        copy_sources(
            &Path::new(ROOT).join("plugins").join(name),
            &plugins.join(name),
        );
    }
    let host = config
        .get_mut("host")
        .and_then(|h| h.as_table_mut())
        .expect("config/host.toml has a [host] table");
    host.insert("plugins_dir".into(), plugins.display().to_string().into());
    host.insert(
        "runtime".into(),
        runtime_wasm().display().to_string().into(),
    );
    host.insert("state_dir".into(), state_dir.display().to_string().into());
    host.insert(
        "cache_dir".into(),
        shared_cache_dir().display().to_string().into(),
    );
    host.insert("listen".into(), "127.0.0.1:0".into());
    host.insert("hardware".into(), "sim".into());
    host.insert("control_token".into(), TEST_TOKEN.into());
    config
}

/// The control token every test host is configured with.
pub const TEST_TOKEN: &str = "test-control-token-0123456789";

/// A test plugin's source folder (tests/plugins/NAME).
pub fn test_plugin(name: &str) -> PathBuf {
    Path::new(ROOT).join("tests/plugins").join(name)
}

/// Fails with a clear message when the runtime was not built.
pub fn require_runtime() {
    assert!(
        runtime_wasm().exists(),
        "{} is missing: build it first with scripts/build-runtime.sh (scripts/test.sh does)",
        runtime_wasm().display()
    );
}

/// The interfaces of the `dht22-plugin` world the test plugins use.
pub const SENSOR_INTERFACES: &[&str] = &[
    "gpio-provider",
    "led-controller",
    "buzzer-controller",
    "state",
    "log",
    "settings",
];

/// Runs `script` with the project's .venv Python and the test kit
/// importable (`fakehost`, and its own modules such as `_checks`), with
/// `args` as its arguments; its last line of stdout is JSON.
pub fn kit_json(script: &str, args: &[String]) -> serde_json::Value {
    let python = Path::new(ROOT).join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/setup-tests.sh",
        python.display()
    );
    let testing = Path::new(ROOT).join("plugins/testing");
    let out = Command::new(python)
        .arg("-c")
        .arg(script)
        .args(args)
        .env(
            "PYTHONPATH",
            std::env::join_paths([testing.clone(), testing.join("fakehost")])
                .expect("paths without ':'"),
        )
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the test kit failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
}

/// Adds `telem`, the test plugin that publishes values through
/// `telemetry` (tests/plugins/telemetry): its own reading (sensor id = its
/// name, field `answer`) on the dashboard, in `/api` and over MQTT, next to
/// a DHT22-style reading whose id, `telemetry-0`, it claims.
pub fn add_telemetry_plugin(config: &mut toml::Table) {
    let mut interfaces = SENSOR_INTERFACES.to_vec();
    interfaces.push("telemetry");
    add_plugin(
        config,
        "telem",
        &test_plugin("telemetry"),
        "dht22",
        500,
        &interfaces,
    );
    table(config, &["plugins", "telem", "grants"]).insert(
        "sensor_ids".into(),
        toml::Value::Array(vec!["telemetry-0".into()]),
    );
}

/// The folder of plugin `name` in `config`'s plugins folder.
pub fn plugin_dir(config: &toml::Table, name: &str) -> PathBuf {
    let dir = config["host"]["plugins_dir"]
        .as_str()
        .expect("host.plugins_dir is set");
    Path::new(dir).join(name)
}

/// Adds plugin `name` of `kind`, its source copied from folder `source`,
/// granted `interfaces`, the DHT22 on GPIO 4 and LED 3 of the shipped
/// 8-LED strip.
pub fn add_plugin(
    config: &mut toml::Table,
    name: &str,
    source: &Path,
    kind: &str,
    interval_ms: i64,
    interfaces: &[&str],
) {
    copy_sources(source, &plugin_dir(config, name));
    grant(config, name, kind, interval_ms, interfaces);
}

/// Adds the entry of plugin `name` (whose code is already in place).
pub fn grant(
    config: &mut toml::Table,
    name: &str,
    kind: &str,
    interval_ms: i64,
    interfaces: &[&str],
) {
    let plugin = table(config, &["plugins", name]);
    plugin.insert("kind".into(), kind.into());
    plugin.insert("interval_ms".into(), interval_ms.into());
    let grants = table(config, &["plugins", name, "grants"]);
    grants.insert(
        "interfaces".into(),
        toml::Value::Array(interfaces.iter().map(|s| toml::Value::from(*s)).collect()),
    );
    grants.insert("dht22_pins".into(), toml::Value::Array(vec![4.into()]));
    grants.insert("leds".into(), toml::Value::Array(vec![3.into()]));
}

/// Adds plugin `name` running the hostile test plugin in `mode`; its
/// readings are `<name>-<what>` (`hostile-ok`). `limits` go to its limits
/// table.
pub fn add_hostile(
    config: &mut toml::Table,
    name: &str,
    mode: &str,
    interval_ms: i64,
    limits: &[(&str, i64)],
) {
    add_plugin(
        config,
        name,
        &test_plugin("hostile"),
        "dht22",
        interval_ms,
        SENSOR_INTERFACES,
    );
    let settings = table(config, &["plugins", name, "settings"]);
    settings.insert("mode".into(), mode.into());
    // Its sensor ids start with its name: a plugin reports only ids it owns.
    settings.insert("name".into(), name.into());
    let l = table(config, &["plugins", name, "limits"]);
    for (k, v) in limits {
        l.insert(k.to_string(), (*v).into());
    }
}

/// Compiles the Python runtime into the shared cache once per test run.
pub fn warm_cache() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        require_runtime();
        let dir = temp_dir("precompile");
        let config = base_config(&dir);
        precompile(&write_config(&dir, &config));
    });
}

/// Runs `cmd` to its end and returns what it printed (stdout, then
/// stderr); panics with the command and that output unless it succeeds.
pub fn run_ok(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?} does not run: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{cmd:?} failed:\n{text}");
    text
}

/// Runs `wasi-python-host precompile --config CONFIG`; panics with its
/// output when it fails.
pub fn precompile(config: &Path) {
    run_ok(
        Command::new(BIN)
            .args(["precompile", "--config"])
            .arg(config),
    );
}

pub fn write_config(dir: &Path, config: &toml::Table) -> PathBuf {
    let path = dir.join("host.toml");
    std::fs::write(&path, toml::to_string(config).expect("config serialises"))
        .expect("config is writable");
    path
}

/// The table at `path`, created if missing.
pub fn table<'a>(config: &'a mut toml::Table, path: &[&str]) -> &'a mut toml::Table {
    let mut t = config;
    for part in path {
        t = t
            .entry(part.to_string())
            .or_insert_with(|| toml::Value::Table(Default::default()))
            .as_table_mut()
            .expect("config path is a table");
    }
    t
}

/// An HTTP response.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub head: String,
    pub body: String,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("response is not JSON ({e}): {}", self.body))
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    }
}

/// The address hostile clients connect from: another LAN client as far as
/// the host can tell (Linux routes all of 127/8 to loopback), so its
/// per-client limits do not touch the tests' own requests from 127.0.0.1.
pub const ATTACKER: &str = "127.0.0.2";

/// A connection from `source` (an IPv4 address of this machine).
pub fn connect_from(source: &str, addr: SocketAddr) -> std::io::Result<TcpStream> {
    use socket2::{Domain, SockAddr, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    let source: SocketAddr = format!("{source}:0")
        .parse()
        .expect("a source IPv4 address");
    socket.bind(&SockAddr::from(source))?;
    socket.connect_timeout(&SockAddr::from(addr), Duration::from_secs(5))?;
    Ok(socket.into())
}

/// Sends raw bytes and reads the whole response (the request must ask
/// for `Connection: close`).
pub fn raw_http(addr: SocketAddr, request: &[u8]) -> Resp {
    raw_http_from("127.0.0.1", addr, request)
}

/// [`raw_http`] from another source address.
pub fn raw_http_from(source: &str, addr: SocketAddr, request: &[u8]) -> Resp {
    let mut stream = connect_from(source, addr).expect("host accepts connections");
    stream
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    stream.write_all(request).expect("request is sent");
    let mut bytes = Vec::new();
    let _ = stream.read_to_end(&mut bytes);
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status line in {text:?}"));
    Resp {
        status,
        head: head.to_string(),
        body: body.to_string(),
    }
}

pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: &str,
) -> Resp {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(ct) = content_type {
        req.push_str(&format!("Content-Type: {ct}\r\n"));
    }
    if !body.is_empty() || method == "POST" {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    req.push_str(body);
    raw_http(addr, req.as_bytes())
}

/// Polls `f` until it returns `Some`, or panics after `timeout` saying what
/// was awaited.
pub fn wait_until<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Hosts share the machine; a test that measures timing takes this
/// exclusively so no other host competes for the two cores meanwhile.
static MACHINE: RwLock<()> = RwLock::new(());

enum Turn {
    Shared(#[allow(dead_code)] RwLockReadGuard<'static, ()>),
    Exclusive(#[allow(dead_code)] RwLockWriteGuard<'static, ()>),
}

/// A running host process.
pub struct TestHost {
    child: Child,
    pub addr: SocketAddr,
    /// The config file the host runs with (tests edit it for live config).
    pub config_path: PathBuf,
    log: Arc<Mutex<String>>,
    _turn: Turn,
}

/// A change a test makes to the config before the host starts.
type Edit<'a> = Box<dyn FnOnce(&mut toml::Table) + 'a>;

/// How a test host starts: see [`TestHost::builder`].
#[must_use = "a builder does nothing until `start`"]
pub struct Builder<'a> {
    dir: Option<PathBuf>,
    base: Option<toml::Table>,
    edits: Vec<Edit<'a>>,
    env: Vec<(String, String)>,
    alone: bool,
    wait: bool,
}

impl<'a> Builder<'a> {
    /// Runs in `dir` (its state folder, a place a later host can reuse)
    /// instead of a fresh temp folder.
    pub fn dir(mut self, dir: &Path) -> Self {
        self.dir = Some(dir.to_path_buf());
        self
    }

    /// Starts from `config` instead of [`base_config`] of the folder.
    pub fn base(mut self, config: toml::Table) -> Self {
        self.base = Some(config);
        self
    }

    /// Edits the config before the host starts (edits apply in order).
    pub fn config(mut self, edit: impl FnOnce(&mut toml::Table) + 'a) -> Self {
        self.edits.push(Box::new(edit));
        self
    }

    /// Sets an environment variable of the host process.
    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.to_string(), value.to_string()));
        self
    }

    /// No other test host runs meanwhile: for tests that print timing
    /// figures (BENCHMARKS.md).
    pub fn alone(mut self) -> Self {
        self.alone = true;
        self
    }

    /// Returns once the host listens, without waiting for its plugins.
    pub fn no_wait(mut self) -> Self {
        self.wait = false;
        self
    }

    pub fn start(self) -> TestHost {
        warm_cache();
        // The turn first: an exclusive one waits for the hosts running now.
        let turn = if self.alone {
            Turn::Exclusive(MACHINE.write().unwrap_or_else(|e| e.into_inner()))
        } else {
            Turn::Shared(MACHINE.read().unwrap_or_else(|e| e.into_inner()))
        };
        let dir = self.dir.unwrap_or_else(|| temp_dir("host"));
        let mut config = self.base.unwrap_or_else(|| base_config(&dir));
        for edit in self.edits {
            edit(&mut config);
        }
        let host = TestHost::spawn(&dir, &config, turn, &self.env);
        if self.wait {
            host.wait_loaded();
        }
        host
    }
}

impl TestHost {
    /// Starts the host with the shipped config (plugins from the shared
    /// cache), and waits until every plugin has loaded.
    pub fn start() -> TestHost {
        Self::builder().start()
    }

    /// A host to start: by default the shipped config in a fresh folder,
    /// sharing the machine, waiting for every plugin to load.
    pub fn builder<'a>() -> Builder<'a> {
        Builder {
            dir: None,
            base: None,
            edits: Vec::new(),
            env: Vec::new(),
            alone: false,
            wait: true,
        }
    }

    fn spawn(dir: &Path, config: &toml::Table, turn: Turn, env: &[(String, String)]) -> TestHost {
        let path = write_config(dir, config);
        let mut child = Command::new(BIN)
            .arg("--config")
            .arg(&path)
            .env("RUST_LOG", "info")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the host binary starts");
        let stderr = child.stderr.take().expect("stderr is piped");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    if let Some(addr) = line.split("listening on http://").nth(1) {
                        let _ = tx.send(addr.trim().to_string());
                    }
                    let mut l = log.lock().unwrap();
                    l.push_str(&line);
                    l.push('\n');
                }
            });
        }
        let addr = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(a) => a.parse().expect("the host logs a socket address"),
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "the host did not start listening; its log:\n{}",
                    log.lock().unwrap()
                );
            }
        };
        TestHost {
            child,
            addr,
            config_path: path,
            log,
            _turn: turn,
        }
    }

    pub fn wait_loaded(&self) {
        wait_until("every plugin to load", LOAD_TIMEOUT, || {
            // The loader says when it has been through the config (a list
            // with nothing "loading" could also be one not yet filled in).
            let done = self.get("/healthz").json()["plugins_loaded"] == true;
            let plugins = self.get("/api/plugins").json();
            let list = plugins["plugins"].as_array()?.clone();
            let pending = list.iter().any(|p| p["status"] == "loading");
            (done && !pending).then_some(())
        });
    }

    pub fn get(&self, path: &str) -> Resp {
        http(self.addr, "GET", path, None, "")
    }

    /// POSTs JSON with the test control token.
    pub fn post_json(&self, path: &str, body: &Value) -> Resp {
        self.post_json_with(
            path,
            body,
            &[("Authorization", &format!("Bearer {TEST_TOKEN}"))],
        )
    }

    /// POSTs JSON with exactly these extra headers.
    pub fn post_json_with(&self, path: &str, body: &Value, headers: &[(&str, &str)]) -> Resp {
        let body = body.to_string();
        let mut req = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n",
            self.addr,
            body.len()
        );
        for (name, value) in headers {
            req.push_str(&format!("{name}: {value}\r\n"));
        }
        req.push_str("\r\n");
        req.push_str(&body);
        raw_http(self.addr, req.as_bytes())
    }

    pub fn api(&self) -> Value {
        let r = self.get("/api");
        assert_eq!(r.status, 200, "GET /api: {}", r.body);
        r.json()
    }

    /// Polls `/api` until `f` accepts it.
    pub fn wait_api(
        &self,
        what: &str,
        timeout: Duration,
        mut f: impl FnMut(&Value) -> bool,
    ) -> Value {
        wait_until(what, timeout, || {
            let api = self.api();
            f(&api).then_some(api)
        })
    }

    /// Plugin `name`'s entry in `/api/plugins`.
    pub fn plugin(&self, name: &str) -> Value {
        let all = self.get("/api/plugins").json();
        all["plugins"]
            .as_array()
            .and_then(|ps| ps.iter().find(|p| p["name"] == name).cloned())
            .unwrap_or_else(|| panic!("no plugin {name} in {all}"))
    }

    /// Polls plugin `name`'s entry until `f` accepts it.
    pub fn wait_plugin(
        &self,
        name: &str,
        what: &str,
        timeout: Duration,
        f: impl Fn(&Value) -> bool,
    ) -> Value {
        wait_until(&format!("{name}: {what}"), timeout, || {
            let p = self.plugin(name);
            f(&p).then_some(p)
        })
    }

    /// Pins simulated values (see `POST /api/sim`).
    pub fn force(&self, body: Value) {
        let r = self.post_json("/api/sim", &body);
        assert_eq!(r.status, 200, "POST /api/sim {body}: {}", r.body);
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// SIGKILL: an unclean exit (no shutdown code runs).
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits for the exit.
    pub fn stop(mut self) -> ExitStatus {
        self.terminate()
    }

    fn terminate(&mut self) -> ExitStatus {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                return self.child.wait().expect("host exits after SIGKILL");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for TestHost {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.terminate();
        }
    }
}

/// The reading with `sensor_id` in an `/api` body.
pub fn reading<'a>(api: &'a Value, sensor_id: &str) -> Option<&'a Value> {
    api["readings"]
        .as_array()?
        .iter()
        .find(|r| r["sensor_id"] == sensor_id)
}
