//! A worker daemon as a real process (`hubworker serve`) against an in-process reference Hub:
//! its pid (for RSS, children and zombies), its log file, its metrics, and clients of it.

// Test helpers (not only #[test] fns) unwrap: a failed setup should fail the test loudly.
#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hubworker::demo::Stack;
use hubworker::proto::worker_client::WorkerClient;
use tonic::transport::Channel;

use crate::util::{KillOnDrop, bin};

/// A free loopback port (bound, read, released).
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running `hubworker serve`.
pub(crate) struct Daemon {
    process: KillOnDrop,
    /// The gRPC port.
    pub(crate) port: u16,
    metrics_port: u16,
    log: PathBuf,
}

impl Daemon {
    /// Starts a daemon registered with `stack`'s Hub, with `capacity` slots and `extra` config
    /// (whole sections: `[limits]`, `[sandbox]`, ...), logging at info into a file.
    pub(crate) async fn start(stack: &Stack, id: &str, capacity: u32, extra: &str) -> Daemon {
        Daemon::start_logging(stack, id, capacity, extra, "info").await
    }

    /// [`start`](Self::start) with the log filter `level` (`HUBWORKER_LOG`).
    pub(crate) async fn start_logging(
        stack: &Stack,
        id: &str,
        capacity: u32,
        extra: &str,
        level: &str,
    ) -> Daemon {
        Daemon::spawn(stack, (id, "hubworker", capacity), extra, level).await
    }

    /// [`start`](Self::start) in the worker pool `audience` (tokens for other pools are not
    /// its).
    pub(crate) async fn start_in_pool(
        stack: &Stack,
        audience: &str,
        id: &str,
        capacity: u32,
        extra: &str,
    ) -> Daemon {
        Daemon::spawn(stack, (id, audience, capacity), extra, "info").await
    }

    async fn spawn(stack: &Stack, who: (&str, &str, u32), extra: &str, level: &str) -> Daemon {
        let id = who.0;
        let (port, metrics_port) = (free_port(), free_port());
        let config = stack.dir().join(format!("{id}.toml"));
        std::fs::write(&config, stack.worker_toml(who, (port, metrics_port), extra)).unwrap();
        let log = stack.dir().join(format!("{id}.log"));
        let process = KillOnDrop(
            Command::new(bin())
                .args(["serve", "--config"])
                .arg(&config)
                .env_clear()
                .env("HUBWORKER_LOG", level)
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).unwrap())
                .spawn()
                .unwrap(),
        );
        let mut daemon = Daemon {
            process,
            port,
            metrics_port,
            log,
        };
        let start = Instant::now();
        loop {
            if let Ok(mut c) = WorkerClient::connect(daemon.url()).await
                && c.status(hubworker::proto::StatusRequest {}).await.is_ok()
            {
                break;
            }
            if let Ok(Some(status)) = daemon.process.0.try_wait() {
                panic!("the daemon exited ({status}): {}", daemon.log());
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "the daemon does not serve: {}",
                daemon.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        daemon
    }

    /// `http://127.0.0.1:port`.
    pub(crate) fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Its pid.
    pub(crate) fn pid(&self) -> u32 {
        self.process.0.id()
    }

    /// The process itself (to signal it and wait for its exit).
    pub(crate) fn process(&mut self) -> &mut std::process::Child {
        &mut self.process.0
    }

    /// A client on a connection of its own (HTTP/2 flow control is per connection too).
    pub(crate) async fn client(&self) -> WorkerClient<Channel> {
        WorkerClient::connect(self.url()).await.unwrap()
    }

    /// Everything it logged so far.
    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The Prometheus text.
    pub(crate) fn scrape(&self) -> String {
        self.scrape_as(None)
    }

    /// The whole HTTP response to `GET /metrics`, with `Accept: accept` when given.
    pub(crate) fn scrape_as(&self, accept: Option<&str>) -> String {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.metrics_port)).unwrap();
        let accept = accept.map_or(String::new(), |a| format!("Accept: {a}\r\n"));
        s.write_all(format!("GET /metrics HTTP/1.0\r\nHost: localhost\r\n{accept}\r\n").as_bytes())
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    /// The value of one series (`name{labels}`), 0 when absent.
    pub(crate) fn metric(&self, series: &str) -> u64 {
        self.scrape()
            .lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse::<f64>().ok())
            .map_or(0, |v| v as u64)
    }

    /// Resident memory, KiB (`VmRSS`).
    pub(crate) fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }

    /// The daemon's run children: the children of its fork server's template (the daemon's
    /// own child) but the spare waiting for a task, with their state letters (a zombie would
    /// show as 'Z').
    pub(crate) fn children(&self) -> Vec<(i32, char)> {
        children_of(self.pid())
            .into_iter()
            .flat_map(|(template, _)| children_of(u32::try_from(template).unwrap_or(0)))
            .filter(|(pid, _)| {
                std::fs::read_to_string(format!("/proc/{pid}/comm"))
                    .is_ok_and(|c| c.trim_end() != "hubworker-spare")
            })
            .collect()
    }
}

/// The child processes of `parent`: (pid, state letter) from `/proc/*/stat`.
pub(crate) fn children_of(parent: u32) -> Vec<(i32, char)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // "pid (comm) state ppid ...": comm may hold spaces and parentheses.
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            continue;
        };
        let mut fields = rest.split_whitespace();
        let (Some(state), Some(ppid)) = (fields.next(), fields.next()) else {
            continue;
        };
        if ppid.parse::<u32>().ok() == Some(parent) {
            out.push((pid, state.chars().next().unwrap_or('?')));
        }
    }
    out
}

/// Waits until `check` holds, polling every 50 ms; false if it did not within `within`.
pub(crate) async fn eventually<F, Fut>(within: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < within {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    check().await
}

/// A PostgreSQL credential for connection `name` from `HUBWORKER_TEST_PG_URL` (trust auth:
/// the password is not checked), added to `stack`'s Hub.
pub(crate) async fn add_postgres(stack: &Stack, name: &str) {
    add_postgres_with(stack, name, "unused-with-trust").await;
}

/// [`add_postgres`] with `password` in the sealed credential.
pub(crate) async fn add_postgres_with(stack: &Stack, name: &str, password: &str) {
    let url = std::env::var("HUBWORKER_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let rest = url.split("://").nth(1).unwrap();
    let (auth, hostdb) = rest.split_once('@').unwrap();
    let user = auth.split(':').next().unwrap();
    let (hostport, database) = hostdb.split_once('/').unwrap();
    let (host, port) = hostport.split_once(':').unwrap_or((hostport, "5432"));
    let cred = hubworker::creds::Credential {
        connection: name.into(),
        dialect: hubworker::sql::Dialect::Postgres,
        host: Some(host.into()),
        port: Some(port.parse().unwrap()),
        database: database.split('?').next().unwrap().into(),
        auth: hubworker::creds::Auth::Password {
            user: user.into(),
            password: hubworker::secret::Secret::new(password.into()),
        },
        role: None,
        tls: false,
    };
    stack
        .store
        .add_connection(&cred, &stack.keys.at_rest, hubworker::hub::now())
        .await
        .unwrap();
}
