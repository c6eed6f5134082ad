//! The binary's allocator settings. The binary runs on mimalloc (a million
//! small region encodings cost less memory, with no per-allocation header
//! and finer size classes, and less time than with the system allocator);
//! the library knows nothing of it and is told how to give memory back.

/// mimalloc 3's `purge_delay` option (its place in `mi_option_e`).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// How long mimalloc keeps memory freed before returning it to the system.
/// Its own default since version 3 is a second: long enough for a full
/// sync of a million regions to keep nearly every frame and batch it ever
/// freed (BENCHMARKS.md, "Kept: a smaller page cache, a chunked run, a short purge delay"). 10 ms (version 2's
/// default) returns them for a small part of the sync's time, in page
/// faults.
const PURGE_DELAY_MS: std::ffi::c_long = 10;

/// Return memory mimalloc holds but no longer uses to the system.
fn collect() {
    // SAFETY: mi_collect has no preconditions; it only returns free pages.
    unsafe { libmimalloc_sys::mi_collect(true) };
}

/// Set the allocator's defaults for a node (see [`PURGE_DELAY_MS`]), before
/// it allocates much, and tell the library how to return freed memory.
/// `MIMALLOC_PURGE_DELAY` in the environment still wins.
pub fn tune() {
    // SAFETY: setting an option's default has no preconditions.
    unsafe { libmimalloc_sys::mi_option_set_default(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS) };
    regionsync::set_release_free_memory(collect);
}

#[cfg(test)]
mod tests {
    /// The option tuned is mimalloc's purge delay: it has version 3's
    /// default for it (a second), and the node's 10 ms once tuned.
    #[test]
    fn the_allocator_option_tuned_is_the_purge_delay() {
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
            return; // set by whoever runs the test: nothing to learn here
        }
        let get = || unsafe { libmimalloc_sys::mi_option_get(super::MI_OPTION_PURGE_DELAY) };
        assert_eq!(get(), 1_000, "mimalloc 3's default purge delay");
        super::tune();
        assert_eq!(get(), super::PURGE_DELAY_MS);
    }
}
