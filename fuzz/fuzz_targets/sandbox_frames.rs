//! Fuzzes the daemon ↔ sandbox child frame parser, a trust boundary: whatever a child writes
//! (and whatever reaches a child), no input may panic, and no frame may be read past its cap.
//! Run: `cargo fuzz run sandbox_frames` (from the `fuzz/` folder).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    hubworker::sandbox::fuzz_frames(data);
});
