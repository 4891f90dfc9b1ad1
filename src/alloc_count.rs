//! Allocations counted, for the benchmark only (the `count-allocations` cargo
//! feature, off by default): mimalloc as usual, wrapped with atomic counters.
//!
//! The totals so far go to stderr as one line each time the process gets
//! SIGUSR1, and once more when it stops:
//!
//! `allocations: allocs=N deallocs=N reallocs=N bytes=N (reason)`
//!
//! `scripts/bench --allocations` reads the line before and after each workload
//! and divides the difference by the requests wrk made.

use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use mimalloc::MiMalloc;

static ALLOCS: AtomicU64 = AtomicU64::new(0);
static DEALLOCS: AtomicU64 = AtomicU64::new(0);
static REALLOCS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);

struct Counting;

#[global_allocator]
static ALLOCATOR: Counting = Counting;

// SAFETY: every call is passed on unchanged to mimalloc, itself a GlobalAlloc;
// the counters are plain atomics and allocate nothing.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        BYTES.fetch_add(layout.size() as u64, Relaxed);
        // SAFETY: the caller's contract for `alloc`, passed on.
        unsafe { MiMalloc.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        BYTES.fetch_add(layout.size() as u64, Relaxed);
        // SAFETY: the caller's contract for `alloc_zeroed`, passed on.
        unsafe { MiMalloc.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        DEALLOCS.fetch_add(1, Relaxed);
        // SAFETY: `ptr` came from this allocator, that is from mimalloc.
        unsafe { MiMalloc.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        REALLOCS.fetch_add(1, Relaxed);
        BYTES.fetch_add(new_size.saturating_sub(layout.size()) as u64, Relaxed);
        // SAFETY: the caller's contract for `realloc`, passed on.
        unsafe { MiMalloc.realloc(ptr, layout, new_size) }
    }
}

/// Writes the totals so far to stderr.
pub fn report(reason: &str) {
    eprintln!(
        "allocations: allocs={} deallocs={} reallocs={} bytes={} ({reason})",
        ALLOCS.load(Relaxed),
        DEALLOCS.load(Relaxed),
        REALLOCS.load(Relaxed),
        BYTES.load(Relaxed),
    );
}

/// Reports the totals each time the process gets SIGUSR1, from a task on the
/// current runtime.
pub fn report_on_sigusr1() -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut usr1 = signal(SignalKind::user_defined1())?;
    tokio::spawn(async move {
        while usr1.recv().await.is_some() {
            report("SIGUSR1");
        }
    });
    Ok(())
}
