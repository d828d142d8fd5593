//! The batch loader runs at the operating system's idle priority.
//!
//! With as many training workers as cores, the loader is a third busy
//! thread: it preempts one worker, that worker's shard finishes late, and the
//! other worker waits for it at the end of the step. At idle priority (Linux
//! `SCHED_IDLE`) the loader runs only on a core that nothing else wants,
//! which is the time a worker waits for the other. Batches are built two
//! steps ahead, and a worker waiting for its next batch leaves a core idle,
//! so the loader is never starved for long.

/// Lowers the calling thread to idle priority, where the platform has one.
/// Best effort: a failure leaves the thread as it was.
pub fn lower_this_thread() {
    #[cfg(target_os = "linux")]
    {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: `param` is a valid `sched_param` for the call's duration;
        // pid 0 names the calling thread.
        unsafe {
            libc::sched_setscheduler(0, libc::SCHED_IDLE, &param);
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    #[test]
    fn the_calling_thread_and_only_it_gets_idle_priority() {
        let policy = || unsafe { libc::sched_getscheduler(0) };
        let before = policy();
        let lowered = std::thread::spawn(move || {
            super::lower_this_thread();
            policy()
        })
        .join()
        .expect("thread");
        assert_eq!(lowered, libc::SCHED_IDLE);
        assert_eq!(policy(), before, "the spawning thread changed too");
    }
}
