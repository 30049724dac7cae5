//! Polars' thread pools in a run child, sized to its task.
//!
//! Threads do not survive a fork, so every child starts Polars' pools afresh: the thread pool
//! and, on the streaming engine, its executor, each with one thread per CPU. Every thread
//! costs its start, the page faults of its stack and its end. The streaming engine cuts its
//! input into morsels (Polars' ideal morsel size, 100,000 rows): a task whose inputs together
//! fit in one morsel gives a second thread nothing to do. Such a task gets one thread.
//!
//! How: Polars sizes its pools by the CPU affinity (in the child it finds no /proc and no
//! /sys to read a quota from). The child binds itself to the CPU it is on, has Polars read the
//! size again, starts the pool, and unbinds itself and the pool's thread, so the scheduler
//! still moves every thread freely; the streaming executor, started later, reads the same
//! size. A bigger task, or a failure on the way, gets the pools at their full size.

use nix::sched::{CpuSet, sched_getaffinity, sched_getcpu, sched_setaffinity};
use nix::unistd::Pid;

/// The variable Polars reads its thread count from (unset in a child: the CPU affinity).
const MAX_THREADS: &str = "POLARS_MAX_THREADS";

/// Starts Polars' thread pool for a task that loaded `rows` rows.
pub(super) fn start(rows: usize) {
    if one_thread_for(rows) && start_single().is_ok() {
        return;
    }
    let _ = polars_core::runtime::RAYON.current_num_threads();
}

/// Whether `rows` fit in one morsel of the streaming engine.
fn one_thread_for(rows: usize) -> bool {
    let morsel = polars_config::config().ideal_morsel_size();
    u64::try_from(rows).is_ok_and(|rows| rows <= morsel)
}

fn start_single() -> nix::Result<()> {
    let me = Pid::from_raw(0);
    let all = sched_getaffinity(me)?;
    let mut one = CpuSet::new();
    one.set(sched_getcpu()?)?;
    sched_setaffinity(me, &one)?;
    polars_config::config().reload_env_var(MAX_THREADS);
    let _ = polars_core::runtime::RAYON.current_num_threads();
    let unbound = sched_setaffinity(me, &all);
    polars_core::runtime::THREAD_POOL.broadcast(|_| {
        let _ = sched_setaffinity(Pid::from_raw(0), &all);
    });
    unbound
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_morsel_of_rows_gets_one_thread_and_more_get_the_pool() {
        let morsel = usize::try_from(polars_config::config().ideal_morsel_size()).expect("fits");
        assert_eq!(morsel, 100_000);
        assert!(one_thread_for(0));
        assert!(one_thread_for(8));
        assert!(one_thread_for(morsel));
        assert!(!one_thread_for(morsel + 1));
        assert!(!one_thread_for(usize::MAX));
    }
}
