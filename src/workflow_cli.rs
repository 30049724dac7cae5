//! `hubworker validate` and `hubworker run`: the workflow commands for people who write
//! workflows. They print; the checking and running happen in [`crate::workflow`]. Connection
//! URLs are secrets: read from files where asked, held in [`Secret`], printed redacted.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::connector::{QueryOptions, ResultLimits, Target};
use crate::error::Error;
use crate::secret::Secret;
use crate::workflow::{self, Event, RunControl};

/// What `hubworker run` was asked to do.
#[derive(Debug)]
pub struct RunOptions {
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

/// `hubworker validate`: exit 0 and the hash as the last line, or exit 1 and every problem.
pub fn validate(path: &Path, as_json: bool) -> Result<u8, Error> {
    let doc = read_doc(path)?;
    let result = workflow::validate(&doc);
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
            Some(file) => match crate::cli::read_url(Path::new(file)) {
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
pub fn run(opts: &RunOptions) -> Result<u8, Error> {
    let doc = read_doc(&opts.workflow)?;
    let wf = match workflow::validate(&doc) {
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
    let targets = connections(&opts.connections)?;
    let control = RunControl::with_timeout(opts.timeout);
    let started = Instant::now();
    let mut progress = |e: Event| {
        let at = started.elapsed().as_secs_f64();
        let line = match e {
            Event::Started { node, tool } => format!("[{at:8.3}s] {node} ({tool}) started"),
            Event::Finished {
                node,
                tool,
                rows: Some(rows),
            } => format!("[{at:8.3}s] {node} ({tool}) finished: {rows} rows"),
            Event::Finished {
                node,
                tool,
                rows: None,
            } => format!("[{at:8.3}s] {node} ({tool}) finished"),
        };
        eprintln!("{line}");
    };
    let options = QueryOptions {
        limits: ResultLimits {
            max_rows: opts.max_rows,
            ..ResultLimits::default()
        },
        timeout: opts.timeout,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let inputs = match rt.block_on(workflow::load_inputs(
        &wf,
        &targets,
        &options,
        &control,
        &mut progress,
    )) {
        Ok(frames) => frames,
        Err(e) => {
            eprintln!("run failed: {e} [{}]", e.code());
            return Ok(1);
        }
    };
    let outputs = match workflow::execute(&wf, inputs, &control, &mut progress) {
        Ok(outputs) => outputs,
        Err(e) => {
            eprintln!("run failed: {e} [{}]", e.code());
            return Ok(1);
        }
    };
    let mut out = std::io::stdout().lock();
    match &opts.output {
        Some(dir) => {
            std::fs::create_dir_all(dir)?;
            for mut o in outputs {
                let path = dir.join(format!("{}.parquet", o.name));
                crate::frames::write_parquet(&mut o.frame, &path).map_err(|source| {
                    Error::Frame {
                        path: path.clone(),
                        source,
                    }
                })?;
                writeln!(
                    out,
                    "{}: {} rows → {}",
                    o.name,
                    o.frame.height(),
                    path.display()
                )?;
            }
        }
        None => {
            for o in outputs {
                let Ok(table) = crate::batch::render_guarded(&o.frame) else {
                    eprintln!(
                        "run failed: output {:?} has a value outside the calendar and cannot be \
                         printed; use --output DIR [execution_failed]",
                        o.name
                    );
                    return Ok(1);
                };
                writeln!(out, "== {} ({} rows)\n{table}", o.name, o.frame.height())?;
            }
        }
    }
    Ok(0)
}
