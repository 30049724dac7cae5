//! The daemon's half of the conversation against a scripted child: the inputs `Ready` lists
//! are answered without a `Need` (a miss as "fetch it", then the very bytes cached), events
//! that arrive meanwhile are passed on in order, and a child that fails before reading a
//! listed input's answer is reported by its `Failure`.

use std::time::Duration;

use prost::bytes::Bytes;
use tokio::net::unix::pipe;
use tokio::sync::mpsc;

use super::conversation::{Context, End, Frames, converse};
use super::wire;
use crate::cache::{CacheMode, ResultCache};
use crate::proto::sandbox::{
    self as pb, FromChild, ToChild, answer, from_child::Msg as Up, to_child::Msg as Down,
};
use crate::run::{RunEvent, channel};
use crate::workflow::RunControl;

/// The scripted child's ends: what the daemon writes, and where the child's frames go.
struct Child {
    reads: pipe::Receiver,
    says: mpsc::Sender<Result<(FromChild, usize), wire::WireError>>,
}

impl Child {
    /// The daemon's next frame; a daemon that sends nothing within 10 s fails the test.
    async fn read(&mut self) -> Down {
        let read = wire::read_async::<ToChild, _>(&mut self.reads, 1 << 24);
        match tokio::time::timeout(Duration::from_secs(10), read).await {
            Ok(Ok(Some((ToChild { msg: Some(msg) }, _)))) => msg,
            Ok(other) => panic!("expected a frame from the daemon, got {other:?}"),
            Err(_) => panic!("the daemon sent nothing (it waits for a Need?)"),
        }
    }

    async fn say(&self, msg: Up) {
        let frame = FromChild { msg: Some(msg) };
        self.says
            .send(Ok((frame, 0)))
            .await
            .expect("the daemon reads");
    }
}

fn conversation() -> (pipe::Sender, Frames, Child) {
    let (stdin, reads) = pipe::pipe().expect("a pipe");
    let (says, frames) = mpsc::channel(16);
    (stdin, frames, Child { reads, says })
}

fn need(node: &str) -> pb::Need {
    pb::Need {
        node: node.to_owned(),
        fingerprint: vec![7; 32],
        connection: "warehouse".to_owned(),
        query: "SELECT 1".to_owned(),
        binds: "[]".to_owned(),
    }
}

fn ready(inputs: Vec<pb::Need>) -> Up {
    Up::Ready(pb::Ready {
        confinements: Vec::new(),
        landlock_abi: 0,
        inputs,
    })
}

fn progress(node: &str) -> Up {
    Up::Progress(pb::Progress {
        node: node.to_owned(),
        tool: "sql".to_owned(),
        finished: false,
        rows: None,
    })
}

fn input(node: &str, cached: bool) -> Up {
    Up::Input(pb::Input {
        node: node.to_owned(),
        rows: 3,
        cached,
    })
}

fn done() -> Up {
    Up::Done(pb::Done {
        load_us: 1,
        compute_us: 2,
        encode_us: 3,
    })
}

struct Daemon {
    cache: ResultCache,
    control: RunControl,
}

impl Daemon {
    fn new() -> Daemon {
        Daemon {
            cache: ResultCache::new(1 << 24, 1 << 24),
            control: RunControl::with_timeout(Duration::from_secs(30)),
        }
    }

    /// One conversation, its events as the client would see them.
    async fn run(
        &self,
        script: impl AsyncFnOnce(Child),
    ) -> (Result<crate::run::RunTimings, End>, Vec<String>) {
        let (mut stdin, frames, child) = conversation();
        let (events, mut seen) = channel::channel::<RunEvent>(1 << 24);
        let ttl = |_: &str| Duration::from_secs(60);
        let context = Context {
            cache: &self.cache,
            mode: CacheMode::Normal,
            ttl: &ttl,
            control: &self.control,
            events: &events,
        };
        let mut accept = |_: pb::Ready| true;
        let daemon = converse(
            &mut stdin,
            frames,
            pb::Setup::default(),
            &context,
            1 << 24,
            &mut accept,
        );
        let (result, ()) = tokio::join!(daemon, script(child));
        drop(events);
        let mut names = Vec::new();
        while let Some(event) = seen.recv().await {
            names.push(match event {
                RunEvent::Progress { node, .. } => format!("progress {node}"),
                RunEvent::Input { node, cached, .. } => format!("input {node} cached={cached}"),
                other => format!("{other:?}"),
            });
        }
        (result, names)
    }
}

fn answered(msg: Down, node: &str) -> answer::Answer {
    match msg {
        Down::Answer(a) if a.node == node => a.answer.expect("an answer"),
        other => panic!("expected an answer for {node}, got {other:?}"),
    }
}

#[tokio::test]
async fn listed_inputs_are_answered_before_the_child_asks() {
    let daemon = Daemon::new();
    let rows = Bytes::from_static(b"the rows, as the cache keeps them");
    let kept = rows.clone();
    // First run: a miss. The daemon asks for the rows right after Ready; the child's events
    // (its Progress comes after the daemon's answer here) reach the client in order.
    let (first, events) = daemon
        .run(async move |mut child: Child| {
            assert!(matches!(child.read().await, Down::Setup(_)));
            child.say(ready(vec![need("orders")])).await;
            let fetch = answered(child.read().await, "orders");
            assert_eq!(fetch, answer::Answer::Fetch(true));
            child.say(progress("orders")).await;
            child
                .say(Up::Loaded(pb::Loaded {
                    node: "orders".to_owned(),
                    rows: 3,
                    arrow_ipc: kept,
                    too_large_to_cache: false,
                }))
                .await;
            child.say(input("orders", false)).await;
            child.say(done()).await;
        })
        .await;
    assert_eq!(
        first.ok().map(|t| t.compute),
        Some(Duration::from_micros(2))
    );
    assert_eq!(events, ["progress orders", "input orders cached=false"]);

    // Second run: a hit, sent as soon as Ready arrives, before any event of the child's.
    let (second, events) = daemon
        .run(async move |mut child: Child| {
            assert!(matches!(child.read().await, Down::Setup(_)));
            child.say(ready(vec![need("orders")])).await;
            let cached = answered(child.read().await, "orders");
            assert_eq!(cached, answer::Answer::CachedIpc(rows));
            child.say(progress("orders")).await;
            child.say(input("orders", true)).await;
            child.say(done()).await;
        })
        .await;
    assert!(second.is_ok());
    assert_eq!(events, ["progress orders", "input orders cached=true"]);
}

#[tokio::test]
async fn a_child_that_fails_before_reading_a_listed_answer_is_reported_by_its_failure() {
    let daemon = Daemon::new();
    // Rows larger than a pipe holds: the daemon's write of the answer waits on the child.
    let rows = Bytes::from(vec![b'r'; 1 << 20]);
    let (seeded, _) = daemon
        .run(async move |mut child: Child| {
            assert!(matches!(child.read().await, Down::Setup(_)));
            child.say(ready(vec![need("orders")])).await;
            assert_eq!(
                answered(child.read().await, "orders"),
                answer::Answer::Fetch(true)
            );
            child
                .say(Up::Loaded(pb::Loaded {
                    node: "orders".to_owned(),
                    rows: 3,
                    arrow_ipc: rows,
                    too_large_to_cache: false,
                }))
                .await;
            child.say(done()).await;
        })
        .await;
    assert!(seeded.is_ok());

    let (result, _) = daemon
        .run(async move |mut child: Child| {
            assert!(matches!(child.read().await, Down::Setup(_)));
            child.say(ready(vec![need("orders")])).await;
            child
                .say(Up::Failure(pb::Failure {
                    code: "connection_unreachable".to_owned(),
                    message: "the connection's server cannot be reached from the sandbox"
                        .to_owned(),
                    class: pb::FailureClass::Precondition as i32,
                }))
                .await;
            // The child leaves without reading the answer: its end of the pipe closes.
            drop(child);
        })
        .await;
    match result {
        Err(End::Failed(f)) => {
            assert_eq!(f.code(), "connection_unreachable");
            assert_eq!(f.class(), crate::run::FailureClass::Precondition);
        }
        Err(_) => panic!("expected the child's own failure, got another end"),
        Ok(_) => panic!("expected the child's own failure, got a finished run"),
    }
}
