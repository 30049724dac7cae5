//! The command line's side of the `Worker` service: `hubworker status` (the worker's `Status`
//! and health as a table) and the run half of `hub dispatch` (progress lines, then each
//! output's Arrow IPC chunks decoded and printed as `hubworker run` prints tables).

use std::path::PathBuf;

use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::error::Error;
use crate::proto::worker_client::WorkerClient;

/// TLS towards a worker (`https://` URLs): the CA its certificate chains to, and for mutual
/// TLS a client certificate and key.
#[derive(Debug, Clone, Default, clap::Args)]
pub(crate) struct ClientTls {
    /// CA certificate (PEM) to verify an `https://` worker with.
    #[arg(long)]
    pub(crate) ca_file: Option<PathBuf>,
    /// Client certificate (PEM) for a worker that requires mutual TLS.
    #[arg(long, requires = "client_key")]
    pub(crate) client_cert: Option<PathBuf>,
    /// Its private key (PEM).
    #[arg(long, requires = "client_cert")]
    pub(crate) client_key: Option<PathBuf>,
}

/// A channel to the worker at `url`.
pub(crate) async fn channel(url: &str, tls: &ClientTls) -> Result<Channel, Error> {
    let mut endpoint = Endpoint::from_shared(url.to_owned())
        .map_err(|e| Error::Usage(format!("--worker {url:?}: {e}")))?;
    if tls.ca_file.is_some() || tls.client_cert.is_some() {
        let read = |p: &PathBuf| {
            std::fs::read(p).map_err(|e| Error::Usage(format!("{}: {e}", p.display())))
        };
        let mut config = ClientTlsConfig::new();
        if let Some(ca) = &tls.ca_file {
            config = config.ca_certificate(Certificate::from_pem(read(ca)?));
        }
        if let (Some(cert), Some(key)) = (&tls.client_cert, &tls.client_key) {
            let key = zeroize::Zeroizing::new(read(key)?);
            config = config.identity(Identity::from_pem(read(cert)?, key.as_slice()));
        }
        endpoint = endpoint
            .tls_config(config)
            .map_err(|e| Error::Usage(format!("TLS towards {url}: {e}")))?;
    }
    endpoint
        .connect()
        .await
        .map_err(|e| Error::Failed(format!("cannot reach worker {url}: {}", cause(&e))))
}

/// An error and its causes, `: `-separated (tonic's transport errors say little at the top).
fn cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut next = e.source();
    while let Some(source) = next {
        text.push_str(": ");
        text.push_str(&source.to_string());
        next = source.source();
    }
    text
}

/// A refused call as an error: the gRPC code, the worker's message (which starts with its
/// reason code).
fn refused(what: &str, url: &str, s: &tonic::Status) -> Error {
    Error::Failed(format!(
        "{what} at worker {url} failed: {:?}: {}",
        s.code(),
        s.message()
    ))
}

/// `hubworker status --worker URL`: the worker's `Status` and its health (`""` and
/// `hubworker.v1.Worker`) as a two-column table. Exit 0 when it serves, 1 when it is
/// draining or not serving.
pub(crate) fn status(url: &str, tls: &ClientTls) -> Result<u8, Error> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let channel = channel(url, tls).await?;
        let s = WorkerClient::new(channel.clone())
            .status(crate::proto::StatusRequest {})
            .await
            .map_err(|e| refused("Status", url, &e))?
            .into_inner();
        let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
        let mut serving = !s.draining;
        let mut rows = vec![
            ("worker", url.to_owned()),
            ("worker id", s.worker_id),
            ("version", s.version),
            (
                "state",
                if s.draining { "draining" } else { "serving" }.to_owned(),
            ),
            (
                "runs in flight",
                format!("{} of {}", s.runs_in_flight, s.capacity),
            ),
            ("isolation", s.isolation),
            ("confinements", s.confinements.join(", ")),
        ];
        let states = s.confinement_states;
        let landlock_abi = s.landlock_abi;
        for (label, service) in [
            ("health", ""),
            ("health hubworker.v1.Worker", "hubworker.v1.Worker"),
        ] {
            let answer = health
                .check(tonic_health::pb::HealthCheckRequest {
                    service: service.to_owned(),
                })
                .await;
            let text = match answer {
                Ok(r) => {
                    let status = r.into_inner().status();
                    serving &=
                        status == tonic_health::pb::health_check_response::ServingStatus::Serving;
                    status.as_str_name().to_owned()
                }
                Err(e) => {
                    serving = false;
                    format!("{:?}", e.code())
                }
            };
            rows.push((label, text));
        }
        let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        for (k, v) in rows {
            println!("{k:<width$}  {v}");
        }
        if !states.is_empty() {
            println!("run sandbox (Landlock ABI {landlock_abi}):");
            let width = states.iter().map(|c| c.name.len()).max().unwrap_or(0);
            for c in states {
                let on = if c.active { "on " } else { "off" };
                let line = format!("  {:<width$}  {on}  {}", c.name, c.detail);
                println!("{}", line.trim_end());
            }
        }
        Ok(u8::from(!serving))
    })
}

/// The worker's id, asked of its `Status`: the default audience of `hub dispatch`'s token
/// (every worker accepts tokens for its own id).
pub(crate) async fn worker_id(
    client: &mut WorkerClient<Channel>,
    url: &str,
) -> Result<String, Error> {
    Ok(client
        .status(crate::proto::StatusRequest {})
        .await
        .map_err(|e| refused("Status", url, &e))?
        .into_inner()
        .worker_id)
}

/// Calls `Execute` and prints the run (see [`print_run`]).
pub(crate) async fn execute(
    client: &mut WorkerClient<Channel>,
    url: &str,
    token: crate::secret::Secret,
    workflow_json: String,
    params_json: String,
) -> Result<u8, Error> {
    let stream = client
        .execute(crate::proto::ExecuteRequest {
            token: token.expose().to_owned(),
            workflow_json,
            bypass_cache: false,
            update_cache: false,
            params_json,
        })
        .await
        .map_err(|s| refused("Execute", url, &s))?
        .into_inner();
    print_run(stream).await
}

/// Prints a run's events: progress lines, then each output as a table. Exit 1 when the run
/// ends with an error, its own or the stream's (`worker_lost` when the worker went away).
pub(crate) async fn print_run(
    mut stream: tonic::Streaming<crate::proto::ExecuteEvent>,
) -> Result<u8, Error> {
    use crate::proto::execute_event::Event;
    let mut outputs: Vec<(String, Vec<u8>)> = Vec::new();
    let mut code = 0;
    loop {
        let event = match stream.message().await {
            Ok(Some(event)) => event,
            Ok(None) => break,
            Err(status) => {
                let (reason, message) = stream_failure(&status);
                println!("error [{reason}]: {message}");
                code = 1;
                break;
            }
        };
        match event.event {
            Some(Event::Accepted(a)) => println!("accepted: run {}", a.run_id),
            Some(Event::Progress(p)) => match p.rows {
                Some(rows) => println!("  {} ({}): {:?}, {rows} rows", p.node, p.tool, p.state()),
                None => println!("  {} ({}): {:?}", p.node, p.tool, p.state()),
            },
            Some(Event::Result(r)) => match outputs.iter_mut().find(|(n, _)| *n == r.output) {
                Some((_, bytes)) => bytes.extend_from_slice(&r.arrow_ipc),
                None => outputs.push((r.output, r.arrow_ipc)),
            },
            Some(Event::Finished(f)) => {
                println!("finished: run {} in {} ms", f.run_id, f.elapsed_ms);
            }
            Some(Event::Error(e)) => {
                // The run's last event (the stream's status repeats its code).
                println!("error [{}]: {}", e.code, e.message);
                code = 1;
                break;
            }
            None => {}
        }
    }
    let mut frames = Vec::with_capacity(outputs.len());
    for (name, bytes) in outputs {
        let frame = crate::frames::from_ipc_stream(bytes).map_err(|e| {
            Error::Failed(format!(
                "output {name:?}: not a readable Arrow IPC stream: {e}"
            ))
        })?;
        frames.push((name, frame));
    }
    if !crate::frames::print_tables(&frames, &mut std::io::stdout().lock())? {
        return Ok(1);
    }
    Ok(code)
}

/// The reason code of a worker's refusal (`hubworker-reason`), else the gRPC code's name.
pub(crate) fn reason_of(status: &tonic::Status) -> String {
    status
        .metadata()
        .get("hubworker-reason")
        .and_then(|v| v.to_str().ok())
        .map_or_else(|| format!("{:?}", status.code()), str::to_owned)
}

/// A run's stream that failed: the worker's reason code if it gave one, else `worker_lost`
/// (the connection broke: the worker died or was cut off mid-run); and a message.
pub(crate) fn stream_failure(status: &tonic::Status) -> (String, String) {
    match status.metadata().get("hubworker-reason") {
        Some(_) => (reason_of(status), status.message().to_owned()),
        None => (
            "worker_lost".into(),
            format!(
                "the worker went away mid-run ({:?}: {})",
                status.code(),
                status.message()
            ),
        ),
    }
}

/// Calls `Proxy`: the response's status and headers on stderr, its body on stdout as it
/// arrives. Exit 0 for a 2xx answer, 1 otherwise (a refusal is an error).
pub(crate) async fn proxy(
    client: &mut WorkerClient<Channel>,
    url: &str,
    request: crate::proto::ProxyRequest,
) -> Result<u8, Error> {
    use std::io::Write;

    use crate::proto::proxy_event::Event;
    let mut stream = client
        .proxy(request)
        .await
        .map_err(|s| refused("Proxy", url, &s))?
        .into_inner();
    let mut code = 1;
    let mut out = std::io::stdout().lock();
    while let Some(event) = stream
        .message()
        .await
        .map_err(|s| refused("the Proxy stream", url, &s))?
    {
        match event.event {
            Some(Event::Head(h)) => {
                eprintln!("status {}", h.status);
                for header in h.headers {
                    eprintln!("{}: {}", header.name, header.value);
                }
                if (200..300).contains(&h.status) {
                    code = 0;
                }
            }
            Some(Event::Data(d)) => {
                out.write_all(&d)?;
                out.flush()?;
            }
            Some(Event::End(e)) => eprintln!("end: {} bytes", e.bytes),
            None => {}
        }
    }
    Ok(code)
}
