//! `hubworker validate` and `hubworker run`: the workflow commands for people who write
//! workflows. They print; the checking and running happen in [`crate::workflow`]. Connection
//! URLs are secrets: read from files where asked, held in [`Secret`], printed redacted.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::json;

use polars::prelude::DataFrame;

use crate::connector::{QueryOptions, ResultLimits, Target};
use crate::error::Error;
use crate::run::{Connection, Direct, Events, Limits, RunEvent, Task, TaskFailure};
use crate::secret::Secret;
use crate::workflow::{self, RunControl};

/// What `hubworker run` was asked to do.
#[derive(Debug)]
pub(crate) struct RunOptions {
    /// The workflow file (`-`: stdin).
    pub workflow: PathBuf,
    /// `NAME=URL` or `NAME=@FILE`.
    pub connections: Vec<String>,
    /// Directory for parquet results; print tables when `None`.
    pub output: Option<PathBuf>,
    /// Wall-clock limit.
    pub timeout: Duration,
    /// Most rows per query.
    pub max_rows: usize,
    /// `--param NAME=VALUE`.
    pub params: Vec<String>,
    /// `--params FILE`.
    pub params_file: Option<PathBuf>,
}

fn read_doc(path: &Path) -> Result<String, Error> {
    let mut doc = String::new();
    if path.as_os_str() == "-" {
        std::io::stdin().read_to_string(&mut doc)?;
    } else {
        // Read at most one byte over the limit: validation reports the size, and a huge
        // file is never loaded whole.
        let file = std::fs::File::open(path)
            .map_err(|e| Error::Usage(format!("{}: {e}", path.display())))?;
        let cap = workflow::hash::MAX_WORKFLOW_BYTES as u64 + 1;
        file.take(cap)
            .read_to_string(&mut doc)
            .map_err(|e| Error::Usage(format!("{}: {e}", path.display())))?;
    }
    Ok(doc)
}

/// A run's parameter values from `--params FILE` and `--param NAME=VALUE` (read by each
/// parameter's declared type), checked against `params`: the JSON object to send, or every
/// problem.
pub(crate) fn read_params(
    params: &workflow::params::Params,
    pairs: &[String],
    file: Option<&Path>,
) -> Result<Result<String, workflow::Problems>, Error> {
    let file = match file {
        Some(p) => Some(
            std::fs::read_to_string(p)
                .map_err(|e| Error::Usage(format!("{}: {e}", p.display())))?,
        ),
        None => None,
    };
    Ok(workflow::params::cli_values(params, file.as_deref(), pairs)
        .and_then(|values| {
            workflow::params::bind(params, &values)?;
            Ok(values.to_string())
        })
        .map_err(workflow::Problems))
}

/// `hubworker validate`: exit 0 and the hash as the last line, or exit 1 and every problem.
/// With `--param`/`--params`, the values are checked against the declarations too.
pub(crate) fn validate(
    path: &Path,
    as_json: bool,
    params: &[String],
    params_file: Option<&Path>,
) -> Result<u8, Error> {
    let doc = read_doc(path)?;
    let mut result = workflow::validate(&doc);
    if let Ok(wf) = &result
        && (!params.is_empty() || params_file.is_some())
        && let Err(problems) = read_params(wf.params(), params, params_file)?
    {
        result = Err(problems);
    }
    let mut out = std::io::stdout().lock();
    if as_json {
        let value = match &result {
            Ok(wf) => json!({
                "valid": true,
                "problems": [],
                "nodes": wf.schemas().map(|(id, tool, schema)| json!({
                    "id": id,
                    "tool": tool,
                    "schema": schema.map(|s| s.iter().map(|(n, t)| json!({"name": n.as_str(), "type": t.to_string()})).collect::<Vec<_>>()),
                })).collect::<Vec<_>>(),
                "sha256": wf.sha256(),
            }),
            Err(problems) => json!({"valid": false, "problems": problems.0}),
        };
        writeln!(out, "{value}")?;
        return Ok(if result.is_ok() { 0 } else { 1 });
    }
    match result {
        Ok(wf) => {
            for (id, tool, schema) in wf.schemas() {
                let columns = match schema {
                    Some(s) => s
                        .iter()
                        .map(|(n, t)| format!("{n}: {t}"))
                        .collect::<Vec<_>>()
                        .join(", "),
                    None => "(known when the query runs)".to_owned(),
                };
                writeln!(out, "{id} ({tool}): {columns}")?;
            }
            writeln!(out, "sha256:{}", wf.sha256())?;
            Ok(0)
        }
        Err(problems) => {
            for p in &problems.0 {
                writeln!(out, "{p}")?;
            }
            writeln!(
                out,
                "invalid: {} problem{}",
                problems.0.len(),
                if problems.0.len() == 1 { "" } else { "s" }
            )?;
            Ok(1)
        }
    }
}

/// Parses `NAME=URL` / `NAME=@FILE` arguments; every problem at once.
fn connections(args: &[String]) -> Result<HashMap<String, Target>, Error> {
    let mut out = HashMap::new();
    let mut problems = Vec::new();
    for arg in args {
        let Some((name, value)) = arg.split_once('=') else {
            // Never echo the argument: it may be a URL with a password.
            problems.push("--connection takes NAME=URL or NAME=@FILE".to_owned());
            continue;
        };
        let url = match value.strip_prefix('@') {
            Some(file) => match crate::secret::read_secret(Path::new(file)) {
                Ok(url) => url,
                Err(e) => {
                    problems.push(format!("connection {name:?}: {e}"));
                    continue;
                }
            },
            None => Secret::new(value.to_owned()),
        };
        match Target::from_url(url) {
            Ok(t) => {
                if out.insert(name.to_owned(), t).is_some() {
                    problems.push(format!("connection {name:?} is given twice"));
                }
            }
            Err(e) => problems.push(format!("connection {name:?}: {e}")),
        }
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(Error::Usage(problems.join("\n")))
    }
}

/// `hubworker run`.
pub(crate) fn run(opts: &RunOptions) -> Result<u8, Error> {
    let doc = read_doc(&opts.workflow)?;
    let checked = workflow::validate(&doc).and_then(|mut wf| {
        let values = read_params(wf.params(), &opts.params, opts.params_file.as_deref());
        let json = match values {
            Ok(Ok(json)) => json,
            Ok(Err(problems)) => return Err(problems),
            Err(e) => {
                let problem =
                    workflow::problem::Problem::new(None, "params", "bad_params", e.to_string());
                return Err(workflow::Problems(vec![problem]));
            }
        };
        let values = workflow::params::bind_text(wf.params(), &json).map_err(workflow::Problems)?;
        wf.bind(values, &json)?;
        Ok(wf)
    });
    let wf = match checked {
        Ok(wf) => wf,
        Err(problems) => {
            let mut err = std::io::stderr().lock();
            for p in &problems.0 {
                writeln!(err, "{p}")?;
            }
            writeln!(err, "invalid workflow: nothing was run")?;
            return Ok(1);
        }
    };
    let connections = connections(&opts.connections)?
        .into_iter()
        .map(|(name, target)| Connection {
            name,
            target,
            fingerprint: None,
        })
        .collect();
    let control = RunControl::with_timeout(opts.timeout);
    let limits = Limits {
        query: QueryOptions {
            limits: ResultLimits {
                max_rows: opts.max_rows,
                ..ResultLimits::default()
            },
            timeout: opts.timeout,
        },
        chunk_bytes: 0,
        engine: crate::workflow::Engine::default(),
    };
    let mut inputs = Direct::new()?;
    let mut report = Report {
        started: Instant::now(),
        outputs: Vec::new(),
    };
    let task = Task::Run(Box::new(wf));
    if let Err(e) = crate::run::execute(
        task,
        connections,
        &limits,
        &control,
        &mut inputs,
        &mut report,
    ) {
        eprintln!("run failed: {e} [{}]", e.code());
        return Ok(1);
    }
    let mut outputs = Vec::with_capacity(report.outputs.len());
    for (name, ipc) in report.outputs {
        match crate::run::from_ipc(&ipc) {
            Ok(frame) => outputs.push((name, frame)),
            Err(e) => {
                eprintln!("run failed: {e} [{}]", e.code());
                return Ok(1);
            }
        }
    }
    write_outputs(opts, outputs)
}

/// Progress on stderr as it happens; outputs kept for the end.
struct Report {
    started: Instant,
    outputs: Vec<(String, Vec<u8>)>,
}

impl Events for Report {
    fn emit(&mut self, event: RunEvent) -> Result<(), TaskFailure> {
        let at = self.started.elapsed().as_secs_f64();
        match event {
            RunEvent::Progress {
                node,
                tool,
                finished: false,
                ..
            } => eprintln!("[{at:8.3}s] {node} ({tool}) started"),
            RunEvent::Progress {
                node,
                tool,
                rows: Some(rows),
                ..
            } => eprintln!("[{at:8.3}s] {node} ({tool}) finished: {rows} rows"),
            RunEvent::Progress { node, tool, .. } => {
                eprintln!("[{at:8.3}s] {node} ({tool}) finished");
            }
            RunEvent::Input { node, rows, .. } => {
                eprintln!("[{at:8.3}s] {node} (sql) finished: {rows} rows");
            }
            RunEvent::Output { name, ipc, .. } => {
                match self.outputs.iter_mut().find(|(n, _)| *n == name) {
                    Some((_, bytes)) => bytes.extend_from_slice(&ipc),
                    None => self.outputs.push((name, ipc)),
                }
            }
            RunEvent::Tables(_) => {}
        }
        Ok(())
    }
}

/// Writes each output as `DIR/<name>.parquet`, or prints it.
fn write_outputs(opts: &RunOptions, outputs: Vec<(String, DataFrame)>) -> Result<u8, Error> {
    let mut out = std::io::stdout().lock();
    match &opts.output {
        Some(dir) => {
            std::fs::create_dir_all(dir)?;
            for (name, mut frame) in outputs {
                let path = dir.join(format!("{name}.parquet"));
                crate::frames::write_parquet(&mut frame, &path).map_err(|source| Error::Frame {
                    path: path.clone(),
                    source,
                })?;
                writeln!(
                    out,
                    "{}: {} rows → {}",
                    name,
                    frame.height(),
                    path.display()
                )?;
            }
        }
        None => {
            if !crate::frames::print_tables(&outputs, &mut out)? {
                return Ok(1);
            }
        }
    }
    Ok(0)
}
