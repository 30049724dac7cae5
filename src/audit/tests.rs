use super::*;

#[test]
fn records_are_chained_signed_and_survive_a_restart() {
    let dir = tempfile::tempdir().expect("dir");
    let spool = dir.path().join("audit");
    let a = Auditor::open(&spool, "w1", 10).expect("open");
    let key = a.public_key();
    assert_eq!(a.append(Entry::ok_run("r1")).expect("append"), 1);
    assert_eq!(a.append(Entry::ok_run("r2")).expect("append"), 2);
    drop(a);
    // A restarted worker keeps its key and goes on with the chain.
    let a = Auditor::open(&spool, "w1", 10).expect("reopen");
    assert_eq!(a.public_key(), key);
    assert_eq!(a.append(Entry::ok_run("r3")).expect("append"), 3);
    let records = a.pending(10).expect("pending");
    assert_eq!(records.len(), 3);
    assert_eq!(records[0].prev_sha256, GENESIS);
    for pair in records.windows(2) {
        assert_eq!(pair[1].prev_sha256, record_sha256(&pair[0]));
        assert_eq!(pair[1].seq, pair[0].seq + 1);
    }
    for r in &records {
        assert!(signed_by(r, &key), "{}", r.run_id);
        assert_eq!(r.worker_id, "w1");
    }
    // Any change breaks the signature; another key does not verify.
    let mut edited = records[1].clone();
    edited.outcome = "cancelled".into();
    assert!(!signed_by(&edited, &key));
    let other = Auditor::open(&dir.path().join("other"), "w1", 1).expect("other");
    assert!(!signed_by(&records[0], &other.public_key()));
    // The key file is private.
    let mode = std::fs::metadata(spool.join("audit.key"))
        .expect("key")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn a_full_spool_refuses_and_acknowledged_records_leave_it() {
    let dir = tempfile::tempdir().expect("dir");
    let a = Auditor::open(dir.path(), "w1", 2).expect("open");
    a.append(Entry::ok_run("r1")).expect("append");
    a.append(Entry::ok_run("r2")).expect("append");
    assert!(a.full());
    assert!(matches!(
        a.append(Entry::ok_run("r3")),
        Err(AuditError::Full(2))
    ));
    a.acknowledge(1).expect("ack");
    assert_eq!(a.waiting(), 1);
    assert_eq!(a.append(Entry::ok_run("r3")).expect("append"), 3);
    let left: Vec<u64> = a
        .pending(10)
        .expect("pending")
        .iter()
        .map(|r| r.seq)
        .collect();
    assert_eq!(left, [2, 3]);
}

use std::os::unix::fs::PermissionsExt as _;
