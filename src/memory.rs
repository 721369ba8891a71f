//! Giving freed memory back to the operating system. glibc's malloc keeps the pages of freed
//! chunks: after a spike (1,000 connections echoing 64 KiB each, then gone) the process kept
//! 60 to 115 MiB resident with no connection left (issue 14). `malloc_trim(0)` returns every
//! whole free page of every arena (`madvise(MADV_DONTNEED)`, not only the top of the heap that
//! `M_TRIM_THRESHOLD` governs, which one live chunk pins), so it runs every
//! [`TRIM_INTERVAL`], on a blocking thread, never on a worker serving sockets. The echo path
//! keeps glibc's malloc and its allocations per message; RSS after a spike is in
//! docs/benchmarks.md, "Memory after a spike".

use std::time::Duration;

/// How often freed memory is returned: well inside the 10 s in which RSS must come back after
/// a spike (issue 14), rarely enough that the pages a busy server frees and reuses between two
/// trims are not faulted back in every time.
pub const TRIM_INTERVAL: Duration = Duration::from_secs(2);

/// Returns freed memory to the OS every [`TRIM_INTERVAL`], forever.
pub async fn trim_periodically() {
    let mut tick = tokio::time::interval(TRIM_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        // The trim walks every arena under its lock: a blocking call.
        let _ = tokio::task::spawn_blocking(trim).await;
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim() {
    // SAFETY: malloc_trim takes no pointer and is thread-safe (it locks each arena).
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Other allocators (musl's, for one) return memory themselves.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() {}

#[cfg(test)]
mod tests {
    #[test]
    fn trimming_is_safe_at_any_time() {
        let spike: Vec<Vec<u8>> = (0..64).map(|_| vec![1u8; 64 * 1024]).collect();
        drop(spike);
        super::trim();
    }
}
