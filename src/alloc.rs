//! The process's allocator: mimalloc, with one change: an allocation that fails ends the
//! process at once with [`crate::sandbox::exit::MEMORY`] instead of aborting.
//!
//! In a run child an allocation fails exactly when the address-space limit (`RLIMIT_AS`) is
//! reached, so this exit code is how the daemon tells `memory_limit` from a crash (an abort
//! would look like any other `SIGABRT`). In the daemon, the same code tells systemd and the
//! operator that memory ran out.

use std::alloc::{GlobalAlloc, Layout};

/// mimalloc, exiting with a distinct code when memory runs out.
#[derive(Debug)]
pub struct Allocator;

#[cold]
fn out_of_memory() -> ! {
    // No allocation from here on: a fixed message with write(2), then _exit(2).
    let _ = nix::unistd::write(std::io::stderr(), b"hubworker: out of memory\n");
    // SAFETY: _exit takes a plain integer and never returns; skipping atexit handlers and
    // destructors is the point (they could allocate).
    #[allow(unsafe_code)]
    unsafe {
        nix::libc::_exit(crate::sandbox::exit::MEMORY)
    }
}

// SAFETY: every method forwards to mimalloc's `GlobalAlloc` with the caller's arguments
// unchanged, so mimalloc's guarantees (alignment, size, ownership) carry over; the only
// addition is never returning null, which callers may rely on less than the trait allows.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Allocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller upholds `alloc`'s contract (non-zero size), passed on as is.
        let p = unsafe { mimalloc::MiMalloc.alloc(layout) };
        if p.is_null() {
            out_of_memory();
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let p = unsafe { mimalloc::MiMalloc.alloc_zeroed(layout) };
        if p.is_null() {
            out_of_memory();
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator (hence from mimalloc) with `layout`.
        unsafe { mimalloc::MiMalloc.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` came from this allocator (hence from mimalloc) with `layout`, and the
        // caller upholds `realloc`'s contract for `new_size`.
        let p = unsafe { mimalloc::MiMalloc.realloc(ptr, layout, new_size) };
        if p.is_null() {
            out_of_memory();
        }
        p
    }
}
