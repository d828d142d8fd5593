//! Inference on several cores: a batch is cut into contiguous shards, one
//! per worker thread, and every worker encodes and decodes its own shard.
//!
//! At the shipped size candle's per-op threading gains almost nothing at
//! batch 32 (BENCHMARKS.md): each matrix product is too small to split.
//! Whole shards are large enough, and with candle on one thread per worker
//! (`RAYON_NUM_THREADS=1`, as the CLI sets it) two workers caption a batch
//! of 32 about 1.8× as fast as one.
//!
//! Greedy and beam search treat every input on its own, so a shard decodes
//! its inputs as the whole batch would, up to float rounding in matrix
//! products of another height.
use std::ops::Range;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Mutex, OnceLock, PoisonError};

use anyhow::{anyhow, Context, Result};

/// Worker threads that split a batch between them. Each worker is a rayon
/// pool of one thread, so the rayon calls inside candle's kernels run in
/// place instead of waking the other workers: in a shared pool, tiny
/// kernels split across threads cost more than they save.
pub struct Workers {
    pools: Vec<rayon::ThreadPool>,
}

/// Makes the calling thread's float arithmetic treat subnormal numbers
/// (below about 1.2e-38 in f32) as zero: the flush-to-zero and
/// denormals-are-zero bits of x86's MXCSR, set on every worker. Training
/// makes subnormals as it converges (tiny gradients, and their squares in
/// AdamW's second moment), and the CPU takes a slow path for each: steps of
/// the shipped recipe resumed at step 5,000 ran 13–31% faster with this
/// (BENCHMARKS.md, "Subnormal numbers"). Elsewhere a no-op.
pub fn flush_subnormals() {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: sets two mode bits of this thread's MXCSR register; no memory
    // is read or written. `_mm_setcsr` is deprecated in favour of inline
    // assembly, which would do the same.
    #[allow(deprecated)]
    unsafe {
        use std::arch::x86_64::{_mm_getcsr, _mm_setcsr};
        const FLUSH_TO_ZERO: u32 = 1 << 15;
        const DENORMALS_ARE_ZERO: u32 = 1 << 6;
        _mm_setcsr(_mm_getcsr() | FLUSH_TO_ZERO | DENORMALS_ARE_ZERO);
    }
}

impl Workers {
    pub fn new(threads: usize) -> Result<Self> {
        let pools = (0..threads.max(1))
            .map(|i| {
                rayon::ThreadPoolBuilder::new()
                    .num_threads(1)
                    .thread_name(move |_| format!("fusecap-worker-{i}"))
                    .start_handler(|_| flush_subnormals())
                    .build()
                    .context("starting the worker threads")
            })
            .collect::<Result<_>>()?;
        Ok(Workers { pools })
    }

    pub fn threads(&self) -> usize {
        self.pools.len()
    }

    /// `work(range)` for each shard of `0..items` (one per worker, none
    /// empty, in order), each on its own worker; one result per shard.
    /// The first error wins.
    pub fn per_shard<T, F>(&self, items: usize, work: F) -> Result<Vec<T>>
    where
        T: Send,
        F: Fn(Range<usize>) -> Result<T> + Sync,
    {
        let shards = self.threads().min(items).max(1);
        let slots: Vec<Mutex<Option<Result<T>>>> = (0..shards).map(|_| Mutex::new(None)).collect();
        let run = |i: usize| {
            let result = catch_unwind(AssertUnwindSafe(|| work(shard_range(items, shards, i))))
                .unwrap_or_else(|_| Err(anyhow!("a worker thread panicked")));
            *slots[i].lock().unwrap_or_else(PoisonError::into_inner) = Some(result);
        };
        self.hand_out(1, shards, &run);
        slots
            .into_iter()
            .map(|slot| {
                slot.into_inner()
                    .unwrap_or_else(PoisonError::into_inner)
                    .unwrap_or_else(|| Err(anyhow!("a worker did not run its shard")))
            })
            .collect()
    }

    /// Queues shards `from..shards` on their workers' pools, then runs shard 0
    /// on worker 0 and waits for all. Queuing a job wakes a worker that is
    /// already running; starting a thread per shard instead took about 3 ms
    /// on a busy 2-core machine before the second shard began.
    fn hand_out<R: Fn(usize) + Sync>(&self, from: usize, shards: usize, run: &R) {
        if from >= shards {
            self.pools[0].install(|| run(0));
            return;
        }
        self.pools[from].in_place_scope(|scope| {
            scope.spawn(move |_| run(from));
            self.hand_out(from + 1, shards, run);
        });
    }

    /// As [`Workers::per_shard`], with each shard's results concatenated.
    pub fn map_shards<T, F>(&self, items: usize, work: F) -> Result<Vec<T>>
    where
        T: Send,
        F: Fn(Range<usize>) -> Result<Vec<T>> + Sync,
    {
        let shards = self.per_shard(items, work)?;
        Ok(shards.into_iter().flatten().collect())
    }
}

/// Items of shard `index` of `shards`: contiguous, sizes differing by at most one.
fn shard_range(items: usize, shards: usize, index: usize) -> Range<usize> {
    items * index / shards..items * (index + 1) / shards
}

/// The number of cores this process may use (1 if unknown).
pub fn every_core() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

static INFERENCE_THREADS: OnceLock<usize> = OnceLock::new();
static INFERENCE_WORKERS: OnceLock<Option<Workers>> = OnceLock::new();

/// Sets the number of inference workers for this process (default: every
/// core). Must run before the first inference; later calls are ignored.
/// Set `RAYON_NUM_THREADS=1` too, before the first tensor operation: candle's
/// own threading inside busy workers makes batches slower.
pub fn set_inference_threads(threads: usize) {
    let _ = INFERENCE_THREADS.set(threads.max(1));
}

/// The process's inference workers, started on first use; `None` if the
/// threads could not be started, and inference then runs on the caller.
pub fn inference_workers() -> Option<&'static Workers> {
    INFERENCE_WORKERS
        .get_or_init(|| {
            let threads = *INFERENCE_THREADS.get_or_init(every_core);
            Workers::new(threads).ok()
        })
        .as_ref()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 1e-30 × 1e-10 is a subnormal f32: on a worker it is 0, on a thread
    /// that did not flush subnormals it is not.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn workers_flush_subnormals_to_zero() -> Result<()> {
        let product = || std::hint::black_box(1e-30f32) * std::hint::black_box(1e-10f32);
        let plain = std::thread::spawn(product)
            .join()
            .map_err(|_| anyhow!("panicked"))?;
        assert!(
            plain > 0.0 && !plain.is_normal(),
            "a subnormal without the flush"
        );
        let on_workers = Workers::new(2)?.per_shard(2, |_| Ok(product()))?;
        assert_eq!(on_workers, vec![0.0, 0.0]);
        Ok(())
    }

    #[test]
    fn shards_cover_every_item_once_in_order() {
        for items in [1, 2, 7, 64] {
            for shards in 1..=items.min(5) {
                let covered: Vec<usize> = (0..shards)
                    .flat_map(|i| shard_range(items, shards, i))
                    .collect();
                assert_eq!(covered, (0..items).collect::<Vec<_>>());
                let sizes: Vec<usize> = (0..shards)
                    .map(|i| shard_range(items, shards, i).len())
                    .collect();
                let (min, max) = (sizes.iter().min(), sizes.iter().max());
                assert!(max.zip(min).is_some_and(|(a, b)| a - b <= 1), "{sizes:?}");
            }
        }
    }

    #[test]
    fn map_shards_keeps_the_order_and_reports_an_error() -> Result<()> {
        let workers = Workers::new(3)?;
        let squares = workers.map_shards(10, |r| Ok(r.map(|i| i * i).collect()))?;
        assert_eq!(squares, (0..10).map(|i| i * i).collect::<Vec<_>>());
        let one = workers.map_shards(1, |r| Ok(r.collect::<Vec<_>>()))?;
        assert_eq!(one, vec![0]);
        let failed = workers.map_shards(10, |r| {
            if r.contains(&5) {
                anyhow::bail!("shard with item 5")
            }
            Ok(r.collect::<Vec<_>>())
        });
        assert!(failed.is_err_and(|e| e.to_string().contains("item 5")));
        Ok(())
    }

    #[test]
    fn each_shard_runs_on_its_own_worker_and_a_panic_is_an_error() -> Result<()> {
        let workers = Workers::new(3)?;
        for _ in 0..3 {
            let names =
                workers.per_shard(9, |_| Ok(std::thread::current().name().map(str::to_string)))?;
            let expected: Vec<_> = (0..3)
                .map(|i| Some(format!("fusecap-worker-{i}")))
                .collect();
            assert_eq!(names, expected);
        }
        let panicked = workers.per_shard(9, |r| {
            assert!(!r.contains(&4), "shard with item 4");
            Ok(())
        });
        assert!(panicked.is_err_and(|e| e.to_string().contains("panicked")));
        let after = workers.map_shards(4, |r| Ok(r.collect::<Vec<_>>()))?;
        assert_eq!(
            after,
            vec![0, 1, 2, 3],
            "the workers still run after a panic"
        );
        Ok(())
    }
}
