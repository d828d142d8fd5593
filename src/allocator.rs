//! The allocator's settings for fusecap's binaries (mimalloc, set as the
//! global allocator in `main.rs` and the benchmarks).
//!
//! By default mimalloc hands freed memory back to the operating system after
//! a delay. A training step or a batch of decoding frees and allocates
//! hundreds of megabytes, so the kernel maps and zeroes those pages again on
//! their first touch: a quarter of a decoding benchmark's CPU time and a
//! tenth of a training run's is system time (BENCHMARKS.md, "Training
//! kernels", "Freed memory kept"). Kept, the pages are reused; the process
//! keeps its peak memory until it exits.

/// mimalloc's `mi_option_purge_delay` (position 15 of `mi_option_e` in the
/// bundled mimalloc 3's `mimalloc.h`; the Rust bindings have no constant for
/// it). The test below checks the position against the option's default.
const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Never returns freed memory to the operating system. Call it first thing
/// in `main`, before any thread starts.
pub fn keep_freed_memory() {
    // SAFETY: sets one of mimalloc's global options by its documented index;
    // mimalloc reads the option on every purge decision and allows changes at
    // any time.
    unsafe { libmimalloc_sys::mi_option_set(PURGE_DELAY, -1) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purge_delay_is_the_option_at_its_index() {
        // mimalloc 3's options.c gives the purge delay a default of 1000 ms
        // and its neighbours at positions 14 and 16 defaults of 1 and 0, so
        // this fails if the bindings' mimalloc moves the option.
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            // SAFETY: reads one of mimalloc's global options.
            let default = unsafe { libmimalloc_sys::mi_option_get(PURGE_DELAY) };
            assert_eq!(default, 1000);
        }
    }
}
