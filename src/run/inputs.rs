//! Owns the contract between a task and the place it runs in for everything that touches a
//! database: [`InputSource`] ("cache first, then fetch" for a workflow's inputs, direct calls
//! for inspect and preview, and the end of the database phase), and the direct source of
//! `hubworker run` (no cache). Every wait on a database stops with the task's control.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use polars::prelude::DataFrame;

use super::{Connection, TaskFailure};
use crate::connector::{self, ConnectorError, QueryOptions};
use crate::sql::ReadOnlyQuery;
use crate::workflow::{RunControl, RunError};

/// One `sql` node's input, as the task asks for it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Need<'a> {
    /// The node.
    pub(crate) node: &'a str,
    /// The connection it reads (its target, and its credential's fingerprint).
    pub(crate) connection: &'a Connection,
    /// The guarded query (its text, with the binds, is what runs and what a cache keys on).
    pub(crate) query: &'a ReadOnlyQuery,
    /// The values of its `:name` parameters, in bind order (part of a cache's key).
    pub(crate) binds: &'a [crate::sql::Bind],
    /// Caps and timeout.
    pub(crate) options: QueryOptions,
}

/// One loaded input.
#[derive(Debug)]
pub(crate) struct Input {
    /// The rows.
    pub(crate) frame: DataFrame,
    /// Whether a cache served them.
    pub(crate) cached: bool,
}

/// A database call that borrows what it needs (driven on the calling thread).
pub(crate) type Call<'a> = Pin<Box<dyn Future<Output = Result<DataFrame, ConnectorError>> + 'a>>;

/// Where a task's database work happens: the run child's pipe to the daemon's cache, the
/// daemon's own cache (inline isolation), or straight to the database (`hubworker run`).
pub(crate) trait InputSource {
    /// One input's rows: from a cache where this place has one, else from the database.
    fn load(&mut self, need: Need<'_>, control: &RunControl) -> Result<Input, TaskFailure>;

    /// One direct database call (inspect, preview: never cached).
    fn call(&mut self, call: Call<'_>, control: &RunControl) -> Result<DataFrame, TaskFailure>;

    /// The database phase is over (the connections are already dropped): nothing more is
    /// loaded. A run child confines itself further here.
    fn close(&mut self) -> Result<(), TaskFailure> {
        Ok(())
    }
}

/// `call`, or the reason the task must stop, whichever comes first (then the call is dropped,
/// which ends its database session). Each place drives it with its own executor.
pub(crate) async fn until_stopped<T, E>(
    control: &RunControl,
    call: impl Future<Output = Result<T, E>>,
) -> Result<T, Stopped<E>> {
    tokio::select! {
        r = call => r.map_err(Stopped::Failed),
        e = stopped(control) => Err(Stopped::Stopped(e)),
    }
}

/// A call that failed, or was abandoned because the task must stop.
#[derive(Debug)]
pub(crate) enum Stopped<E> {
    /// The call's own failure.
    Failed(E),
    /// The task was cancelled or ran out of time.
    Stopped(RunError),
}

impl Stopped<ConnectorError> {
    /// As a task failure, for `node` (none for inspect and preview).
    pub(crate) fn into_failure(self, node: Option<&str>) -> TaskFailure {
        match self {
            Stopped::Failed(error) => TaskFailure::Query {
                node: node.map(str::to_owned),
                error,
            },
            Stopped::Stopped(e) => TaskFailure::Engine(e),
        }
    }
}

/// Resolves once the task must stop, with why.
async fn stopped(control: &RunControl) -> RunError {
    loop {
        match control.check() {
            Ok(()) => tokio::time::sleep(Duration::from_millis(10)).await,
            Err(e) => return e,
        }
    }
}

/// The database, directly (no cache): `hubworker run`. Owns a small runtime for the drivers.
#[derive(Debug)]
pub(crate) struct Direct {
    runtime: tokio::runtime::Runtime,
}

impl Direct {
    /// A direct source with its own runtime.
    pub(crate) fn new() -> std::io::Result<Direct> {
        Ok(Direct {
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?,
        })
    }
}

impl InputSource for Direct {
    fn load(&mut self, need: Need<'_>, control: &RunControl) -> Result<Input, TaskFailure> {
        let call = connector::query(
            &need.connection.target,
            need.query,
            need.binds,
            need.options,
        );
        let frame = self
            .runtime
            .block_on(until_stopped(control, call))
            .map_err(|s| s.into_failure(Some(need.node)))?;
        Ok(Input {
            frame,
            cached: false,
        })
    }

    fn call(&mut self, call: Call<'_>, control: &RunControl) -> Result<DataFrame, TaskFailure> {
        self.runtime
            .block_on(until_stopped(control, call))
            .map_err(|s| s.into_failure(None))
    }
}
