//! Key material in memory that is never swapped out and is wiped when dropped.
//!
//! [`LockedBytes`] owns a fixed heap buffer, `mlock`s its pages (so the kernel never writes the
//! bytes to swap) and zeroizes then unlocks it on drop. The buffer never reallocates, so no
//! stray copy is left behind by growth. Locking can fail where `RLIMIT_MEMLOCK` is tiny; the
//! bytes are still zeroized (the tests check which happened).

use std::ptr::NonNull;

use zeroize::Zeroize;

/// A zeroizing, memory-locked byte buffer of fixed length.
pub(crate) struct LockedBytes {
    bytes: Box<[u8]>,
    /// Whether `mlock` succeeded (the tests check it).
    #[cfg(test)]
    locked: bool,
}

impl LockedBytes {
    /// Moves `source` into a locked buffer and wipes `source`.
    pub(crate) fn take(source: &mut [u8]) -> LockedBytes {
        let mut bytes = vec![0u8; source.len()].into_boxed_slice();
        let locked = lock(&bytes);
        bytes.copy_from_slice(source);
        source.zeroize();
        #[cfg(not(test))]
        let _ = locked;
        LockedBytes {
            bytes,
            #[cfg(test)]
            locked,
        }
    }

    /// Moves a string's bytes into a locked buffer and wipes the string.
    #[cfg(test)]
    pub(crate) fn take_string(mut source: String) -> LockedBytes {
        // The temporary copy is wiped by `take`, the string's own buffer right after.
        let out = LockedBytes::take(&mut source.as_bytes().to_vec());
        source.zeroize();
        out
    }

    /// The bytes. Never log them.
    pub(crate) fn expose(&self) -> &[u8] {
        &self.bytes
    }

    /// Whether `mlock` succeeded (the pages cannot be swapped out).
    #[cfg(test)]
    pub(crate) fn is_locked(&self) -> bool {
        self.locked
    }

    /// Length in bytes.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.bytes.len()
    }
}

impl Clone for LockedBytes {
    fn clone(&self) -> Self {
        let mut copy = self.bytes.to_vec();
        LockedBytes::take(&mut copy)
    }
}

impl Drop for LockedBytes {
    fn drop(&mut self) {
        // Wiped, and left locked: see `pin` for why pages are never unlocked.
        self.bytes.zeroize();
    }
}

impl std::fmt::Debug for LockedBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LockedBytes({} bytes, ***)", self.bytes.len())
    }
}

/// Pins the pages holding `bytes` in RAM (best effort; false if the kernel refused). The pages
/// stay pinned after the bytes are freed: unlocking could unpin a neighbour that shares the
/// page, and a pinned page is harmless.
pub(crate) fn pin(bytes: &[u8]) -> bool {
    lock(bytes)
}

/// `mlock`s the pages of `bytes`; false if the kernel refused (or the buffer is empty).
fn lock(bytes: &[u8]) -> bool {
    let Some(ptr) = NonNull::new(bytes.as_ptr().cast_mut().cast()) else {
        return false;
    };
    if bytes.is_empty() {
        return false;
    }
    // SAFETY: `ptr`/`len` describe a live allocation owned by the caller for at least as long
    // as the lock (LockedBytes unlocks before freeing); mlock only pins pages, it neither
    // reads nor writes them.
    #[allow(unsafe_code)]
    let r = unsafe { nix::sys::mman::mlock(ptr, bytes.len()) };
    r.is_ok()
}

/// Makes this process non-dumpable: no core file, and `/proc/<pid>/mem` and ptrace are closed
/// to other processes of the same user. The daemon holds the transport key, so it does this
/// first thing; the sandbox child does it as one of its confinement steps.
pub(crate) fn set_non_dumpable() -> std::io::Result<()> {
    nix::sys::prctl::set_dumpable(false).map_err(std::io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn take_wipes_the_source_and_keeps_the_bytes() {
        let mut src = b"transport-key-bytes".to_vec();
        let locked = LockedBytes::take(&mut src);
        assert_eq!(locked.expose(), b"transport-key-bytes");
        assert!(src.iter().all(|b| *b == 0));
        assert_eq!(locked.len(), 19);
    }

    #[test]
    fn debug_is_redacted() {
        let locked = LockedBytes::take_string("s3cr3t-marker".to_owned());
        let shown = format!("{locked:?}");
        assert!(!shown.contains("s3cr3t"), "{shown}");
        assert_eq!(shown, "LockedBytes(13 bytes, ***)");
    }

    #[test]
    fn small_buffers_are_locked_under_the_default_memlock_limit() {
        // RLIMIT_MEMLOCK is at least 64 KiB on every Linux we run on; a key fits.
        let locked = LockedBytes::take(&mut [7u8; 44]);
        assert!(locked.is_locked());
    }
}
