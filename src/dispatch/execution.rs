//! Where handlers run: the [`Execution`] a bus is built with, and the
//! [`Executor`] it resolves to.

use std::sync::Arc as StdArc;

/// Where handlers run.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Execution {
    /// A pool owned by the bus, with this many threads (the dispatcher thread
    /// takes part in each batch as well).
    Pool {
        /// Worker threads; at least 1.
        threads: usize,
    },
    /// A rayon pool the application already has.
    SharedPool(StdArc<rayon::ThreadPool>),
    /// Every handler on the dispatcher thread, one after the other: no pool hop,
    /// lowest latency, no parallelism between handlers.
    Inline,
}

impl Default for Execution {
    /// A pool of `available_parallelism - 1` threads (at least 1): with the
    /// dispatcher thread, one thread per core.
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Execution::Pool {
            threads: cores.saturating_sub(1).max(1),
        }
    }
}

/// The resolved execution mode.
pub(crate) enum Executor {
    Pool(StdArc<rayon::ThreadPool>),
    Inline,
}

impl std::fmt::Debug for Executor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Executor::Pool(p) => write!(f, "Pool({} threads)", p.current_num_threads()),
            Executor::Inline => f.write_str("Inline"),
        }
    }
}
