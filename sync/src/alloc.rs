//! Memory settings of the `duplex` process, whose allocator is mimalloc (src/main.rs;
//! it serves librdkafka's and RocksDB's C allocations too).
//!
//! **No transparent huge pages.** mimalloc asks the kernel for huge pages
//! (`MADV_HUGEPAGE`) on the memory it maps. Each of the process's threads (a flow has six
//! librdkafka clients of four or five threads each) allocates from pages of its own, and
//! with huge pages each of those becomes 2 MiB resident where a few KiB are used, and the
//! kernel spends its time zeroing and compacting them. In the e2e bench's memory phase
//! (one link, 16 MiB budget, 203 MiB backlog) turning them off took the peak growth from
//! 139–158 MiB to 67–77 MiB, and the engine from 106–145 to 183–217 MiB replicated per
//! CPU-second (docs/benchmarks.md, "Memory").
//!
//! Set `MIMALLOC_ALLOW_THP=1` to keep huge pages; mimalloc's other settings are its
//! environment variables, e.g. `MIMALLOC_PURGE_DELAY=0` (docs/configuration.md, "Memory").
//!
//! Besides admin_ffi/, the crate's one place with `unsafe`: one `prctl`, with what keeps
//! it sound beside it.
#![allow(unsafe_code)]

/// Applies Duplex's memory settings. Call it first in `main`.
pub fn tune() {
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_none() {
        disable_huge_pages();
    }
}

/// Turns transparent huge pages off for this process: the kernel checks the flag at each
/// page fault, so it covers the memory mimalloc mapped (and advised) before `main` too.
/// Where the kernel refuses, the process runs as before, with huge pages.
fn disable_huge_pages() {
    // SAFETY: PR_SET_THP_DISABLE takes an integer flag and no pointers; it only sets a
    // flag on this process's memory map.
    let done = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
    if done != 0 {
        eprintln!(
            "warning: could not turn transparent huge pages off ({}); resident memory may be larger",
            std::io::Error::last_os_error()
        );
    }
}

/// Whether transparent huge pages are off for this process.
pub fn huge_pages_disabled() -> bool {
    // SAFETY: PR_GET_THP_DISABLE takes no pointers and returns the flag.
    unsafe { libc::prctl(libc::PR_GET_THP_DISABLE, 0, 0, 0, 0) == 1 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tune_turns_huge_pages_off() {
        if std::env::var_os("MIMALLOC_ALLOW_THP").is_some() {
            return;
        }
        tune();
        assert!(huge_pages_disabled());
    }
}
