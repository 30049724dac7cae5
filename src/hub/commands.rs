//! `hubworker hub ...`: the reference Hub's command line (serve, add a user or a connection,
//! issue a token, dispatch a run to a worker, rotate the signing key). Parsing happens in
//! `cli.rs`; secrets come from files, never argv. A broken store is a runtime failure (exit 1);
//! input the store refuses (an unknown role, a duplicate name) is a usage error (exit 2).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Subcommand};

use super::dispatch::{DispatchOptions, Dispatcher, Job};
use super::service::HubService;
use super::{HubKeys, Store, StoreError, TokenRequest, now};
use crate::error::Error;
use crate::keys::ProcessEnv;

/// `hubworker hub` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum HubCommand {
    /// Serve the Hub gRPC service (Register, Redeem, Heartbeat, Deregister).
    Serve {
        /// Database, secrets, hub id.
        #[command(flatten)]
        common: Common,
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:7100")]
        listen: SocketAddr,
        /// How often workers are asked to heartbeat, seconds (each answer carries the key set,
        /// so this bounds how long a rotation takes to reach every worker).
        #[arg(long, default_value_t = super::HEARTBEAT_SECS, value_parser = clap::value_parser!(u32).range(1..=3600))]
        heartbeat_secs: u32,
    },
    /// Rotate the token-signing key: a new current key signs from now on, the current one
    /// becomes the previous one (its tokens still verify), the one before is dropped. Workers
    /// get the new key set with their next heartbeat; no restart, reload or file to copy.
    RotateKey {
        /// Database, secrets, hub id.
        #[command(flatten)]
        common: Common,
    },
    /// Add a user with a role: admin, user or auditor (only users run workflows).
    AddUser {
        /// Database, secrets, hub id.
        #[command(flatten)]
        common: Common,
        /// User name.
        #[arg(long)]
        name: String,
        /// Role.
        #[arg(long)]
        role: String,
    },
    /// Add a connection from a credential JSON file (README: "Credentials"); `-` reads stdin.
    AddConnection {
        /// Database, secrets, hub id.
        #[command(flatten)]
        common: Common,
        /// The credential file.
        #[arg(long)]
        credential_file: PathBuf,
    },
    /// Add an AI provider's API key (a file holding only the key; `-` reads stdin). The name
    /// is the worker's `[ai.providers.<name>]`.
    AddProvider {
        /// Database, secrets, hub id.
        #[command(flatten)]
        common: Common,
        /// The provider's name.
        #[arg(long)]
        name: String,
        /// The file holding the key.
        #[arg(long)]
        key_file: PathBuf,
    },
    /// Send one request to an AI provider through a worker's proxy: issues an `ai` token bound
    /// to this request, calls `Proxy`, prints the status and headers on stderr and the body on
    /// stdout as it arrives.
    Ai(super::ai_cli::AiArgs),
    /// The audit trail, for users with role `auditor` only: `list` the records (one line
    /// each), or `verify` every worker's chain (signatures, numbering, hashes; exit 1 naming
    /// each problem). Nothing here edits or deletes a record.
    Audit {
        /// Database, secrets, hub id.
        #[command(flatten)]
        common: Common,
        /// `list` or `verify`.
        #[arg(value_enum)]
        action: super::audit_cli::AuditAction,
        /// The user asking (role `auditor`).
        #[arg(long = "as", value_name = "USER")]
        user: String,
        /// Only this worker's records.
        #[arg(long)]
        worker: Option<String>,
    },
    /// List the registered workers as the dispatcher sees them: pool, state (`live`,
    /// `draining`, or `silent` when not heard from within `--fresh-secs`: out of the pool),
    /// runs in flight at the last heartbeat, and when it was last heard from.
    Workers {
        /// Database, secrets, hub id.
        #[command(flatten)]
        common: Common,
        /// A worker not heard from for this long is out of the pool, seconds.
        #[arg(long, default_value_t = 3 * super::HEARTBEAT_SECS)]
        fresh_secs: u32,
    },
    /// Issue a server token for a workflow and print it.
    IssueToken(IssueArgs),
    /// Issue a token and run the workflow, printing progress and the result tables: on the
    /// pool (the live workers of the token's audience, chosen for cache affinity bounded by
    /// free slots, the token moving on while workers refuse before redemption), or on one
    /// `--worker`.
    Dispatch {
        /// What to issue.
        #[command(flatten)]
        issue: IssueArgs,
        /// Run on this worker only (`http://127.0.0.1:7200`; the token's default audience is
        /// then its id).
        #[arg(long)]
        worker: Option<String>,
        /// Pool dispatch: how long to wait for a free worker, seconds.
        #[arg(long, default_value_t = 60, conflicts_with = "worker")]
        patience_secs: u64,
        /// Pool dispatch: a worker not heard from for this long is left out, seconds (default:
        /// three heartbeat intervals).
        #[arg(long, default_value_t = 3 * super::HEARTBEAT_SECS, conflicts_with = "worker")]
        fresh_secs: u32,
    },
}

/// Settings every Hub command takes.
#[derive(Debug, Args)]
pub(crate) struct Common {
    /// The Hub's SQLite database (created if missing).
    #[arg(long, default_value = "hub.db")]
    pub(super) db: PathBuf,
    /// Directory with the Hub's key files (`hubworker keygen`); else `$CREDENTIALS_DIRECTORY`.
    #[arg(long)]
    secrets: Option<PathBuf>,
    /// The Hub's id (the tokens' `iss`).
    #[arg(long, default_value = "hubworker-reference-hub")]
    hub_id: String,
}

/// The pool tokens are for when `--audience` is not given (the workers' default
/// `worker.audience`).
const DEFAULT_AUDIENCE: &str = "hubworker";

/// `issue-token` / `dispatch` arguments.
#[derive(Debug, Args)]
pub(crate) struct IssueArgs {
    #[command(flatten)]
    common: Common,
    /// The user the run is for.
    #[arg(long)]
    user: String,
    /// The workflow file; the token is bound to its canonical hash (required for `run`; an
    /// `inspect` token names connections only).
    #[arg(long, required_unless_present = "connections")]
    workflow: Option<PathBuf>,
    /// Connections to grant (default: those the workflow's `sql` nodes use).
    #[arg(long = "connection")]
    connections: Vec<String>,
    /// `run` or `inspect`.
    #[arg(long, default_value = "run")]
    scope: String,
    /// The worker pool or worker id the token is for (a worker accepts its
    /// `worker.audience` and its own id). Default: `hubworker` (the workers' default pool);
    /// `hub dispatch --worker` asks that worker its id (`Status`).
    #[arg(long)]
    audience: Option<String>,
    /// Token lifetime in seconds.
    #[arg(long, default_value_t = 300)]
    ttl_secs: u64,
    /// A run parameter's value (`NAME=VALUE`, read by the declared type); the token is
    /// bound to the values (`params_sha256`). Repeat per parameter.
    #[arg(long = "param", value_name = "NAME=VALUE")]
    params: Vec<String>,
    /// A JSON object of run parameter values (`--param` overrides its entries).
    #[arg(long = "params", value_name = "FILE")]
    params_file: Option<PathBuf>,
}

pub(super) fn keys(common: &Common) -> Result<HubKeys, Error> {
    match super::config::load(common.secrets.clone(), common.hub_id.clone(), &ProcessEnv) {
        Ok(loaded) => {
            for w in &loaded.warnings {
                tracing::warn!(setting = %w.setting, "{}", w.why);
            }
            Ok(loaded.keys)
        }
        Err(problems) => Err(Error::Config(
            problems
                .iter()
                .map(|p| format!("refusing to start: {p}"))
                .collect::<Vec<_>>()
                .join("\n"),
        )),
    }
}

fn rt() -> Result<tokio::runtime::Runtime, Error> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

pub(super) async fn store(path: &Path) -> Result<Store, Error> {
    Store::open(path).await.map_err(store_error)
}

/// A store failure: refused input is a usage error (exit 2), anything else (SQLite, a file
/// that cannot be made private, a credential that does not decrypt) a runtime failure (1).
pub(super) fn store_error(e: StoreError) -> Error {
    match e {
        StoreError::Invalid(_) => Error::Usage(e.to_string()),
        StoreError::Db(_) | StoreError::Decrypt(_) | StoreError::File { .. } => {
            Error::Failed(e.to_string())
        }
    }
}

/// A Hub failure while issuing: the store's are mapped as [`store_error`]; a refusal (no such
/// user, a role that may not run, an unknown connection) is a usage error.
pub(super) fn hub_error(e: super::HubError) -> Error {
    match e {
        super::HubError::Store(e) => store_error(e),
        other => Error::Usage(format!("{other} [{}]", other.code())),
    }
}

/// The signing keys in force: the store's rotation if it holds one, else the secrets' file.
pub(super) async fn keys_in_force(store: &Store, file: HubKeys) -> Result<HubKeys, Error> {
    Ok(super::signing::resolve(store, &file)
        .await
        .map_err(hub_error)?
        .unwrap_or(file))
}

/// Runs a Hub command.
pub(crate) fn run(cmd: HubCommand) -> Result<u8, Error> {
    let rt = rt()?;
    rt.block_on(async move {
        match cmd {
            HubCommand::Serve {
                common,
                listen,
                heartbeat_secs,
            } => {
                let file_keys = Arc::new(keys(&common)?);
                let store = store(&common.db).await?;
                let listener = tokio::net::TcpListener::bind(listen).await?;
                let local = listener.local_addr()?;
                println!("hub {} listening on {local}", file_keys.hub_id);
                let service = HubService::new(store, file_keys).with_heartbeat_secs(heartbeat_secs);
                serve_service(service, listener, std::future::pending()).await?;
                Ok(0)
            }
            HubCommand::RotateKey { common } => {
                let store = store(&common.db).await?;
                let keys = keys_in_force(&store, keys(&common)?).await?;
                let r = super::signing::rotate(&store, &keys, now())
                    .await
                    .map_err(hub_error)?;
                println!(
                    "signing key rotated: current {}, previous {}",
                    r.current, r.previous
                );
                match r.dropped {
                    Some(kid) => println!("dropped {kid}: tokens signed with it no longer verify"),
                    None => println!("no key dropped"),
                }
                Ok(0)
            }
            HubCommand::AddUser { common, name, role } => {
                let store = store(&common.db).await?;
                store
                    .add_user(&name, &role, now())
                    .await
                    .map_err(store_error)?;
                println!("user {name} ({role}) added");
                Ok(0)
            }
            HubCommand::AddConnection {
                common,
                credential_file,
            } => {
                let keys = keys(&common)?;
                let store = store(&common.db).await?;
                let raw = if credential_file.as_os_str() == "-" {
                    let mut s = String::new();
                    std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)?;
                    crate::secret::Secret::new(s)
                } else {
                    crate::keys::read_secret_file(&credential_file).map_err(Error::Usage)?
                };
                let cred: crate::creds::Credential =
                    serde_json::from_str(raw.expose()).map_err(|e| {
                        Error::Usage(format!(
                            "the credential file does not follow the contract (line {}, column {})",
                            e.line(),
                            e.column()
                        ))
                    })?;
                cred.target(now())
                    .map_err(|e| Error::Usage(e.to_string()))?;
                store
                    .add_connection(&cred, &keys.at_rest, now())
                    .await
                    .map_err(store_error)?;
                println!(
                    "connection {} ({}) added, encrypted at rest",
                    cred.connection,
                    cred.dialect.as_str()
                );
                Ok(0)
            }
            HubCommand::AddProvider {
                common,
                name,
                key_file,
            } => {
                let keys = keys(&common)?;
                let store = store(&common.db).await?;
                let key = if key_file.as_os_str() == "-" {
                    let mut s = String::new();
                    std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)?;
                    crate::secret::Secret::new(s.trim().to_owned())
                } else {
                    let raw = crate::keys::read_secret_file(&key_file).map_err(Error::Usage)?;
                    crate::secret::Secret::new(raw.expose().trim().to_owned())
                };
                store
                    .add_provider(&name, &key, &keys.at_rest, now())
                    .await
                    .map_err(store_error)?;
                println!("provider {name} added, its key encrypted at rest");
                Ok(0)
            }
            HubCommand::Ai(args) => super::ai_cli::ai(args).await,
            HubCommand::Audit {
                common,
                action,
                user,
                worker,
            } => super::audit_cli::audit(&common, action, &user, worker.as_deref()).await,
            HubCommand::Workers { common, fresh_secs } => {
                let store = store(&common.db).await?;
                let workers = store.live_workers().await.map_err(store_error)?;
                print_workers(&workers, now(), i64::from(fresh_secs));
                Ok(0)
            }
            HubCommand::IssueToken(args) => {
                let store = store(&args.common.db).await?;
                let keys = keys_in_force(&store, keys(&args.common)?).await?;
                let audience = args
                    .audience
                    .clone()
                    .unwrap_or_else(|| DEFAULT_AUDIENCE.into());
                let (token, _, _) = issue_for(&store, &keys, &args, audience).await?;
                println!("{}", token.expose());
                Ok(0)
            }
            HubCommand::Dispatch {
                issue,
                worker,
                patience_secs,
                fresh_secs,
            } => {
                let Some(workflow) = &issue.workflow else {
                    return Err(Error::Usage("hub dispatch needs --workflow".into()));
                };
                let doc = std::fs::read_to_string(workflow)?;
                let store = store(&issue.common.db).await?;
                let keys = keys_in_force(&store, keys(&issue.common)?).await?;
                let Some(worker) = worker else {
                    let options = DispatchOptions {
                        fresh_secs: i64::from(fresh_secs),
                        patience: Duration::from_secs(patience_secs),
                        ..DispatchOptions::default()
                    };
                    return dispatch_to_pool(store, &keys, &issue, doc, options).await;
                };
                let channel =
                    crate::client::channel(&worker, &crate::client::ClientTls::default()).await?;
                let mut client = crate::proto::worker_client::WorkerClient::new(channel);
                let audience = match &issue.audience {
                    Some(audience) => audience.clone(),
                    None => crate::client::worker_id(&mut client, &worker).await?,
                };
                let (token, params_json, _) = issue_for(&store, &keys, &issue, audience).await?;
                crate::client::execute(&mut client, &worker, token, doc, params_json).await
            }
        }
    })
}

/// `hub workers`: one line per registered worker.
fn print_workers(workers: &[super::pick::Live], now: i64, fresh_secs: i64) {
    println!("worker\taddress\tpool\tstate\tin flight\tlast heard");
    for w in workers {
        let ago = now - w.last_seen;
        let state = if now - w.last_seen > fresh_secs {
            "silent"
        } else if w.draining {
            "draining"
        } else {
            "live"
        };
        println!(
            "{}\t{}\t{}\t{state}\t{} of {}\t{ago} s ago",
            w.id, w.address, w.audience, w.in_flight, w.capacity
        );
    }
}

/// `hub dispatch` without `--worker`: issues the token for the pool and runs it where the
/// [`Dispatcher`] sends it.
async fn dispatch_to_pool(
    store: Store,
    keys: &HubKeys,
    issue: &IssueArgs,
    doc: String,
    options: DispatchOptions,
) -> Result<u8, Error> {
    let audience = issue
        .audience
        .clone()
        .unwrap_or_else(|| DEFAULT_AUDIENCE.into());
    let (token, params_json, connections) =
        issue_for(&store, keys, issue, audience.clone()).await?;
    let job = Job::new(token, &audience, doc, params_json, &connections)
        .ok_or_else(|| Error::Usage("the workflow or its parameters are not JSON".into()))?;
    let dispatcher = Dispatcher::new(store, options);
    match dispatcher.dispatch(&job).await {
        Ok(run) => {
            let refused: Vec<String> = run
                .attempts
                .iter()
                .map(|a| format!("{} {}", a.worker_id, a.reason))
                .collect();
            if refused.is_empty() {
                eprintln!("dispatched to worker {} ({})", run.worker_id, run.address);
            } else {
                eprintln!(
                    "dispatched to worker {} ({}) after {} refusals: {}",
                    run.worker_id,
                    run.address,
                    refused.len(),
                    refused.join(", ")
                );
            }
            crate::client::print_run(run.events).await
        }
        Err(e) => Err(Error::Failed(format!("[{}] {e}", e.code()))),
    }
}

/// Serves the Hub service on `listener` until `shutdown` completes.
pub async fn serve(
    store: Store,
    keys: Arc<HubKeys>,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), Error> {
    serve_service(HubService::new(store, keys), listener, shutdown).await
}

/// Serves `service` (keep a clone to read its [`auth_stats`](HubService::auth_stats)) on
/// `listener` until `shutdown` completes, with the standard health service (`""` and
/// `hubworker.v1.Hub`; NOT_SERVING and every `Watch` ended at shutdown) and server reflection
/// v1 and v1alpha advertising only what this server serves.
pub async fn serve_service(
    service: HubService,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), Error> {
    use crate::proto::hub_server::SERVICE_NAME as HUB;
    let (mut health, health_service) = crate::introspection::Health::new(&[HUB]).await;
    let (reflection, reflection_v1alpha) = crate::introspection::reflection(&[HUB])
        .map_err(|e| Error::Failed(format!("hub server: reflection: {e}")))?;
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    tonic::transport::Server::builder()
        .timeout(Duration::from_secs(30))
        .add_service(health_service)
        .add_service(reflection)
        .add_service(reflection_v1alpha)
        .add_service(service.server())
        .serve_with_incoming_shutdown(incoming, async move {
            shutdown.await;
            health.stop().await;
        })
        .await
        .map_err(|e| Error::Failed(format!("hub server: {e}")))
}

/// Issues the token `args` describe: the token, the run's parameters (JSON) and the
/// connections it grants.
async fn issue_for(
    store: &Store,
    keys: &HubKeys,
    args: &IssueArgs,
    audience: String,
) -> Result<(crate::secret::Secret, String, Vec<String>), Error> {
    let (workflow_sha256, used, params_json) = match &args.workflow {
        Some(path) => {
            let doc = std::fs::read_to_string(path)?;
            let wf = crate::workflow::validate(&doc)
                .map_err(|p| Error::Usage(format!("the workflow is invalid: {p}")))?;
            let used = wf.connections().into_iter().map(str::to_owned).collect();
            let params_json = crate::workflow_cli::read_params(
                wf.params(),
                &args.params,
                args.params_file.as_deref(),
            )?
            .map_err(|p| Error::Usage(format!("the run's parameters are refused: {p}")))?;
            (wf.sha256().to_owned(), used, params_json)
        }
        // An inspect token names connections, no workflow (the worker checks no hash for it).
        None if args.scope == "inspect" => (String::new(), Vec::new(), String::new()),
        None => {
            return Err(Error::Usage(
                "a run token is bound to a workflow: give --workflow (only --scope inspect \
                 goes without)"
                    .into(),
            ));
        }
    };
    let connections = if args.connections.is_empty() {
        used
    } else {
        args.connections.clone()
    };
    let params_sha256 = crate::workflow::params::params_sha256(&params_json)
        .ok_or_else(|| Error::Usage("the run's parameters are not valid JSON".into()))?;
    let req = TokenRequest {
        user: args.user.clone(),
        workflow_sha256,
        params_sha256,
        connections: connections.clone(),
        scope: args.scope.clone(),
        audience,
        ttl: Duration::from_secs(args.ttl_secs),
    };
    let token = super::issue(store, keys, &req, now())
        .await
        .map(crate::secret::Secret::new)
        .map_err(hub_error)?;
    Ok((token, params_json, connections))
}
