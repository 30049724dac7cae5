//! Tasks in the daemon's own process (`isolation = "inline"`: development and profiling only,
//! refused in production): [`crate::run::execute`] on a blocking thread, with the daemon's
//! result cache as its input source and the run's byte-bounded channel as its event sink (a
//! slow client holds the task, which the forwarder's limits then stop, instead of piling
//! results up). Credentials are opened here and dropped as soon as the inputs are loaded.

use std::sync::{Arc, Mutex};

use polars::prelude::DataFrame;

use crate::cache::{CacheKey, CacheMode, ResultCache, Rows, Source};
use crate::config::Config;
use crate::connector::{self, ConnectorError};
use crate::creds::Credential;
use crate::run::{
    Call, Connection, Events, Input, InputSource, Limits, Need, RunEvent, RunTimings, Stopped,
    Task, TaskFailure, channel, until_stopped,
};
use crate::workflow::{RunControl, RunError};

/// The daemon's cache first, then the database.
struct CacheSource {
    cache: Arc<ResultCache>,
    mode: CacheMode,
    config: Arc<Config>,
    handle: tokio::runtime::Handle,
}

impl CacheSource {
    /// Runs the query here (the rows, and their cache form when they will be cached).
    async fn query(need: &Need<'_>) -> Result<DataFrame, ConnectorError> {
        connector::query(
            &need.connection.target,
            need.query,
            need.binds,
            need.options,
        )
        .await
    }
}

impl InputSource for CacheSource {
    fn load(&mut self, need: Need<'_>, control: &RunControl) -> Result<Input, TaskFailure> {
        let ttl = self.config.cache_ttl(&need.connection.name);
        let fingerprint = need.connection.fingerprint;
        let (Some(fingerprint), false) =
            (fingerprint, self.mode == CacheMode::Bypass || ttl.is_zero())
        else {
            let frame = self
                .handle
                .block_on(until_stopped(control, Self::query(&need)))
                .map_err(|s| s.into_failure(Some(need.node)))?;
            return Ok(Input {
                frame,
                cached: false,
            });
        };
        let binds = crate::sql::Bind::key_text(need.binds);
        let key = CacheKey::new(fingerprint, &need.connection.name, need.query.sql(), &binds);
        // This run's own load keeps its frame (no decoding) and its error (whole).
        let fresh: Mutex<Option<DataFrame>> = Mutex::new(None);
        let own_error: Mutex<Option<ConnectorError>> = Mutex::new(None);
        let load = async {
            match Self::query(&need).await {
                // Too large to keep: this run uses it, nobody caches it (the load "fails"
                // with the frame kept aside; runs that waited for it query for themselves).
                Ok(frame) if !self.cache.keeps(&frame) => {
                    if let Ok(mut slot) = fresh.lock() {
                        *slot = Some(frame);
                    }
                    Err(LoadFailed)
                }
                Ok(mut frame) => {
                    let rows = Rows::encode(&mut frame).map_err(|_| LoadFailed)?;
                    if let Ok(mut slot) = fresh.lock() {
                        *slot = Some(frame);
                    }
                    Ok(rows)
                }
                Err(e) => {
                    if let Ok(mut slot) = own_error.lock() {
                        *slot = Some(e);
                    }
                    Err(LoadFailed)
                }
            }
        };
        let cache = self.cache.clone();
        let loaded = self.handle.block_on(until_stopped(
            control,
            cache.get_or_load(key, ttl, self.mode, load),
        ));
        match loaded {
            Ok((rows, source)) => {
                let frame = match take(&fresh) {
                    Some(frame) => frame,
                    None => rows
                        .decode()
                        .map_err(|_| TaskFailure::Internal("decoding cached rows"))?,
                };
                Ok(Input {
                    frame,
                    cached: source == Source::Hit,
                })
            }
            Err(Stopped::Stopped(e)) => Err(TaskFailure::Engine(e)),
            Err(Stopped::Failed(_)) => match (take(&fresh), take(&own_error)) {
                // Loaded here, too large to keep.
                (Some(frame), _) => Ok(Input {
                    frame,
                    cached: false,
                }),
                (None, Some(error)) => Err(TaskFailure::Query {
                    node: Some(need.node.to_owned()),
                    error,
                }),
                // Another run's load of this input failed (or was too large to keep): load it
                // here instead of inheriting a failure that is not this run's.
                (None, None) => {
                    let frame = self
                        .handle
                        .block_on(until_stopped(control, Self::query(&need)))
                        .map_err(|s| s.into_failure(Some(need.node)))?;
                    Ok(Input {
                        frame,
                        cached: false,
                    })
                }
            },
        }
    }

    fn call(&mut self, call: Call<'_>, control: &RunControl) -> Result<DataFrame, TaskFailure> {
        self.handle
            .block_on(until_stopped(control, call))
            .map_err(|s| s.into_failure(None))
    }
}

/// What a load left aside for this run.
fn take<T>(slot: &Mutex<Option<T>>) -> Option<T> {
    slot.lock().ok().and_then(|mut s| s.take())
}

/// A load that failed; the details stay with the run that made it.
#[derive(Debug)]
struct LoadFailed;

/// The run's byte-bounded channel, from a blocking thread. A closed channel means the run is
/// being stopped: the control says why.
struct ChannelEvents {
    tx: channel::Sender<RunEvent>,
    control: RunControl,
    handle: tokio::runtime::Handle,
}

impl Events for ChannelEvents {
    fn emit(&mut self, event: RunEvent) -> Result<(), TaskFailure> {
        self.handle.block_on(self.tx.send(event)).map_err(|_| {
            TaskFailure::Engine(self.control.check().err().unwrap_or(RunError::Cancelled))
        })
    }
}

/// Everything an inline task needs.
pub(super) struct Inline {
    pub(super) task: Task,
    pub(super) credentials: Vec<Credential>,
    pub(super) now: i64,
    pub(super) limits: Limits,
    pub(super) mode: CacheMode,
    pub(super) cache: Arc<ResultCache>,
    pub(super) config: Arc<Config>,
    pub(super) control: RunControl,
    pub(super) events: channel::Sender<RunEvent>,
}

/// Runs one task here, on a blocking thread (Polars computes there; queries are driven from
/// there on the daemon's runtime).
pub(super) async fn run(inline: Inline) -> Result<RunTimings, TaskFailure> {
    let handle = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let Inline {
            task,
            credentials,
            now,
            limits,
            mode,
            cache,
            config,
            control,
            events,
        } = inline;
        let connections: Vec<Connection> =
            crate::run::connections(credentials, now, Some(cache.fingerprint_key()))?;
        let mut inputs = CacheSource {
            cache,
            mode,
            config,
            handle: handle.clone(),
        };
        let mut sink = ChannelEvents {
            tx: events,
            control: control.clone(),
            handle,
        };
        crate::run::execute(task, connections, &limits, &control, &mut inputs, &mut sink)
    })
    .await
    .unwrap_or(Err(TaskFailure::Internal("the inline task ended early")))
}
