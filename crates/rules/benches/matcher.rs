//! Matcher cost against rule count: 10, 1,000 and 100,000 rules, for a
//! request hitting the last rule and for a miss, plus a pathological header
//! pattern.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion};
use ledge_rules::{NoFiles, RuleRequest, RuleSet, SiteSettings, Sources};

/// A realistic mix: literal paths, placeholder rules and splat rules, each
/// under its own first segment, plus a few catch-alls that every request
/// must still be checked against.
fn rules(n: usize) -> String {
    let mut s = String::with_capacity(n * 40);
    s.push_str("/:lang/legacy/* /:lang/new/:splat 301\n");
    for i in 0..n.saturating_sub(2) {
        match i % 3 {
            0 => s.push_str(&format!("/old-{i} /new-{i} 301\n")),
            1 => s.push_str(&format!("/blog-{i}/:slug /posts-{i}/:slug 302\n")),
            _ => s.push_str(&format!("/docs-{i}/* /manual-{i}/:splat 200\n")),
        }
    }
    s.push_str(&format!("/last-{n}/:id /target/:id 301\n"));
    s
}

fn bench(c: &mut Criterion) {
    let site = SiteSettings::default();
    let mut g = c.benchmark_group("evaluate");
    for n in [10usize, 1_000, 100_000] {
        let text = rules(n);
        let (set, diags) = RuleSet::compile(&Sources {
            redirects: Some(&text),
            ..Sources::default()
        });
        assert!(diags.is_empty(), "{diags:?}");
        let hit_path = format!("/last-{n}/42");
        g.bench_with_input(BenchmarkId::new("hit_last_rule", n), &n, |b, _| {
            let req = RuleRequest::new("https", "example.com", &hit_path, "a=1", &site);
            b.iter(|| black_box(set.evaluate(black_box(&req), &NoFiles)));
        });
        g.bench_with_input(BenchmarkId::new("miss", n), &n, |b, _| {
            let req = RuleRequest::new("https", "example.com", "/nothing/here", "", &site);
            b.iter(|| black_box(set.evaluate(black_box(&req), &NoFiles)));
        });
    }
    g.finish();

    let mut c2 = c.benchmark_group("compile");
    c2.sample_size(10);
    for n in [1_000usize, 100_000] {
        let text = rules(n);
        c2.bench_with_input(BenchmarkId::new("redirects", n), &text, |b, t| {
            b.iter(|| {
                RuleSet::compile(&Sources {
                    redirects: Some(t),
                    ..Sources::default()
                })
            });
        });
    }
    c2.finish();

    // Pathological `_headers` pattern: many wildcards against a long path
    // that almost matches (a backtracking regex would explode here).
    let pat = format!("/{}\n  X-A: 1\n", "*a".repeat(100));
    let (set, _) = RuleSet::compile(&Sources {
        headers: Some(&pat),
        ..Sources::default()
    });
    let path = format!("/{}b", "a".repeat(4000));
    c.bench_function("headers_pathological_4k", |b| {
        b.iter(|| black_box(set.headers_for(black_box(&path))));
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
