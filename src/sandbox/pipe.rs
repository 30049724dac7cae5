//! Owns the run child's end of the pipe as the run sees it: the [`InputSource`] that asks the
//! daemon's cache before querying (and confines the child further when the database phase
//! ends) and the [`Events`] that become frames. Both share one pipe; a broken pipe or a
//! frame out of turn ends the child with an exit code, never a report it could not send.

use std::cell::RefCell;
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::rc::Rc;

use polars::prelude::DataFrame;
use prost::bytes::Bytes;

use super::{exit, message, wire};
use crate::connector;
use crate::proto::sandbox::{FromChild, Loaded, Need as NeedFrame, ToChild, answer, from_child};
use crate::run::{
    Call, Events, Input, InputSource, Need, RunEvent, TaskFailure, from_ipc, to_ipc, until_stopped,
};
use crate::workflow::RunControl;

/// Largest frame the child accepts from the daemon (a workflow, cached inputs).
const MAX_FRAME_IN: usize = 1 << 30;

/// Stdout written with plain `write(2)` calls: no line buffering splitting frames.
pub(super) struct Out(pub(super) std::io::Stdout);

impl Write for Out {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        nix::unistd::write(self.0.as_fd(), buf).map_err(std::io::Error::from)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The pipe to the daemon, and the exit code once it can no longer be used.
pub(super) struct Pipe<R: Read> {
    input: R,
    output: Out,
    /// Set when the conversation broke (or a confinement step failed): the child leaves with
    /// this code instead of reporting.
    pub(super) exit: Option<i32>,
}

impl<R: Read> Pipe<R> {
    pub(super) fn new(input: R, output: Out) -> Pipe<R> {
        Pipe {
            input,
            output,
            exit: None,
        }
    }

    /// Sends one frame; a broken pipe ends the conversation.
    pub(super) fn send(&mut self, msg: from_child::Msg) -> Result<(), TaskFailure> {
        wire::write(&mut self.output, &FromChild { msg: Some(msg) }).map_err(|_| self.broken())
    }

    /// Reads one frame (`None`: the daemon closed the pipe).
    pub(super) fn read(
        &mut self,
    ) -> Result<Option<crate::proto::sandbox::to_child::Msg>, TaskFailure> {
        match wire::read::<ToChild, _>(&mut self.input, MAX_FRAME_IN) {
            Ok(Some(m)) => Ok(m.msg),
            Ok(None) => Ok(None),
            Err(_) => Err(self.broken()),
        }
    }

    /// Marks the conversation broken.
    fn broken(&mut self) -> TaskFailure {
        self.exit.get_or_insert(exit::PROTOCOL);
        TaskFailure::Internal("the pipe to the daemon broke")
    }
}

/// The daemon's cache first, then the database; the end of the database phase confines the
/// child for computing.
pub(super) struct PipeSource<R: Read> {
    pub(super) pipe: Rc<RefCell<Pipe<R>>>,
    /// Drives the drivers; dropped (its threads end) when the database phase ends.
    pub(super) runtime: Option<tokio::runtime::Runtime>,
    /// Runs in the compute phase, once confined (the sandbox's own tests).
    pub(super) compute_fault: fn(),
    /// The compute phase's seccomp filter (built once by the template).
    pub(super) compute_filter: seccompiler::BpfProgram,
    /// The largest result the daemon's cache keeps: a larger one is not sent back.
    pub(super) cache_entry_max_bytes: u64,
    /// The inputs `Ready` listed and not loaded yet, in order: the daemon answers them
    /// without a `Need`.
    pub(super) announced: std::collections::VecDeque<NeedFrame>,
}

/// One input as the daemon's cache keys it (the `Need` frame, also listed in `Ready`).
pub(super) fn need_frame(need: &Need<'_>) -> Result<NeedFrame, TaskFailure> {
    let fingerprint = need
        .connection
        .fingerprint
        .ok_or(TaskFailure::Internal("a connection without a fingerprint"))?;
    Ok(NeedFrame {
        node: need.node.to_owned(),
        fingerprint: fingerprint.to_vec(),
        connection: need.connection.name.clone(),
        query: need.query.sql().to_owned(),
        binds: crate::sql::Bind::key_text(need.binds),
    })
}

/// The inputs a workflow will load, as `Ready` lists them (none where its checks fail: the
/// task then fails the same way before it loads anything).
pub(super) fn announce(
    wf: &crate::workflow::Workflow,
    connections: &[crate::run::Connection],
    limits: &crate::run::Limits,
) -> Vec<NeedFrame> {
    let listed = crate::run::planned_inputs(wf, connections).and_then(|planned| {
        planned
            .iter()
            .map(|input| need_frame(&input.need(limits)))
            .collect()
    });
    listed.unwrap_or_default()
}

impl<R: Read> PipeSource<R> {
    fn runtime(&self) -> Result<&tokio::runtime::Runtime, TaskFailure> {
        self.runtime.as_ref().ok_or(TaskFailure::Internal(
            "a database call after the database phase",
        ))
    }

    fn out_of_turn(&self) -> TaskFailure {
        self.pipe.borrow_mut().exit.get_or_insert(exit::PROTOCOL);
        TaskFailure::Internal("the daemon answered out of turn")
    }
}

impl<R: Read> InputSource for PipeSource<R> {
    fn load(&mut self, need: Need<'_>, control: &RunControl) -> Result<Input, TaskFailure> {
        let frame = need_frame(&need)?;
        // An input `Ready` listed is answered without a `Need` (the answer is on its way, or
        // already in the pipe); the list and the loads come from the same plan, in one order.
        let ask = match self.announced.pop_front() {
            None => Some(frame),
            Some(listed) if listed == frame => None,
            Some(_) => return Err(self.out_of_turn()),
        };
        let answer = {
            let mut pipe = self.pipe.borrow_mut();
            if let Some(frame) = ask {
                pipe.send(from_child::Msg::Need(frame))?;
            }
            match pipe.read()? {
                Some(crate::proto::sandbox::to_child::Msg::Answer(a)) if a.node == need.node => {
                    a.answer
                }
                _ => None,
            }
        };
        match answer {
            Some(answer::Answer::CachedIpc(bytes)) => Ok(Input {
                frame: from_ipc(&bytes).map_err(|_| self.out_of_turn())?,
                cached: true,
            }),
            Some(answer::Answer::Fetch(send_back)) => {
                let call = connector::query(
                    &need.connection.target,
                    need.query,
                    need.binds,
                    need.options,
                );
                let mut frame = self
                    .runtime()?
                    .block_on(until_stopped(control, call))
                    .map_err(|s| s.into_failure(Some(need.node)))?;
                // Encoding a result for the cache takes its size again: only what the cache
                // keeps is sent back.
                let too_large =
                    send_back && !crate::cache::keeps(&frame, self.cache_entry_max_bytes);
                let arrow_ipc = if send_back && !too_large {
                    Bytes::from(to_ipc(&mut frame)?)
                } else {
                    Bytes::new()
                };
                self.pipe
                    .borrow_mut()
                    .send(from_child::Msg::Loaded(Loaded {
                        node: need.node.to_owned(),
                        rows: frame.height() as u64,
                        arrow_ipc,
                        too_large_to_cache: too_large,
                    }))?;
                Ok(Input {
                    frame,
                    cached: false,
                })
            }
            None => Err(self.out_of_turn()),
        }
    }

    fn call(&mut self, call: Call<'_>, control: &RunControl) -> Result<DataFrame, TaskFailure> {
        self.runtime()?
            .block_on(until_stopped(control, call))
            .map_err(|s| s.into_failure(None))
    }

    /// Closes the database connections and ends the runtime's threads, then forbids sockets
    /// and files for good (Polars' thread pool, which reads /proc and /sys as it starts, runs
    /// already).
    fn close(&mut self) -> Result<(), TaskFailure> {
        drop(self.runtime.take());
        if let Err(f) = super::child::enter_compute_phase(&self.compute_filter) {
            eprintln!("hubworker sandbox child: {} failed: {}", f.step, f.why);
            self.pipe.borrow_mut().exit.get_or_insert(f.code);
            return Err(TaskFailure::Internal(
                "the compute-phase confinement failed",
            ));
        }
        (self.compute_fault)();
        Ok(())
    }
}

/// Events as frames to the daemon. Each write blocks while the daemon reads nothing (its client
/// is behind): the pipe is the backpressure.
pub(super) struct PipeEvents<R: Read> {
    pub(super) pipe: Rc<RefCell<Pipe<R>>>,
}

impl<R: Read> Events for PipeEvents<R> {
    fn emit(&mut self, event: RunEvent) -> Result<(), TaskFailure> {
        self.pipe.borrow_mut().send(message::frame_of(event))
    }
}
