//! Runs N hello invocations through a worker pool of one worker process
//! (this program again, with `LEDGE_COUNT_WORKER=1`), `IN_FLIGHT` at a time
//! (default 8), for counting the instructions of both sides with callgrind,
//! which follows the worker when told to:
//!
//! ```text
//! cargo build --release -p ledge-functions --features unconfined-worker --example worker_count
//! valgrind --tool=callgrind --trace-children=yes --callgrind-out-file=/tmp/w1.%p \
//!     target/release/examples/worker_count 1000
//! valgrind --tool=callgrind --trace-children=yes --callgrind-out-file=/tmp/w2.%p \
//!     target/release/examples/worker_count 6000
//! # per invocation, on each side = (total(w2) - total(w1)) / 5000
//! ```
//!
//! The worker runs without its sandbox (`worker_main_unconfined`, hence the
//! feature): valgrind's own system calls are not in its seccomp filter.
//!
//! In-process counts
//! (`examples/invoke_count`) are the engine alone; the difference is what
//! the process boundary costs.

use std::process::ExitCode;
use std::time::Duration;

use futures_util::stream::{self, StreamExt};
use ledge_functions::worker::{worker_main_unconfined, WorkerOptions, WorkerPool};
use ledge_functions::*;

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "../benches/support/common.rs"]
mod common;
use common::{hello_request, NoHost};

const WORKER_ENV: &str = "LEDGE_COUNT_WORKER";

fn main() -> ExitCode {
    if std::env::var_os(WORKER_ENV).is_some() {
        return worker_main_unconfined();
    }
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000);
    let in_flight: usize = std::env::var("IN_FLIGHT")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(8);
    let exe = std::env::current_exe().expect("current exe");
    let mut o = WorkerOptions::new(exe, Vec::new());
    o.envs.push((WORKER_ENV.into(), "1".into()));
    o.workers = 1;
    // Generous limits: under valgrind everything runs ~50x slower.
    o.limits = Limits {
        cpu_time: Duration::from_secs(10),
        wall_time: Duration::from_secs(60),
        ..Limits::default()
    };
    o.ping_timeout = Duration::from_secs(60);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async {
        let pool = WorkerPool::start(o).expect("pool");
        assert!(pool.ready(Duration::from_secs(60)).await, "worker ready");
        let bundle = Bundle::single(
            "count/fn",
            "export default () => new Response(\"hello from ledge\\n\", { headers: { \"content-type\": \"text/plain\" } });",
        );
        let req = hello_request();
        let answered = stream::iter(0..n)
            .map(|_| pool.invoke(&bundle, &req, &NoHost))
            .buffer_unordered(in_flight.max(1))
            .filter(|inv| std::future::ready(matches!(inv.outcome, InvocationOutcome::Response(_))))
            .count()
            .await;
        assert_eq!(answered, n, "every invocation answered");
        // Not dropped, which would kill the worker before callgrind wrote
        // its counts: the worker exits when this process's end closes its
        // socket.
        std::mem::forget(pool);
    });
    ExitCode::SUCCESS
}
