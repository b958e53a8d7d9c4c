//! Giving a dormant module's compiled code back to the kernel.
//!
//! Compiled code is mapped from its compile-cache file. Running a Go
//! module's `_initialize` touches most of its text (the kernel maps 64 KiB
//! around every page fault), so each loaded Go module keeps 8–10 MB of file
//! pages in the process's RSS long after its last event. The kernel would
//! reclaim them only under memory pressure, and an edge box's memory
//! accounting (and its operator) counts them until then.
//!
//! A module with no instance, no event in flight and none for its
//! `idle_timeout` has its code range paged out with `MADV_PAGEOUT`. Unlike
//! `MADV_DONTNEED` it never discards data: a page wasmtime wrote (a
//! relocation) is anonymous and stays, and file pages are read back from
//! the cache file on the next event.

use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};

/// Set once the kernel has refused `MADV_PAGEOUT` (older than Linux 5.4):
/// later calls don't ask again.
static UNSUPPORTED: AtomicBool = AtomicBool::new(false);

/// Asks the kernel to reclaim the pages of `range` now. Returns whether it
/// took the request; pages touched again are simply faulted back in.
pub(crate) fn page_out(range: Range<*const u8>) -> bool {
    if UNSUPPORTED.load(Ordering::Relaxed) {
        return false;
    }
    let page = page_size();
    // madvise wants a page-aligned start; a partial first page stays.
    let start = (range.start as usize).next_multiple_of(page);
    let end = range.end as usize;
    if end <= start {
        return false;
    }
    advise_page_out(start, end - start)
}

#[cfg(target_os = "linux")]
fn advise_page_out(start: usize, len: usize) -> bool {
    // SAFETY: MADV_PAGEOUT changes no memory contents: it reclaims clean
    // file pages (read back on the next touch) and swaps or keeps anonymous
    // ones. The range lies inside a module image wasmtime keeps mapped
    // while the `Module` the caller holds is alive.
    #[allow(unsafe_code)]
    let result = unsafe { libc::madvise(start as *mut libc::c_void, len, libc::MADV_PAGEOUT) };
    if result == 0 {
        return true;
    }
    let err = std::io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::EINVAL) {
        UNSUPPORTED.store(true, Ordering::Relaxed);
        tracing::info!(error = %err, "the kernel does not page out on request (MADV_PAGEOUT needs Linux 5.4); idle modules keep their code resident");
    } else {
        tracing::debug!(error = %err, "paging out idle code failed");
    }
    false
}

#[cfg(not(target_os = "linux"))]
fn advise_page_out(_start: usize, _len: usize) -> bool {
    UNSUPPORTED.store(true, Ordering::Relaxed);
    false
}

fn page_size() -> usize {
    // SAFETY: sysconf only reads a constant of the system.
    #[allow(unsafe_code)]
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(size).unwrap_or(4096).max(4096)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// KiB of this process's mapping at `ptr` that are resident, from smaps.
    fn resident_kib(ptr: *const u8) -> u64 {
        let start = format!("{:x}-", ptr as usize);
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let mapping = smaps
            .split_inclusive('\n')
            .skip_while(|line| !line.starts_with(&start))
            .take_while(|line| line.starts_with(&start) || line.contains(':'))
            .collect::<String>();
        mapping
            .lines()
            .find_map(|line| line.strip_prefix("Rss:"))
            .unwrap_or_else(|| panic!("no mapping at {start} in smaps"))
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .unwrap()
    }

    #[test]
    fn paged_out_file_pages_leave_memory_and_read_back_unchanged() {
        let page = page_size();
        let len = 64 * page;
        let contents: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
        // On disk, not in a tmpfs /tmp, whose pages can only be swapped.
        let mut file =
            tempfile::tempfile_in(concat!(env!("CARGO_MANIFEST_DIR"), "/../../target")).unwrap();
        file.write_all(&contents).unwrap();
        file.sync_all().unwrap();
        #[allow(unsafe_code)]
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_PRIVATE,
                std::os::fd::AsRawFd::as_raw_fd(&file),
                0,
            )
        };
        assert_ne!(ptr, libc::MAP_FAILED);
        let ptr = ptr as *const u8;
        #[allow(unsafe_code)]
        let mapped = unsafe { std::slice::from_raw_parts(ptr, len) };
        assert_eq!(mapped, &contents[..]);
        let len_kib = (len / 1024) as u64;
        assert_eq!(resident_kib(ptr), len_kib);

        // Skip where the kernel can't (Linux < 5.4): nothing to check.
        if !page_out(ptr..ptr.wrapping_add(len)) {
            assert!(UNSUPPORTED.load(Ordering::Relaxed));
            return;
        }
        let resident = resident_kib(ptr);
        assert!(
            resident < len_kib / 8,
            "{resident} of {len_kib} KiB still resident"
        );
        assert_eq!(mapped, &contents[..], "contents changed by paging out");
        #[allow(unsafe_code)]
        unsafe {
            libc::munmap(ptr as *mut libc::c_void, len);
        }
    }
}
