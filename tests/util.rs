use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use polars::prelude::*;
use serde_json::Value;

/// The hubworker binary cargo built for these tests.
pub(crate) fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_hubworker"))
}

/// Runs hubworker with `args`, feeding `stdin`, in `cwd`.
pub(crate) fn run(args: &[&str], stdin: &str, cwd: &Path) -> Output {
    let mut child = Command::new(bin())
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn hubworker");
    let mut input = child.stdin.take().expect("stdin");
    let data = stdin.as_bytes().to_vec();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let out = child.wait_with_output().expect("wait");
    writer.join().expect("writer");
    out
}

/// The JSON objects printed one per line.
pub(crate) fn answers(out: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("answer line is JSON"))
        .collect()
}

/// A small frame with nulls, NaN, negatives and strings, written as parquet into `dir`.
pub(crate) fn sample_frame() -> DataFrame {
    df!(
        "a" => [Some(1i64), Some(-7), None, Some(10), Some(0)],
        "b" => [Some(2i32), Some(2), Some(3), None, Some(5)],
        "x" => [Some(2.5f64), Some(f64::NAN), Some(-1.25), None, Some(12.25)],
        "s" => [Some("apple"), Some("ü"), None, Some("-12"), Some("Hello World")],
        "flag" => [Some(true), Some(false), None, Some(true), Some(false)]
    )
    .expect("frame")
}

/// Writes the sample frame as parquet and returns its path.
pub(crate) fn sample_parquet(dir: &Path) -> PathBuf {
    let path = dir.join("sample.parquet");
    let mut df = sample_frame();
    let f = std::fs::File::create(&path).expect("create");
    ParquetWriter::new(f)
        .finish(&mut df)
        .expect("write parquet");
    path
}

/// Worker config lines that make an in-process worker start the built binary as its run
/// child (the test binary itself cannot be one), followed by `extra` sandbox keys.
pub(crate) fn sandboxed(sandbox_keys: &str) -> String {
    format!(
        "[sandbox]\nprogram = {:?}\n{sandbox_keys}\n",
        bin().display().to_string()
    )
}

/// A child process that is killed (and reaped) when this is dropped, so a failing test leaves
/// no daemon behind holding ports.
pub(crate) struct KillOnDrop(pub(crate) std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// An `n` x `n` cross join of one inline column, a formula, a sort and a group-by: CPU- and
/// memory-hungry on purpose (n = 6,000 takes several seconds here; n = 30,000 wants tens of
/// GiB).
pub(crate) fn cross_join(n: usize) -> String {
    let rows: Vec<String> = (0..n).map(|i| format!("[{i}]")).collect();
    format!(
        r#"{{"version": 1, "nodes": [
          {{"id": "a", "tool": "inline", "columns": [{{"name": "x", "type": "Int64"}}], "rows": [{}]}},
          {{"id": "j", "tool": "join", "left": "a", "right": "a", "how": "cross"}},
          {{"id": "f", "tool": "formula", "input": "j", "formulas": [{{"column": "p", "expression": "(pl.col('x') * 7919 + pl.col('x_right')) % 1000003"}}]}},
          {{"id": "s", "tool": "sort", "input": "f", "by": [{{"column": "p"}}, {{"column": "x", "descending": true}}]}},
          {{"id": "g", "tool": "summarize", "input": "s", "group_by": ["p"], "aggregations": [{{"op": "count"}}]}},
          {{"id": "o", "tool": "output", "input": "g", "name": "out"}}]}}"#,
        rows.join(",")
    )
}

/// An `Execute` of `doc` with `token`: no parameters, the cache used as usual.
pub(crate) fn request(token: &str, doc: &str) -> hubworker::proto::ExecuteRequest {
    hubworker::proto::ExecuteRequest {
        token: token.to_owned(),
        workflow_json: doc.to_owned(),
        bypass_cache: false,
        update_cache: false,
        params_json: String::new(),
    }
}

/// Runs `doc` with `token` on a worker to its end: Ok(()) once Finished, else the code of the
/// refusal (its `hubworker-reason`) or of the run's error event.
pub(crate) async fn run_to_end(
    c: &mut hubworker::proto::worker_client::WorkerClient<tonic::transport::Channel>,
    token: &str,
    doc: &str,
) -> Result<(), String> {
    use hubworker::proto::execute_event::Event;
    let req = request(token, doc);
    let mut stream = match c.execute(req).await {
        Ok(s) => s.into_inner(),
        Err(s) => {
            return Err(s
                .metadata()
                .get("hubworker-reason")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("?")
                .to_owned());
        }
    };
    while let Some(e) = stream.message().await.map_err(|s| s.message().to_owned())? {
        match e.event {
            Some(Event::Finished(_)) => return Ok(()),
            Some(Event::Error(e)) => return Err(e.code),
            _ => {}
        }
    }
    Err("no end".into())
}

/// The stable reason code a worker or Hub puts in a refused call's `hubworker-reason` metadata.
pub(crate) fn reason(s: &tonic::Status) -> String {
    s.metadata()
        .get("hubworker-reason")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// The claims of a token (read without verifying it).
pub(crate) fn claims_of(token: &str) -> Value {
    use base64::Engine as _;
    let claims = token.split('.').nth(1).expect("a JWT has three parts");
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(claims)
        .expect("base64url claims");
    serde_json::from_slice::<Value>(&raw).expect("JSON claims")
}

/// The `jti` claim of a token (read without verifying it).
pub(crate) fn jti_of(token: &str) -> String {
    claims_of(token)["jti"]
        .as_str()
        .expect("a jti claim")
        .to_owned()
}
