//! Work a sandbox process does before it has a task, so that the task does not wait for it.
//!
//! - The fork server's **template** warms what its children inherit: heap state (the
//!   expression cache's table, Polars' shared all-zero buffer), built once and shared
//!   copy-on-write instead of built by every child.
//! - A **spare** child warms what no fork inherits: the page-table entries of the binary's code
//!   and read-only data. The kernel copies none for a file mapping at `fork`, so every child
//!   faults in, page by page, each piece of code it runs for the first time. A spare waits
//!   for its task anyway, so it validates a built-in workflow first. Measured with trace
//!   points in the child (2 cores, `bench dispatch`'s tiny workflow, medians of 200 runs): the
//!   task's validation took 0.79-0.89 ms cold and 0.15 ms after the warm-up. It then decodes
//!   three rows of Arrow IPC with the run's own reader (a cached input arrives so), written
//!   with Arrow's stream writer: the `load` step of `bench dispatch` went from 0.45-0.47 ms to
//!   0.37-0.39 ms.
//!
//! Neither holds anything of a task: only the constants below (the template's Fernet key is
//! 32 public zero bytes). Both start no thread (a
//! forking template must stay single-threaded, and a task's threads must start under its
//! confinement: Landlock binds a thread to the domain it was started in); the template and
//! the spare check that after warming, and fail closed. Writing the rows with Polars'
//! `IpcStreamWriter` started Polars' thread pool in the spare, which the check caught; Arrow's
//! own stream writer starts none.

use hmac::{Hmac, Mac};
use polars::prelude::{DataType, Series};
use sha2::Sha256;

/// 32 zero bytes as a Fernet key: public, protects nothing, only exercises the cipher.
const PUBLIC_ZERO_KEY: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";

/// Expressions the template checks and compiles once: the parser's and compiler's first-use
/// costs (lazy tables, the allocator's first pages), inherited by every child.
const TEMPLATE_EXPRESSIONS: [&str; 3] = [
    "(pl.col('p') * pl.col('x')).round(2)",
    "pl.col('k').str.to_uppercase()",
    "pl.when(pl.col('x') > 0).then(pl.lit(1)).otherwise(pl.lit(0))",
];

/// The template's warm-up (see the module's documentation).
pub(super) fn template() {
    for source in TEMPLATE_EXPRESSIONS {
        // Through the expression cache, as a task's validation goes: its per-thread table is
        // then the template's, inherited, not allocated and faulted in by every child.
        crate::expr::global_cache().with(source, |checked| {
            if let Ok(checked) = checked.as_deref() {
                let _ = crate::expr::compile(checked);
            }
        });
    }
    // CPU-feature detection (AES for Fernet, SHA-256 for the HMACs) runs `cpuid` once and
    // keeps the answer in a static: asked here, not by every child (in a virtual machine each
    // `cpuid` traps to the hypervisor). A public all-zero key, sealing a constant.
    if let Some(fernet) = fernet::Fernet::new(PUBLIC_ZERO_KEY) {
        let _ = fernet.decrypt(&fernet.encrypt(b"warm"));
    }
    if let Ok(mac) = <Hmac<Sha256> as Mac>::new_from_slice(b"warm") {
        let _ = mac.finalize();
    }
    // The same for ChaCha's AVX2 check: every thread of Polars' streaming executor seeds its
    // generator from a ChaCha one, and the first in each child paid the `cpuid` (in `perf`:
    // 0.5% of the benchmark's CPU, on the plan's start). A generator of its own with a
    // constant seed, dropped at once: no generator state is left for the children to share.
    let _ = <polars_rand::rngs::StdRng as polars_rand::SeedableRng>::seed_from_u64(0);
    // Polars' shared all-zero buffer (8 MiB, behind every all-null column, built on first
    // use): the children share the template's pages instead of each zeroing its own.
    let _ = Series::full_null("warm".into(), 1, &DataType::Int64);
}

/// The workflow a spare validates: the nodes most runs have (a query, a formula, a filter,
/// an output), so the JSON reader, the SQL guard, the expression parser and compiler and the
/// workflow checks are warm.
const SPARE_WORKFLOW: &str = r#"{"version": 1, "nodes": [
  {"id": "q", "tool": "sql", "connection": "warm", "dialect": "sqlite",
   "query": "SELECT id, name, price FROM items WHERE id > 1 ORDER BY id"},
  {"id": "f", "tool": "formula", "input": "q",
   "formulas": [{"column": "gross", "expression": "(pl.col(\"price\") * 1.2).round(2)"}]},
  {"id": "w", "tool": "filter", "input": "f", "expression": "pl.col(\"gross\") > 1"},
  {"id": "o", "tool": "output", "input": "w", "name": "out"}]}"#;

/// A spare child's warm-up (see the module's documentation): validates [`SPARE_WORKFLOW`].
pub(super) fn spare() -> Result<(), &'static str> {
    crate::workflow::validate_bound(SPARE_WORKFLOW, "")
        .map_err(|_| "the warm-up workflow was refused")?;
    let bytes = sample_ipc().map_err(|_| "the warm-up rows could not be encoded")?;
    crate::run::from_ipc(&bytes).map_err(|_| "the warm-up rows could not be decoded")?;
    Ok(())
}

/// Three rows as an Arrow IPC stream, written with Arrow's own stream writer (Polars'
/// `IpcStreamWriter` would start its thread pool).
fn sample_ipc() -> polars::prelude::PolarsResult<Vec<u8>> {
    use polars_arrow::array::{Array, Float64Array, Int64Array, Utf8ViewArray};
    use polars_arrow::datatypes::{ArrowDataType, ArrowSchema, Field};
    use polars_arrow::io::ipc::write::{StreamWriter, WriteOptions};
    use polars_arrow::record_batch::RecordBatchT;
    let schema = ArrowSchema::from_iter([
        Field::new("id".into(), ArrowDataType::Int64, true),
        Field::new("name".into(), ArrowDataType::Utf8View, true),
        Field::new("price".into(), ArrowDataType::Float64, true),
    ]);
    let arrays: Vec<Box<dyn Array>> = vec![
        Int64Array::from_slice([1, 2, 3]).boxed(),
        Utf8ViewArray::from_slice_values(["a", "b", "c"]).boxed(),
        Float64Array::from_slice([1.5, 2.5, 3.5]).boxed(),
    ];
    let batch = RecordBatchT::try_new(3, std::sync::Arc::new(schema.clone()), arrays)?;
    let mut out = Vec::new();
    let mut writer = StreamWriter::new(&mut out, WriteOptions { compression: None });
    writer.start(&schema, None)?;
    writer.write(&batch, None)?;
    writer.finish()?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_template_warm_up_expressions_are_valid() {
        for source in TEMPLATE_EXPRESSIONS {
            assert!(crate::expr::check(source).is_ok(), "{source}");
        }
        template();
    }

    /// A key Fernet refused would warm no cipher, silently.
    #[test]
    fn the_template_warm_up_key_is_a_fernet_key() {
        let fernet = fernet::Fernet::new(PUBLIC_ZERO_KEY).expect("a Fernet key");
        let sealed = fernet.encrypt(b"warm");
        assert_eq!(fernet.decrypt(&sealed).expect("opens"), b"warm");
    }

    /// A refused warm-up would warm nothing and say so only in a log line.
    #[test]
    fn the_spare_warm_up_runs_to_the_end() {
        assert_eq!(spare(), Ok(()));
    }

    /// The rows the spare decodes are the task's kind: an Arrow IPC stream the run's own
    /// reader takes, with the values written.
    #[test]
    fn the_spare_warm_up_rows_decode_exactly() {
        let df = crate::run::from_ipc(&sample_ipc().expect("encodes")).expect("decodes");
        let names: Vec<&str> = df.get_column_names().iter().map(|n| n.as_str()).collect();
        assert_eq!(names, ["id", "name", "price"]);
        let ids = df.column("id").unwrap().i64().unwrap();
        assert_eq!((ids.len(), ids.get(0), ids.get(2)), (3, Some(1), Some(3)));
        let names = df.column("name").unwrap().str().unwrap();
        assert_eq!(names.get(2), Some("c"));
        let prices = df.column("price").unwrap().f64().unwrap();
        assert_eq!(prices.get(0), Some(1.5));
    }
}
