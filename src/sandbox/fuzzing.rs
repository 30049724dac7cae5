//! The daemon ↔ child frame parser over arbitrary bytes, in both directions, as one function:
//! for the fuzz target `fuzz/fuzz_targets/sandbox_frames.rs` and the property tests
//! (`tests_wire.rs`). A child is untrusted: whatever it writes must end in frames or an error,
//! never a panic, and no frame may be read past its cap.

use super::message::{event_of, failure_of, task_of};
use super::wire::{self, WireError};
use crate::proto::sandbox::{FromChild, ToChild, from_child, to_child};

/// What the daemon does with a frame: events become run events, failures the daemon's kind.
pub(super) fn consume(msg: from_child::Msg) {
    match event_of(msg) {
        Ok(_) => {}
        Err(from_child::Msg::Failure(f)) => {
            let failure = failure_of(f);
            let _ = (failure.code(), failure.message(), failure.class());
        }
        Err(_) => {}
    }
}

/// Reads every frame of `bytes` as the daemon does (its async reader, each frame converted);
/// the frames read, then how it ended.
///
/// # Panics
/// If a frame larger than `cap` was read: the bug this exists to find.
pub(super) fn daemon_reads(bytes: &[u8], cap: usize) -> (Vec<FromChild>, Result<(), WireError>) {
    let rt = match tokio::runtime::Builder::new_current_thread().build() {
        Ok(rt) => rt,
        // Not a clean end: a caller that could not read anything must not see "no frames".
        Err(e) => return (Vec::new(), Err(WireError::Io(e))),
    };
    rt.block_on(async {
        let mut r = bytes;
        let mut frames = Vec::new();
        loop {
            match wire::read_async::<FromChild, _>(&mut r, cap).await {
                Ok(Some((frame, size))) => {
                    assert!(
                        size <= cap,
                        "a frame of {size} bytes read past the cap {cap}"
                    );
                    if let Some(msg) = frame.msg.clone() {
                        consume(msg);
                    }
                    frames.push(frame);
                }
                Ok(None) => return (frames, Ok(())),
                Err(e) => return (frames, Err(e)),
            }
        }
    })
}

/// Reads every frame of `bytes` as a child reads the daemon's, a `Setup` turned into its task;
/// the number of frames read.
pub(super) fn child_reads(bytes: &[u8], cap: usize) -> usize {
    let mut r = bytes;
    let mut n = 0;
    while let Ok(Some(frame)) = wire::read::<ToChild, _>(&mut r, cap) {
        n += 1;
        if let Some(to_child::Msg::Setup(mut setup)) = frame.msg {
            let _ = task_of(&mut setup);
        }
    }
    n
}

/// The fuzzing entry: the first byte chooses the cap (0 to 65,280 bytes, so that frames over
/// it are reached), the rest is read as a child's frames by the daemon, then as the daemon's
/// frames by a child.
///
/// # Panics
/// Only if a frame was read past its cap (see [`daemon_reads`]).
#[doc(hidden)]
pub fn fuzz_frames(data: &[u8]) {
    let (cap, bytes) = match data.split_first() {
        Some((c, rest)) => (usize::from(*c) << 8, rest),
        None => (0, data),
    };
    let _ = daemon_reads(bytes, cap);
    let _ = child_reads(bytes, cap);
}
