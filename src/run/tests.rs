//! The run's order of business with a scripted input source and event sink (no database, no
//! process): connections checked before any load, the database phase closed before the plan,
//! events in order, outputs in pieces, a listener that goes away stops the task.

use std::time::Duration;

use polars::prelude::*;

use super::*;
use crate::secret::Secret;

const TWO_INPUTS: &str = r#"{"version": 1, "nodes": [
  {"id": "a", "tool": "sql", "connection": "one", "dialect": "sqlite", "query": "SELECT 1 AS x"},
  {"id": "b", "tool": "sql", "connection": "two", "dialect": "sqlite", "query": "SELECT 2 AS x"},
  {"id": "u", "tool": "union", "inputs": ["a", "b"]},
  {"id": "o", "tool": "output", "input": "u", "name": "out"}]}"#;

fn connection(name: &str) -> Connection {
    Connection {
        name: name.to_owned(),
        target: Target::from_url(Secret::new("sqlite:///nowhere.db".into())).expect("target"),
        fingerprint: None,
    }
}

fn limits(chunk_bytes: usize) -> Limits {
    Limits {
        query: QueryOptions::default(),
        chunk_bytes,
        engine: crate::workflow::Engine::default(),
    }
}

/// A source that serves `x = <node's digit>` and writes down what it was asked.
#[derive(Default)]
struct Script {
    log: std::rc::Rc<std::cell::RefCell<Vec<String>>>,
}

impl InputSource for Script {
    fn load(&mut self, need: Need<'_>, _control: &RunControl) -> Result<Input, TaskFailure> {
        self.log.borrow_mut().push(format!("load {}", need.node));
        let x = if need.node == "a" { 1i64 } else { 2 };
        Ok(Input {
            frame: df!("x" => [x]).expect("frame"),
            cached: need.node == "b",
        })
    }

    fn call(&mut self, _call: Call<'_>, _control: &RunControl) -> Result<DataFrame, TaskFailure> {
        Err(TaskFailure::Internal("no calls in this test"))
    }

    fn close(&mut self) -> Result<(), TaskFailure> {
        self.log.borrow_mut().push("close".into());
        Ok(())
    }
}

/// A sink that writes events down (and can refuse them after `accept` events).
struct Sink {
    log: std::rc::Rc<std::cell::RefCell<Vec<String>>>,
    ipc: Vec<u8>,
    pieces: usize,
    accept: usize,
}

impl Events for Sink {
    fn emit(&mut self, event: RunEvent) -> Result<(), TaskFailure> {
        if self.accept == 0 {
            return Err(TaskFailure::Engine(crate::workflow::RunError::Cancelled));
        }
        self.accept -= 1;
        let line = match event {
            RunEvent::Progress { node, finished, .. } => format!("{node} {finished}"),
            RunEvent::Input { node, rows, cached } => format!("input {node} {rows} {cached}"),
            RunEvent::Output { name, ipc, last } => {
                self.ipc.extend_from_slice(&ipc);
                self.pieces += 1;
                if !last {
                    return Ok(());
                }
                format!("output {name}")
            }
            RunEvent::Tables(_) => "tables".into(),
        };
        self.log.borrow_mut().push(line);
        Ok(())
    }
}

fn task() -> Task {
    Task::Run(Box::new(
        crate::workflow::validate(TWO_INPUTS).expect("valid"),
    ))
}

#[test]
fn connections_are_checked_before_anything_is_loaded() {
    let mut source = Script::default();
    let log = source.log.clone();
    let mut sink = Sink {
        log: log.clone(),
        ipc: Vec::new(),
        pieces: 0,
        accept: usize::MAX,
    };
    let control = RunControl::with_timeout(Duration::from_secs(10));
    let e = execute(
        task(),
        vec![connection("one")],
        &limits(0),
        &control,
        &mut source,
        &mut sink,
    )
    .expect_err("the second connection is missing");
    assert_eq!(e.code(), "unknown_connection");
    assert_eq!(
        e.to_string(),
        "node \"b\": no connection named \"two\" was supplied"
    );
    assert!(log.borrow().is_empty(), "{:?}", log.borrow());
}

#[test]
fn the_database_phase_closes_before_the_plan_and_outputs_come_in_pieces() {
    let mut source = Script::default();
    let log = source.log.clone();
    let mut sink = Sink {
        log: log.clone(),
        ipc: Vec::new(),
        pieces: 0,
        accept: usize::MAX,
    };
    let control = RunControl::with_timeout(Duration::from_secs(10));
    execute(
        task(),
        vec![connection("one"), connection("two")],
        &limits(64),
        &control,
        &mut source,
        &mut sink,
    )
    .expect("runs");
    let log = log.borrow().clone();
    let close = log.iter().position(|l| l == "close").expect("closed");
    assert_eq!(
        log[..close],
        [
            "a false",
            "load a",
            "input a 1 false",
            "b false",
            "load b",
            "input b 1 true",
        ]
    );
    assert!(log[close + 1..].iter().any(|l| l == "u true"), "{log:?}");
    assert_eq!(log.last().map(String::as_str), Some("output out"));
    assert!(sink.pieces > 1, "64-byte pieces: {}", sink.pieces);
    let out = from_ipc(&sink.ipc).expect("one IPC stream");
    let xs: Vec<Option<i64>> = out
        .column("x")
        .expect("x")
        .i64()
        .expect("i64")
        .iter()
        .collect();
    assert_eq!(xs, [Some(1), Some(2)]);
}

#[test]
fn a_listener_that_goes_away_stops_the_task() {
    let mut source = Script::default();
    let log = source.log.clone();
    let mut sink = Sink {
        log,
        ipc: Vec::new(),
        pieces: 0,
        accept: 2,
    };
    let control = RunControl::with_timeout(Duration::from_secs(10));
    let e = execute(
        task(),
        vec![connection("one"), connection("two")],
        &limits(0),
        &control,
        &mut source,
        &mut sink,
    )
    .expect_err("stopped");
    assert_eq!(e.code(), "cancelled");
    assert_eq!(
        source.log.borrow().as_slice(),
        ["a false", "load a", "input a 1 false"],
        "nothing loaded or closed after the listener went away"
    );
}
