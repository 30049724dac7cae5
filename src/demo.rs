//! `hubworker demo`: the whole security model end to end with nothing installed beyond the
//! build. A sample SQLite database, fresh keys, the reference Hub and a worker on loopback
//! (ephemeral ports); a workflow dispatched over gRPC with progress and results; then a
//! replayed token, a `DROP TABLE` and an escape expression refused with their codes, and a
//! second run served from the cache. Everything lives in a private temporary directory that is
//! removed at the end.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use polars::prelude::*;
use tonic::transport::Channel;

use crate::creds::{Auth, Credential};
use crate::error::Error;
use crate::hub::{HubKeys, Store, TokenRequest, now};
use crate::proto::worker_client::WorkerClient;
use crate::proto::{ExecuteRequest, execute_event};
use crate::secret::Secret;
use crate::sql::Dialect;

/// The workflow the demo dispatches.
const WORKFLOW: &str = include_str!("../examples/revenue_by_region.json");

/// A workflow with run parameters (`:region` in its SQL, `pl.param("min_qty")` in a filter).
const PARAMETERISED: &str = include_str!("../examples/region_orders.json");

/// A workflow that tries to write.
const DROP_TABLE: &str = r#"{"version": 1, "nodes": [
  {"id": "q", "tool": "sql", "connection": "shop", "dialect": "sqlite", "query": "DROP TABLE orders"},
  {"id": "out", "tool": "output", "input": "q", "name": "out"}]}"#;

/// A workflow that tries to escape the expression language.
const ESCAPE: &str = r#"{"version": 1, "nodes": [
  {"id": "q", "tool": "sql", "connection": "shop", "dialect": "sqlite", "query": "SELECT id FROM orders"},
  {"id": "f", "tool": "formula", "input": "q", "formulas": [
    {"column": "x", "expression": "pl.col(\"id\").map_elements(lambda v: __import__(\"os\").system(\"id\"))"}]},
  {"id": "out", "tool": "output", "input": "f", "name": "out"}]}"#;

/// A private temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> std::io::Result<TempDir> {
        use std::os::unix::fs::DirBuilderExt;
        let path = std::env::temp_dir().join(format!("hubworker-demo-{}", crate::hub::random_id()));
        std::fs::DirBuilder::new().mode(0o700).create(&path)?;
        Ok(TempDir(path))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn fail(what: &str) -> impl Fn(String) -> Error + '_ {
    move |why| Error::Failed(format!("demo: {what}: {why}"))
}

/// Runs the demo; prints as it goes.
pub(crate) fn run() -> Result<u8, Error> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(demo())
}

/// A complete local deployment: sample data, keys, the reference Hub and a worker on
/// loopback. The demo, the end-to-end tests and `bench dispatch` run on it.
pub struct Stack {
    /// The Hub's store.
    pub store: Store,
    /// The Hub's keys.
    pub keys: Arc<HubKeys>,
    /// The Hub's gRPC address.
    pub hub_url: String,
    /// The worker.
    pub worker: crate::worker::server::Running,
    /// The worker's gRPC address.
    pub worker_url: String,
    /// The sample database.
    pub db: PathBuf,
    stop_hub: Option<tokio::sync::oneshot::Sender<()>>,
    hub: Option<tokio::task::JoinHandle<Result<(), Error>>>,
    dir: TempDir,
}

impl std::fmt::Debug for Stack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stack")
            .field("hub_url", &self.hub_url)
            .field("worker_url", &self.worker_url)
            .finish_non_exhaustive()
    }
}

impl Stack {
    /// Starts everything: users `alice` and `bob` (role `user`), connection `shop` (the sample
    /// database), a worker with `capacity` slots and `extra_config` appended to its config.
    pub async fn start(capacity: u32, extra_config: &str) -> Result<Stack, Error> {
        let dir = TempDir::new()?;
        let d = dir.0.clone();
        let db = d.join("shop.db");
        crate::sample::create(&db, crate::sample::SampleSize::default())
            .await
            .map_err(|e| fail("sample database")(e.to_string()))?;
        // Run children read the sample database as an unprivileged user when the daemon runs
        // as root (`[sandbox] uid`): the directory may be passed through, the file read. The
        // keys beside it stay in their own 0700 directory.
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o711))?;
            std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644))?;
        }
        let keys_dir = d.join("keys");
        crate::keys::keygen(&keys_dir).map_err(fail("keygen"))?;
        let read = |f: &str| crate::keys::read_secret_file(&keys_dir.join(f)).map_err(fail("keys"));
        let keys = Arc::new(
            HubKeys::new(
                "demo-hub".into(),
                &read(crate::keys::files::SIGNING_KEY)?,
                &read(crate::keys::files::CONNECTION_KEY)?,
                Some(read(crate::keys::files::REGISTRATION_SECRET)?),
            )
            .map_err(fail("hub keys"))?,
        );
        let store = Store::open(&d.join("hub.db"))
            .await
            .map_err(|e| fail("hub store")(e.to_string()))?;
        for user in ["alice", "bob"] {
            store
                .add_user(user, "user", now())
                .await
                .map_err(|e| fail("user")(e.to_string()))?;
        }
        store
            .add_connection(&sqlite_credential("shop", &db), &keys.at_rest, now())
            .await
            .map_err(|e| fail("connection")(e.to_string()))?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let hub_url = format!("http://{}", listener.local_addr()?);
        let (stop_hub, hub_stopped) = tokio::sync::oneshot::channel::<()>();
        let hub = tokio::spawn(crate::hub::commands::serve(
            store.clone(),
            keys.clone(),
            listener,
            async {
                let _ = hub_stopped.await;
            },
        ));
        let config = worker_config(&hub_url, &keys_dir, capacity, extra_config)?;
        let worker = crate::worker::server::start(
            config,
            &std::collections::HashMap::<String, String>::new(),
            &|_| {},
        )
        .await
        .map_err(|e| fail("worker")(e.to_string()))?;
        let worker_url = format!("http://{}", worker.addr);
        Ok(Stack {
            store,
            keys,
            hub_url,
            worker,
            worker_url,
            db,
            stop_hub: Some(stop_hub),
            hub: Some(hub),
            dir,
        })
    }

    /// The stack's private directory.
    pub fn dir(&self) -> &Path {
        &self.dir.0
    }

    /// A run token for `user` bound to `doc`, granting `connections`.
    pub async fn token(
        &self,
        user: &str,
        doc: &str,
        connections: &[&str],
    ) -> Result<Secret, Error> {
        issue(&self.store, &self.keys, user, (doc, ""), connections, "run").await
    }

    /// A run token for `user` bound to `doc` and the run parameter values `params` (a JSON
    /// object), granting `connections`.
    pub async fn token_with_params(
        &self,
        user: &str,
        doc: &str,
        params: &str,
        connections: &[&str],
    ) -> Result<Secret, Error> {
        issue(
            &self.store,
            &self.keys,
            user,
            (doc, params),
            connections,
            "run",
        )
        .await
    }

    /// An inspect token for `user` on `connection`.
    pub async fn inspect_token(&self, user: &str, connection: &str) -> Result<Secret, Error> {
        issue(
            &self.store,
            &self.keys,
            user,
            ("", ""),
            &[connection],
            "inspect",
        )
        .await
    }

    /// A run token for the worker pool `audience` (workers with that `worker.audience`), bound
    /// to `doc` and the parameter values `params`.
    pub async fn pool_token(
        &self,
        audience: &str,
        user: &str,
        (doc, params): (&str, &str),
        connections: &[&str],
    ) -> Result<Secret, Error> {
        let (store, keys) = (&self.store, &self.keys);
        issue_for(
            store,
            keys,
            user,
            (doc, params),
            connections,
            ("run", audience),
        )
        .await
    }

    /// The config of a worker process registering with this stack's Hub: `id` in the pool
    /// `audience` with `capacity` slots, gRPC and metrics on loopback `ports`, the stack's
    /// keys, and `extra` (whole sections) appended.
    pub fn worker_toml(
        &self,
        (id, audience, capacity): (&str, &str, u32),
        ports: (u16, u16),
        extra: &str,
    ) -> String {
        format!(
            "[worker]\nid = {id:?}\nlisten = \"127.0.0.1:{}\"\naudience = {audience:?}\ncapacity = {capacity}\n\n\
             [hub]\nurl = {:?}\nissuer = \"demo-hub\"\n\n[secrets]\ndir = {:?}\n\n\
             [metrics]\nlisten = \"127.0.0.1:{}\"\n\n{extra}\n",
            ports.0,
            self.hub_url,
            self.dir().join("keys").display().to_string(),
            ports.1,
        )
    }

    /// A client of the worker.
    pub async fn client(&self) -> Result<WorkerClient<Channel>, Error> {
        WorkerClient::connect(self.worker_url.clone())
            .await
            .map_err(|e| fail("connect")(e.to_string()))
    }

    /// Stops the Hub (its store stays): workers can neither redeem nor report until
    /// [`restart_hub`](Self::restart_hub).
    pub async fn stop_hub(&mut self) {
        if let Some(stop) = self.stop_hub.take() {
            let _ = stop.send(());
        }
        if let Some(hub) = self.hub.take() {
            let _ = hub.await;
        }
    }

    /// Serves the Hub again, at the same address, on the same store.
    pub async fn restart_hub(&mut self) -> Result<(), Error> {
        self.serve_hub(crate::hub::HEARTBEAT_SECS).await
    }

    /// Serves the Hub again asking workers that register from now on for a heartbeat every
    /// `secs` seconds (the fleet tests use 1).
    pub async fn set_heartbeat_secs(&mut self, secs: u32) -> Result<(), Error> {
        self.stop_hub().await;
        self.serve_hub(secs).await
    }

    async fn serve_hub(&mut self, heartbeat_secs: u32) -> Result<(), Error> {
        let addr: std::net::SocketAddr = self
            .hub_url
            .trim_start_matches("http://")
            .parse()
            .map_err(|_| fail("hub address")(self.hub_url.clone()))?;
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let (stop_hub, hub_stopped) = tokio::sync::oneshot::channel::<()>();
        let service = crate::hub::service::HubService::new(self.store.clone(), self.keys.clone())
            .with_heartbeat_secs(heartbeat_secs);
        self.hub = Some(tokio::spawn(crate::hub::commands::serve_service(
            service,
            listener,
            async {
                let _ = hub_stopped.await;
            },
        )));
        self.stop_hub = Some(stop_hub);
        Ok(())
    }

    /// Stops the worker (draining) and the Hub; the directory is removed.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop_hub.take() {
            let _ = stop.send(());
        }
        if let Some(hub) = self.hub.take() {
            let _ = hub.await;
        }
        self.worker.shutdown().await;
    }
}

async fn demo() -> Result<u8, Error> {
    let stack = Stack::start(4, "").await?;
    println!(
        "hubworker demo (everything in {}, removed at the end)\n",
        stack.dir().display()
    );
    println!(
        "1. created a sample shop database (1,000 orders) and fresh keys (Ed25519 token keys, Fernet keys)"
    );
    println!(
        "2. reference hub listening on {} (users alice and bob, connection shop)",
        stack.hub_url
    );
    println!(
        "3. worker demo-worker listening on {}, registered with the hub\n",
        stack.worker_url
    );
    let mut client = stack.client().await?;

    // 4. Dispatch a workflow.
    let token = stack.token("alice", WORKFLOW, &["shop"]).await?;
    println!("4. dispatching examples/revenue_by_region.json for alice with a fresh server token:");
    execute(&mut client, &token, WORKFLOW, true, "").await?;

    // 5. The security model at work.
    println!("\n5. the security model at work:");
    match try_execute(&mut client, &token, WORKFLOW, "").await {
        Err(s) => println!(
            "   {:<38} -> refused: {}",
            "replaying the same token",
            s.message()
        ),
        Ok(()) => return Err(Error::Failed("demo: a replayed token was accepted".into())),
    }
    for (what, doc) in [
        ("a workflow with DROP TABLE in its SQL", DROP_TABLE),
        ("an expression that tries to escape", ESCAPE),
    ] {
        let token = stack.token("alice", doc, &["shop"]).await?;
        match try_execute(&mut client, &token, doc, "").await {
            Err(s) => println!("   {what:<38} -> refused: {}", first_line(s.message())),
            Ok(()) => return Err(Error::Failed(format!("demo: {what} was accepted"))),
        }
    }
    let token = stack.token("bob", WORKFLOW, &["shop"]).await?;
    println!("   the same workflow for bob (new token; the hub shares shop's credential):");
    execute(&mut client, &token, WORKFLOW, false, "").await?;

    // 6. Run parameters: bound into the token, bound by the driver, never interpolated.
    let north = r#"{"region": "north", "min_qty": 3}"#;
    let south = r#"{"region": "south", "min_qty": 3}"#;
    println!(
        "\n6. examples/region_orders.json with run parameters {north} (the token is bound to them):"
    );
    let token = stack
        .token_with_params("alice", PARAMETERISED, north, &["shop"])
        .await?;
    match try_execute(&mut client, &token, PARAMETERISED, south).await {
        Err(s) => println!(
            "   {:<38} -> refused: {}",
            "the same token with region \"south\"",
            s.message()
        ),
        Ok(()) => return Err(Error::Failed("demo: a parameter swap was accepted".into())),
    }
    execute(&mut client, &token, PARAMETERISED, true, north).await?;
    stack.shutdown().await;
    println!("\ndemo finished: hub and worker stopped, temporary files removed");
    Ok(0)
}

fn first_line(s: &str) -> String {
    let mut lines = s.lines();
    let head = lines.next().unwrap_or_default();
    // For invalid workflows, the first problem carries the checker's code.
    match lines.next() {
        Some(problem) => format!("{head} / {}", problem.trim()),
        None => head.to_owned(),
    }
}

fn worker_config(
    hub_url: &str,
    keys: &Path,
    capacity: u32,
    extra: &str,
) -> Result<crate::config::Config, Error> {
    let text = format!(
        "[worker]\nid = \"demo-worker\"\nlisten = \"127.0.0.1:0\"\naudience = \"hubworker\"\ncapacity = {capacity}\n\n\
         [hub]\nurl = \"{hub_url}\"\nissuer = \"demo-hub\"\n\n[secrets]\ndir = {:?}\n\n[metrics]\nlisten = \"127.0.0.1:0\"\n{extra}\n",
        keys.display().to_string()
    );
    // The demo is a development setup whatever HUBWORKER_ENV says.
    crate::config::Config::parse(&text, &std::collections::HashMap::new())
        .map_err(|e| fail("worker config")(e.to_string()))
}

async fn issue(
    store: &Store,
    keys: &HubKeys,
    user: &str,
    (doc, params): (&str, &str),
    connections: &[&str],
    scope: &str,
) -> Result<Secret, Error> {
    let audience = "hubworker";
    issue_for(
        store,
        keys,
        user,
        (doc, params),
        connections,
        (scope, audience),
    )
    .await
}

async fn issue_for(
    store: &Store,
    keys: &HubKeys,
    user: &str,
    (doc, params): (&str, &str),
    connections: &[&str],
    (scope, audience): (&str, &str),
) -> Result<Secret, Error> {
    let workflow_sha256 = if doc.is_empty() {
        String::new()
    } else {
        crate::workflow::workflow_sha256(doc).map_err(|e| fail("hash")(e.to_string()))?
    };
    let req = TokenRequest {
        user: user.into(),
        workflow_sha256,
        params_sha256: crate::workflow::params::params_sha256(params)
            .ok_or_else(|| fail("params")("not JSON".into()))?,
        connections: connections.iter().map(|c| (*c).to_owned()).collect(),
        scope: scope.into(),
        audience: audience.into(),
        ttl: Duration::from_secs(120),
    };
    crate::hub::issue(store, keys, &req, now())
        .await
        .map(Secret::new)
        .map_err(|e| fail("issue")(e.to_string()))
}

/// The credential of a SQLite connection at `path`.
pub fn sqlite_credential(name: &str, path: &Path) -> Credential {
    Credential {
        connection: name.into(),
        dialect: Dialect::Sqlite,
        host: None,
        port: None,
        database: path.display().to_string(),
        auth: Auth::None,
        role: None,
        tls: false,
    }
}

async fn try_execute(
    client: &mut WorkerClient<Channel>,
    token: &Secret,
    doc: &str,
    params: &str,
) -> Result<(), tonic::Status> {
    let req = ExecuteRequest {
        token: token.expose().to_owned(),
        workflow_json: doc.to_owned(),
        bypass_cache: false,
        update_cache: false,
        params_json: params.to_owned(),
    };
    let mut stream = client.execute(req).await?.into_inner();
    while let Some(e) = stream.message().await? {
        if let Some(execute_event::Event::Error(e)) = e.event {
            return Err(tonic::Status::aborted(format!(
                "[{}] {}",
                e.code, e.message
            )));
        }
    }
    Ok(())
}

async fn execute(
    client: &mut WorkerClient<Channel>,
    token: &Secret,
    doc: &str,
    verbose: bool,
    params: &str,
) -> Result<(), Error> {
    use execute_event::Event as E;
    let req = ExecuteRequest {
        token: token.expose().to_owned(),
        workflow_json: doc.to_owned(),
        bypass_cache: false,
        update_cache: false,
        params_json: params.to_owned(),
    };
    let mut stream = client
        .execute(req)
        .await
        .map_err(|s| fail("execute")(s.message().to_owned()))?
        .into_inner();
    let mut ipc: Vec<(String, Vec<u8>)> = Vec::new();
    while let Some(e) = stream
        .message()
        .await
        .map_err(|s| fail("stream")(s.message().to_owned()))?
    {
        match e.event {
            Some(E::Accepted(a)) => println!("   accepted, run {}", a.run_id),
            Some(E::Progress(p)) => {
                let finished = p.state() == crate::proto::progress::State::Finished;
                if p.tool == "sql" && finished {
                    let source = if p.from_cache {
                        "from the cache"
                    } else {
                        "from the database"
                    };
                    println!(
                        "   {:<12} sql       {} rows {source}",
                        p.node,
                        p.rows.unwrap_or(0)
                    );
                } else if verbose && finished {
                    match p.rows {
                        Some(rows) => {
                            println!("   {:<12} {:<9} finished, {rows} rows", p.node, p.tool)
                        }
                        None => println!("   {:<12} {:<9} finished", p.node, p.tool),
                    }
                }
            }
            Some(E::Result(r)) => match ipc.iter_mut().find(|(n, _)| *n == r.output) {
                Some((_, buf)) => buf.extend_from_slice(&r.arrow_ipc),
                None => ipc.push((r.output, r.arrow_ipc)),
            },
            Some(E::Finished(f)) => println!("   finished in {} ms", f.elapsed_ms),
            Some(E::Error(e)) => {
                return Err(Error::Failed(format!(
                    "demo: run failed [{}]: {}",
                    e.code, e.message
                )));
            }
            None => {}
        }
    }
    if verbose {
        for (name, bytes) in ipc {
            let df = IpcStreamReader::new(Cursor::new(bytes))
                .finish()
                .map_err(|e| fail("result")(e.to_string()))?;
            println!("   result {name}:\n{df}");
        }
    }
    Ok(())
}
