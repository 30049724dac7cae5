//! The worker daemon end to end over real gRPC on loopback with the reference Hub: SQLite and
//! PostgreSQL workflows, cancellation, deadlines, client disconnects, over-capacity refusal,
//! 50 concurrent runs, cache sharing and isolation, Validate/Inspect/Preview/Status, and the
//! standard health and reflection (v1 and v1alpha) services of the worker and the Hub.

// Test helpers (not only #[test] fns) unwrap: a failed setup should fail the test loudly.
#![allow(clippy::unwrap_used)]

use std::io::Cursor;
use std::time::{Duration, Instant};

use hubworker::demo::{Stack, sqlite_credential};
use hubworker::proto::{
    CancelRequest, ExecuteRequest, InspectRequest, PreviewRequest, StatusRequest, ValidateRequest,
    execute_event::Event,
};
use polars::prelude::*;

use crate::util::reason;

const REVENUE: &str = include_str!("../examples/revenue_by_region.json");

fn small_sql(query: &str) -> String {
    format!(
        r#"{{"version": 1, "nodes": [
          {{"id": "q", "tool": "sql", "connection": "shop", "dialect": "sqlite", "query": "{query}"}},
          {{"id": "o", "tool": "output", "input": "q", "name": "out"}}]}}"#
    )
}

fn req(token: &hubworker::secret::Secret, doc: &str) -> ExecuteRequest {
    ExecuteRequest {
        token: token.expose().to_owned(),
        workflow_json: doc.to_owned(),
        bypass_cache: false,
        update_cache: false,
        params_json: String::new(),
    }
}

/// What one Execute produced.
#[derive(Debug, Default)]
struct Outcome {
    run_id: String,
    outputs: Vec<(String, DataFrame)>,
    cached: Vec<bool>,
    error: Option<String>,
    finished: bool,
}

async fn run(stack: &Stack, request: ExecuteRequest) -> Result<Outcome, tonic::Status> {
    let mut client = stack.client().await.unwrap();
    let mut stream = client.execute(request).await?.into_inner();
    let mut out = Outcome::default();
    let mut ipc: Vec<(String, Vec<u8>)> = Vec::new();
    while let Some(e) = stream.message().await? {
        match e.event {
            Some(Event::Accepted(a)) => out.run_id = a.run_id,
            Some(Event::Progress(p))
                if p.tool == "sql" && p.state() == hubworker::proto::progress::State::Finished =>
            {
                out.cached.push(p.from_cache);
            }
            Some(Event::Progress(_)) => {}
            Some(Event::Result(r)) => match ipc.iter_mut().find(|(n, _)| *n == r.output) {
                Some((_, b)) => b.extend_from_slice(&r.arrow_ipc),
                None => ipc.push((r.output, r.arrow_ipc)),
            },
            Some(Event::Finished(_)) => out.finished = true,
            Some(Event::Error(e)) => {
                // The last event: the status that ends the stream carries the same code.
                let end = stream.message().await.unwrap_err();
                assert_eq!(reason(&end), e.code, "{end:?}");
                out.error = Some(e.code);
                break;
            }
            None => {}
        }
    }
    out.outputs = ipc
        .into_iter()
        .map(|(n, b)| (n, IpcStreamReader::new(Cursor::new(b)).finish().unwrap()))
        .collect();
    Ok(out)
}

async fn in_flight(stack: &Stack) -> u32 {
    let mut c = stack.client().await.unwrap();
    c.status(StatusRequest {})
        .await
        .unwrap()
        .into_inner()
        .runs_in_flight
}

async fn wait_idle(stack: &Stack, within: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < within {
        if in_flight(stack).await == 0 {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_workflow_streams_results_and_the_cache_follows_the_credential() {
    let stack = Stack::start(4, &crate::util::sandboxed("")).await.unwrap();
    let t = stack.token("alice", REVENUE, &["shop"]).await.unwrap();
    let first = run(&stack, req(&t, REVENUE)).await.unwrap();
    assert!(first.finished && first.error.is_none(), "{first:?}");
    assert_eq!(first.cached, [false, false, false]);
    let (name, df) = &first.outputs[0];
    assert_eq!(name, "revenue_by_region");
    assert_eq!(df.shape(), (4, 5));
    let orders: u32 = df
        .column("orders")
        .unwrap()
        .u32()
        .unwrap()
        .iter()
        .flatten()
        .sum();
    assert!(orders > 500 && orders < 1_000, "{orders}");

    // Bob shares shop's credential (the Hub sends the same one): served from the cache.
    let t = stack.token("bob", REVENUE, &["shop"]).await.unwrap();
    let second = run(&stack, req(&t, REVENUE)).await.unwrap();
    assert_eq!(second.cached, [true, true, true]);
    assert!(second.outputs[0].1.equals_missing(df));
    // bypass_cache reads fresh.
    let t = stack.token("bob", REVENUE, &["shop"]).await.unwrap();
    let mut r = req(&t, REVENUE);
    r.bypass_cache = true;
    assert_eq!(run(&stack, r).await.unwrap().cached, [false, false, false]);

    // A different credential for the same connection (rotated to another database file)
    // never sees the old entries.
    let other = stack.dir().join("other.db");
    hubworker::sample::create(
        &other,
        hubworker::sample::SampleSize {
            customers: 5,
            orders: 10,
        },
    )
    .await
    .unwrap();
    assert!(
        stack
            .store
            .set_credential(&sqlite_credential("shop", &other), &stack.keys.at_rest)
            .await
            .unwrap()
    );
    let doc = small_sql("SELECT COUNT(*) AS n FROM orders");
    let t = stack.token("alice", &doc, &["shop"]).await.unwrap();
    let rotated = run(&stack, req(&t, &doc)).await.unwrap();
    assert_eq!(rotated.cached, [false]);
    assert_eq!(
        rotated.outputs[0]
            .1
            .column("n")
            .unwrap()
            .i64()
            .unwrap()
            .get(0),
        Some(10)
    );
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_workflow_through_a_sealed_password_credential() {
    let stack = Stack::start(4, &crate::util::sandboxed("")).await.unwrap();
    let url = std::env::var("HUBWORKER_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    // Reuse the URL's parts as a credential (trust auth: any password is accepted).
    let rest = url.split("://").nth(1).unwrap();
    let (auth, hostdb) = rest.split_once('@').unwrap();
    let user = auth.split(':').next().unwrap();
    let (hostport, database) = hostdb.split_once('/').unwrap();
    let (host, port) = hostport.split_once(':').unwrap_or((hostport, "5432"));
    let cred = hubworker::creds::Credential {
        connection: "pg".into(),
        dialect: hubworker::sql::Dialect::Postgres,
        host: Some(host.into()),
        port: Some(port.parse().unwrap()),
        database: database.split('?').next().unwrap().into(),
        auth: hubworker::creds::Auth::Password {
            user: user.into(),
            password: hubworker::secret::Secret::new("unused-with-trust".into()),
        },
        role: None,
        tls: false,
    };
    stack
        .store
        .add_connection(&cred, &stack.keys.at_rest, hubworker::hub::now())
        .await
        .unwrap();
    let doc = r#"{"version": 1, "nodes": [
      {"id": "q", "tool": "sql", "connection": "pg", "dialect": "postgres", "query": "SELECT g::bigint AS n, g % 3 AS k FROM generate_series(1, 1000) AS g"},
      {"id": "s", "tool": "summarize", "input": "q", "group_by": ["k"], "aggregations": [{"op": "sum", "column": "n", "as": "total"}]},
      {"id": "o", "tool": "sort", "input": "s", "by": [{"column": "k"}]},
      {"id": "out", "tool": "output", "input": "o", "name": "sums"}]}"#;
    let t = stack.token("alice", doc, &["pg"]).await.unwrap();
    let out = run(&stack, req(&t, doc)).await.unwrap();
    assert!(out.error.is_none(), "{out:?}");
    let totals: Vec<Option<i64>> = out.outputs[0]
        .1
        .column("total")
        .unwrap()
        .i64()
        .unwrap()
        .iter()
        .collect();
    assert_eq!(totals, [Some(166_833), Some(167_167), Some(166_500)]);
    // A token that does not grant pg is refused before anything is redeemed.
    let t = stack.token("alice", doc, &["shop"]).await.unwrap();
    let e = run(&stack, req(&t, doc)).await.unwrap_err();
    assert_eq!(
        (e.code(), reason(&e).as_str()),
        (tonic::Code::PermissionDenied, "connection_not_in_scope")
    );
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cancel_deadline_disconnect_and_capacity() {
    let stack = Stack::start(1, &crate::util::sandboxed("")).await.unwrap();
    let doc = crate::util::cross_join(6_000);

    // Cancel(run_id) stops a running workflow.
    let t = stack.token("alice", &doc, &[]).await.unwrap();
    let mut client = stack.client().await.unwrap();
    let mut stream = client.execute(req(&t, &doc)).await.unwrap().into_inner();
    let Some(Event::Accepted(a)) = stream.message().await.unwrap().unwrap().event else {
        panic!("accepted first")
    };
    // Over capacity (1 slot, taken): refused at once, never queued.
    let t2 = stack.token("bob", &doc, &[]).await.unwrap();
    let started = Instant::now();
    let e = run(&stack, req(&t2, &doc)).await.unwrap_err();
    assert_eq!(
        (e.code(), reason(&e).as_str()),
        (tonic::Code::ResourceExhausted, "over_capacity")
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(
        stack
            .client()
            .await
            .unwrap()
            .cancel(CancelRequest {
                run_id: a.run_id.clone(),
                cancel_secret: a.cancel_secret.clone(),
            })
            .await
            .unwrap()
            .into_inner()
            .cancelled
    );
    let mut code = None;
    while let Some(e) = stream.message().await.unwrap() {
        if let Some(Event::Error(e)) = e.event {
            code = Some(e.code);
            break;
        }
    }
    assert_eq!(code.as_deref(), Some("cancelled"));
    assert!(wait_idle(&stack, Duration::from_secs(3)).await);
    assert!(
        !stack
            .client()
            .await
            .unwrap()
            .cancel(CancelRequest {
                run_id: a.run_id,
                cancel_secret: a.cancel_secret,
            })
            .await
            .unwrap()
            .into_inner()
            .cancelled
    );

    // A gRPC deadline bounds the run.
    let t = stack.token("alice", &doc, &[]).await.unwrap();
    let mut r = tonic::Request::new(req(&t, &doc));
    r.set_timeout(Duration::from_millis(300));
    let started = Instant::now();
    let mut s = client.execute(r).await.unwrap().into_inner();
    let mut code = None;
    while let Ok(Some(e)) = s.message().await {
        if let Some(Event::Error(e)) = e.event {
            code = Some(e.code);
        }
    }
    // The run ends with its deadline: reported as the stream's last event.
    assert_eq!(code.as_deref(), Some("timeout"));
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert!(
        wait_idle(&stack, Duration::from_secs(3)).await,
        "the run stops with its deadline"
    );

    // A client that goes away cancels its run.
    let t = stack.token("alice", &doc, &[]).await.unwrap();
    let mut s = client.execute(req(&t, &doc)).await.unwrap().into_inner();
    let _ = s.message().await.unwrap();
    drop(s);
    drop(client);
    assert!(
        wait_idle(&stack, Duration::from_secs(3)).await,
        "the run stops when its client leaves"
    );
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_runs_are_all_correct() {
    let stack = std::sync::Arc::new(Stack::start(64, &crate::util::sandboxed("")).await.unwrap());
    let mut tasks = Vec::new();
    for i in 0..50 {
        let stack = stack.clone();
        tasks.push(tokio::spawn(async move {
            let doc = small_sql(&format!(
                "SELECT {i} AS i, COUNT(*) AS n FROM orders WHERE id % 50 = {i}"
            ));
            let t = stack
                .token(if i % 2 == 0 { "alice" } else { "bob" }, &doc, &["shop"])
                .await
                .unwrap();
            let out = run(&stack, req(&t, &doc)).await.unwrap();
            assert!(out.finished, "{out:?}");
            let df = &out.outputs[0].1;
            (
                df.column("i").unwrap().i64().unwrap().get(0),
                df.column("n").unwrap().i64().unwrap().get(0),
            )
        }));
    }
    for (i, t) in tasks.into_iter().enumerate() {
        assert_eq!(t.await.unwrap(), (Some(i as i64), Some(20)));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn validate_inspect_preview_status_health_and_reflection() {
    let stack = Stack::start(3, &crate::util::sandboxed("")).await.unwrap();
    let mut client = stack.client().await.unwrap();
    // Validate: a dry run, nothing consumed.
    let t = stack.token("alice", REVENUE, &["shop"]).await.unwrap();
    let v = client
        .validate(ValidateRequest {
            token: t.expose().to_owned(),
            workflow_json: REVENUE.into(),
            params_json: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(v.valid);
    assert_eq!(
        v.workflow_sha256,
        hubworker::workflow::workflow_sha256(REVENUE).unwrap()
    );
    assert_eq!(v.nodes.len(), 10);
    assert!(!v.nodes[0].known);
    let out = run(&stack, req(&t, REVENUE)).await.unwrap();
    assert!(out.finished, "the validated token still runs once");
    let bad = small_sql("DELETE FROM orders");
    let t = stack.token("alice", &bad, &["shop"]).await.unwrap();
    let v = client
        .validate(ValidateRequest {
            token: t.expose().to_owned(),
            workflow_json: bad.clone(),
            params_json: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!v.valid);
    assert_eq!(
        (
            v.problems[0].node.as_str(),
            v.problems[0].field.as_str(),
            v.problems[0].code.as_str()
        ),
        ("q", "query", "not_read_only")
    );
    let e = run(&stack, req(&t, &bad)).await.unwrap_err();
    assert_eq!(
        (e.code(), reason(&e).as_str()),
        (tonic::Code::InvalidArgument, "invalid_workflow")
    );
    // Not redeemed: the same token can still be... checked (and is refused the same way).
    let swapped = small_sql("SELECT 1 AS x");
    let e = run(&stack, req(&t, &swapped)).await.unwrap_err();
    assert_eq!(reason(&e), "workflow_mismatch");

    // Inspect and Preview take an inspect-scope token.
    let t = stack.inspect_token("alice", "shop").await.unwrap();
    let tables = client
        .inspect(InspectRequest {
            token: t.expose().to_owned(),
            connection: "shop".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .tables;
    let names: Vec<&str> = tables.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["customers", "orders", "products"]);
    assert_eq!(
        tables[2]
            .columns
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>(),
        ["id", "name", "category", "unit_price"]
    );
    let t = stack.inspect_token("alice", "shop").await.unwrap();
    let p = client
        .preview(PreviewRequest {
            token: t.expose().to_owned(),
            connection: "shop".into(),
            schema: String::new(),
            table: "products".into(),
            rows: 3,
        })
        .await
        .unwrap()
        .into_inner();
    let df = IpcStreamReader::new(Cursor::new(p.arrow_ipc))
        .finish()
        .unwrap();
    assert_eq!(df.shape(), (3, 4));
    // A run token cannot inspect.
    let t = stack.token("alice", REVENUE, &["shop"]).await.unwrap();
    let e = client
        .inspect(InspectRequest {
            token: t.expose().to_owned(),
            connection: "shop".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(reason(&e), "wrong_scope");

    let s = client.status(StatusRequest {}).await.unwrap().into_inner();
    assert_eq!(
        (
            s.worker_id.as_str(),
            s.capacity,
            s.runs_in_flight,
            s.draining,
            s.isolation.as_str()
        ),
        ("demo-worker", 3, 0, false, "process")
    );
    assert!(
        s.confinements.iter().any(|c| c == "seccomp"),
        "{:?}",
        s.confinements
    );

    // Health: the standard service answers SERVING for the server and for hubworker.v1.Worker.
    let channel = tonic::transport::Endpoint::from_shared(stack.worker_url.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    for service in ["", "hubworker.v1.Worker"] {
        let r = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            r.status(),
            tonic_health::pb::health_check_response::ServingStatus::Serving,
            "{service:?}"
        );
    }
    // Reflection, v1 and v1alpha (grpcurl before 1.9 asks v1alpha), lists exactly what this
    // server serves: not the Hub service, whose definition shares the proto file.
    let reflected = [
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
        "hubworker.v1.Worker",
    ];
    assert_eq!(reflection_v1(channel.clone()).await, reflected);
    assert_eq!(reflection_v1alpha(channel).await, reflected);
    // The reference Hub serves health and reflection too, for its own service.
    let hub = tonic::transport::Endpoint::from_shared(stack.hub_url.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(hub.clone());
    for service in ["", "hubworker.v1.Hub"] {
        let r = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            r.status(),
            tonic_health::pb::health_check_response::ServingStatus::Serving,
            "{service:?}"
        );
    }
    let unknown = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "hubworker.v1.Worker".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound);
    let reflected = [
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
        "hubworker.v1.Hub",
    ];
    assert_eq!(reflection_v1(hub.clone()).await, reflected);
    assert_eq!(reflection_v1alpha(hub).await, reflected);
    stack.shutdown().await;
}

/// The services a server lists over reflection v1, sorted.
async fn reflection_v1(channel: tonic::transport::Channel) -> Vec<String> {
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::{
        ServerReflectionRequest, server_reflection_request::MessageRequest,
        server_reflection_response::MessageResponse,
    };
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = ServerReflectionClient::new(channel)
        .server_reflection_info(tokio_stream::iter(vec![request]))
        .await
        .unwrap()
        .into_inner();
    let Some(MessageResponse::ListServicesResponse(list)) =
        responses.message().await.unwrap().unwrap().message_response
    else {
        panic!("list")
    };
    let mut names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    names.sort();
    names
}

/// The services a server lists over reflection v1alpha, sorted.
async fn reflection_v1alpha(channel: tonic::transport::Channel) -> Vec<String> {
    use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1alpha::{
        ServerReflectionRequest, server_reflection_request::MessageRequest,
        server_reflection_response::MessageResponse,
    };
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = ServerReflectionClient::new(channel)
        .server_reflection_info(tokio_stream::iter(vec![request]))
        .await
        .unwrap()
        .into_inner();
    let Some(MessageResponse::ListServicesResponse(list)) =
        responses.message().await.unwrap().unwrap().message_response
    else {
        panic!("list")
    };
    let mut names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    names.sort();
    names
}

/// Runs openssl (test fixtures only: a throwaway CA, a server and a client certificate).
fn openssl(dir: &std::path::Path, args: &[&str]) {
    let out = std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn certificates(dir: &std::path::Path) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    openssl(
        dir,
        &[
            &["req", "-x509"][..],
            &ec,
            &[
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "2",
                "-subj",
                "/CN=hubworker-test-ca",
            ],
        ]
        .concat(),
    );
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
    for who in ["server", "client"] {
        let key = format!("{who}.key");
        let csr = format!("{who}.csr");
        let pem = format!("{who}.pem");
        let ext = format!("{who}.ext");
        openssl(
            dir,
            &[
                &["req"][..],
                &ec,
                &[
                    "-keyout",
                    &key,
                    "-out",
                    &csr,
                    "-subj",
                    &format!("/CN={who}"),
                ],
            ]
            .concat(),
        );
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &pem,
                "-days",
                "2",
                "-extfile",
                &ext,
            ],
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mutual_tls_admits_only_clients_with_a_certificate_from_the_ca() {
    use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};
    let certs = tempfile::tempdir().unwrap();
    let d = certs.path();
    certificates(d);
    let extra = format!(
        "[tls]\ncert_file = {:?}\nkey_file = {:?}\nclient_ca_file = {:?}\n{}",
        d.join("server.pem").display().to_string(),
        d.join("server.key").display().to_string(),
        d.join("ca.pem").display().to_string(),
        crate::util::sandboxed("")
    );
    let stack = Stack::start(2, &extra).await.unwrap();
    let url = format!("https://localhost:{}", stack.worker.addr.port());
    let ca = Certificate::from_pem(std::fs::read(d.join("ca.pem")).unwrap());
    let client_identity = Identity::from_pem(
        std::fs::read(d.join("client.pem")).unwrap(),
        std::fs::read(d.join("client.key")).unwrap(),
    );

    // With the client certificate: served.
    let tls = ClientTlsConfig::new()
        .ca_certificate(ca.clone())
        .identity(client_identity)
        .domain_name("localhost");
    let channel = Endpoint::from_shared(url.clone())
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = hubworker::proto::worker_client::WorkerClient::new(channel);
    let status = client.status(StatusRequest {}).await.unwrap().into_inner();
    assert_eq!(status.worker_id, "demo-worker");

    // Without one: the handshake (or the first call) fails.
    let tls = ClientTlsConfig::new()
        .ca_certificate(ca)
        .domain_name("localhost");
    let refused = async {
        let channel = Endpoint::from_shared(url)
            .unwrap()
            .tls_config(tls)
            .unwrap()
            .connect()
            .await?;
        hubworker::proto::worker_client::WorkerClient::new(channel)
            .status(StatusRequest {})
            .await
            .map_err(|s| s.to_string())?;
        Ok::<_, Box<dyn std::error::Error>>(())
    }
    .await;
    assert!(refused.is_err());
    // Plain text: refused too.
    let plain = async {
        let mut c =
            hubworker::proto::worker_client::WorkerClient::connect(stack.worker_url.clone())
                .await?;
        c.status(StatusRequest {})
            .await
            .map_err(|s| s.to_string())?;
        Ok::<_, Box<dyn std::error::Error>>(())
    }
    .await;
    assert!(plain.is_err());
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn inline_isolation_runs_in_the_daemon_and_says_so() {
    let stack = Stack::start(2, "[sandbox]\nisolation = \"inline\"\n")
        .await
        .unwrap();
    let doc = small_sql("SELECT COUNT(*) AS n FROM orders");
    let t = stack.token("alice", &doc, &["shop"]).await.unwrap();
    let out = run(&stack, req(&t, &doc)).await.unwrap();
    assert!(out.finished, "{out:?}");
    assert_eq!(
        out.outputs[0].1.column("n").unwrap().i64().unwrap().get(0),
        Some(1000)
    );
    let s = stack
        .client()
        .await
        .unwrap()
        .status(StatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(s.isolation, "inline");
    assert!(s.confinements.is_empty(), "{:?}", s.confinements);
    stack.shutdown().await;
}

/// Issue 16, point 8: the worker's check path (hash, then token, then validation) refuses a
/// document with an integer beyond 2^53 (`number_out_of_range`) before it even looks at the
/// token, on Execute and on Validate; the healthy document beside it runs in the sandbox with
/// the exact value (through a formula read twice: a shared subplan, point 10).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn issue16_integers_beyond_2_pow_53_are_refused_by_the_worker() {
    let stack = Stack::start(2, &crate::util::sandboxed("")).await.unwrap();
    let doc = |x: &str| {
        format!(
            r#"{{"version": 1, "nodes": [
              {{"id": "t", "tool": "inline", "columns": [{{"name": "x", "type": "Int64"}}], "rows": [[{x}]]}},
              {{"id": "f", "tool": "formula", "input": "t", "formulas": [{{"column": "y", "expression": "pl.col('x') // 3"}}]}},
              {{"id": "j", "tool": "join", "left": "f", "right": "f", "how": "semi", "on": [{{"left": "x", "right": "x"}}]}},
              {{"id": "o", "tool": "output", "input": "j", "name": "out"}}]}}"#
        )
    };
    let healthy = doc("9007199254740991");
    let t = stack.token("alice", &healthy, &[]).await.unwrap();
    // The Hub cannot hash (so cannot sign for) the documents of the review's collision.
    assert!(
        stack
            .token("alice", &doc("9007199254740992"), &[])
            .await
            .is_err()
    );
    let attack = doc("9007199254740993");
    let e = run(&stack, req(&t, &attack)).await.unwrap_err();
    assert_eq!(
        (e.code(), reason(&e).as_str()),
        (tonic::Code::InvalidArgument, "number_out_of_range")
    );
    let mut client = stack.client().await.unwrap();
    let e = client
        .validate(ValidateRequest {
            token: t.expose().to_owned(),
            workflow_json: attack,
            params_json: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        (e.code(), reason(&e).as_str()),
        (tonic::Code::InvalidArgument, "number_out_of_range")
    );
    // The token was not spent on the refusals: the healthy document runs, exactly.
    let out = run(&stack, req(&t, &healthy)).await.unwrap();
    assert!(out.finished, "{:?}", out.error);
    let col = |c: &str| -> Vec<Option<i64>> {
        out.outputs[0]
            .1
            .column(c)
            .unwrap()
            .i64()
            .unwrap()
            .iter()
            .collect()
    };
    assert_eq!(col("x"), [Some(9_007_199_254_740_991)]);
    assert_eq!(col("y"), [Some(3_002_399_751_580_330)]);
    stack.shutdown().await;
}

/// Issue 20: a large output's rows reach the client while the plan still runs. The order of
/// events is the proof: with outputs sent after the plan (as before), every node's `finished`
/// came before the first result chunk; on the streaming engine, chunks come first and the
/// nodes finish after. The rows are all there, in order, once, and the plan's node events
/// come in plan order.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn issue20_result_chunks_reach_the_client_before_the_run_finishes() {
    use hubworker::proto::progress::State;
    let n: i64 = 2_500;
    let rows: Vec<String> = (0..n).map(|i| format!("[{i}]")).collect();
    let doc = format!(
        r#"{{"version": 1, "nodes": [
          {{"id": "a", "tool": "inline", "columns": [{{"name": "x", "type": "Int64"}}], "rows": [{}]}},
          {{"id": "j", "tool": "join", "left": "a", "right": "a", "how": "cross"}},
          {{"id": "f", "tool": "formula", "input": "j", "formulas": [{{"column": "p", "expression": "pl.col('x') * 10000 + pl.col('x_right')"}}]}},
          {{"id": "o", "tool": "output", "input": "f", "name": "out"}}]}}"#,
        rows.join(",")
    );
    let stack = Stack::start(1, &crate::util::sandboxed("")).await.unwrap();
    let t = stack.token("alice", &doc, &[]).await.unwrap();
    let mut client = stack.client().await.unwrap();
    let started = Instant::now();
    let mut stream = client.execute(req(&t, &doc)).await.unwrap().into_inner();
    let mut log: Vec<String> = Vec::new();
    let mut ipc = Vec::new();
    let (mut first_chunk, mut finished) = (None, None);
    while let Some(e) = stream.message().await.unwrap() {
        match e.event {
            Some(Event::Progress(p)) => log.push(format!(
                "{} {}",
                p.node,
                if p.state() == State::Finished {
                    "finished"
                } else {
                    "started"
                }
            )),
            Some(Event::Result(r)) => {
                first_chunk.get_or_insert(started.elapsed());
                if log.last().map(String::as_str) != Some("chunk") {
                    log.push("chunk".into());
                }
                ipc.extend_from_slice(&r.arrow_ipc);
            }
            Some(Event::Finished(_)) => finished = Some(started.elapsed()),
            Some(Event::Error(e)) => panic!("run failed: {e:?}"),
            _ => {}
        }
    }
    let (first_chunk, finished) = (first_chunk.unwrap(), finished.unwrap());
    eprintln!("first chunk after {first_chunk:?}, finished after {finished:?}");
    assert!(first_chunk < finished);
    let first = log.iter().position(|l| l == "chunk").unwrap();
    let plan_done = log.iter().position(|l| l == "j finished").unwrap();
    assert!(
        first < plan_done,
        "result chunks come while the plan runs: {log:?}"
    );
    // Plan order: the nodes built from inputs finish in node order, the output last, after
    // its last chunk.
    let tail: Vec<&str> = log[plan_done..].iter().map(String::as_str).collect();
    assert_eq!(
        tail.iter().filter(|l| **l != "chunk").collect::<Vec<_>>(),
        [&"j finished", &"f finished", &"o finished"]
    );
    let out = IpcStreamReader::new(Cursor::new(ipc)).finish().unwrap();
    assert_eq!(out.height(), (n * n) as usize);
    let p = out.column("p").unwrap().i64().unwrap();
    let expected: i64 = (0..n).map(|x| x * 10_000 * n + (0..n).sum::<i64>()).sum();
    assert_eq!(p.sum(), Some(expected));
    stack.shutdown().await;
}
