//! The floor under a warm invocation: what QuickJS itself costs to run a
//! hello function and hand its answer to Rust, with none of Ledge's glue
//! (no `Request` or `context` objects, no validation, no outcome record, no
//! limits). Count it with callgrind like `invoke_count`:
//!
//! ```text
//! cargo build --release -p ledge-functions --example engine_floor
//! valgrind --tool=callgrind --callgrind-out-file=/tmp/a.out target/release/examples/engine_floor hello 1000
//! valgrind --tool=callgrind --callgrind-out-file=/tmp/b.out target/release/examples/engine_floor hello 5000
//! # instructions per invocation = (total(b) - total(a)) / 4000
//! ```
//!
//! Without valgrind it also prints the wall time per invocation.
//!
//! Cases:
//! - `empty`: enter the context and call `() => undefined`;
//! - `hello`: enter the context, call the harness's hello function with two
//!   empty objects for its arguments, against a `Response` that only keeps
//!   its arguments, and read the status, body and header out as Rust
//!   strings: the least any embedding of this engine can do for it.

use rquickjs::{Context, Function, Object, Runtime, Value};

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

const HELLO: &str = r#"
class Response {
  constructor(body, init) { this.body = body; this.init = init; }
}
(request, context) => new Response("hello from ledge\n", { headers: { "content-type": "text/plain" } })
"#;

fn main() {
    let mut args = std::env::args().skip(1);
    let which = args.next().unwrap_or_else(|| "hello".into());
    let n: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(1000);
    let source = match which.as_str() {
        "empty" => "() => undefined",
        "hello" => HELLO,
        other => {
            eprintln!("unknown case {other:?}: empty or hello");
            std::process::exit(2);
        }
    };
    let rt = Runtime::new().expect("runtime");
    let cx = Context::full(&rt).expect("context");
    let handler = cx.with(|ctx| {
        let f: Function = ctx.eval(source).expect("source evaluates to a function");
        rquickjs::Persistent::save(&ctx, f)
    });
    let mut bytes = 0usize;
    let start = std::time::Instant::now();
    for _ in 0..n {
        cx.with(|ctx| {
            let f = handler.clone().restore(&ctx).expect("handler");
            if which == "empty" {
                let v: Value = f.call(()).expect("call");
                bytes += usize::from(v.is_undefined());
                return;
            }
            let req = Object::new(ctx.clone()).expect("object");
            let context = Object::new(ctx.clone()).expect("object");
            let resp: Object = f.call((req, context)).expect("call");
            let body: String = resp.get("body").expect("body");
            let init: Object = resp.get("init").expect("init");
            let status: Option<u16> = init.get("status").expect("status");
            let headers: Object = init.get("headers").expect("headers");
            for entry in headers.props::<String, String>() {
                let (name, value) = entry.expect("header");
                bytes += name.len() + value.len();
            }
            bytes += body.len() + usize::from(status.unwrap_or(200));
        });
    }
    let per = start.elapsed().as_nanos() / u128::from(n.max(1));
    println!("{which}: {n} invocations, {per} ns each ({bytes} bytes read)");
}
