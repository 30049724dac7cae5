//! The worker's life next to a Hub, every party a real process (issue 18, points 4 and 8):
//! `serve` against a Hub that is not there waits for it (logging the Hub's URL and the cause,
//! backing off, feeding the watchdog, READY only once registered) and exits 0 on SIGTERM while
//! waiting; a wrong registration secret is a configuration error (exit 2); `hub rotate-key`
//! while runs are dispatched refuses none of them, and heartbeats carry the new key set.

use std::io::BufRead;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hubworker::proto::worker_client::WorkerClient;

use crate::util::{KillOnDrop, bin};

/// Lines a process wrote (a notify socket's datagrams, or stderr), collected by a thread.
#[derive(Clone, Default)]
struct Lines(Arc<Mutex<Vec<String>>>);

impl Lines {
    fn notify_socket(path: &Path) -> Lines {
        let socket = UnixDatagram::bind(path).expect("bind the notify socket");
        let lines = Lines::default();
        let sink = lines.0.clone();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 8192];
            while let Ok(n) = socket.recv(&mut buf) {
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                sink.lock()
                    .expect("lock")
                    .extend(text.lines().map(str::to_owned));
            }
        });
        lines
    }

    fn stderr_of(child: &mut Child) -> Lines {
        let err = child.stderr.take().expect("stderr piped");
        let lines = Lines::default();
        let sink = lines.0.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(err).lines().map_while(Result::ok) {
                sink.lock().expect("lock").push(line);
            }
        });
        lines
    }

    fn all(&self) -> Vec<String> {
        self.0.lock().expect("lock").clone()
    }

    /// Waits (up to `within`, then fails) for a line at or after `from` that satisfies `want`;
    /// returns its position.
    fn wait(
        &self,
        what: &str,
        from: usize,
        within: Duration,
        want: impl Fn(&str) -> bool,
    ) -> usize {
        let start = Instant::now();
        loop {
            let all = self.all();
            if let Some(i) = all.iter().skip(from).position(|l| want(l)) {
                return from + i;
            }
            assert!(
                start.elapsed() < within,
                "no line {what} after #{from} within {within:?}; got:\n{}",
                all.join("\n")
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A JSON log line's field (top level: the daemon flattens events).
fn field(line: &str, name: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    v.get(name)
        .map(|f| f.as_str().map_or_else(|| f.to_string(), str::to_owned))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

fn signal(child: &Child, sig: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), sig).expect("kill");
}

/// Waits for a process to exit (up to `within`); its exit code.
fn exit_code(child: &mut Child, within: Duration) -> i32 {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status.code().expect("exited, not killed");
        }
        assert!(start.elapsed() < within, "still running after {within:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A Hub's files: keys from `keygen`, a store with user alice, a workflow.
struct HubFiles {
    dir: tempfile::TempDir,
}

impl HubFiles {
    fn new() -> HubFiles {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = HubFiles { dir };
        files.cli_ok(&["keygen", "--out", files.keys().to_str().expect("utf-8")]);
        files.hub_ok(&["add-user", "--name", "alice", "--role", "user"]);
        std::fs::write(files.workflow(), crate::util::cross_join(3)).expect("workflow");
        files
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn keys(&self) -> PathBuf {
        self.path("keys")
    }

    fn workflow(&self) -> PathBuf {
        self.path("wf.json")
    }

    fn cli(&self, args: &[&str]) -> std::process::Output {
        Command::new(bin())
            .args(args)
            .current_dir(self.dir.path())
            .env_clear()
            .stdin(Stdio::null())
            .output()
            .expect("run hubworker")
    }

    fn cli_ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8")
    }

    /// `hubworker hub SUB --db hub.db --secrets keys ARGS`.
    fn hub_ok(&self, args: &[&str]) -> String {
        let db = self.path("hub.db");
        let keys = self.keys();
        let mut all = vec![
            "hub",
            args[0],
            "--db",
            db.to_str().expect("utf-8"),
            "--secrets",
            keys.to_str().expect("utf-8"),
        ];
        all.extend_from_slice(&args[1..]);
        self.cli_ok(&all)
    }

    /// A token for the workflow, from `hub issue-token` (signed with the key in force).
    fn token(&self) -> String {
        let wf = self.workflow();
        self.hub_ok(&[
            "issue-token",
            "--user",
            "alice",
            "--workflow",
            wf.to_str().expect("utf-8"),
        ])
        .trim()
        .to_owned()
    }

    /// `hub serve` on `port`, asking for a heartbeat every second.
    fn serve_hub(&self, port: u16) -> KillOnDrop {
        let db = self.path("hub.db");
        let child = Command::new(bin())
            .args(["hub", "serve", "--db"])
            .arg(&db)
            .arg("--secrets")
            .arg(self.keys())
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--heartbeat-secs", "1"])
            .env_clear()
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn the hub");
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "the hub does not listen"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        KillOnDrop(child)
    }

    /// A worker's secrets (its own transport key, the shared registration secret; no key set
    /// file: the keys come from the Hub) and config for a Hub on `hub_port`.
    fn worker_config(&self, name: &str, port: u16, hub_port: u16) -> PathBuf {
        let secrets = self.path(&format!("{name}-secrets"));
        std::fs::create_dir_all(&secrets).expect("mkdir");
        for f in [
            hubworker::keys::files::TRANSPORT_KEY,
            hubworker::keys::files::REGISTRATION_SECRET,
        ] {
            std::fs::copy(self.keys().join(f), secrets.join(f)).expect("copy a secret");
        }
        let config = self.path(&format!("{name}.toml"));
        std::fs::write(
            &config,
            format!(
                "[worker]\nid = {name:?}\nlisten = \"127.0.0.1:{port}\"\naudience = \"hubworker\"\ncapacity = 2\n\n\
                 [hub]\nurl = \"http://127.0.0.1:{hub_port}\"\nissuer = \"hubworker-reference-hub\"\n\
                 register_backoff_initial_ms = 50\nregister_backoff_max_ms = 400\n\n\
                 [secrets]\ndir = {:?}\n\n[metrics]\nenabled = false\n",
                secrets.display().to_string()
            ),
        )
        .expect("config");
        config
    }
}

/// `hubworker serve` as systemd starts it: a notify socket, a watchdog, JSON logs on stderr.
struct Daemon {
    child: KillOnDrop,
    notes: Lines,
    logs: Lines,
    port: u16,
}

impl Daemon {
    fn start(files: &HubFiles, name: &str, hub_port: u16) -> Daemon {
        let port = free_port();
        let config = files.worker_config(name, port, hub_port);
        Daemon::spawn(files, name, port, &config)
    }

    fn spawn(files: &HubFiles, name: &str, port: u16, config: &Path) -> Daemon {
        let notes = Lines::notify_socket(&files.path(&format!("{name}.sock")));
        let mut child = Command::new(bin())
            .args(["serve", "--config"])
            .arg(config)
            .args(["--log-format", "json"])
            .env_clear()
            .env("HUBWORKER_LOG", "info")
            .env("NOTIFY_SOCKET", files.path(&format!("{name}.sock")))
            .env("WATCHDOG_USEC", "200000")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn serve");
        let logs = Lines::stderr_of(&mut child);
        Daemon {
            child: KillOnDrop(child),
            notes,
            logs,
            port,
        }
    }

    async fn client(&self) -> WorkerClient<tonic::transport::Channel> {
        WorkerClient::connect(format!("http://127.0.0.1:{}", self.port))
            .await
            .expect("the worker serves")
    }
}

/// Runs the workflow with `token`: Ok once Finished, else the refusal's or the error's code.
async fn execute(
    c: &mut WorkerClient<tonic::transport::Channel>,
    token: String,
    doc: &str,
) -> Result<(), String> {
    crate::util::run_to_end(c, &token, doc).await
}

/// The "waiting for the hub" log lines: each names the Hub's URL and the cause.
fn waiting_lines(logs: &Lines, hub_url: &str) -> Vec<String> {
    logs.all()
        .into_iter()
        .filter(|l| field(l, "message").is_some_and(|m| m.starts_with("waiting for the hub")))
        .inspect(|l| {
            let message = field(l, "message").unwrap_or_default();
            assert!(message.contains(hub_url), "no URL in {l}");
            assert!(
                message.contains("Connection refused"),
                "no cause (only a summary) in {l}"
            );
            assert_eq!(field(l, "hub").as_deref(), Some(hub_url), "{l}");
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_waits_for_an_unreachable_hub_then_registers_and_serves() {
    let files = HubFiles::new();
    // Nothing listens on this port (yet).
    let hub_port = free_port();
    let hub_url = format!("http://127.0.0.1:{hub_port}");
    let mut daemon = Daemon::start(&files, "patient", hub_port);
    let within = Duration::from_secs(30);

    // It keeps trying, says why in STATUS= and the log (URL and cause), and is not READY.
    let third = daemon
        .notes
        .wait("STATUS=waiting (attempt 3)", 0, within, |l| {
            l.starts_with("STATUS=waiting for the hub (attempt 3,")
        });
    let status = &daemon.notes.all()[third];
    assert!(status.contains(&hub_url), "{status}");
    assert!(status.contains("Connection refused"), "{status}");
    daemon.notes.wait("EXTEND_TIMEOUT_USEC", 0, within, |l| {
        l.starts_with("EXTEND_TIMEOUT_USEC=")
    });
    daemon
        .notes
        .wait("WATCHDOG=1", 0, within, |l| l == "WATCHDOG=1");
    assert!(!daemon.notes.all().iter().any(|l| l == "READY=1"));
    assert!(
        daemon.child.0.try_wait().expect("try_wait").is_none(),
        "it exited"
    );
    daemon.logs.wait("waiting for the hub", 0, within, |l| {
        l.contains("waiting for the hub")
    });
    assert!(!waiting_lines(&daemon.logs, &hub_url).is_empty());

    // The Hub comes up on that port: the worker registers, is READY, and serves a run.
    let _hub = files.serve_hub(hub_port);
    let ready = daemon
        .notes
        .wait("READY=1", third, within, |l| l == "READY=1");
    daemon.notes.wait("STATUS=serving", ready, within, |l| {
        l == "STATUS=serving: 0/2 runs in flight"
    });
    daemon
        .logs
        .wait("registered after waiting", 0, within, |l| {
            field(l, "message").as_deref() == Some("registered with the hub after waiting for it")
        });
    let mut c = daemon.client().await;
    let doc = std::fs::read_to_string(files.workflow()).expect("workflow");
    assert_eq!(execute(&mut c, files.token(), &doc).await, Ok(()));

    // A worker whose registration secret the Hub refuses: a configuration error, exit 2, with
    // the Hub's URL and reason; no waiting.
    let port = free_port();
    let config = files.worker_config("wrong-secret", port, hub_port);
    std::fs::write(
        files
            .path("wrong-secret-secrets")
            .join(hubworker::keys::files::REGISTRATION_SECRET),
        hubworker::keys::random_secret().expose(),
    )
    .expect("write");
    let mut wrong = Daemon::spawn(&files, "wrong-secret", port, &config);
    assert_eq!(exit_code(&mut wrong.child.0, within), 2);
    // The last line (the reader thread may still be catching up; in JSON mode the error that
    // ends the process is a JSON line too): the Hub's URL and reason.
    wrong.logs.wait("the refusal", 0, within, |l| {
        field(l, "level").as_deref() == Some("ERROR")
            && l.contains("hubworker: registration with the hub failed")
            && l.contains(&format!(
                "the hub at {hub_url} refused (bad_registration_secret"
            ))
    });
    assert!(!wrong.notes.all().iter().any(|l| l == "READY=1"));

    // SIGTERM: drained and deregistered, exit 0.
    signal(&daemon.child.0, nix::sys::signal::Signal::SIGTERM);
    assert_eq!(exit_code(&mut daemon.child.0, within), 0);
}

#[test]
fn sigterm_while_waiting_for_the_hub_exits_0() {
    let files = HubFiles::new();
    let hub_port = free_port();
    let hub_url = format!("http://127.0.0.1:{hub_port}");
    let mut daemon = Daemon::start(&files, "impatient", hub_port);
    let within = Duration::from_secs(30);
    let waiting = daemon.notes.wait("STATUS=waiting", 0, within, |l| {
        l.starts_with("STATUS=waiting for the hub (attempt 2,")
    });
    signal(&daemon.child.0, nix::sys::signal::Signal::SIGTERM);
    assert_eq!(exit_code(&mut daemon.child.0, within), 0);
    daemon
        .notes
        .wait("STOPPING=1", waiting, within, |l| l == "STOPPING=1");
    assert!(!daemon.notes.all().iter().any(|l| l == "READY=1"));
    assert!(waiting_lines(&daemon.logs, &hub_url).len() >= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotating_the_hub_key_while_runs_are_dispatched_refuses_none() {
    let files = HubFiles::new();
    let hub_port = free_port();
    let _hub = files.serve_hub(hub_port);
    let daemon = Daemon::start(&files, "rotating", hub_port);
    let within = Duration::from_secs(60);
    daemon.notes.wait("READY=1", 0, within, |l| l == "READY=1");
    let doc = std::fs::read_to_string(files.workflow()).expect("workflow");
    let files = Arc::new(files);

    // Tokens signed with the first key, before any rotation.
    let k0_tokens = [files.token(), files.token()];

    // Runs dispatched back to back, each with a fresh token from `hub issue-token`.
    let stop = Arc::new(AtomicBool::new(false));
    let results: Arc<Mutex<Vec<Result<(), String>>>> = Arc::default();
    let dispatcher = {
        let (files, stop, results, doc) =
            (files.clone(), stop.clone(), results.clone(), doc.clone());
        let mut c = daemon.client().await;
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let f = files.clone();
                let token = tokio::task::spawn_blocking(move || f.token())
                    .await
                    .expect("token");
                let r = execute(&mut c, token, &doc).await;
                results.lock().expect("lock").push(r);
            }
        })
    };
    let runs = || results.lock().expect("lock").len();
    let wait_runs = |n: usize| {
        let start = Instant::now();
        while runs() < n {
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "runs stalled at {}",
                runs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    wait_runs(3);

    // Rotation 1 while runs go on: tokens are signed with K1 at once.
    let out = files.hub_ok(&["rotate-key"]);
    let kid = |out: &str, word: &str| -> String {
        out.split(|c: char| c.is_whitespace() || c == ',')
            .skip_while(|w| *w != word)
            .nth(1)
            .unwrap_or_else(|| panic!("no {word} kid in {out}"))
            .to_owned()
    };
    let (k1, k0) = (kid(&out, "current"), kid(&out, "previous"));
    assert!(out.contains("no key dropped"), "{out}");
    let after_rotation = runs();
    wait_runs(after_rotation + 5);
    // A token issued before the rotation (K0, now the previous key) still runs.
    let mut c = daemon.client().await;
    assert_eq!(execute(&mut c, k0_tokens[0].clone(), &doc).await, Ok(()));
    stop.store(true, Ordering::SeqCst);
    dispatcher.await.expect("dispatcher");
    let results = results.lock().expect("lock").clone();
    assert!(
        results.iter().all(Result::is_ok),
        "refused during the rotation: {results:?}"
    );
    daemon.logs.wait("keys rotated to K1", 0, within, |l| {
        field(l, "message").as_deref() == Some("token keys rotated")
            && field(l, "kids").is_some_and(|k| k.contains(&k1) && k.contains(&k0))
    });

    // Rotation 2 with no run in between: the heartbeat brings {K2, K1}; K0 is dropped, so
    // the second K0 token is refused as a key the worker no longer has.
    let k1_token = files.token();
    let from = daemon.logs.all().len();
    let out = files.hub_ok(&["rotate-key"]);
    let k2 = kid(&out, "current");
    assert_eq!(kid(&out, "previous"), k1);
    assert!(out.contains(&format!("dropped {k0}")), "{out}");
    daemon
        .logs
        .wait("keys rotated by a heartbeat", from, within, |l| {
            field(l, "message").as_deref() == Some("token keys rotated")
                && field(l, "source").as_deref() == Some("heartbeat")
                && field(l, "kids")
                    .is_some_and(|k| k.contains(&k2) && k.contains(&k1) && !k.contains(&k0))
        });
    assert_eq!(
        execute(&mut c, k0_tokens[1].clone(), &doc).await,
        Err("unknown_kid".to_owned())
    );
    assert_eq!(execute(&mut c, k1_token, &doc).await, Ok(()));
    assert_eq!(execute(&mut c, files.token(), &doc).await, Ok(()));
}

#[test]
fn hub_store_failures_exit_1_and_refused_input_exits_2() {
    let files = HubFiles::new();
    // Refused input (a user that exists): a usage error.
    let db = files.path("hub.db");
    let dup = files.cli(&[
        "hub",
        "add-user",
        "--db",
        db.to_str().expect("utf-8"),
        "--name",
        "alice",
        "--role",
        "user",
    ]);
    assert_eq!(dup.status.code(), Some(2), "{dup:?}");
    // A store that cannot be opened (the path is a directory): a runtime failure.
    let dir = files.path("a-directory");
    std::fs::create_dir(&dir).expect("mkdir");
    let broken = files.cli(&[
        "hub",
        "add-user",
        "--db",
        dir.to_str().expect("utf-8"),
        "--name",
        "bob",
        "--role",
        "user",
    ]);
    assert_eq!(broken.status.code(), Some(1), "{broken:?}");
    assert!(
        String::from_utf8_lossy(&broken.stderr).contains("hub store file"),
        "{broken:?}"
    );
}
