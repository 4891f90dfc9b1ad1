//! The allocator: mimalloc, for every binary that links this crate (the server
//! and the tests alike).
//!
//! Requests allocate and free many small blocks from two worker threads at once;
//! glibc's malloc spent a sixth of a replica's CPU on that, partly waiting on its
//! arena locks, where mimalloc's per-thread heaps need no lock
//! (docs/PERFORMANCE.md, "Allocator").
//!
//! The other side is memory held after a burst of logins: each argon2 hash
//! allocates and frees a 19 MiB block on a blocking-pool thread, and mimalloc
//! keeps freed memory for reuse a while before returning it to the OS, in 2 MiB
//! transparent huge pages. Thirty logins left the replica at ~48 MB instead of
//! ~14 MB. [`return_freed_memory`] after each hash, and mimalloc built without
//! huge pages (the `no_thp` feature in Cargo.toml), bring it to ~15 MB.

// The benchmark's build (`--features count-allocations`) wraps it with counters
// instead (src/alloc_count.rs, in the server binary).
#[cfg(not(feature = "count-allocations"))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Returns the memory this thread freed to the OS now, instead of after
/// mimalloc's delay. For threads that just freed something big (an argon2
/// hash's working memory); it costs far less than the hash.
pub fn return_freed_memory() {
    // SAFETY: `mi_collect` takes no pointers and may be called from any thread
    // at any time; `force` also returns memory that is merely freed, not only
    // what is unused for long.
    unsafe { libmimalloc_sys::mi_collect(true) }
}
