//! Runs N warm invocations in process, for counting instructions with
//! callgrind (wall time on a shared machine is too noisy to compare small
//! changes):
//!
//! ```text
//! cargo build --release -p ledge-functions --example invoke_count
//! valgrind --tool=callgrind --callgrind-out-file=/tmp/a.out target/release/examples/invoke_count hello 1000
//! valgrind --tool=callgrind --callgrind-out-file=/tmp/b.out target/release/examples/invoke_count hello 11000
//! # instructions per invocation = (total(b) - total(a)) / 10000
//! ```
//!
//! `BROWSER=1` adds a browser's request headers (about 700 bytes);
//! `OWNED=1` gives each invocation its own request, as the worker does.
//! `COLD=1` makes a new isolate for each of the N (none ready: runtime,
//! context, glue and the bundle's module), then drops it.
//! `DEPLOYS=K` runs the function as K deploys in turn (each one's warm
//! isolate is then the one idle longest), up to the pool's 64; warm them
//! all with a first run of K before counting.
//!
//! Functions: `hello` (the criterion bench's async hello), `hello-sync`
//! (a synchronous hello), `pass` (`() => {}`: the fixed cost) and
//! `custom 'SOURCE'` (any module whose handler passes through).

use ledge_functions::*;

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "../benches/support/common.rs"]
mod common;
use common::{hello_request, NoHost};

fn main() {
    let mut args = std::env::args().skip(1);
    let which = args.next().unwrap_or_else(|| "hello".into());
    let n: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(1000);
    let custom = args.next();
    let (source, pass) = match which.as_str() {
        "hello" => ("export default async (request, context) => new Response('Hello, world!', { headers: { 'content-type': 'text/plain' } });", false),
        "hello-sync" => ("export default () => new Response(\"hello from ledge\\n\", { headers: { \"content-type\": \"text/plain\" } });", false),
        "pass" => ("export default () => {}", true),
        // `custom 'SOURCE'`: a module whose handler passes through (returns
        // undefined), to measure one piece of work against `pass`.
        "custom" => (custom.as_deref().unwrap_or("export default () => {}"), true),
        other => {
            eprintln!("unknown function {other:?}: hello, hello-sync or pass");
            std::process::exit(2);
        }
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("tokio runtime");
    // Generous limits: under valgrind everything runs ~50x slower.
    let cold = std::env::var_os("COLD").is_some();
    let engine = Engine::new(Limits {
        cpu_time: std::time::Duration::from_secs(10),
        wall_time: std::time::Duration::from_secs(60),
        max_isolates: if cold {
            0
        } else {
            Limits::default().max_isolates
        },
        ..Limits::default()
    });
    let deploys: usize = std::env::var("DEPLOYS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let bundles: Vec<Bundle> = (0..deploys.max(1))
        .map(|i| Bundle::single(&format!("count/fn-{i:04}"), source))
        .collect();
    let bundle = &bundles[0];
    if cold {
        for _ in 0..n {
            engine.config(bundle).expect("a cold isolate");
            engine.drop_evicted();
        }
        return;
    }
    let mut req = hello_request();
    if std::env::var_os("BROWSER").is_some() {
        // A browser's request headers (about 700 bytes), as most real
        // requests carry.
        for (k, v) in [
            (
                "user-agent",
                "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
            ),
            (
                "accept",
                "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
            ),
            ("accept-language", "en-GB,en;q=0.7,de;q=0.3"),
            ("accept-encoding", "gzip, deflate, br, zstd"),
            ("referer", "https://news.example/a/page"),
            (
                "cookie",
                "session=9f8e7d6c5b4a39281706f5e4d3c2b1a0; theme=dark; ab=variant-b",
            ),
            ("upgrade-insecure-requests", "1"),
            ("sec-fetch-dest", "document"),
            ("sec-fetch-mode", "navigate"),
            ("sec-fetch-site", "cross-site"),
            ("sec-fetch-user", "?1"),
            ("priority", "u=0, i"),
            ("x-forwarded-for", "203.0.113.7"),
            ("x-nf-request-id", "01JD8ZQ4X5N6P7R8S9T0V1W2X3"),
        ] {
            req.headers.push((k.into(), v.into()));
        }
    }
    // `OWNED=1`: each invocation gets its own copy of the request, as the
    // worker's invocations do (decoded from their frame), and takes it apart
    // (`invoke_owned`); the copy is counted too, as the decoding is there.
    let owned = std::env::var_os("OWNED").is_some();
    rt.block_on(async {
        for bundle in bundles.iter().cycle().take(n as usize) {
            let inv = if owned {
                engine.invoke_owned(bundle, req.clone(), &NoHost).await
            } else {
                engine.invoke(bundle, &req, &NoHost).await
            };
            let ok = if pass {
                matches!(inv.outcome, InvocationOutcome::PassThrough)
            } else {
                matches!(inv.outcome, InvocationOutcome::Response(_))
            };
            assert!(ok, "unexpected outcome: {:?}", inv.outcome);
        }
    });
}
