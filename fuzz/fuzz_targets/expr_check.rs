//! Fuzzes the expression checker: no input may panic, hang or exhaust the stack.
//! Run: `cargo fuzz run expr_check -- -max_len=70000` (from the `fuzz/` folder).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(src) = std::str::from_utf8(data) {
        let _ = hubworker::expr::check(src);
    }
});
