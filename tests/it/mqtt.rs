//! MQTT against a real Mosquitto broker that each test starts on a free
//! port and kills itself; a real `mosquitto_sub` records what the host
//! publishes. Needs `mosquitto` and `mosquitto-clients` (scripts/setup.sh).

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::{table, temp_dir, wait_until, TestHost};

const WAIT: Duration = Duration::from_secs(30);

pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("an ephemeral port on 127.0.0.1")
        .port()
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// A Mosquitto broker on 127.0.0.1:`port`, killed on drop.
pub(crate) struct Broker {
    child: Child,
    pub(crate) port: u16,
    dir: PathBuf,
}

/// A TLS listener of a test broker: its port and the certificate it shows.
struct TlsListener<'a> {
    port: u16,
    cert: &'a Path,
    key: &'a Path,
}

impl Broker {
    pub(crate) fn start(dir: &Path, port: u16, password: Option<(&str, &str)>) -> Broker {
        Self::start_with_tls(dir, port, password, &[])
    }

    /// Like [`Broker::start`], with TLS listeners besides the plain one
    /// (which the test's own subscribers use).
    fn start_with_tls(
        dir: &Path,
        port: u16,
        password: Option<(&str, &str)>,
        tls: &[TlsListener],
    ) -> Broker {
        let mut conf = format!("listener {port} 127.0.0.1\npersistence false\n");
        for l in tls {
            conf.push_str(&format!(
                "listener {} 127.0.0.1\ncertfile {}\nkeyfile {}\n",
                l.port,
                l.cert.display(),
                l.key.display()
            ));
        }
        if running_as_root() {
            // Otherwise Mosquitto drops to user `mosquitto`, which cannot
            // read the password file in the test's folder.
            conf.push_str("user root\n");
        }
        match password {
            None => conf.push_str("allow_anonymous true\n"),
            Some((user, pass)) => {
                let file = dir.join("passwd");
                let ok = Command::new("mosquitto_passwd")
                    .args(["-b", "-c"])
                    .arg(&file)
                    .args([user, pass])
                    .status()
                    .expect("mosquitto_passwd runs (install mosquitto: scripts/setup.sh)");
                assert!(ok.success(), "mosquitto_passwd failed");
                conf.push_str(&format!(
                    "allow_anonymous false\npassword_file {}\n",
                    file.display()
                ));
            }
        }
        let conf_file = dir.join("mosquitto.conf");
        std::fs::write(&conf_file, conf).expect("broker config is writable");
        let log = std::fs::File::create(dir.join("mosquitto.log")).expect("broker log is writable");
        let child = Command::new("mosquitto")
            .arg("-c")
            .arg(&conf_file)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("mosquitto starts (install it: scripts/setup.sh)");
        for p in std::iter::once(port).chain(tls.iter().map(|l| l.port)) {
            wait_until(&format!("the broker to listen on {p}"), WAIT, || {
                TcpStream::connect(("127.0.0.1", p)).ok().map(|_| ())
            });
        }
        Broker {
            child,
            port,
            dir: dir.to_path_buf(),
        }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Publishes `payload` on `topic` once per line.
    fn publish(&self, topic: &str, lines: &[&str]) {
        let mut child = Command::new("mosquitto_pub")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-t",
                topic,
                "-l",
            ])
            .stdin(Stdio::piped())
            .spawn()
            .expect("mosquitto_pub runs");
        let mut stdin = child.stdin.take().expect("stdin is piped");
        for l in lines {
            writeln!(stdin, "{l}").expect("mosquitto_pub reads stdin");
        }
        drop(stdin);
        assert!(child.wait().expect("mosquitto_pub exits").success());
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_file(self.dir.join("mosquitto.conf"));
    }
}

/// `mosquitto_sub -t '#'`: every message as (retained, topic, payload).
pub(crate) struct Subscriber {
    child: Child,
    lines: Arc<Mutex<Vec<(bool, String, String)>>>,
}

impl Subscriber {
    pub(crate) fn start(port: u16) -> Subscriber {
        Self::start_args(port, &[])
    }

    fn start_with_login(port: u16, user: &str, password: &str) -> Subscriber {
        Self::start_args(port, &["-u", user, "-P", password])
    }

    fn start_args(port: u16, extra: &[&str]) -> Subscriber {
        let mut child = Command::new("mosquitto_sub")
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-t", "#"])
            .args(extra)
            .args(["-F", "%r %t %p"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto_sub runs (install mosquitto-clients: scripts/setup.sh)");
        let out = child.stdout.take().expect("stdout is piped");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let mut parts = line.splitn(3, ' ');
                let retained = parts.next() == Some("1");
                let topic = parts.next().unwrap_or_default().to_string();
                let payload = parts.next().unwrap_or_default().to_string();
                sink.lock().unwrap().push((retained, topic, payload));
            }
        });
        Subscriber { child, lines }
    }

    /// Waits for a message on `topic` that `f` accepts; returns its payload.
    pub(crate) fn wait(&self, topic: &str, f: impl Fn(bool, &str) -> bool) -> String {
        wait_until(&format!("a message on {topic}"), WAIT, || {
            self.lines
                .lock()
                .unwrap()
                .iter()
                .find(|(r, t, p)| t == topic && f(*r, p))
                .map(|(_, _, p)| p.clone())
        })
    }

    fn count(&self, topic: &str) -> usize {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, t, _)| t == topic)
            .count()
    }

    /// Publishes a marker through `broker` and waits for it: every message
    /// the broker had for this subscriber before it (retained ones its
    /// subscription brought too) has then arrived.
    fn sync(&self, broker: &Broker) {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let marker = format!(
            "{}-{}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        broker.publish(SYNC, &[&marker]);
        self.wait(SYNC, |_, p| p == marker);
    }

    pub(crate) fn json(&self, topic: &str) -> Value {
        serde_json::from_str(&self.wait(topic, |_, _| true)).expect("the payload is JSON")
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn mqtt_host(port: u16, edit: impl FnOnce(&mut toml::Table)) -> TestHost {
    TestHost::builder()
        .config(|config| {
            let m = table(config, &["mqtt"]);
            m.insert("enabled".into(), true.into());
            m.insert("host".into(), "127.0.0.1".into());
            m.insert("port".into(), i64::from(port).into());
            m.insert("device_id".into(), "test".into());
            m.insert("keep_alive_s".into(), 5.into());
            m.insert("publish_interval_s".into(), 2.into());
            edit(config);
        })
        .start()
}

const PREFIX: &str = "wasi-python-host/test";
const AVAILABILITY: &str = "wasi-python-host/test/availability";
pub(crate) const STATE: &str = "wasi-python-host/test/state";
const COMMAND: &str = "wasi-python-host/test/buzzer/set";
/// Where [`Subscriber::sync`] publishes its markers; nothing else does.
const SYNC: &str = "test/sync";

fn connected(host: &TestHost) -> bool {
    host.api()["mqtt"]["connected"] == true
}

#[test]
fn discovery_state_and_availability_with_last_will() {
    let dir = temp_dir("mqtt-discovery");
    let broker = Broker::start(&dir, free_port(), None);
    let sub = Subscriber::start(broker.port);
    let host = mqtt_host(broker.port, |_| {});

    // A live subscriber sees retain = 0 (MQTT 3.1.1 §3.3.1.3); retention
    // is checked below with a subscriber that arrives later.
    sub.wait(AVAILABILITY, |_, p| p == "online");
    let temp = sub.json("homeassistant/sensor/test/dht22_gpio_4_temperature/config");
    assert_eq!(temp["device_class"], "temperature");
    assert_eq!(temp["unit_of_measurement"], "°C");
    assert_eq!(temp["state_class"], "measurement");
    assert_eq!(temp["unique_id"], "test_dht22_gpio_4_temperature");
    assert_eq!(temp["state_topic"], STATE);
    assert_eq!(temp["availability_topic"], AVAILABILITY);
    assert_eq!(
        temp["device"]["identifiers"],
        json!(["wasi-python-host-test"])
    );
    assert_eq!(temp["device"]["sw_version"], env!("CARGO_PKG_VERSION"));
    let pressure = sub.json("homeassistant/sensor/test/bme680_i2c_0x77_pressure/config");
    assert_eq!(pressure["device_class"], "atmospheric_pressure");
    assert_eq!(pressure["unit_of_measurement"], "hPa");
    let uptime = sub.json("homeassistant/sensor/test/uptime/config");
    assert_eq!(uptime["device_class"], "duration");
    assert_eq!(uptime["state_class"], "total_increasing");
    let plugin = sub.json("homeassistant/sensor/test/plugin_dht22_status/config");
    assert_eq!(plugin["entity_category"], "diagnostic");
    let button = sub.json("homeassistant/button/test/buzzer_beep/config");
    assert_eq!(button["command_topic"], COMMAND);
    assert_eq!(button["payload_press"], "beep");

    // State matches what /api serves, and keeps coming.
    let state: Value = serde_json::from_str(&sub.wait(STATE, |_, p| p.contains("cpu_temperature")))
        .expect("state is JSON");
    assert!(state["dht22_gpio_4_temperature"].is_number(), "{state}");
    assert!(state["bme680_i2c_0x77_iaq"].is_number(), "{state}");
    let n = sub.count(STATE);
    wait_until("more state updates", WAIT, || {
        (sub.count(STATE) > n).then_some(())
    });
    // Plugin health follows the registry: `loading` first, then `running`.
    sub.wait(&format!("{PREFIX}/plugins"), |_, p| {
        p.contains(r#""dht22":"running""#)
    });
    let late = Subscriber::start(broker.port);
    late.wait(AVAILABILITY, |retained, p| retained && p == "online");
    late.wait(
        "homeassistant/sensor/test/dht22_gpio_4_temperature/config",
        |retained, _| retained,
    );
    drop(late);

    // kill -9: the broker publishes the host's last will.
    host.kill();
    sub.wait(AVAILABILITY, |_, p| p == "offline");
    // And it is retained for whoever looks later.
    let late = Subscriber::start(broker.port);
    late.wait(AVAILABILITY, |retained, p| retained && p == "offline");
}

#[test]
fn clean_stop_publishes_offline() {
    let dir = temp_dir("mqtt-stop");
    let broker = Broker::start(&dir, free_port(), None);
    let sub = Subscriber::start(broker.port);
    let host = mqtt_host(broker.port, |_| {});
    sub.wait(AVAILABILITY, |_, p| p == "online");
    assert!(host.stop().success());
    sub.wait(AVAILABILITY, |_, p| p == "offline");
}

#[test]
fn reconnects_and_republishes_after_the_broker_restarts() {
    let dir = temp_dir("mqtt-restart");
    let port = free_port();
    let mut broker = Broker::start(&dir, port, None);
    let host = mqtt_host(port, |c| {
        table(c, &["mqtt"]).insert("queue_limit".into(), 2.into());
    });
    wait_until("the host to connect", WAIT, || {
        connected(&host).then_some(())
    });

    broker.kill();
    wait_until("the host to notice the broker left", WAIT, || {
        (!connected(&host)).then_some(())
    });
    // HTTP keeps serving meanwhile, and readings keep coming.
    let before = host.api()["last_update"].as_u64().unwrap();
    host.wait_api("newer readings", WAIT, |a| {
        a["last_update"].as_u64() > Some(before)
    });
    // State changes queue up meanwhile; past queue_limit the oldest go.
    host.wait_api("the bounded queue to drop", WAIT, |a| {
        a["mqtt"]["dropped"].as_u64() > Some(0)
    });

    let broker = Broker::start(&dir, port, None);
    let sub = Subscriber::start(port);
    wait_until("the host to reconnect", WAIT, || {
        connected(&host).then_some(())
    });
    sub.wait(AVAILABILITY, |_, p| p == "online");
    sub.wait(
        "homeassistant/sensor/test/dht22_gpio_4_temperature/config",
        |_, _| true,
    );
    sub.wait(STATE, |_, p| p.contains("dht22_gpio_4_temperature"));
    let api = host.api();
    assert!(
        api["mqtt"]["connects"].as_u64() >= Some(2),
        "{}",
        api["mqtt"]
    );
    assert!(
        host.log()
            .contains(&format!("MQTT broker 127.0.0.1:{port}")),
        "the log names the broker"
    );
    drop(broker);
}

#[test]
fn buzzer_button_goes_through_the_shared_rate_limit() {
    let dir = temp_dir("mqtt-buzzer");
    let broker = Broker::start(&dir, free_port(), None);
    let host = mqtt_host(broker.port, |_| {});
    wait_until("the host to connect", WAIT, || {
        connected(&host).then_some(())
    });
    // Give the subscription a moment to settle at the broker.
    let sub = Subscriber::start(broker.port);
    sub.wait(AVAILABILITY, |_, p| p == "online");

    let beeps = |h: &TestHost| h.api()["buzzer"]["beeps_total"].as_u64().unwrap();
    let before = beeps(&host);
    broker.publish(COMMAND, &["beep"]);
    host.wait_api("the MQTT press to beep", WAIT, |a| {
        a["buzzer"]["beeps_total"].as_u64() == Some(before + 1)
    });

    // A burst: the shared limit (3 at once, then one per 2 s) refuses most.
    broker.publish(COMMAND, &["beep"; 8]);
    // A press is counted once it has been through the control path, so
    // the beeps of all nine are in beeps_total when the count says 9.
    host.wait_api("every press to be handled", WAIT, |a| {
        a["mqtt"]["commands"].as_u64() == Some(9)
    });
    let after = beeps(&host);
    // The same bucket now refuses the dashboard's button too.
    let r = host.post_json("/api/buzzer", &json!({"pattern": "beep"}));
    assert_eq!(r.status, 429, "{}", r.body);
    assert!(
        after <= before + 4,
        "the rate limit let {} of 9 presses through",
        after - before
    );
    assert!(host.log().contains("refused: rate limit"), "{}", host.log());
}

#[test]
fn wrong_password_is_reported_and_http_keeps_serving() {
    let dir = temp_dir("mqtt-auth");
    let broker = Broker::start(&dir, free_port(), Some(("pi", "right")));
    let host = mqtt_host(broker.port, |c| {
        let m = table(c, &["mqtt"]);
        m.insert("username".into(), "pi".into());
        m.insert("password".into(), "wrong".into());
    });
    let needle = format!(
        "MQTT broker 127.0.0.1:{}: the broker refused the connection",
        broker.port
    );
    wait_until("the refusal in the log", WAIT, || {
        host.log().contains(&needle).then_some(())
    });
    let log = host.log();
    assert!(
        log.contains("mqtt.username and mqtt.password"),
        "the log says what to fix: {log}"
    );
    let api = host.api();
    assert_eq!(api["mqtt"]["connected"], false);
    assert!(api["readings"].as_array().is_some_and(|r| !r.is_empty()));
    assert_eq!(host.get("/healthz").status, 200);

    // The right password connects.
    let ok = mqtt_host(broker.port, |c| {
        let m = table(c, &["mqtt"]);
        m.insert("username".into(), "pi".into());
        m.insert("password".into(), "right".into());
        m.insert("device_id".into(), "other".into());
    });
    wait_until("the right password to connect", WAIT, || {
        connected(&ok).then_some(())
    });
}

#[test]
fn plugin_telemetry_reaches_api_and_mqtt() {
    let dir = temp_dir("mqtt-telemetry");
    let broker = Broker::start(&dir, free_port(), None);
    let sub = Subscriber::start(broker.port);
    let host = mqtt_host(broker.port, crate::support::add_telemetry_plugin);

    // A published value is a field of the plugin's own reading.
    let api = host.wait_api("the plugin's value in /api", WAIT, |a| {
        crate::support::reading(a, "telem").is_some_and(|r| r["answer"] == 42)
    });
    let own = crate::support::reading(&api, "telem").unwrap();
    assert_eq!(own["units"]["answer"], "units");
    assert_eq!(own["plugin"], "telem");
    assert!(own.get("Bad-Name").is_none());
    // The bad name was refused with a message that says what is allowed.
    let reading = crate::support::reading(&api, "telemetry-0").expect("the plugin's reading");
    let message = reading["message"].as_str().unwrap();
    assert!(message.contains("a-z, 0-9 and _"), "{message}");

    let config = sub.json("homeassistant/sensor/test/telem_answer/config");
    assert_eq!(config["unit_of_measurement"], "units");
    assert_eq!(config["unique_id"], "test_telem_answer");
    sub.wait(STATE, |_, p| p.contains("\"telem_answer\":42"));
}

#[test]
fn a_plugin_without_the_telemetry_grant_is_refused_at_load() {
    let host = TestHost::builder()
        .config(|c| {
            crate::support::add_telemetry_plugin(c);
            let grants = table(c, &["plugins", "telem", "grants"]);
            let mut list = grants["interfaces"].as_array().unwrap().clone();
            list.retain(|v| v.as_str() != Some("telemetry"));
            grants.insert("interfaces".into(), toml::Value::Array(list));
        })
        .start();
    let plugins = host.get("/api/plugins").json();
    let telem = plugins["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "telem")
        .expect("the plugin is listed")
        .clone();
    assert_eq!(telem["status"], "load_failed", "{telem}");
    assert!(
        telem["last_error"].as_str().unwrap().contains("telemetry"),
        "{telem}"
    );
}

/// Runs `openssl` with `args` in `dir`; fails with its output otherwise.
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl runs (install it: scripts/setup.sh)");
    assert!(
        out.status.success(),
        "openssl {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA (`<name>-ca.pem`) made with `openssl` in `dir`.
fn make_ca(dir: &Path, name: &str) -> PathBuf {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            &format!("/CN={name} test CA"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
            "-keyout",
            &format!("{name}-ca.key"),
            "-out",
            &format!("{name}-ca.pem"),
        ],
    );
    dir.join(format!("{name}-ca.pem"))
}

/// A server certificate and key for `alt_names` (subjectAltName syntax),
/// signed by CA `ca` (made by [`make_ca`]).
fn make_server_cert(dir: &Path, ca: &str, name: &str, alt_names: &str) -> (PathBuf, PathBuf) {
    let ext = dir.join(format!("{name}.ext"));
    std::fs::write(
        &ext,
        format!(
            "subjectAltName={alt_names}\nbasicConstraints=CA:FALSE\n\
             keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
        ),
    )
    .unwrap();
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-subj",
            &format!("/CN={name}"),
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-days",
            "2",
            "-CA",
            &format!("{ca}-ca.pem"),
            "-CAkey",
            &format!("{ca}-ca.key"),
            "-CAcreateserial",
            "-extfile",
            &format!("{name}.ext"),
            "-out",
            &format!("{name}.pem"),
        ],
    );
    (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}.key")),
    )
}

fn tls_host(port: u16, ca_file: &Path, host: &str) -> TestHost {
    let ca_file = ca_file.display().to_string();
    let host = host.to_string();
    mqtt_host(port, move |c| {
        let m = table(c, &["mqtt"]);
        m.insert("tls".into(), true.into());
        m.insert("ca_file".into(), ca_file.into());
        m.insert("host".into(), host.into());
    })
}

/// A broker with a plain listener and a TLS one whose certificate, signed
/// by CA `good` (made first), is valid for localhost and 127.0.0.1.
/// Returns the broker and its TLS port.
fn broker_with_good_tls(dir: &Path) -> (Broker, u16) {
    let (cert, key) = make_server_cert(dir, "good", "server", "DNS:localhost,IP:127.0.0.1");
    let tls_port = free_port();
    let broker = Broker::start_with_tls(
        dir,
        free_port(),
        None,
        &[TlsListener {
            port: tls_port,
            cert: &cert,
            key: &key,
        }],
    );
    (broker, tls_port)
}

#[test]
fn tls_connects_verifies_the_broker_and_publishes() {
    let dir = temp_dir("mqtt-tls");
    make_ca(&dir, "good");
    let (broker, tls_port) = broker_with_good_tls(&dir);
    // The subscriber is on the broker's plain listener; the host knows
    // only the TLS port, so what it sees came over TLS.
    let sub = Subscriber::start(broker.port);
    let host = tls_host(tls_port, &dir.join("good-ca.pem"), "localhost");

    sub.wait(AVAILABILITY, |_, p| p == "online");
    let temp = sub.json("homeassistant/sensor/test/dht22_gpio_4_temperature/config");
    assert_eq!(temp["device_class"], "temperature");
    sub.wait(STATE, |_, p| p.contains("dht22_gpio_4_temperature"));
    let api = host.api();
    assert_eq!(api["mqtt"]["connected"], true, "{}", api["mqtt"]);
    assert_eq!(api["mqtt"]["broker"], format!("localhost:{tls_port}"));
    // The buzzer button's command arrives over TLS too.
    let before = api["buzzer"]["beeps_total"].as_u64().unwrap();
    broker.publish(COMMAND, &["beep"]);
    host.wait_api("the MQTT press to beep", WAIT, |a| {
        a["buzzer"]["beeps_total"].as_u64() > Some(before)
    });
    // A clean stop says goodbye over TLS as well.
    assert!(host.stop().success());
    sub.wait(AVAILABILITY, |_, p| p == "offline");
}

#[test]
fn tls_without_ca_file_uses_the_system_trust_store() {
    let dir = temp_dir("mqtt-tls-system");
    let ca = make_ca(&dir, "good");
    let (broker, tls_port) = broker_with_good_tls(&dir);
    let sub = Subscriber::start(broker.port);
    let edit = |c: &mut toml::Table| {
        let m = table(c, &["mqtt"]);
        m.insert("enabled".into(), true.into());
        m.insert("host".into(), "localhost".into());
        m.insert("port".into(), i64::from(tls_port).into());
        m.insert("tls".into(), true.into());
        m.insert("device_id".into(), "test".into());
    };
    // The real system store does not know the test CA ...
    let host = TestHost::builder().config(edit).start();
    let api = host.wait_api("the TLS error in /api", WAIT, |a| {
        a["mqtt"]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("not trusted"))
    });
    let error = api["mqtt"]["last_error"].as_str().unwrap();
    assert!(error.contains("the system trust store"), "{error}");
    drop(host);
    // ... and one that does (SSL_CERT_FILE replaces /etc/ssl/certs, as
    // for OpenSSL) connects.
    let ca = ca.display().to_string();
    let host = TestHost::builder()
        .config(edit)
        .env("SSL_CERT_FILE", &ca)
        .start();
    sub.wait(AVAILABILITY, |_, p| p == "online");
    assert_eq!(host.api()["mqtt"]["connected"], true);
}

#[test]
fn tls_refuses_an_untrusted_or_misnamed_broker_without_falling_back() {
    let dir = temp_dir("mqtt-tls-bad");
    make_ca(&dir, "good");
    let wrong_ca = make_ca(&dir, "other");
    let (cert, key) = make_server_cert(&dir, "good", "server", "DNS:localhost,IP:127.0.0.1");
    let (named_cert, named_key) = make_server_cert(&dir, "good", "elsewhere", "DNS:broker.example");
    let (tls_port, named_port) = (free_port(), free_port());
    let broker = Broker::start_with_tls(
        &dir,
        free_port(),
        None,
        &[
            TlsListener {
                port: tls_port,
                cert: &cert,
                key: &key,
            },
            TlsListener {
                port: named_port,
                cert: &named_cert,
                key: &named_key,
            },
        ],
    );
    let sub = Subscriber::start(broker.port);

    // Signed by a CA the host was not told to trust.
    let untrusted = tls_host(tls_port, &wrong_ca, "127.0.0.1");
    let api = untrusted.wait_api("the TLS error in /api", WAIT, |a| {
        a["mqtt"]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("not trusted"))
    });
    let error = api["mqtt"]["last_error"].as_str().unwrap();
    assert!(
        error.contains(&format!("MQTT broker 127.0.0.1:{tls_port}"))
            && error.contains("mqtt.ca_file"),
        "the error names the broker and what to fix: {error}"
    );
    assert_eq!(api["mqtt"]["connected"], false);
    assert_eq!(api["mqtt"]["connects"], 0);
    let log = untrusted.log();
    assert!(log.contains("certificate is not trusted"), "{log}");
    // Still serving, still retrying (with backoff), never in plain text.
    assert_eq!(untrusted.get("/healthz").status, 200);
    wait_until("a second attempt", WAIT, || {
        (untrusted
            .log()
            .matches("certificate is not trusted")
            .count()
            >= 2)
            .then_some(())
    });

    // Trusted, but issued for another name.
    let misnamed = tls_host(named_port, &dir.join("good-ca.pem"), "127.0.0.1");
    let api = misnamed.wait_api("the name mismatch in /api", WAIT, |a| {
        a["mqtt"]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("not valid for `127.0.0.1`"))
    });
    let error = api["mqtt"]["last_error"].as_str().unwrap();
    assert!(
        error.contains("broker.example"),
        "names what the certificate is for: {error}"
    );

    // TLS to a plain MQTT port: said so, not retried in plain text.
    let plain = tls_host(broker.port, &dir.join("good-ca.pem"), "127.0.0.1");
    let api = plain.wait_api("the handshake failure in /api", WAIT, |a| {
        a["mqtt"]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("TLS handshake failed"))
    });
    let error = api["mqtt"]["last_error"].as_str().unwrap();
    assert!(error.contains("mqtt.port"), "{error}");

    // None of them ever got to MQTT, not even on a retry (where a
    // fallback to plain text would show): nothing from them at the broker.
    for host in [&untrusted, &misnamed, &plain] {
        wait_until("a retry after the error", WAIT, || {
            (host.log().matches("; retrying in").count() >= 2).then_some(())
        });
        assert_eq!(host.api()["mqtt"]["connects"], 0);
    }
    sub.sync(&broker);
    assert_eq!(sub.count(AVAILABILITY), 0, "a refused host published");
}

/// Rewrites the host's config file the way an editor does (a rename).
fn edit_config(host: &TestHost, edit: impl FnOnce(&mut toml::Table)) {
    let text = std::fs::read_to_string(&host.config_path).expect("the host's config is readable");
    let mut config: toml::Table = text.parse().expect("the host's config is TOML");
    edit(&mut config);
    let tmp = host.config_path.with_extension("toml.tmp");
    std::fs::write(&tmp, toml::to_string(&config).unwrap()).unwrap();
    std::fs::rename(&tmp, &host.config_path).unwrap();
}

#[test]
fn mqtt_changes_apply_live() {
    let dir = temp_dir("mqtt-live");
    let first = Broker::start(&dir, free_port(), None);
    let dir2 = temp_dir("mqtt-live-2");
    let second = Broker::start(&dir2, free_port(), Some(("pi", "secret")));
    let sub1 = Subscriber::start(first.port);
    let host = mqtt_host(first.port, |_| {});
    sub1.wait(AVAILABILITY, |_, p| p == "online");

    sub1.wait(
        "homeassistant/sensor/test/dht22_gpio_4_temperature/config",
        |_, p| !p.is_empty(),
    );

    // Another broker, with credentials, another prefix and device id: no
    // restart.
    let sub2 = Subscriber::start_with_login(second.port, "pi", "secret");
    edit_config(&host, |c| {
        let m = table(c, &["mqtt"]);
        m.insert("port".into(), i64::from(second.port).into());
        m.insert("username".into(), "pi".into());
        m.insert("password".into(), "secret".into());
        m.insert("topic_prefix".into(), "fleet/kitchen".into());
        m.insert("device_id".into(), "kitchen".into());
    });
    // The old broker hears the old device's entities withdrawn (else Home
    // Assistant keeps a dead twin) and a clean goodbye (not the last will) ...
    for topic in [
        "homeassistant/sensor/test/dht22_gpio_4_temperature/config",
        "homeassistant/sensor/test/plugin_dht22_status/config",
        "homeassistant/button/test/buzzer_beep/config",
    ] {
        sub1.wait(topic, |_, p| p.is_empty());
    }
    sub1.wait(AVAILABILITY, |_, p| p == "offline");
    // ... and the new one the host under its new prefix and id.
    sub2.wait("fleet/kitchen/availability", |_, p| p == "online");
    let button = sub2.json("homeassistant/button/kitchen/buzzer_beep/config");
    assert_eq!(button["command_topic"], "fleet/kitchen/buzzer/set");
    sub2.wait("fleet/kitchen/state", |_, p| {
        p.contains("dht22_gpio_4_temperature")
    });
    let api = host.wait_api("the new broker in /api", WAIT, |a| {
        a["mqtt"]["broker"] == format!("127.0.0.1:{}", second.port)
            && a["mqtt"]["connected"] == true
    });
    assert_eq!(api["mqtt"]["last_error"], "", "{}", api["mqtt"]);
    assert!(
        !host.log().contains("apply at the next start"),
        "{}",
        host.log()
    );

    // Disabled: offline, and MQTT leaves /api.
    edit_config(&host, |c| {
        table(c, &["mqtt"]).insert("enabled".into(), false.into());
    });
    sub2.wait("fleet/kitchen/availability", |_, p| p == "offline");
    host.wait_api("MQTT gone from /api", WAIT, |a| a.get("mqtt").is_none());

    // An invalid [mqtt] edit keeps the running config (here: MQTT off).
    edit_config(&host, |c| {
        let m = table(c, &["mqtt"]);
        m.insert("enabled".into(), true.into());
        m.insert("tls".into(), true.into());
        m.insert("ca_file".into(), "no-such-ca.pem".into());
    });
    let health = wait_until("the config error in /healthz", WAIT, || {
        let h = host.get("/healthz").json();
        h.to_string().contains("no-such-ca.pem").then_some(h)
    });
    assert!(health.to_string().contains("mqtt.ca_file"), "{health}");
    assert!(host.api().get("mqtt").is_none());

    // Enabled again on the first broker.
    edit_config(&host, |c| {
        let m = table(c, &["mqtt"]);
        m.insert("enabled".into(), true.into());
        m.insert("tls".into(), false.into());
        m.remove("ca_file");
        m.insert("port".into(), i64::from(first.port).into());
        m.remove("username");
        m.remove("password");
        m.remove("topic_prefix");
        m.insert("device_id".into(), "test".into());
    });
    wait_until("a second `online` on the first broker", WAIT, || {
        (sub1
            .lines
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, t, p)| t == AVAILABILITY && p == "online")
            .count()
            >= 2)
            .then_some(())
    });
}

#[test]
fn removed_plugins_and_their_entities_leave_home_assistant() {
    let dir = temp_dir("mqtt-cleanup");
    let broker = Broker::start(&dir, free_port(), None);
    let sub = Subscriber::start(broker.port);
    let host = mqtt_host(broker.port, crate::support::add_telemetry_plugin);
    let config = |key: &str| format!("homeassistant/sensor/test/{key}/config");
    let gone = [
        config("telem_answer"),
        config("plugin_telem_status"),
        config("dht22_gpio_4_temperature"),
        config("dht22_gpio_4_humidity"),
        config("plugin_dht22_status"),
    ];
    for topic in &gone {
        sub.wait(topic, |_, p| !p.is_empty());
    }
    sub.wait(&config("bme680_i2c_0x77_pressure"), |_, p| !p.is_empty());

    // `telem` disabled, `dht22` removed from the config.
    edit_config(&host, |c| {
        table(c, &["plugins", "telem"]).insert("enabled".into(), false.into());
        table(c, &["plugins"]).remove("dht22");
    });
    for topic in &gone {
        sub.wait(topic, |_, p| p.is_empty());
    }
    assert!(
        crate::support::reading(&host.api(), "telem").is_none(),
        "the disabled plugin's values left /api"
    );
    // The broker keeps no config for them, and keeps the others.
    let late = Subscriber::start(broker.port);
    late.wait(&config("bme680_i2c_0x77_pressure"), |retained, p| {
        retained && !p.is_empty()
    });
    late.wait(AVAILABILITY, |retained, _| retained);
    late.sync(&broker);
    for topic in &gone {
        assert_eq!(late.count(topic), 0, "{topic} is still retained");
    }
    // Nothing else was withdrawn: only those and the readings `telem`
    // made as a sensor plugin (`telemetry-0`).
    let withdrawn: Vec<String> = sub
        .lines
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, t, p)| t.ends_with("/config") && p.is_empty())
        .map(|(_, t, _)| t.clone())
        .filter(|t| !gone.contains(t) && !t.contains("/telemetry_0_"))
        .collect();
    assert!(withdrawn.is_empty(), "withdrawn too: {withdrawn:?}");
    assert!(host.log().contains("withdrew the Home Assistant entity"));
}

/// Issue 16, item 10: big messages on the command topic are skipped, and
/// the host stays connected. QoS 1, so each must still be acknowledged:
/// Mosquitto holds back QoS 1 deliveries past 20 unacknowledged ones, and
/// the `beep` after them would never arrive.
#[test]
fn oversized_messages_are_skipped_without_losing_the_connection() {
    let dir = temp_dir("mqtt-oversized");
    let broker = Broker::start(&dir, free_port(), None);
    let sub = Subscriber::start(broker.port);
    let host = mqtt_host(broker.port, |_| {});
    sub.wait(AVAILABILITY, |_, p| p == "online");
    wait_until("the host to connect", WAIT, || {
        connected(&host).then_some(())
    });
    let big = dir.join("big-payload");
    std::fs::write(&big, vec![b'x'; 200_000]).unwrap();
    for _ in 0..25 {
        let ok = Command::new("mosquitto_pub")
            .args(["-h", "127.0.0.1", "-p", &broker.port.to_string()])
            .args(["-t", COMMAND, "-q", "1", "-f"])
            .arg(&big)
            .status()
            .expect("mosquitto_pub runs");
        assert!(ok.success());
    }
    let before = host.api()["buzzer"]["beeps_total"].as_u64().unwrap();
    broker.publish(COMMAND, &["beep"]);
    let api = host.wait_api("the beep after the big messages", WAIT, |a| {
        a["buzzer"]["beeps_total"].as_u64() > Some(before)
    });
    let mqtt = &api["mqtt"];
    assert_eq!(mqtt["skipped"], 25, "{mqtt}");
    assert_eq!(mqtt["connects"], 1, "never reconnected: {mqtt}");
    assert_eq!(mqtt["connected"], true, "{mqtt}");
    assert_eq!(mqtt["last_error"], "", "{mqtt}");
    assert!(
        !sub.lines
            .lock()
            .unwrap()
            .iter()
            .any(|(_, t, p)| t == AVAILABILITY && p == "offline"),
        "the broker never sent the last will"
    );
    let log = host.log();
    assert_eq!(
        log.matches("skipped a 200").count(),
        1,
        "one log line for 25 messages: {log}"
    );
    assert!(log.contains(COMMAND), "the line names the topic: {log}");
}

/// One connection to the silent broker: when its CONNECT was answered,
/// and the types of the packets the host sent after that, in order.
type Answered = (std::time::Instant, Vec<u8>);

/// A TCP listener that plays a broker which accepts the host, answers its
/// CONNECT, and then never says anything again while still reading (a hung
/// broker, or a network that lost the way back).
struct SilentBroker {
    port: u16,
    conns: Arc<Mutex<Vec<Answered>>>,
}

impl SilentBroker {
    fn start() -> SilentBroker {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a port for the silent broker");
        let port = listener.local_addr().unwrap().port();
        let conns = Arc::new(Mutex::new(Vec::new()));
        let record = conns.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let record = record.clone();
                std::thread::spawn(move || {
                    use std::io::Read;
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    let mut answered = None;
                    loop {
                        match stream.read(&mut chunk) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                        // Packets: first byte, remaining length (< 128 or
                        // two bytes here), body.
                        while buf.len() >= 2 {
                            let (len, head) = if buf[1] & 0x80 == 0 {
                                (usize::from(buf[1]), 2)
                            } else if buf.len() >= 3 {
                                (usize::from(buf[1] & 0x7f) + (usize::from(buf[2]) << 7), 3)
                            } else {
                                break;
                            };
                            if buf.len() < head + len {
                                break;
                            }
                            let kind = buf[0] >> 4;
                            buf.drain(..head + len);
                            match (kind, answered) {
                                // CONNECT: accepted; the one answer given.
                                (1, None) => {
                                    let _ = stream.write_all(&[0x20, 0x02, 0x00, 0x00]);
                                    let mut conns = record.lock().unwrap();
                                    conns.push((std::time::Instant::now(), Vec::new()));
                                    answered = Some(conns.len() - 1);
                                }
                                (kind, Some(i)) => record.lock().unwrap()[i].1.push(kind),
                                _ => {}
                            }
                        }
                    }
                });
            }
        });
        SilentBroker { port, conns }
    }
}

/// Issue 16, item 11: a broker that stops answering is noticed within
/// about 1.5 × keep-alive, even while the host is publishing, and the host
/// reconnects.
#[test]
fn a_broker_that_stops_answering_is_left_and_reconnected() {
    let broker = SilentBroker::start();
    // keep_alive_s = 5, and readings change every second or two: the host
    // publishes state more often than half the keep-alive.
    let host = mqtt_host(broker.port, |_| {});
    let second = wait_until("the host to connect again", Duration::from_secs(60), || {
        let conns = broker.conns.lock().unwrap();
        (conns.len() >= 2).then(|| (conns[0].0, conns[1].0, conns[0].1.clone()))
    });
    let (first_at, second_at, first_sent) = second;
    let gap = second_at - first_at;
    eprintln!("silent broker left and reconnected after {gap:?} (keep-alive 5 s)");
    let publishes = first_sent.iter().filter(|&&k| k == 3).count();
    assert!(
        publishes >= 3,
        "the host was publishing to the silent broker ({publishes} PUBLISH): {first_sent:?}"
    );
    assert!(
        first_sent.contains(&12),
        "it pinged while publishing: {first_sent:?}"
    );
    let api = host.api();
    assert!(
        api["mqtt"]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("no PINGRESP from the broker in time")),
        "{}",
        api["mqtt"]
    );
    assert!(
        api["mqtt"]["connects"].as_u64() >= Some(2),
        "{}",
        api["mqtt"]
    );
}

/// Issue 16, item 12: a plugin inventing new sensor ids on every poll gets
/// a bounded number of Home Assistant entities (its polls are refused past
/// 16 ids: see `plugins::checks`; the discovery limits of `mqtt::announce`
/// back that up), with a bounded log, and what it had is withdrawn when the
/// host stops; the real plugins' entities stay.
#[test]
fn a_plugin_churning_sensor_ids_cannot_churn_home_assistant() {
    let dir = temp_dir("mqtt-churn");
    let broker = Broker::start(&dir, free_port(), None);
    let sub = Subscriber::start(broker.port);
    let host = mqtt_host(broker.port, |c| {
        // Eight new ids per poll, two fields each.
        crate::support::add_hostile(c, "hostile", "ids", 500, &[]);
    });
    let dht22 = "homeassistant/sensor/test/dht22_gpio_4_temperature/config";
    sub.wait(dht22, |_, p| !p.is_empty());
    let p = host.wait_plugin("hostile", "polls refused past 16 ids", WAIT, |p| {
        p["failures"].as_u64() >= Some(3)
    });
    assert!(
        p["last_error"]
            .as_str()
            .unwrap()
            .contains("more than 16 different sensor ids"),
        "{p}"
    );
    // Distinct entities: a restarted instance may report ids it had before
    // (they are re-announced), but never more than its 16 ids allow.
    let churn = |empty: bool| {
        sub.lines
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, t, p)| t.contains("/hostile_churn_") && p.is_empty() == empty)
            .map(|(_, t, _)| t.clone())
            .collect::<std::collections::BTreeSet<String>>()
            .len()
    };
    let (announced, withdrawn) = (churn(false), churn(true));
    eprintln!("churn: {announced} entities announced, {withdrawn} withdrawn");
    // 16 ids, two fields each.
    assert!(
        announced <= 32,
        "{announced} entities announced for a plugin held to 16 sensor ids"
    );
    assert!(withdrawn <= announced, "{withdrawn} withdrawn");
    let lines = host.log().matches("Home Assistant entit").count();
    assert!(
        lines <= 12,
        "{lines} log lines about entities:\n{}",
        host.log()
    );

    assert!(host.stop().success());
    sub.wait(AVAILABILITY, |_, p| p == "offline");
    // Everything the churner had is withdrawn, in order before `offline`.
    let lines = sub.lines.lock().unwrap().clone();
    let mut last: std::collections::BTreeMap<&str, &str> = Default::default();
    for (_, topic, payload) in &lines {
        last.insert(topic, payload);
    }
    let left: Vec<_> = last
        .iter()
        .filter(|(t, p)| t.contains("/hostile_churn_") && !p.is_empty())
        .collect();
    assert!(left.is_empty(), "left on the broker: {left:?}");
    assert!(
        !last[dht22].is_empty(),
        "the real DHT22's entity stays for Home Assistant to grey out"
    );
}
