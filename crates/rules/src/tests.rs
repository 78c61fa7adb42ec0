//! Unit tests for parsing, diagnostics, limits and evaluation.

use crate::*;

fn compile(redirects: &str, toml: Option<&str>) -> (RuleSet, Vec<Diagnostic>) {
    RuleSet::compile(&Sources {
        redirects: Some(redirects),
        headers: None,
        netlify_toml: toml,
    })
}

fn eval(rs: &RuleSet, path: &str, query: &str) -> Outcome {
    let site = SiteSettings::default();
    rs.evaluate(
        &RuleRequest::new("https", "example.com", path, query, &site),
        &NoFiles,
    )
}

fn redirect(rule: usize, status: u16, location: &str) -> Outcome {
    Outcome::Redirect {
        rule,
        status,
        location: location.to_owned(),
    }
}

#[test]
fn redirects_diagnostics_carry_line_numbers() {
    let (rs, d) = compile(
        "# comment\n/ok /fine\n/e\n/f /g abc\n/h rel.html\n/.netlify/x /y\n/i /j 302 Foo=bar\n/k /l 302 Country\n",
        None,
    );
    assert_eq!(rs.rules().len(), 3);
    let got: Vec<(Option<u32>, Severity)> = d.iter().map(|d| (d.line, d.severity)).collect();
    assert_eq!(
        got,
        vec![
            (Some(3), Severity::Error),
            (Some(4), Severity::Error),
            (Some(5), Severity::Error),
            (Some(6), Severity::Error),
            (Some(8), Severity::Warning),
            (Some(7), Severity::Warning),
        ]
    );
    assert!(d[0].message.contains("Missing destination"));
    assert!(d[1].message.contains("Invalid status code"));
    assert!(d[4].message.contains("Country"));
    assert!(d[5].message.contains("unknown condition `Foo`"));
    assert_eq!(rs.dead_reason(1).map(|r| r.contains("Foo")), Some(true));
    assert_eq!(eval(&rs, "/i", ""), Outcome::NoMatch);
    assert!(d.iter().all(|d| d.file == SourceFile::Redirects));
    assert!(d[0].to_string().starts_with("_redirects:3: error:"));
}

#[test]
fn toml_rules_come_after_redirects_and_warn_on_unsupported_keys() {
    let toml = r#"
[build]
publish = "dist"

[[redirects]]
from = "/a"
to = "/from-toml"
status = 302

[[redirects]]
from = "/b"
to = "/b2"
bogus = 1
[redirects.rate_limit]
window_limit = 2

[[redirects]]
from = "/c"
to = "/c2"
force = "yes"

[[redirects]]
from = "/d"
to = "/d2"
headers = "nope"
"#;
    let (rs, d) = compile("/a /from-file 302\n", Some(toml));
    assert_eq!(eval(&rs, "/a", ""), redirect(0, 302, "/from-file"));
    assert_eq!(eval(&rs, "/b", ""), redirect(2, 301, "/b2"));
    assert_eq!(eval(&rs, "/c", ""), Outcome::NoMatch);
    let msgs: Vec<String> = d.iter().map(ToString::to_string).collect();
    assert!(
        msgs.iter()
            .any(|m| m.contains("unknown key `bogus`") && m.contains("netlify.toml:10:")),
        "{msgs:?}"
    );
    assert!(msgs
        .iter()
        .any(|m| m.contains("rate_limit") && m.contains("not supported by Ledge yet")));
    assert!(msgs
        .iter()
        .any(|m| m.contains("\"force\" must be true or false") && m.contains(":17:")));
    assert!(msgs
        .iter()
        .any(|m| m.contains("\"headers\" field must be an object")));
    assert_eq!(publish_dir(toml), Ok(Some("dist".to_owned())));
    assert_eq!(publish_dir(""), Ok(None));
    let bad = publish_dir("[build\npublish = 1").expect_err("syntax error");
    assert_eq!(bad.line, Some(1));
}

#[test]
fn forward_rules_queries_and_substitution() {
    let (rs, d) = compile(
        "/old/* 200!\n/store id=:id /blog/:id 301\n/p/:a /q/:ab\n/x/:id /y?id=:id 302\n/h /h2#f 302\n",
        None,
    );
    assert!(d.is_empty(), "{d:?}");
    assert_eq!(
        eval(&rs, "/old/a/b", "z=1"),
        Outcome::Rewrite {
            rule: 0,
            status: 200,
            force: true,
            path: "/old/a/b".into(),
            query: Some("z=1".into())
        }
    );
    assert_eq!(
        eval(&rs, "/store", "id=a%20b"),
        redirect(1, 301, "/blog/a+b?id=a%20b")
    );
    assert_eq!(eval(&rs, "/store", ""), Outcome::NoMatch);
    assert_eq!(eval(&rs, "/p/1", ""), redirect(2, 301, "/q/1b"));
    assert_eq!(eval(&rs, "/x/42", "k=v"), redirect(3, 302, "/y?id=42"));
    assert_eq!(eval(&rs, "/h", "x=1"), redirect(4, 302, "/h2?x=1#f"));
}

#[test]
fn shadowing_ends_the_search_and_force_overrides() {
    let (rs, _) = compile("/a /b 301\n/a /c 301!\n/f /g 301!\n", None);
    let site = SiteSettings::default();
    let files = |p: &str| p == "/a" || p == "/f";
    let req = RuleRequest::new("https", "example.com", "/a", "", &site);
    assert_eq!(rs.evaluate(&req, &files), Outcome::Static { rule: 0 });
    let ex = rs.explain(&req, &files).to_string();
    assert!(ex.contains("shadowed"), "{ex}");
    let req = RuleRequest::new("https", "example.com", "/f", "", &site);
    assert_eq!(rs.evaluate(&req, &files), redirect(2, 301, "/g"));
}

#[test]
fn host_rules_and_proxies() {
    let toml = r#"
[[redirects]]
from = "/api/*"
to = "https://up.example/v1/:splat"
status = 200
signed = "SIG"
[redirects.headers]
X-From = "Ledge"
"#;
    let (rs, _) = compile(
        "https://a.example/* https://b.example/:splat 301!\n",
        Some(toml),
    );
    let mut site = SiteSettings::default();
    let r = RuleRequest::new("https", "A.example:443", "/x/y", "q=1", &site);
    assert_eq!(
        rs.evaluate(&r, &NoFiles),
        redirect(0, 301, "https://b.example/x/y?q=1")
    );
    let r = RuleRequest::new("http", "a.example", "/x/y", "", &site);
    assert_eq!(rs.evaluate(&r, &NoFiles), Outcome::NoMatch);
    let r = RuleRequest::new("https", "example.com", "/api/users", "", &site);
    match rs.evaluate(&r, &NoFiles) {
        Outcome::Proxy {
            url,
            headers,
            signing,
            ..
        } => {
            assert_eq!(url, "https://up.example/v1/users");
            assert_eq!(headers, vec![("X-From".to_owned(), "Ledge".to_owned())]);
            assert_eq!(signing, Some(Signing::MissingSecret { env: "SIG".into() }));
        }
        o => panic!("{o:?}"),
    }
    site.signing_secrets.push(("SIG".into(), "k".into()));
    site.site_id = "site-1".into();
    let mut r = RuleRequest::new("https", "example.com", "/api/users", "", &site);
    r.now_unix = 1_000;
    match rs.evaluate(&r, &NoFiles) {
        Outcome::Proxy {
            headers, signing, ..
        } => {
            assert_eq!(signing, Some(Signing::Signed));
            let (_, tok) = headers
                .iter()
                .find(|(k, _)| k == "X-Nf-Sign")
                .expect("signed");
            let p = jwt::verify(tok, b"k", 1_000).expect("verifies");
            assert_eq!(p["netlify_id"], "site-1");
            assert_eq!(p["iss"], "netlify");
        }
        o => panic!("{o:?}"),
    }
}

#[test]
fn role_gate() {
    let (rs, _) = compile(
        "/admin/* 200! Role=admin\n/admin/* /login 302\n/only/* 200! Role=admin\n",
        None,
    );
    let site = SiteSettings {
        jwt_secret: Some("s".into()),
        ..SiteSettings::default()
    };
    let payload =
        serde_json::json!({"exp": 2_000, "app_metadata": {"authorization": {"roles": ["admin"]}}});
    let tok = {
        use base64::Engine as _;
        let e = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let h = e.encode(br#"{"alg":"HS256"}"#);
        let p = e.encode(payload.to_string());
        use hmac::Mac;
        let mut m = hmac::Hmac::<sha2::Sha256>::new_from_slice(b"s").expect("key");
        m.update(format!("{h}.{p}").as_bytes());
        format!("{h}.{p}.{}", e.encode(m.finalize().into_bytes()))
    };
    let cookie = format!("nf_jwt={tok}");
    let files = |p: &str| p == "/admin/x";
    let mut r = RuleRequest::new("https", "example.com", "/admin/x", "", &site);
    r.now_unix = 1_000;
    // No token: the gate applies, so the file does not shadow the fallback.
    assert_eq!(rs.evaluate(&r, &files), redirect(1, 302, "/login"));
    r.cookie = Some(&cookie);
    assert!(matches!(
        rs.evaluate(&r, &files),
        Outcome::Rewrite { rule: 0, .. }
    ));
    r.now_unix = 3_000; // expired
    assert_eq!(rs.evaluate(&r, &files), redirect(1, 302, "/login"));
    let mut r = RuleRequest::new("https", "example.com", "/only/x", "", &site);
    assert_eq!(rs.evaluate(&r, &NoFiles), Outcome::Force404);
    r.cookie = Some("nf_jwt=garbage");
    assert_eq!(rs.evaluate(&r, &NoFiles), Outcome::Force404);
    let mut r = RuleRequest::new("https", "example.com", "/admin/y", "", &site);
    r.cookie = Some("nf_jwt=garbage");
    assert_eq!(rs.evaluate(&r, &NoFiles), Outcome::BadJwt);
}

#[test]
fn headers_merge_and_edge_functions() {
    let toml = r#"
[[headers]]
for = "/*"
[headers.values]
x-frame-options = "SAMEORIGIN"
Link = ["<a>; rel=preload", "<b>"]

[[edge_functions]]
function = "auth"
path = "/admin/*"
excludedPath = "/admin/*.css"
cache = "manual"

[[edge_functions]]
path = "/x"
"#;
    let (rs, d) = RuleSet::compile(&Sources {
        redirects: None,
        headers: Some("/*\n  X-Frame-Options: DENY\n  Server: x\n  Basic-Auth: u:p\n/assets/*\n  Cache-Control: max-age=1\n"),
        netlify_toml: Some(toml),
    });
    let h = rs.headers_for("/assets/a.js");
    assert_eq!(
        h,
        vec![
            ("x-frame-options", "SAMEORIGIN"),
            ("Cache-Control", "max-age=1"),
            ("Link", "<a>; rel=preload, <b>")
        ]
    );
    assert_eq!(rs.basic_auth_for("/"), Some("u:p"));
    assert!(d
        .iter()
        .any(|d| d.message.contains("`Server` is controlled by the platform")));
    assert_eq!(rs.edge_functions().len(), 1);
    let ef = &rs.edge_functions()[0];
    assert_eq!(ef.function, "auth");
    assert!(ef.cache_manual);
    assert_eq!(ef.excluded_path, vec!["/admin/*.css".to_owned()]);
    assert!(d.iter().any(|d| d.message.contains("missing `function`")));
}

#[test]
fn hostile_inputs_are_bounded() {
    let long = format!("/a /{}\n/b /c\n", "x".repeat(MAX_LINE_BYTES + 1));
    let (rs, d) = compile(&long, None);
    assert_eq!(rs.rules().len(), 1);
    assert_eq!(d[0].line, Some(1));
    let big = "x".repeat(MAX_FILE_BYTES + 1);
    let (rs, d) = compile(&big, None);
    assert_eq!(rs.rules().len(), 0);
    assert_eq!(d.len(), 1);
    // Substitution blow-up: a target repeating :splat many times.
    let to: String = "/:splat".repeat(2_000);
    let (rs, _) = compile(&format!("/s/* {to} 301\n"), None);
    let path = format!("/s/{}", "y".repeat(4_000));
    assert_eq!(eval(&rs, &path, ""), Outcome::NoMatch);
    // Over-long request paths skip evaluation.
    let (rs, _) = compile("/* /x 301\n", None);
    assert_eq!(
        eval(&rs, &format!("/{}", "a".repeat(MAX_PATH_BYTES)), ""),
        Outcome::NoMatch
    );
    // Garbage never panics.
    for junk in [
        "\u{0}\u{feff}/a\t/b",
        "/:",
        "/*/*",
        "/a* /b",
        "https:// /x",
        "/% /%%",
        "/a /b 0x12d!",
    ] {
        let (rs, _) = compile(junk, Some(junk));
        let _ = eval(&rs, "/a", "%%&=&&");
        let _ = eval(&rs, "/%E0%A4", "");
    }
}

#[test]
fn indexing_preserves_first_match_order() {
    let mut text = String::new();
    for i in 0..500 {
        text.push_str(&format!("/p{i} /t{i}\n"));
    }
    text.push_str("/* /catch 302\n/p7 /late\n/:x /param\n");
    let (rs, _) = compile(&format!("/p3 /first\n{text}"), None);
    assert_eq!(eval(&rs, "/p3", ""), redirect(0, 301, "/first"));
    assert_eq!(eval(&rs, "/p7/", ""), redirect(8, 301, "/t7"));
    assert_eq!(eval(&rs, "/zzz", ""), redirect(501, 302, "/catch"));
}

/// Absolute targets substitute into their path alone (the origin is parsed
/// once), unless a captured name also occurs in the authority.
#[test]
fn absolute_targets_substitute_where_they_should() {
    let (rs, _) = compile(
        "/api/*  http://Origin.Example:8080/v1/:splat?from=:splat  200\n\
         /r/:id  https://example.net:443/items/:id#top  301\n\
         /:sub/*  https://:sub.example.com/:splat  301\n",
        None,
    );
    match eval(&rs, "/api/a/b", "") {
        Outcome::Proxy { url, .. } => {
            assert_eq!(url, "http://origin.example:8080/v1/a/b?from=a/b")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        eval(&rs, "/r/42", ""),
        redirect(1, 301, "https://example.net/items/42#top")
    );
    assert_eq!(
        eval(&rs, "/shop/x", ""),
        redirect(2, 301, "https://shop.example.com/x")
    );
}

#[test]
fn client_details_matter_only_to_rule_sets_that_read_them() {
    let plain = "/a/:x /b/:x 301\n/q id=:id /r/:id 302\n/p/* https://o.example/:splat 200\n/s/* /t/:splat\n/static/* /dyn 200\n";
    let (rs, _) = compile(plain, None);
    assert!(!rs.reads_client_details());
    let site = SiteSettings::default();
    let files = |p: &str| p == "/static/x";
    let cases = [
        ("/a/1", ""),
        ("/q", "id=7"),
        ("/p/deep/path", "k=v"),
        ("/s/x/", ""),
        ("/static/x", ""),
        ("/nothing", ""),
    ];
    for (path, query) in cases {
        let bare = RuleRequest::new("https", "example.com", path, query, &site);
        let mut full = RuleRequest::new("https", "example.com", path, query, &site);
        full.cookie = Some("nf_country=DE; nf_lang=fr; nf_jwt=garbage");
        full.accept_language = Some("de-DE,de;q=0.9");
        full.country = Some("US");
        full.now_unix = 1_900_000_000;
        assert_eq!(
            rs.evaluate(&bare, &files),
            rs.evaluate(&full, &files),
            "{path}?{query}"
        );
    }
    for conditional in [
        "/a /b 302 Country=de\n",
        "/a /b 302 Language=fr\n",
        "/a /b 302 Cookie=c\n",
        "/a /b 200! Role=admin\n",
    ] {
        let (rs, _) = compile(conditional, None);
        assert!(rs.reads_client_details(), "{conditional}");
    }
    let (rs, _) = compile(
        "",
        Some("[[redirects]]\nfrom = \"/p/*\"\nto = \"https://o.example/:splat\"\nstatus = 200\nsigned = \"KEY\"\n"),
    );
    assert!(rs.reads_client_details());
}

#[test]
fn splat_only_targets_substitute_like_the_general_path() {
    // Each of these ends in its only `:splat` (the direct path); the last
    // two do not and take the general one.
    const RULES: &str = "/a/* /b/::splat 301
/h/* https://h.example:splat 301
/p/* http://Up.Example:8080/x/:splat 200
/q/* /q2/:splat?k=v 301
/m/* /m2/:splat/:splat 301
";
    let (rs, _) = compile(RULES, None);
    assert!(rs.rules().len() == 5);
    assert_eq!(eval(&rs, "/a/x/y", ""), redirect(0, 301, "/b/:x/y"));
    assert_eq!(
        eval(&rs, "/h/z", ""),
        redirect(1, 301, "https://h.examplez/")
    );
    match eval(&rs, "/p/deep/er/", "k=1") {
        Outcome::Proxy { url, .. } => assert_eq!(url, "http://up.example:8080/x/deep/er/?k=1"),
        o => panic!("{o:?}"),
    }
    // A splat that carries `?` or `#` (encoded in the request) splits the
    // target as the general path does.
    assert_eq!(eval(&rs, "/a/x%3Fy", ""), redirect(0, 301, "/b/:x?y"));
    assert_eq!(eval(&rs, "/q/w", ""), redirect(3, 301, "/q2/w?k=v"));
    assert_eq!(eval(&rs, "/m/w", ""), redirect(4, 301, "/m2/w/w"));
    // Too long after substitution: the rule is skipped.
    let long = format!("/a/{}", "x".repeat(crate::MAX_TARGET_BYTES));
    assert_eq!(eval(&rs, &long, ""), Outcome::NoMatch);
    // The general path answers every case the same.
    let (general, direct) = compile(RULES, None).0.without_splat_shortcut();
    assert_eq!(direct, 3);
    for (path, query) in [
        ("/a/x/y", ""),
        ("/h/z", ""),
        ("/p/deep/er/", "k=1"),
        ("/a/x%3Fy", ""),
        ("/a/x%23y", "q=1"),
        ("/q/w", ""),
        ("/m/w", ""),
        (long.as_str(), ""),
    ] {
        assert_eq!(
            eval(&rs, path, query),
            eval(&general, path, query),
            "{path}?{query}"
        );
    }
}
