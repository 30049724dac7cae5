//! The one thread that starts every run child, so that a child's parent-death signal follows
//! the daemon process and not whichever tokio thread happened to ask for it. Never runs
//! anything but `fork`/`exec` of the prepared command; never exits while a child it started
//! may still be needed.
//!
//! `PR_SET_PDEATHSIG` fires when the *thread* that forked the child exits, not the process
//! (prctl(2)). Tokio's threads come and go: `block_in_place` (Polars calls it while turning a
//! plan into its IR, so every Validate does) hands a worker thread's duties to a new thread,
//! and the old one joins the blocking pool and exits after ten idle seconds. A child started
//! from it was killed mid-run. This thread lives as long as the sandbox that owns it: it ends
//! only when every handle is gone, which means no pool, no run and no refill holds a child
//! any more (dropping a child kills it anyway: `kill_on_drop`).

use std::sync::mpsc;

use tokio::process::{Child, Command};
use tokio::sync::oneshot;

/// One child to start, in the caller's runtime (whose process driver then reaps it).
struct Request {
    command: Command,
    runtime: tokio::runtime::Handle,
    reply: oneshot::Sender<std::io::Result<Child>>,
}

/// A handle on the spawner thread; clones share the thread.
#[derive(Debug, Clone)]
pub(crate) struct Spawner {
    requests: Option<mpsc::Sender<Request>>,
}

impl Spawner {
    /// Starts the thread. If the host cannot give one, every spawn fails (and so does the
    /// sandbox probe at start-up: the daemon refuses to serve rather than run unprotected).
    pub(crate) fn new() -> Spawner {
        let (tx, rx) = mpsc::channel::<Request>();
        let started = std::thread::Builder::new()
            .name("hubworker-spawner".to_owned())
            .spawn(move || {
                // Ends when every `Spawner` is dropped.
                for mut request in rx {
                    let _runtime = request.runtime.enter();
                    let child = request.command.spawn();
                    // A requester that went away drops the child: `kill_on_drop` ends it.
                    let _ = request.reply.send(child);
                }
            });
        match started {
            Ok(_) => Spawner { requests: Some(tx) },
            Err(e) => {
                tracing::error!(error = %e, "cannot start the run-child spawner thread");
                Spawner { requests: None }
            }
        }
    }

    /// Starts `command` from the spawner thread; must be called inside a tokio runtime.
    pub(crate) async fn spawn(&self, command: Command) -> std::io::Result<Child> {
        let gone = || std::io::Error::other("the run-child spawner thread is not running");
        let requests = self.requests.as_ref().ok_or_else(gone)?;
        let (reply, answer) = oneshot::channel();
        requests
            .send(Request {
                command,
                runtime: tokio::runtime::Handle::current(),
                reply,
            })
            .map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::ExitStatusExt;
    use std::time::Duration;

    use super::*;

    /// `sleep 30` with SIGKILL as its parent-death signal (set by `setpriv`, kept across exec).
    fn doomed_sleep() -> Command {
        let mut c = Command::new("setpriv");
        c.args(["--pdeathsig", "KILL", "sleep", "30"])
            .kill_on_drop(true);
        c
    }

    /// Asks for a child from a thread of its own, which exits soon after (once `setpriv` has
    /// surely armed the signal).
    fn from_a_passing_thread(spawner: Option<Spawner>) -> Child {
        let handle = tokio::runtime::Handle::current();
        std::thread::spawn(move || {
            let child = handle.block_on(async move {
                match spawner {
                    Some(s) => s.spawn(doomed_sleep()).await,
                    None => doomed_sleep().spawn(),
                }
            });
            std::thread::sleep(Duration::from_millis(300));
            child
        })
        .join()
        .expect("thread")
        .expect("spawned")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn children_outlive_the_threads_that_asked_for_them() {
        // The control: forked by a thread that exits, the child gets its parent-death signal.
        let mut orphan = from_a_passing_thread(None);
        let status = tokio::time::timeout(Duration::from_secs(10), orphan.wait())
            .await
            .expect("killed when its thread exited")
            .expect("status");
        assert_eq!(status.signal(), Some(nix::libc::SIGKILL));

        // Through the spawner: alive although the thread that asked is gone.
        let spawner = Spawner::new();
        let mut children: Vec<Child> = (0..3)
            .map(|_| from_a_passing_thread(Some(spawner.clone())))
            .collect();
        tokio::time::sleep(Duration::from_millis(500)).await;
        for c in &mut children {
            assert!(matches!(c.try_wait(), Ok(None)));
            c.kill().await.expect("kill and reap");
        }
    }
}
