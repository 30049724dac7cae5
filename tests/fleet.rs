//! Running as a systemd fleet member, with the daemon as a real process: the notify protocol
//! (READY, STATUS, WATCHDOG, RELOADING, STOPPING) on a socket this test listens on, SIGHUP
//! rotating the token key set, the Prometheus endpoint scraped, and SIGTERM draining a
//! long run to completion before a clean exit and deregistration.

// Test helpers (not only #[test] fns) unwrap: a failed setup should fail the test loudly.
#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hubworker::demo::Stack;
use hubworker::proto::worker_client::WorkerClient;
use hubworker::proto::{ExecuteRequest, execute_event::Event};
use tonic::transport::Channel;

use crate::util::bin;

/// Everything the daemon told "systemd", in order.
#[derive(Clone, Default)]
struct Notes(Arc<Mutex<Vec<String>>>);

impl Notes {
    fn listen(socket: UnixDatagram) -> Notes {
        let notes = Notes::default();
        let sink = notes.0.clone();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 4096];
            while let Ok(n) = socket.recv(&mut buf) {
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                sink.lock().unwrap().extend(text.lines().map(str::to_owned));
            }
        });
        notes
    }

    fn all(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }

    /// Waits until a line equal to (or, with a trailing `*`, starting with) `want` arrives at
    /// or after position `from`; returns its position.
    fn wait(&self, want: &str, from: usize, within: Duration) -> usize {
        let start = Instant::now();
        loop {
            let all = self.all();
            let hit =
                all.iter()
                    .enumerate()
                    .skip(from)
                    .find(|(_, l)| match want.strip_suffix('*') {
                        Some(prefix) => l.starts_with(prefix),
                        None => l.as_str() == want,
                    });
            if let Some((i, _)) = hit {
                return i;
            }
            assert!(
                start.elapsed() < within,
                "no {want:?} after #{from} within {within:?}; got {all:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn signal(child: &crate::util::KillOnDrop, sig: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.0.id() as i32), sig).unwrap();
}

async fn client(port: u16) -> WorkerClient<Channel> {
    for _ in 0..200 {
        if let Ok(c) = WorkerClient::connect(format!("http://127.0.0.1:{port}")).await {
            return c;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the daemon does not serve on {port}")
}

/// Runs `doc` to its end: Ok(()) when Finished, Err(code) for an error event or status.
async fn execute(
    c: &mut WorkerClient<Channel>,
    stack: &Stack,
    doc: &str,
    connections: &[&str],
) -> Result<(), String> {
    let token = stack.token("alice", doc, connections).await.unwrap();
    crate::util::run_to_end(c, token.expose(), doc).await
}

fn scrape(port: u16) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

const QUERY: &str = r#"{"version": 1, "nodes": [
  {"id": "q", "tool": "sql", "connection": "shop", "dialect": "sqlite", "query": "SELECT COUNT(*) AS n FROM orders"},
  {"id": "o", "tool": "output", "input": "q", "name": "out"}]}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_fleet_member_notifies_systemd_rotates_keys_on_sighup_and_drains_on_sigterm() {
    let stack = Stack::start(1, &crate::util::sandboxed("")).await.unwrap();
    let dir = stack.dir().join("fleet-member");
    let secrets = dir.join("secrets");
    std::fs::create_dir_all(&secrets).unwrap();
    for f in [
        hubworker::keys::files::TRANSPORT_KEY,
        hubworker::keys::files::REGISTRATION_SECRET,
    ] {
        std::fs::copy(stack.dir().join("keys").join(f), secrets.join(f)).unwrap();
    }
    // The worker starts pinned to a key set the Hub does not sign with.
    let old = hubworker::keys::generate_signing_pair().unwrap();
    let jwks = secrets.join(hubworker::keys::files::KEY_SET);
    std::fs::write(&jwks, &old.jwks).unwrap();

    let (port, metrics_port) = (free_port(), free_port());
    let config = dir.join("worker.toml");
    std::fs::write(
        &config,
        format!(
            "[worker]\nid = \"fleet\"\nlisten = \"127.0.0.1:{}\"\naudience = \"hubworker\"\ncapacity = 2\ndrain_grace_secs = 60\n\n\
             [hub]\nurl = {:?}\nissuer = \"demo-hub\"\n\n[secrets]\ndir = {:?}\n\n[metrics]\nlisten = \"127.0.0.1:{}\"\n",
            port - 1,
            stack.hub_url,
            secrets.display().to_string(),
            metrics_port - 1
        ),
    )
    .unwrap();
    let socket_path = dir.join("notify.sock");
    let notes = Notes::listen(UnixDatagram::bind(&socket_path).unwrap());
    // As systemd starts slot 1 of the template: --instance 1 moves both ports up by one.
    let mut daemon = crate::util::KillOnDrop(
        Command::new(bin())
            .args(["serve", "--config"])
            .arg(&config)
            .args(["--instance", "1", "--log-format", "json"])
            .env_clear()
            .env("NOTIFY_SOCKET", &socket_path)
            .env("WATCHDOG_USEC", "400000")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );

    // READY once serving and registered; STATUS; watchdog pings.
    let ready = notes.wait("READY=1", 0, Duration::from_secs(60));
    notes.wait(
        "STATUS=serving: 0/2 runs in flight",
        0,
        Duration::from_secs(5),
    );
    notes.wait("WATCHDOG=1", ready, Duration::from_secs(5));
    let registered = stack.store.available_workers().await.unwrap();
    assert!(
        registered.iter().any(|(id, _, _)| id == "fleet@1"),
        "{registered:?}"
    );
    let mut c = client(port).await;

    // The Hub signs with a key this worker does not trust yet.
    assert_eq!(
        execute(&mut c, &stack, QUERY, &["shop"]).await,
        Err("unknown_kid".to_owned())
    );
    // Rotate: the key set file now has the Hub's key; SIGHUP; RELOADING then READY.
    std::fs::write(&jwks, &stack.keys.jwks).unwrap();
    let before = notes.all().len();
    signal(&daemon, nix::sys::signal::Signal::SIGHUP);
    let reloading = notes.wait("RELOADING=1", before, Duration::from_secs(10));
    notes.wait("READY=1", reloading, Duration::from_secs(10));
    assert_eq!(execute(&mut c, &stack, QUERY, &["shop"]).await, Ok(()));
    assert_eq!(
        execute(&mut c, &stack, QUERY, &["shop"]).await,
        Ok(()),
        "a cache hit"
    );

    // Rejections and a sandbox kill, so that every family has a series.
    let drop_table = QUERY.replace("SELECT COUNT(*) AS n FROM orders", "DROP TABLE orders");
    assert_eq!(
        execute(&mut c, &stack, &drop_table, &["shop"]).await,
        Err("invalid_workflow".to_owned())
    );
    let bad_expr = r#"{"version": 1, "nodes": [
      {"id": "q", "tool": "sql", "connection": "shop", "dialect": "sqlite", "query": "SELECT 1 AS x"},
      {"id": "f", "tool": "filter", "input": "q", "expression": "pl.read_csv('/etc/passwd')"},
      {"id": "o", "tool": "output", "input": "f", "name": "out"}]}"#;
    assert_eq!(
        execute(&mut c, &stack, bad_expr, &["shop"]).await,
        Err("invalid_workflow".to_owned())
    );
    let long = crate::util::cross_join(6_000);
    let token = stack.token("alice", &long, &[]).await.unwrap();
    let mut quick = tonic::Request::new(ExecuteRequest {
        token: token.expose().to_owned(),
        workflow_json: long.clone(),
        bypass_cache: false,
        update_cache: false,
        params_json: String::new(),
    });
    quick.set_timeout(Duration::from_millis(500));
    let mut s = c.execute(quick).await.unwrap().into_inner();
    let mut code = None;
    while let Ok(Some(e)) = s.message().await {
        if let Some(Event::Error(e)) = e.event {
            code = Some(e.code);
        }
    }
    assert_eq!(code.as_deref(), Some("timeout"));

    let text = scrape(metrics_port);
    assert!(
        text.starts_with("HTTP/1.0 200") || text.starts_with("HTTP/1.1 200"),
        "{text}"
    );
    for series in [
        "hubworker_runs_started_total ",
        "hubworker_runs_finished_total{outcome=\"ok\"} 2",
        "hubworker_runs_finished_total{outcome=\"deadline_exceeded\"} 1",
        "hubworker_run_duration_seconds_count 3",
        "hubworker_runs_in_flight 0",
        "hubworker_capacity 2",
        "hubworker_draining 0",
        "hubworker_cache_hits_total 1",
        "hubworker_cache_misses_total 1",
        "hubworker_cache_size_bytes ",
        "hubworker_cache_entries ",
        "hubworker_token_rejections_total{reason=\"unknown_kid\"} 1",
        "hubworker_sql_rejections_total{code=\"not_read_only\"} 1",
        "hubworker_expression_rejections_total{code=\"unsupported_method\"} 1",
        "hubworker_sandbox_kills_total{reason=\"timeout\"} 1",
        "hubworker_redeem_duration_seconds_count 3",
    ] {
        assert!(text.contains(series), "{series} missing from\n{text}");
    }
    // No label carries user data: no user, workflow text, connection or token.
    for leak in ["alice", "orders", "shop", "passwd"] {
        assert!(!text.contains(leak), "{leak} in the metrics");
    }

    // SIGTERM during a long run: the run finishes, new runs are refused, the process exits 0.
    let long_token = stack.token("bob", &long, &[]).await.unwrap();
    let mut running = c
        .execute(ExecuteRequest {
            token: long_token.expose().to_owned(),
            workflow_json: long.clone(),
            bypass_cache: false,
            update_cache: false,
            params_json: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let Some(Event::Accepted(_)) = running.message().await.unwrap().unwrap().event else {
        panic!("accepted first")
    };
    let before = notes.all().len();
    signal(&daemon, nix::sys::signal::Signal::SIGTERM);
    notes.wait("STOPPING=1", before, Duration::from_secs(5));
    notes.wait("STATUS=draining*", before, Duration::from_secs(5));
    assert_eq!(
        execute(&mut c, &stack, QUERY, &["shop"]).await,
        Err("draining".to_owned())
    );
    let channel = Channel::from_shared(format!("http://127.0.0.1:{port}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    // Both standard probes follow the drain: the server ("") and the Worker service.
    for service in ["", "hubworker.v1.Worker"] {
        let serving = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .status;
        assert_eq!(
            serving,
            tonic_health::pb::health_check_response::ServingStatus::NotServing as i32,
            "{service:?}"
        );
    }
    let mut finished = false;
    while let Some(e) = running.message().await.unwrap() {
        match e.event {
            Some(Event::Finished(_)) => finished = true,
            Some(Event::Error(e)) => panic!("the draining run failed: [{}] {}", e.code, e.message),
            _ => {}
        }
    }
    assert!(finished, "the run in flight completed during the drain");
    let mut log = String::new();
    daemon
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    let status = daemon.0.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{log}");
    // Structured logs: JSON lines with the worker and run ids, no secrets.
    let run_line = log
        .lines()
        .find(|l| l.contains("\"run finished\""))
        .unwrap_or_else(|| panic!("no run log in\n{log}"));
    let v: serde_json::Value = serde_json::from_str(run_line).unwrap();
    // The SIGHUP rotation and the lifecycle, at INFO in the default filter of a JSON daemon.
    for message in [
        "token keys rotated",
        "reloaded the config and the token key set",
        "draining",
        "stopping",
    ] {
        assert!(
            log.lines()
                .any(|l| l.contains(&format!("\"message\":\"{message}\""))),
            "no {message:?} in\n{log}"
        );
    }
    assert_eq!(v["span"]["worker_id"], "fleet@1", "{run_line}");
    assert!(v["span"]["run_id"].as_str().is_some_and(|s| !s.is_empty()));
    let transport =
        std::fs::read_to_string(secrets.join(hubworker::keys::files::TRANSPORT_KEY)).unwrap();
    assert!(
        !log.contains(transport.trim()),
        "the transport key is in the log"
    );
    // Deregistered: the Hub no longer lists it.
    let registered = stack.store.available_workers().await.unwrap();
    assert!(
        !registered.iter().any(|(id, _, _)| id == "fleet@1"),
        "{registered:?}"
    );
    stack.shutdown().await;
}
