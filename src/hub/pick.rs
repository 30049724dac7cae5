//! Which worker a run goes to: the reference Hub's dispatch policy as a pure function, for
//! Hub implementers to read; [`dispatch`](super::dispatch) applies it.
//!
//! 1. Only live workers: registered, not draining, heard from (registration or heartbeat)
//!    within `fresh_secs`.
//! 2. **Cache affinity**: runs that read the same inputs (same workflow hash, same parameter
//!    hash, same connections: [`affinity_key`]) prefer the same worker, chosen by rendezvous
//!    (highest-random-weight) hashing over the live workers. Adding or removing a worker moves
//!    only the keys that preferred it, so the other workers' caches stay warm.
//! 3. **Bounded load**: a worker without a free slot is passed over, and the run goes to the
//!    key's next choice in the same rendezvous order that has one (consistent hashing with
//!    bounded loads). A busy worker's overflow for a key thus always lands on the same second
//!    worker, whose cache then holds that key too; falling back to the least loaded worker
//!    instead spreads each key over every worker (measured with `bench fleet` at 3 workers:
//!    0.89x the single worker's hit rate against 0.94x). Full workers come last, in the same
//!    order (a slot may have freed since their load was known).
//!
//! The dispatcher tries them in this order with the same token while a worker refuses before
//! redemption (`RESOURCE_EXHAUSTED`, `UNAVAILABLE`, unreachable): an unredeemed token can go
//! elsewhere when its audience is the pool.

use sha2::{Digest, Sha256};

/// A registered worker as the Hub last heard of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Live {
    /// Worker id.
    pub id: String,
    /// Where its Worker service listens.
    pub address: String,
    /// The pool audience it accepts tokens for (besides its own id).
    pub audience: String,
    /// Run slots.
    pub capacity: u32,
    /// Runs in flight (the dispatcher counts its own).
    pub in_flight: u32,
    /// Draining at its last report.
    pub draining: bool,
    /// When it was last heard from (seconds since the epoch).
    pub last_seen: i64,
}

/// The key runs that read the same inputs share.
pub fn affinity_key(workflow_sha256: &str, params_sha256: &str, connections: &[String]) -> String {
    let mut conns: Vec<&str> = connections.iter().map(String::as_str).collect();
    conns.sort_unstable();
    format!("{workflow_sha256}\n{params_sha256}\n{}", conns.join(","))
}

/// The rendezvous weight of `worker` for `key`.
fn weight(key: &str, worker: &str) -> u64 {
    let digest = Sha256::new()
        .chain_update(key.as_bytes())
        .chain_update([0u8])
        .chain_update(worker.as_bytes())
        .finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

/// Whether the worker has a free slot, as far as the dispatcher knows.
fn has_room(w: &Live) -> bool {
    w.in_flight < w.capacity
}

/// The workers to try for a run with `key`, in order (see the module's documentation).
pub fn order<'a>(workers: &'a [Live], key: &str, now: i64, fresh_secs: i64) -> Vec<&'a Live> {
    let mut live: Vec<&Live> = workers
        .iter()
        .filter(|w| !w.draining && w.capacity > 0 && now - w.last_seen <= fresh_secs)
        .collect();
    live.sort_by_key(|w| (!has_room(w), std::cmp::Reverse(weight(key, &w.id))));
    live
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live(id: &str, capacity: u32, in_flight: u32) -> Live {
        Live {
            id: id.into(),
            address: format!("http://{id}"),
            audience: "pool".into(),
            capacity,
            in_flight,
            draining: false,
            last_seen: 1_000,
        }
    }

    fn ids(order: &[&Live]) -> Vec<String> {
        order.iter().map(|w| w.id.clone()).collect()
    }

    #[test]
    fn the_same_inputs_go_to_the_same_worker_and_adding_one_moves_few_keys() {
        let three: Vec<Live> = (1..=3).map(|i| live(&format!("w{i}"), 4, 0)).collect();
        let four: Vec<Live> = (1..=4).map(|i| live(&format!("w{i}"), 4, 0)).collect();
        let keys: Vec<String> = (0..1000)
            .map(|i| affinity_key(&format!("{i:064x}"), "p", &["shop".into()]))
            .collect();
        let first = |ws: &[Live], k: &str| ids(&order(ws, k, 1_000, 45))[0].clone();
        // Deterministic, and spread over the workers.
        let mut per = std::collections::HashMap::new();
        for k in &keys {
            assert_eq!(first(&three, k), first(&three, k));
            *per.entry(first(&three, k)).or_insert(0) += 1;
        }
        assert_eq!(per.len(), 3);
        assert!(per.values().all(|n| *n > 250), "{per:?}");
        // A fourth worker takes about a quarter of the keys; no key moves between the others.
        let moved: Vec<&String> = keys
            .iter()
            .filter(|k| first(&three, k) != first(&four, k))
            .collect();
        assert!(moved.iter().all(|k| first(&four, k) == "w4"));
        assert!((150..350).contains(&moved.len()), "{}", moved.len());
        // Connection order does not matter; parameter values do.
        assert_eq!(
            affinity_key("h", "p", &["a".into(), "b".into()]),
            affinity_key("h", "p", &["b".into(), "a".into()])
        );
        assert_ne!(affinity_key("h", "p1", &[]), affinity_key("h", "p2", &[]));
    }

    #[test]
    fn a_full_worker_passes_its_runs_to_the_next_choice_and_dead_ones_are_skipped() {
        let key = affinity_key("h", "p", &[]);
        let mut ws = vec![live("a", 4, 0), live("b", 4, 0), live("c", 4, 0)];
        let choices = ids(&order(&ws, &key, 1_000, 45));
        let set = |ws: &mut Vec<Live>, id: &str, in_flight: u32| {
            for w in ws.iter_mut().filter(|w| w.id == id) {
                w.in_flight = in_flight;
            }
        };
        // Load below capacity does not change the order: the cache matters more.
        set(&mut ws, &choices[0], 3);
        assert_eq!(ids(&order(&ws, &key, 1_000, 45)), choices);
        // The first choice is full: the second takes its runs, however loaded, while it has
        // room; the full one comes last.
        set(&mut ws, &choices[0], 4);
        set(&mut ws, &choices[1], 3);
        assert_eq!(
            ids(&order(&ws, &key, 1_000, 45)),
            [choices[1].clone(), choices[2].clone(), choices[0].clone()]
        );
        // Both full: the third, then the full ones in their order.
        set(&mut ws, &choices[1], 4);
        assert_eq!(
            ids(&order(&ws, &key, 1_000, 45)),
            [choices[2].clone(), choices[0].clone(), choices[1].clone()]
        );
        // Draining and silent workers are not tried at all.
        for w in &mut ws {
            if w.id == choices[1] {
                w.draining = true;
            }
            if w.id == choices[0] {
                w.last_seen = 900;
            }
        }
        assert_eq!(ids(&order(&ws, &key, 1_000, 45)), [choices[2].clone()]);
        assert!(order(&[], &key, 1_000, 45).is_empty());
    }
}
