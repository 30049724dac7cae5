//! `hubworker hub audit list|verify`: the audit trail, for auditors only.

use super::commands::{Common, store, store_error};
use crate::error::Error;

/// `hub audit` actions.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(crate) enum AuditAction {
    /// One line per record.
    List,
    /// Check every chain.
    Verify,
}

/// `hub audit`.
pub(super) async fn audit(
    common: &Common,
    action: AuditAction,
    user: &str,
    worker: Option<&str>,
) -> Result<u8, Error> {
    let store = store(&common.db).await?;
    match store.role(user).await.map_err(store_error)? {
        Some(role) if role == "auditor" => {}
        Some(role) => {
            return Err(Error::Usage(format!(
                "hub audit is for auditors; {user:?} has role {role:?}"
            )));
        }
        None => return Err(Error::Usage(format!("no user {user:?}"))),
    }
    let records = store.audit_records(worker).await.map_err(store_error)?;
    match action {
        AuditAction::List => {
            println!(
                "worker\tseq\trun_id\tkind\tsub\tjti\tworkflow_sha256\tparams_sha256\tconnections\toutcome\texit_class\tstarted_at_ms\tduration_ms\trows_out\tbytes_out\tinputs_cached\tinputs_fetched\tflag"
            );
            for s in &records {
                let Some(r) = s.record() else {
                    println!("{}\t{}\t{}\t(unreadable)", s.worker_id, s.seq, s.run_id);
                    continue;
                };
                println!(
                    "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
                    s.worker_id,
                    s.seq,
                    s.run_id,
                    r.kind,
                    r.sub,
                    r.jti,
                    r.workflow_sha256,
                    r.params_sha256,
                    r.connections.join(","),
                    r.outcome,
                    r.exit_class,
                    r.started_at_ms,
                    r.duration_ms,
                    r.rows_out,
                    r.bytes_out,
                    r.inputs_cached,
                    r.inputs_fetched,
                    s.flag.as_deref().unwrap_or("")
                );
            }
            Ok(0)
        }
        AuditAction::Verify => {
            let keys = store.audit_keys().await.map_err(store_error)?;
            let problems = super::audit::verify(&records, &keys);
            for p in &problems {
                println!("{p}");
            }
            let workers: std::collections::BTreeSet<&str> =
                records.iter().map(|r| r.worker_id.as_str()).collect();
            if problems.is_empty() {
                println!(
                    "ok: {} records of {} workers, every chain intact",
                    records.len(),
                    workers.len()
                );
                Ok(0)
            } else {
                println!("{} problems in {} records", problems.len(), records.len());
                Ok(1)
            }
        }
    }
}
