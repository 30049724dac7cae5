//! The binary in the page cache in 2 MiB pieces, for the fork server's children.
//!
//! A forked child inherits no page-table entries of the binary's code (a file mapping): it
//! faults in every piece of code it runs for the first time, and its exit unmaps it all
//! again. How much each fault costs depends on how the page cache holds the file: from a
//! 2 MiB folio the kernel maps a fault's whole neighbourhood in one batch; from 4 KiB pages
//! it looks up, references and maps each page on its own.
//!
//! The template reads its binary in through a mapping advised `MADV_HUGEPAGE`, which makes
//! the kernel's read-ahead allocate 2 MiB folios, after dropping the cached pages no process
//! maps (cached in 4 KiB pieces, they would keep their 2 MiB range from being read whole).
//! Pages another process maps (the daemon's own hot code) stay as they are. The mapping is
//! read-only and gone again afterwards; the children's mappings are not advised, and
//! transparent huge pages stay disabled for them (see the template).

use std::fs::File;
use std::num::NonZeroUsize;

use nix::sys::mman::{MapFlags, MmapAdvise, ProtFlags, madvise, mmap, munmap};

/// Reads the running binary into the page cache in 2 MiB folios where it can. Returns the
/// bytes read in.
pub(crate) fn read_in_large_folios() -> Result<usize, String> {
    let file = File::open("/proc/self/exe").map_err(|e| format!("/proc/self/exe: {e}"))?;
    let len = file
        .metadata()
        .map_err(|e| format!("the binary's size: {e}"))?
        .len();
    let len = usize::try_from(len)
        .ok()
        .and_then(NonZeroUsize::new)
        .ok_or("the binary is empty")?;
    let _ = nix::fcntl::posix_fadvise(
        &file,
        0,
        0,
        nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED,
    );
    // SAFETY: a new read-only private mapping of a file we opened, at an address the kernel
    // chooses: it aliases nothing of this process and is only advised, read in and unmapped
    // here; no reference into it is made.
    #[allow(unsafe_code)]
    let addr = unsafe {
        mmap(
            None,
            len,
            ProtFlags::PROT_READ,
            MapFlags::MAP_PRIVATE,
            &file,
            0,
        )
    }
    .map_err(|e| format!("mapping the binary: {e}"))?;
    let advise = |advice| {
        // SAFETY: `addr..addr+len` is the mapping made above; advice changes no contents.
        #[allow(unsafe_code)]
        unsafe {
            madvise(addr, len.get(), advice)
        }
    };
    let read = advise(MmapAdvise::MADV_HUGEPAGE)
        .and_then(|()| advise(MmapAdvise::MADV_POPULATE_READ))
        .map_err(|e| format!("reading the binary in: {e}"));
    // SAFETY: the mapping made above, no longer used.
    #[allow(unsafe_code)]
    let _ = unsafe { munmap(addr, len.get()) };
    read.map(|()| len.get())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The whole binary is read in (this test's own binary), and the mapping is gone again.
    #[test]
    fn the_whole_binary_is_read_in_and_unmapped() {
        let size = std::fs::metadata("/proc/self/exe")
            .expect("the binary")
            .len();
        let before = std::fs::read_to_string("/proc/self/maps").expect("maps");
        assert_eq!(read_in_large_folios(), Ok(size as usize));
        let after = std::fs::read_to_string("/proc/self/maps").expect("maps");
        let exe = std::fs::read_link("/proc/self/exe").expect("the binary");
        let mappings = |maps: &str| {
            maps.lines()
                .filter(|l| l.ends_with(exe.to_string_lossy().as_ref()))
                .count()
        };
        assert_eq!(mappings(&after), mappings(&before));
    }
}
