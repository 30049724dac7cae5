//! The process's allocator: mimalloc, with one change: an allocation that fails ends the
//! process at once with [`crate::sandbox::exit::MEMORY`] instead of aborting.
//!
//! In a run child an allocation fails exactly when the address-space limit (`RLIMIT_AS`) is
//! reached, so this exit code is how the daemon tells `memory_limit` from a crash (an abort
//! would look like any other `SIGABRT`). In the daemon, the same code tells systemd and the
//! operator that memory ran out.

use std::alloc::{GlobalAlloc, Layout};

/// `mi_option_arena_reserve` in mimalloc's option enum (the same index in v2 and v3).
const MI_OPTION_ARENA_RESERVE: std::ffi::c_int = 23;

/// How much address space mimalloc reserves at a time, KiB. Its default, 1 GiB, is taken at the
/// first allocation and counts against a run child's `RLIMIT_AS` as a whole; 64 MiB steps
/// keep the limit meaning "memory the run may use" (mimalloc grows the steps as it needs more).
const ARENA_RESERVE_KIB: std::ffi::c_long = 64 * 1024;

// SAFETY: the symbol is mimalloc's own, linked in by the mimalloc crate; the signature matches
// `void mi_option_set(mi_option_t option, long value)` with `mi_option_t` a C enum (int).
#[allow(unsafe_code)]
unsafe extern "C" {
    fn mi_option_set(option: std::ffi::c_int, value: std::ffi::c_long);
}

/// Sets the allocator's options. The binary calls it from an ELF constructor, before the
/// first allocation.
pub fn configure() {
    // SAFETY: mi_option_set only stores a value in mimalloc's option table; it is safe to call
    // at any time and takes plain integers.
    #[allow(unsafe_code)]
    unsafe {
        mi_option_set(MI_OPTION_ARENA_RESERVE, ARENA_RESERVE_KIB);
    }
}

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
