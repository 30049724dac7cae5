//! The run sandbox: hostile children and hostile runs end the way they must (classified, the
//! daemon serving on, a concurrent healthy run correct), confinement fails closed, and a
//! credential's plaintext never exists in the daemon's memory. Everything here runs without
//! root except the memory scan, which reads a non-dumpable process (see that test).

// Test helpers (not only #[test] fns) unwrap: a failed setup should fail the test loudly.
#![allow(clippy::unwrap_used)]

use std::io::Cursor;
use std::process::{Command, Stdio};
use std::time::Duration;

use hubworker::demo::Stack;
use hubworker::proto::{ExecuteRequest, StatusRequest, execute_event::Event};
use hubworker::sandbox::{Fault, TEMPLATE_COMMAND};
use polars::prelude::*;

use crate::util::{bin, cross_join, sandboxed};

/// A one-query workflow whose hash differs by `tag`.
fn query_doc(tag: &str) -> String {
    format!(
        r#"{{"version": 1, "nodes": [
          {{"id": "q", "tool": "sql", "connection": "shop", "dialect": "sqlite", "query": "SELECT COUNT(*) AS n, '{tag}' AS tag FROM orders"}},
          {{"id": "f", "tool": "formula", "input": "q", "formulas": [{{"column": "twice", "expression": "pl.col('n') * 2"}}]}},
          {{"id": "o", "tool": "output", "input": "f", "name": "out"}}]}}"#
    )
}

/// How one Execute ended: the outputs, or the error's code and message.
#[derive(Debug)]
pub(crate) enum Ended {
    Finished(Vec<(String, DataFrame)>),
    Error(String, String),
}

pub(crate) async fn execute(stack: &Stack, doc: &str, connections: &[&str]) -> Ended {
    let token = stack.token("alice", doc, connections).await.unwrap();
    let mut client = stack.client().await.unwrap();
    let req = ExecuteRequest {
        token: token.expose().to_owned(),
        workflow_json: doc.to_owned(),
        bypass_cache: true,
        update_cache: false,
        params_json: String::new(),
    };
    let mut stream = client.execute(req).await.unwrap().into_inner();
    let mut ipc: Vec<(String, Vec<u8>)> = Vec::new();
    while let Some(e) = stream.message().await.unwrap() {
        match e.event {
            Some(Event::Result(r)) => match ipc.iter_mut().find(|(n, _)| *n == r.output) {
                Some((_, b)) => b.extend_from_slice(&r.arrow_ipc),
                None => ipc.push((r.output, r.arrow_ipc)),
            },
            Some(Event::Error(e)) => return Ended::Error(e.code, e.message),
            Some(Event::Finished(_)) => {
                return Ended::Finished(
                    ipc.into_iter()
                        .map(|(n, b)| (n, IpcStreamReader::new(Cursor::new(b)).finish().unwrap()))
                        .collect(),
                );
            }
            _ => {}
        }
    }
    panic!("the stream ended without Finished or Error")
}

fn assert_healthy(ended: Ended, tag: &str) {
    let Ended::Finished(outputs) = ended else {
        panic!("the healthy run failed: {ended:?}")
    };
    let df = &outputs[0].1;
    assert_eq!(df.column("n").unwrap().i64().unwrap().get(0), Some(1000));
    assert_eq!(
        df.column("twice").unwrap().i64().unwrap().get(0),
        Some(2000)
    );
    assert_eq!(df.column("tag").unwrap().str().unwrap().get(0), Some(tag));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hostile_children_are_classified_and_a_concurrent_healthy_run_completes() {
    let stack = Stack::start(
        4,
        &sandboxed("memory_bytes = 1073741824\ncpu_secs = 2\nkill_grace_ms = 200"),
    )
    .await
    .unwrap();
    let sandbox = stack
        .worker
        .worker
        .sandbox()
        .expect("process isolation is the default");
    // The root-only file a fault tries to read (as root, which CI is: the child is not).
    if nix::unistd::geteuid().is_root() {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(hubworker::sandbox::SECRET_FILE)
            .unwrap();
        std::io::Write::write_all(&mut f, b"root only").unwrap();
    }
    let cases = [
        (Fault::Execve, "sandbox_violation"),
        (Fault::Ptrace, "sandbox_violation"),
        (Fault::ReadRootFile, "sandbox_violation"),
        (Fault::ListRoot, "sandbox_violation"),
        (Fault::ConnectOtherPort, "sandbox_violation"),
        (Fault::SignalDaemon, "sandbox_violation"),
        (Fault::SocketAfterLoad, "sandbox_violation"),
        (Fault::OpenAfterLoad, "sandbox_violation"),
        (Fault::Crash, "crashed"),
        (Fault::Allocate, "memory_limit"),
        (Fault::Spin, "cpu_limit"),
    ];
    for (i, (fault, code)) in cases.into_iter().enumerate() {
        let hostile = query_doc(&format!("hostile-{i}"));
        let hash = hubworker::workflow::workflow_sha256(&hostile).unwrap();
        sandbox.plant_fault(&hash, fault);
        let healthy_tag = format!("healthy-{i}");
        let healthy = query_doc(&healthy_tag);
        let (bad, good) = tokio::join!(
            execute(&stack, &hostile, &["shop"]),
            execute(&stack, &healthy, &["shop"])
        );
        match bad {
            Ended::Error(c, message) => {
                assert_eq!(c, code, "{fault:?}: {message}");
                assert!(!message.is_empty());
            }
            Ended::Finished(_) => panic!("{fault:?}: the hostile run finished"),
        }
        assert_healthy(good, &healthy_tag);
    }
    // The daemon carries on: nothing in flight, and Status answers.
    let status = stack
        .client()
        .await
        .unwrap()
        .status(StatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.runs_in_flight, 0);
    assert_eq!(status.isolation, "process");
    // Every confinement is listed with its state, in order; what this kernel and identity
    // allow is in force.
    let names: Vec<&str> = status
        .confinement_states
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(
        names,
        [
            "stdio_only",
            "empty_environment",
            "unprivileged_identity",
            "user_namespace",
            "ipc_namespace",
            "uts_namespace",
            "mount_namespace",
            "empty_root",
            "capabilities_cleared",
            "rlimits",
            "no_new_privs",
            "non_dumpable",
            "parent_death_signal",
            "landlock_filesystem",
            "landlock_network",
            "landlock_scopes",
            "seccomp",
        ]
    );
    let active = |name: &str| {
        status
            .confinement_states
            .iter()
            .any(|c| c.name == name && c.active)
    };
    for always in [
        "stdio_only",
        "empty_environment",
        "unprivileged_identity",
        "capabilities_cleared",
        "rlimits",
        "no_new_privs",
        "non_dumpable",
        "parent_death_signal",
        "seccomp",
    ] {
        assert!(active(always), "{always}: {:?}", status.confinement_states);
    }
    if nix::unistd::geteuid().is_root() {
        for c in ["user_namespace", "mount_namespace", "empty_root"] {
            assert!(active(c), "{c}: {:?}", status.confinement_states);
        }
        let identity = status
            .confinement_states
            .iter()
            .find(|c| c.name == "unprivileged_identity")
            .unwrap();
        assert_eq!(identity.detail, "uid 65534, gid 65534");
    }
    let abi = status.landlock_abi;
    assert_eq!(active("landlock_filesystem"), abi >= 1);
    assert_eq!(active("landlock_network"), abi >= 4);
    assert_eq!(active("landlock_scopes"), abi >= 6);
    assert_eq!(
        status.confinements.len(),
        status
            .confinement_states
            .iter()
            .filter(|c| c.active)
            .count()
    );
    assert_healthy(
        execute(&stack, &query_doc("after"), &["shop"]).await,
        "after",
    );
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hostile_workflows_hit_their_memory_and_cpu_limits() {
    // Memory: a 30,000 x 30,000 cross join wants tens of GiB; the child has 1 GiB.
    let stack = Stack::start(2, &sandboxed("memory_bytes = 1073741824"))
        .await
        .unwrap();
    let (bomb_doc, good_doc) = (cross_join(30_000), query_doc("beside-the-bomb"));
    let (bomb, good) = tokio::join!(
        execute(&stack, &bomb_doc, &[]),
        execute(&stack, &good_doc, &["shop"])
    );
    match bomb {
        Ended::Error(code, _) => assert_eq!(code, "memory_limit"),
        Ended::Finished(_) => panic!("the memory bomb finished"),
    }
    assert_healthy(good, "beside-the-bomb");
    stack.shutdown().await;

    // CPU: a 6,000 x 6,000 cross join, sorted and grouped, takes seconds of CPU; 1 s allowed.
    let stack = Stack::start(2, &sandboxed("cpu_secs = 1")).await.unwrap();
    let (spin_doc, good_doc) = (cross_join(6_000), query_doc("beside-the-spin"));
    let (spin, good) = tokio::join!(
        execute(&stack, &spin_doc, &[]),
        execute(&stack, &good_doc, &["shop"])
    );
    match spin {
        Ended::Error(code, _) => assert_eq!(code, "cpu_limit"),
        Ended::Finished(_) => panic!("the CPU hog finished"),
    }
    assert_healthy(good, "beside-the-spin");
    stack.shutdown().await;
}

/// Starts the binary as the fork server's template by hand, with the environment, directory
/// and parent given, its control socket as stdin; closes the daemon's end after the first
/// packet (or at once if none comes).
fn template(
    env: &[(&str, &str)],
    cwd: &std::path::Path,
    parent: u32,
) -> (std::process::Output, Vec<u8>) {
    use nix::sys::socket::{AddressFamily, MsgFlags, SockFlag, SockType, recv, socketpair};
    use std::os::fd::AsRawFd;
    let (ours, theirs) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .unwrap();
    let mut cmd = Command::new(bin());
    cmd.arg(TEMPLATE_COMMAND)
        .args(["--parent", &parent.to_string()])
        .env_clear()
        .envs(env.iter().copied())
        .current_dir(cwd)
        .stdin(Stdio::from(theirs))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = cmd.spawn().unwrap();
    drop(cmd);
    let mut buf = vec![0u8; 4096];
    let n = recv(ours.as_raw_fd(), &mut buf, MsgFlags::empty()).unwrap_or(0);
    buf.truncate(n);
    drop(ours);
    (child.wait_with_output().unwrap(), buf)
}

#[test]
fn confinement_fails_closed_with_a_code_per_step() {
    let me = std::process::id();
    let private = || {
        let d = tempfile::tempdir().unwrap();
        std::fs::set_permissions(
            d.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )
        .unwrap();
        d
    };
    let empty = private();
    // A clean start: confined, says Ready, sees the end of its control socket, exits 0.
    let (ok, ready) = template(&[], empty.path(), me);
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(!ready.is_empty(), "the Ready packet");

    // Anything in the environment: refused before anything else is read.
    let (leaked, said) = template(&[("DATABASE_URL", "postgres://x")], empty.path(), me);
    assert_eq!(
        leaked.status.code(),
        Some(hubworker::sandbox::exit::ENVIRONMENT)
    );
    assert!(said.is_empty(), "nothing was said or run");
    assert!(
        !String::from_utf8_lossy(&leaked.stderr).contains("postgres://x"),
        "the value is never echoed"
    );

    // A working directory with something in it.
    let full = private();
    std::fs::write(full.path().join("loot"), b"x").unwrap();
    let (dirty, _) = template(&[], full.path(), me);
    assert_eq!(dirty.status.code(), Some(hubworker::sandbox::exit::WORKDIR));

    // A "daemon" that is not its parent: the parent-death signal could not protect it.
    let (orphan, _) = template(&[], empty.path(), 1);
    assert_eq!(
        orphan.status.code(),
        Some(hubworker::sandbox::exit::PARENT_DEATH)
    );
}

/// Counts `needle` in every readable mapping of process `pid`.
fn count_in_memory(pid: u32, needle: &[u8]) -> usize {
    use std::io::{Read, Seek, SeekFrom};
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    let mut mem = std::fs::File::open(format!("/proc/{pid}/mem"))
        .expect("reading a non-dumpable daemon's memory needs CAP_SYS_PTRACE (CI runs as root)");
    let mut found = 0;
    let mut buf = Vec::new();
    for line in maps.lines() {
        let mut parts = line.split_whitespace();
        let (Some(range), Some(perms)) = (parts.next(), parts.next()) else {
            continue;
        };
        if !perms.starts_with('r') || line.ends_with("[vvar]") || line.ends_with("[vsyscall]") {
            continue;
        }
        let (start, end) = range.split_once('-').unwrap();
        let (start, end) = (
            u64::from_str_radix(start, 16).unwrap(),
            u64::from_str_radix(end, 16).unwrap(),
        );
        buf.resize((end - start) as usize, 0);
        if mem.seek(SeekFrom::Start(start)).is_err() || mem.read_exact(&mut buf).is_err() {
            continue;
        }
        found += buf.windows(needle.len()).filter(|w| *w == needle).count();
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_credential_never_exists_in_the_daemons_memory() {
    // The Hub (in this process) and a real worker daemon process.
    let stack = Stack::start(1, &sandboxed("")).await.unwrap();
    let marker = format!("MARKER-{}-pw", std::process::id());
    let mut cred = hubworker::demo::sqlite_credential("marked", &stack.db);
    cred.dialect = hubworker::sql::Dialect::Postgres;
    let url = std::env::var("HUBWORKER_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let hostdb = url.split('@').nth(1).unwrap();
    let (hostport, database) = hostdb.split_once('/').unwrap();
    let (host, port) = hostport.split_once(':').unwrap_or((hostport, "5432"));
    cred.host = Some(host.into());
    cred.port = Some(port.parse().unwrap());
    cred.database = database.split('?').next().unwrap().into();
    cred.auth = hubworker::creds::Auth::Password {
        user: url
            .split("://")
            .nth(1)
            .unwrap()
            .split(['@', ':'])
            .next()
            .unwrap()
            .into(),
        // Trust authentication ignores it; the daemon must never see it.
        password: hubworker::secret::Secret::new(marker.clone()),
    };
    stack
        .store
        .add_connection(&cred, &stack.keys.at_rest, hubworker::hub::now())
        .await
        .unwrap();

    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let config = stack.dir().join("memory-worker.toml");
    std::fs::write(
        &config,
        format!(
            "[worker]\nid = \"memory-worker\"\nlisten = \"127.0.0.1:{port}\"\naudience = \"hubworker\"\ncapacity = 4\n\n\
             [hub]\nurl = {:?}\nissuer = \"demo-hub\"\n\n[secrets]\ndir = {:?}\n\n[metrics]\nenabled = false\n",
            stack.hub_url,
            stack.dir().join("keys").display().to_string()
        ),
    )
    .unwrap();
    let mut daemon = crate::util::KillOnDrop(
        Command::new(bin())
            .args(["serve", "--config"])
            .arg(&config)
            .env_clear()
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let url = format!("http://127.0.0.1:{port}");
    let mut client = None;
    for _ in 0..200 {
        if let Ok(c) = hubworker::proto::worker_client::WorkerClient::connect(url.clone()).await {
            client = Some(c);
            break;
        }
        if let Ok(Some(status)) = daemon.0.try_wait() {
            let mut err = String::new();
            std::io::Read::read_to_string(&mut daemon.0.stderr.take().unwrap(), &mut err).unwrap();
            panic!("the daemon exited ({status}): {err}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut client = client.expect("the daemon serves");
    let doc = r#"{"version": 1, "nodes": [
      {"id": "q", "tool": "sql", "connection": "marked", "dialect": "postgres", "query": "SELECT 41 + 1 AS answer"},
      {"id": "o", "tool": "output", "input": "q", "name": "out"}]}"#;
    for i in 0..100 {
        let token = stack.token("alice", doc, &["marked"]).await.unwrap();
        let req = ExecuteRequest {
            token: token.expose().to_owned(),
            workflow_json: doc.to_owned(),
            // Every run opens the credential (no cache hits).
            bypass_cache: true,
            update_cache: false,
            params_json: String::new(),
        };
        let mut stream = client.execute(req).await.unwrap().into_inner();
        let mut finished = false;
        while let Some(e) = stream.message().await.unwrap() {
            match e.event {
                Some(Event::Finished(_)) => finished = true,
                Some(Event::Error(e)) => panic!("run {i}: [{}] {}", e.code, e.message),
                _ => {}
            }
        }
        assert!(finished, "run {i}");
    }
    let pid = daemon.0.id();
    // The scan works: a string the daemon does hold (its id, from its config) is found.
    assert!(count_in_memory(pid, b"memory-worker") > 0);
    // The credential's secret: never.
    assert_eq!(count_in_memory(pid, marker.as_bytes()), 0);
    drop(daemon);
    stack.shutdown().await;
}
