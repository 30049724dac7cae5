//! The process's allocator: mimalloc, with one change: an allocation that fails ends the
//! process at once with `crate::sandbox::exit::MEMORY` instead of aborting.
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

/// Sets the allocator's options. The binary calls it from an ELF constructor, before the
/// first allocation.
pub fn configure() {
    // SAFETY: mi_option_set only stores a value in mimalloc's option table; it is safe to call
    // at any time and takes plain integers.
    #[allow(unsafe_code)]
    unsafe {
        mi::mi_option_set(MI_OPTION_ARENA_RESERVE, ARENA_RESERVE_KIB);
    }
}

/// mimalloc's C API, with `mi_option_set` (its base bindings leave it to a feature that would
/// build more of mimalloc than this needs).
mod mi {
    pub(super) use libmimalloc_sys::{
        mi_free, mi_malloc, mi_malloc_aligned, mi_realloc, mi_realloc_aligned, mi_zalloc,
        mi_zalloc_aligned,
    };

    // SAFETY: the symbol is mimalloc's own, linked in by libmimalloc-sys; the signature matches
    // `void mi_option_set(mi_option_t option, long value)` with `mi_option_t` a C enum (int).
    #[allow(unsafe_code)]
    unsafe extern "C" {
        pub(super) fn mi_option_set(option: std::ffi::c_int, value: std::ffi::c_long);
    }
}

/// Every mimalloc block is aligned to a machine word.
const WORD: usize = std::mem::size_of::<usize>();

/// mimalloc's `MI_MAX_ALIGN_SIZE`. Its size classes above 64 bytes are multiples of 16 and
/// its pages start 16-aligned, so a request rounded up to 16 bytes comes back 16-aligned; the
/// allocator still checks each pointer and takes the aligned path should that ever not hold.
const ALIGN16: usize = 16;

/// How a layout is served: mimalloc's plain entry points (its fast path) when the alignment
/// is at most 16, the aligned ones (which try a lucky block, then over-allocate) beyond.
#[derive(Clone, Copy)]
enum Route {
    /// Word alignment or less: any block will do.
    Plain,
    /// 16-byte alignment (`i128`, SIMD types): a plain block of a 16-multiple size.
    Sixteen,
    /// Larger alignments.
    Aligned,
}

#[inline]
fn route(align: usize) -> Route {
    if align <= WORD {
        Route::Plain
    } else if align <= ALIGN16 {
        Route::Sixteen
    } else {
        Route::Aligned
    }
}

/// `size` rounded up to a multiple of 16 (sizes near `usize::MAX` stay as they are and fail).
#[inline]
fn round16(size: usize) -> usize {
    size.checked_add(ALIGN16 - 1)
        .map_or(size, |s| s & !(ALIGN16 - 1))
}

#[inline]
fn aligned16(p: *mut std::ffi::c_void) -> bool {
    (p as usize) & (ALIGN16 - 1) == 0
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

/// A new block for `layout` from `plain` (mimalloc's `mi_malloc` or `mi_zalloc`) or, for
/// alignments it does not guarantee, `aligned` (their `_aligned` forms).
///
/// # Safety
/// `layout` has a non-zero size (`GlobalAlloc::alloc`'s contract).
#[allow(unsafe_code)]
#[inline(always)]
unsafe fn serve(
    layout: Layout,
    plain: unsafe extern "C" fn(usize) -> *mut std::ffi::c_void,
    aligned: unsafe extern "C" fn(usize, usize) -> *mut std::ffi::c_void,
) -> *mut u8 {
    let (size, align) = (layout.size(), layout.align());
    // SAFETY: plain FFI calls with a size and a power-of-two alignment; a misaligned block
    // is freed (it is mimalloc's and unused) before the aligned retry.
    let p = unsafe {
        match route(align) {
            Route::Plain => plain(size),
            Route::Sixteen => {
                let p = plain(round16(size));
                if aligned16(p) {
                    p
                } else {
                    mi::mi_free(p);
                    aligned(size, align)
                }
            }
            Route::Aligned => aligned(size, align),
        }
    };
    if p.is_null() {
        out_of_memory();
    }
    p.cast()
}

// SAFETY: every block comes from mimalloc and goes back to it (`mi_free` and `mi_realloc*`
// accept any pointer mimalloc returned, plain or aligned). Alignment: word-aligned requests
// are met by any block; 16-aligned ones by a block whose address is checked and, if it were
// ever misaligned, replaced through mimalloc's aligned entry points; larger alignments always
// take those. Sizes are never smaller than asked. Null is never returned.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Allocator {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller upholds `alloc`'s contract; `serve` passes it on.
        unsafe { serve(layout, mi::mi_malloc, mi::mi_malloc_aligned) }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        unsafe { serve(layout, mi::mi_zalloc, mi::mi_zalloc_aligned) }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: `ptr` came from this allocator, hence from mimalloc.
        unsafe { mi::mi_free(ptr.cast()) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let align = layout.align();
        // SAFETY: `ptr` came from this allocator (hence from mimalloc) with `layout`; on a
        // misaligned result the block (now holding the data) is moved once more by
        // `mi_realloc_aligned`, which keeps the contents.
        let p = unsafe {
            match route(align) {
                Route::Plain => mi::mi_realloc(ptr.cast(), new_size),
                Route::Sixteen => {
                    let p = mi::mi_realloc(ptr.cast(), round16(new_size));
                    if p.is_null() || aligned16(p) {
                        p
                    } else {
                        mi::mi_realloc_aligned(p, new_size, align)
                    }
                }
                Route::Aligned => mi::mi_realloc_aligned(ptr.cast(), new_size, align),
            }
        };
        if p.is_null() {
            out_of_memory();
        }
        p.cast()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every route keeps the alignment asked for and the contents across `realloc`.
    #[test]
    fn blocks_are_aligned_and_keep_their_contents() {
        let a = Allocator;
        for align in [1, 2, 4, 8, 16, 32, 64, 4096] {
            for size in [1, 3, 8, 17, 24, 40, 48, 56, 100, 1000, 5000, 70_000] {
                let layout = Layout::from_size_align(size, align).expect("valid layout");
                // SAFETY: non-zero sizes, power-of-two alignments; every block is written
                // only within its size and freed once with the layout it has at that time.
                #[allow(unsafe_code)]
                unsafe {
                    let p = a.alloc(layout);
                    assert_eq!(p as usize % align, 0, "alloc {size} align {align}");
                    for i in 0..size {
                        p.add(i).write((i % 251) as u8);
                    }
                    let bigger = size * 3 + 5;
                    let q = a.realloc(p, layout, bigger);
                    assert_eq!(q as usize % align, 0, "realloc up {size} align {align}");
                    for i in 0..size {
                        assert_eq!(q.add(i).read(), (i % 251) as u8);
                    }
                    let grown = Layout::from_size_align(bigger, align).expect("valid layout");
                    let smaller = size.div_ceil(2);
                    let r = a.realloc(q, grown, smaller);
                    assert_eq!(r as usize % align, 0, "realloc down {size} align {align}");
                    for i in 0..smaller {
                        assert_eq!(r.add(i).read(), (i % 251) as u8);
                    }
                    a.dealloc(r, Layout::from_size_align(smaller, align).expect("valid"));

                    let z = a.alloc_zeroed(layout);
                    assert_eq!(z as usize % align, 0, "alloc_zeroed {size} align {align}");
                    assert!((0..size).all(|i| z.add(i).read() == 0));
                    a.dealloc(z, layout);
                }
            }
        }
    }
}
