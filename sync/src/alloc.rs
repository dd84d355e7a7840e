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
//! Set `MIMALLOC_ALLOW_THP=1` to keep huge pages (with `MIMALLOC_ALLOW_THP=0` mimalloc
//! turns them off itself); mimalloc's other settings are its environment variables,
//! e.g. `MIMALLOC_PURGE_DELAY=0` (docs/configuration.md, "Memory").
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

/// Turns transparent huge pages off for this process (and the processes it starts,
/// which inherit the flag): the kernel checks it at each page fault, so it covers the
/// memory mimalloc mapped (and advised) before `main` too. Where the kernel refuses,
/// the process runs as before, with huge pages. Linux only; elsewhere nothing.
fn disable_huge_pages() {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    if let Err(e) = set_thp_disabled(true) {
        eprintln!(
            "warning: could not turn transparent huge pages off ({e}); resident memory may be larger"
        );
    }
}

/// Sets or clears this process's PR_SET_THP_DISABLE flag.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn set_thp_disabled(disabled: bool) -> std::io::Result<()> {
    let zero: libc::c_ulong = 0;
    // SAFETY: PR_SET_THP_DISABLE takes a flag and no pointers (the unused arguments must
    // be zero, passed as unsigned longs as prctl reads them); it only sets a flag on
    // this process's memory map.
    let done = unsafe {
        libc::prctl(
            libc::PR_SET_THP_DISABLE,
            libc::c_ulong::from(disabled),
            zero,
            zero,
            zero,
        )
    };
    if done == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Whether transparent huge pages are off for this process (false where there are none).
pub fn huge_pages_disabled() -> bool {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        let zero: libc::c_ulong = 0;
        // SAFETY: PR_GET_THP_DISABLE takes no pointers (the unused arguments zero, as
        // unsigned longs) and returns the flag.
        unsafe { libc::prctl(libc::PR_GET_THP_DISABLE, zero, zero, zero, zero) == 1 }
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    false
}

#[cfg(all(test, any(target_os = "linux", target_os = "android")))]
mod tests {
    use super::*;

    #[test]
    fn tune_turns_huge_pages_off() {
        if std::env::var_os("MIMALLOC_ALLOW_THP").is_some() {
            eprintln!("skipped: MIMALLOC_ALLOW_THP is set, so tune() leaves huge pages on");
            return;
        }
        // The flag is inherited: clear it first, so that only tune() can set it. A
        // kernel that refuses prctl leaves nothing to test.
        if let Err(e) = set_thp_disabled(false) {
            eprintln!("skipped: this kernel refuses PR_SET_THP_DISABLE ({e})");
            return;
        }
        assert!(!huge_pages_disabled());
        tune();
        assert!(huge_pages_disabled());
    }
}
