//! `hubworker hub ai`: one request through a worker's AI proxy, with an `ai` token bound to
//! it.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::commands::{Common, hub_error, keys, keys_in_force, store};
use super::{TokenRequest, now};
use crate::error::Error;

/// `hub ai` arguments.
#[derive(Debug, Args)]
pub(crate) struct AiArgs {
    #[command(flatten)]
    common: Common,
    /// The user the request is for.
    #[arg(long)]
    user: String,
    /// The provider (`[ai.providers.<name>]` on the worker, `hub add-provider` here).
    #[arg(long)]
    provider: String,
    /// The path, one of the provider's `paths` on the worker.
    #[arg(long)]
    path: String,
    /// GET or POST.
    #[arg(long, default_value = "POST")]
    method: String,
    /// The request body (`-` reads stdin; none: empty).
    #[arg(long)]
    body: Option<PathBuf>,
    /// A request header, `NAME: VALUE` (repeat).
    #[arg(long = "header", value_name = "NAME: VALUE")]
    headers: Vec<String>,
    /// The worker's address (`http://127.0.0.1:7200`).
    #[arg(long)]
    worker: String,
    /// The worker pool or id the token is for (default: the worker's id, from `Status`).
    #[arg(long)]
    audience: Option<String>,
    /// Token lifetime in seconds.
    #[arg(long, default_value_t = 60)]
    ttl_secs: u64,
}

/// `hub ai`.
pub(super) async fn ai(args: AiArgs) -> Result<u8, Error> {
    let body = match &args.body {
        None => Vec::new(),
        Some(p) if p.as_os_str() == "-" => {
            let mut b = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut b)?;
            b
        }
        Some(p) => std::fs::read(p)?,
    };
    let mut headers = Vec::with_capacity(args.headers.len());
    for h in &args.headers {
        let (name, value) = h
            .split_once(':')
            .ok_or_else(|| Error::Usage(format!("--header {h:?}: NAME: VALUE")))?;
        headers.push(crate::proto::ProxyHeader {
            name: name.trim().to_ascii_lowercase(),
            value: value.trim().to_owned(),
        });
    }
    let store = store(&args.common.db).await?;
    let keys = keys_in_force(&store, keys(&args.common)?).await?;
    let channel =
        crate::client::channel(&args.worker, &crate::client::ClientTls::default()).await?;
    let mut client = crate::proto::worker_client::WorkerClient::new(channel);
    let audience = match &args.audience {
        Some(a) => a.clone(),
        None => crate::client::worker_id(&mut client, &args.worker).await?,
    };
    let method = args.method.to_ascii_uppercase();
    let req = TokenRequest {
        user: args.user.clone(),
        workflow_sha256: crate::token::request_sha256(&args.provider, &method, &args.path, &body),
        params_sha256: crate::token::NO_PARAMS_SHA256.to_owned(),
        connections: vec![args.provider.clone()],
        scope: "ai".into(),
        audience,
        ttl: Duration::from_secs(args.ttl_secs),
    };
    let token = super::issue(&store, &keys, &req, now())
        .await
        .map(crate::secret::Secret::new)
        .map_err(hub_error)?;
    let request = crate::proto::ProxyRequest {
        token: token.expose().to_owned(),
        provider: args.provider,
        method,
        path: args.path,
        headers,
        body,
    };
    crate::client::proxy(&mut client, &args.worker, request).await
}
