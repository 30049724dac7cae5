//! Issue 18 points 3 and 9, on the real binary: the metrics endpoint scraped over HTTP in both
//! exposition formats (exact series lines, content types, over-capacity refusals and Hub
//! heartbeat failures counted), and the daemon's logs as an operator reads them (lifecycle at
//! INFO by default, no ANSI in pipes, pure JSON lines in JSON mode, the filter variable
//! validated, refused tokens logged with their reason and a `jti` digest, never the token).

// Test helpers (not only #[test] fns) unwrap: a failed setup should fail the test loudly.
#![allow(clippy::unwrap_used)]

use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hubworker::demo::Stack;
use hubworker::proto::execute_event::Event;
use hubworker::proto::worker_client::WorkerClient;
use sha2::Digest;
use tonic::transport::Channel;

use crate::daemon::{Daemon, eventually, free_port};
use crate::util::{KillOnDrop, bin, request};

const QUERY: &str = r#"{"version": 1, "nodes": [
  {"id": "q", "tool": "sql", "connection": "shop", "dialect": "sqlite", "query": "SELECT COUNT(*) AS n FROM orders"},
  {"id": "o", "tool": "output", "input": "q", "name": "out"}]}"#;

const OPENMETRICS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

/// Runs `doc` with `token` to its end: Ok(()) when Finished, Err(reason) otherwise.
async fn execute(c: &mut WorkerClient<Channel>, token: &str, doc: &str) -> Result<(), String> {
    crate::util::run_to_end(c, token, doc).await
}

/// An HTTP response split into its `Content-Type` and body.
fn split(response: &str) -> (String, String) {
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    assert!(
        head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"),
        "{head}"
    );
    let content_type = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-type")
                .then(|| v.trim().to_owned())
        })
        .unwrap();
    (content_type, body.to_owned())
}

/// The value of the sample line `name{labels}` (exactly that series).
fn value(body: &str, series: &str) -> Option<f64> {
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn metrics_are_served_in_both_formats_and_count_refusals_and_hub_failures() {
    let stack = Stack::start(1, &crate::util::sandboxed("")).await.unwrap();
    let daemon = Daemon::start(&stack, "metrics-worker", 1, "").await;
    let mut c = daemon.client().await;

    // Before any event, every labelled family is there at 0.
    let (_, fresh) = split(&daemon.scrape_as(Some(OPENMETRICS_ACCEPT)));
    for series in [
        "hubworker_runs_refused_total{reason=\"over_capacity\"}",
        "hubworker_runs_finished_total{outcome=\"ok\"}",
        "hubworker_token_rejections_total{reason=\"token_replayed\"}",
        "hubworker_sql_rejections_total{code=\"not_read_only\"}",
        "hubworker_expression_rejections_total{code=\"forbidden_name\"}",
        "hubworker_sandbox_kills_total{reason=\"timeout\"}",
    ] {
        assert_eq!(value(&fresh, series), Some(0.0), "{series} in\n{fresh}");
    }

    // One run, then the only slot held by a long run: the next Execute is refused at once.
    let token = stack.token("alice", QUERY, &["shop"]).await.unwrap();
    assert_eq!(execute(&mut c, token.expose(), QUERY).await, Ok(()));
    // The run is counted just after its last event.
    let counted = eventually(Duration::from_secs(10), || async {
        daemon.metric("hubworker_runs_finished_total{outcome=\"ok\"}") == 1
    })
    .await;
    assert!(counted, "{}", daemon.scrape());
    let long = crate::util::cross_join(6_000);
    let long_token = stack.token("alice", &long, &[]).await.unwrap();
    let mut holder = daemon.client().await;
    let mut running = holder
        .execute(request(long_token.expose(), &long))
        .await
        .unwrap()
        .into_inner();
    let Some(Event::Accepted(_)) = running.message().await.unwrap().unwrap().event else {
        panic!("accepted first")
    };
    let refused_token = stack.token("bob", QUERY, &["shop"]).await.unwrap();
    let refused = c
        .execute(request(refused_token.expose(), QUERY))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
    assert_eq!(
        refused.metadata().get("hubworker-reason").unwrap(),
        "over_capacity"
    );

    // OpenMetrics, as Prometheus asks for it.
    let (content_type, om) = split(&daemon.scrape_as(Some(OPENMETRICS_ACCEPT)));
    assert_eq!(
        content_type,
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    // The Prometheus text format, asked for or by a client that names neither (curl).
    let (text_type, text) = split(&daemon.scrape_as(Some("text/plain;version=0.0.4")));
    let (curl_type, curl) = split(&daemon.scrape_as(Some("*/*")));
    for t in [&text_type, &curl_type] {
        assert_eq!(t, "text/plain; version=0.0.4; charset=utf-8");
    }
    let build = format!(
        "hubworker_build_info{{version=\"{}\",protocol=\"hubworker.v1\",arch=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION"),
        std::env::consts::ARCH
    );
    for body in [&om, &text, &curl] {
        let lines: Vec<&str> = body.lines().collect();
        for exact in [
            build.as_str(),
            "hubworker_runs_started_total 2",
            "hubworker_runs_finished_total{outcome=\"ok\"} 1",
            "hubworker_runs_refused_total{reason=\"over_capacity\"} 1",
            "hubworker_runs_refused_total{reason=\"draining\"} 0",
            "hubworker_runs_in_flight 1",
            "hubworker_capacity 1",
            "hubworker_draining 0",
            "hubworker_hub_connected 1",
            "hubworker_hub_heartbeat_failures_total 0",
            "hubworker_token_rejections_total{reason=\"token_expired\"} 0",
        ] {
            assert!(lines.contains(&exact), "{exact:?} missing from\n{body}");
        }
        // The daemon's own figures: this process, this boot.
        let started = value(body, "process_start_time_seconds").unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        assert!(started <= now && started > now - 600.0, "{started}");
        assert!(value(body, "process_resident_memory_bytes").unwrap() > 1e6);
        assert!(value(body, "process_open_fds").unwrap() >= 3.0);
        assert!(value(body, "process_max_fds").unwrap() >= 3.0);
        assert!(value(body, "process_cpu_seconds_total").unwrap() > 0.0);
        let contact = value(body, "hubworker_hub_last_contact_timestamp_seconds").unwrap();
        assert!(contact <= now && contact > now - 600.0, "{contact}");
    }
    // Counter naming per format.
    for line in [
        "# TYPE hubworker_runs_refused counter",
        "# TYPE process_cpu_seconds counter",
        "# TYPE hubworker_build_info gauge",
    ] {
        assert!(om.lines().any(|l| l == line), "{line} missing from\n{om}");
    }
    assert!(
        om.lines()
            .any(|l| l.starts_with("# HELP hubworker_runs_refused "))
    );
    assert!(om.ends_with("# EOF\n"), "{om}");
    for line in [
        "# TYPE hubworker_runs_refused_total counter",
        "# TYPE process_cpu_seconds_total counter",
        "# TYPE hubworker_build_info gauge",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "{line} missing from\n{text}"
        );
    }
    assert!(
        text.lines()
            .any(|l| l.starts_with("# HELP hubworker_runs_refused_total "))
    );
    assert!(!text.contains("# EOF"));
    drop(running);
    drop(holder);

    // The Hub goes away: the next heartbeat fails and is counted.
    stack.shutdown().await;
    let failed = eventually(Duration::from_secs(45), || async {
        let (_, body) = split(&daemon.scrape_as(None));
        value(&body, "hubworker_hub_heartbeat_failures_total").is_some_and(|v| v >= 1.0)
            && value(&body, "hubworker_hub_connected") == Some(0.0)
    })
    .await;
    assert!(failed, "{}", daemon.scrape());
}

/// A `hubworker serve` with both output streams piped and collected.
struct Piped {
    process: KillOnDrop,
    stdout: Arc<Mutex<Vec<u8>>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    port: u16,
}

impl Piped {
    fn start(stack: &Stack, id: &str, args: &[&str], env: &[(&str, &str)]) -> Piped {
        let port = free_port();
        let config = stack.dir().join(format!("{id}.toml"));
        std::fs::write(
            &config,
            format!(
                "[worker]\nid = {id:?}\nlisten = \"127.0.0.1:{port}\"\naudience = \"hubworker\"\ncapacity = 2\n\n\
                 [hub]\nurl = {:?}\nissuer = \"demo-hub\"\n\n[secrets]\ndir = {:?}\n\n[metrics]\nenabled = false\n",
                stack.hub_url,
                stack.dir().join("keys").display().to_string()
            ),
        )
        .unwrap();
        let mut command = Command::new(bin());
        command
            .args(["serve", "--config"])
            .arg(&config)
            .args(args)
            .env_clear()
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            command.env(k, v);
        }
        let mut process = KillOnDrop(command.spawn().unwrap());
        let collect = |mut from: Box<dyn Read + Send>| {
            let sink = Arc::new(Mutex::new(Vec::new()));
            let to = sink.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = from.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    to.lock().unwrap().extend_from_slice(&buf[..n]);
                }
            });
            sink
        };
        let stdout = collect(Box::new(process.0.stdout.take().unwrap()));
        let stderr = collect(Box::new(process.0.stderr.take().unwrap()));
        Piped {
            process,
            stdout,
            stderr,
            port,
        }
    }

    fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned()
    }

    fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.stdout.lock().unwrap()).into_owned()
    }

    async fn wait_for(&self, needle: &str) {
        let seen = eventually(Duration::from_secs(60), || async {
            self.stderr().contains(needle)
        })
        .await;
        assert!(seen, "no {needle:?} in\n{}", self.stderr());
    }

    async fn client(&self) -> WorkerClient<Channel> {
        WorkerClient::connect(format!("http://127.0.0.1:{}", self.port))
            .await
            .unwrap()
    }

    fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.process.0.id() as i32), sig)
            .unwrap();
    }

    /// Waits for the exit; its code.
    async fn exit_code(&mut self) -> Option<i32> {
        for _ in 0..1200 {
            if let Some(status) = self.process.0.try_wait().unwrap() {
                return status.code();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the daemon did not exit:\n{}", self.stderr())
    }
}

/// The first 16 hex digits of the SHA-256 of a JWT's `jti`.
fn jti_digest(token: &str) -> String {
    use base64::Engine as _;
    let claims = token.split('.').nth(1).unwrap();
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(claims)
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
    let jti = v["jti"].as_str().unwrap();
    hex::encode(sha2::Sha256::digest(jti.as_bytes()))[..16].to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn text_logs_tell_the_lifecycle_at_info_without_colour_and_log_refused_tokens() {
    let stack = Stack::start(1, &crate::util::sandboxed("")).await.unwrap();
    // No filter variable: the default must show the lifecycle.
    let mut daemon = Piped::start(&stack, "text-logs", &[], &[]);
    daemon.wait_for("worker listening").await;
    let mut c = daemon.client().await;
    let token = stack.token("alice", QUERY, &["shop"]).await.unwrap();
    assert_eq!(execute(&mut c, token.expose(), QUERY).await, Ok(()));
    // The same token again: refused (replayed), logged at WARN with a digest of its jti.
    assert_eq!(
        execute(&mut c, token.expose(), QUERY).await,
        Err("token_replayed".to_owned())
    );
    let digest = jti_digest(token.expose());
    daemon.wait_for("token refused").await;
    daemon.signal(nix::sys::signal::Signal::SIGHUP);
    daemon.wait_for("reloaded").await;
    daemon.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(daemon.exit_code().await, Some(0), "{}", daemon.stderr());
    let log = daemon.stderr();
    assert!(!log.contains('\u{1b}'), "ANSI escapes in a pipe:\n{log}");
    for (level, message) in [
        ("INFO", "registered with the hub"),
        ("INFO", "worker listening"),
        ("INFO", "reloaded"),
        ("INFO", "draining"),
        ("INFO", "drained and deregistered"),
        ("INFO", "stopping"),
    ] {
        assert!(
            log.lines()
                .any(|l| l.contains(level) && l.contains(message)),
            "no {level} {message:?} in\n{log}"
        );
    }
    let refusal = log
        .lines()
        .find(|l| l.contains("token refused"))
        .unwrap_or_else(|| panic!("no refusal in\n{log}"));
    assert!(refusal.contains("WARN"), "{refusal}");
    assert!(refusal.contains("reason=\"token_replayed\""), "{refusal}");
    assert!(
        refusal.contains(&format!("jti_sha256=\"{digest}\"")),
        "{refusal}"
    );
    let signature = token.expose().rsplit('.').next().unwrap();
    assert!(!log.contains(signature), "the token is in the log");
    assert!(daemon.stdout().is_empty(), "{}", daemon.stdout());
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn json_mode_writes_only_json_lines_and_a_bad_filter_is_a_usage_error() {
    let stack = Stack::start(1, &crate::util::sandboxed("")).await.unwrap();
    let mut daemon = Piped::start(&stack, "json-logs", &["--log-format", "json"], &[]);
    daemon.wait_for("worker listening").await;
    let mut c = daemon.client().await;
    let token = stack.token("alice", QUERY, &["shop"]).await.unwrap();
    assert_eq!(execute(&mut c, token.expose(), QUERY).await, Ok(()));
    daemon.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(daemon.exit_code().await, Some(0), "{}", daemon.stderr());
    let log = daemon.stderr();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    for message in [
        "registered with the hub",
        "worker listening",
        "run finished",
        "stopping",
    ] {
        assert!(
            lines
                .iter()
                .any(|v| v["message"] == message && v["level"] == "INFO"),
            "no INFO {message:?} in\n{log}"
        );
    }
    assert!(!log.contains('\u{1b}'));
    assert_eq!(daemon.stdout(), "", "stdout in JSON mode");

    // An invalid filter: exit 2 before anything else, naming the variable.
    for (variable, args) in [
        (
            "HUBWORKER_LOG",
            vec!["serve", "--config", "/nonexistent.toml"],
        ),
        ("RUST_LOG", vec!["validate-config", "/nonexistent.toml"]),
    ] {
        let out = Command::new(bin())
            .args(&args)
            .env_clear()
            .env(variable, "hubworker=loud")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(
            stderr.starts_with(&format!(
                "hubworker: {variable}: invalid log filter \"hubworker=loud\": "
            )),
            "{stderr}"
        );
    }
    // In JSON mode the refusal is a JSON line too.
    let out = Command::new(bin())
        .args([
            "serve",
            "--config",
            "/nonexistent.toml",
            "--log-format",
            "json",
        ])
        .env_clear()
        .env("HUBWORKER_LOG", "hubworker=loud")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let line: serde_json::Value = serde_json::from_slice(&out.stderr).unwrap();
    assert_eq!(line["level"], "ERROR");
    assert!(
        line["message"]
            .as_str()
            .unwrap()
            .starts_with("hubworker: HUBWORKER_LOG: invalid log filter"),
        "{line}"
    );
    stack.shutdown().await;
}
