mod common;
use common::*;
use ledge_functions::*;

#[tokio::test]
async fn hello() {
    let e = engine();
    let inv = run(&e, "export default async () => new Response('hello')", &request("https://site.example/")).await;
    assert_eq!(body(&inv), "hello");
    assert_eq!(response(&inv).header("content-type"), Some("text/plain;charset=UTF-8"));
    assert!(inv.telemetry.cold_start);
    let inv = run(&e, "export default async () => new Response('hello')", &request("https://site.example/")).await;
    assert!(!inv.telemetry.cold_start);
    assert_eq!(e.idle_isolates(), 1);
}

#[tokio::test]
async fn eval_helper() {
    assert_eq!(eval("return 1 + 1").await, "2");
}
