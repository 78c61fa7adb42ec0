//! Native functions behind the Web globals: UTF-8, base64, URL parsing, form
//! encoding, randomness, digests and HMAC, console and host calls. The JS glue
//! (`js/runtime.js`) receives them as one object and never exposes it.

use std::sync::Arc;

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::{alphabet, Engine as _};
use ring::rand::SecureRandom;
use rquickjs::function::Opt;
use rquickjs::{Ctx, Function, Object, Result, TypedArray, Value};
use url::Url;

use crate::ecdsa;
use crate::isolate::{lock, HostOp, Shared};

/// Copies the bytes of a `Uint8Array` (or a view of one) out of the engine.
#[allow(unsafe_code)]
pub(crate) fn copy_bytes(array: &TypedArray<'_, u8>) -> Vec<u8> {
    // SAFETY: the slice aliases memory owned by the engine and is valid until
    // JavaScript runs again; it is copied at once and no JS runs meanwhile.
    unsafe { array.as_bytes() }
        .map(<[u8]>::to_vec)
        .unwrap_or_default()
}

/// A short description of a thrown value for error messages.
pub(crate) fn display_value(v: &Value<'_>) -> String {
    if let Some(s) = v.as_string() {
        return s.to_string().unwrap_or_default();
    }
    if let Some(o) = v.as_object() {
        let name: Option<String> = o.get("name").ok().flatten();
        let message: Option<String> = o.get("message").ok().flatten();
        if let Some(message) = message {
            return format!("{}: {message}", name.unwrap_or_else(|| "Error".into()));
        }
    }
    if let Some(n) = v.as_number() {
        return n.to_string();
    }
    format!("{:?}", v.type_of())
}

const URL_PARTS: usize = 11;

fn url_parts(u: &Url) -> Vec<String> {
    use url::quirks as q;
    let parts = vec![
        q::href(u).to_string(),
        q::origin(u),
        q::protocol(u).to_string(),
        q::username(u).to_string(),
        q::password(u).to_string(),
        q::host(u).to_string(),
        q::hostname(u).to_string(),
        q::port(u).to_string(),
        q::pathname(u).to_string(),
        q::search(u).to_string(),
        q::hash(u).to_string(),
    ];
    debug_assert_eq!(parts.len(), URL_PARTS);
    parts
}

pub(crate) fn url_parse(input: &str, base: Option<&str>) -> Option<Vec<String>> {
    let base = match base {
        Some(b) => Some(Url::parse(b).ok()?),
        None => None,
    };
    let u = Url::options().base_url(base.as_ref()).parse(input).ok()?;
    Some(url_parts(&u))
}

pub(crate) fn url_set(href: &str, prop: &str, value: &str) -> Option<Vec<String>> {
    use url::quirks as q;
    let mut u = Url::parse(href).ok()?;
    let ok = match prop {
        "href" => q::set_href(&mut u, value).is_ok(),
        "protocol" => q::set_protocol(&mut u, value).is_ok(),
        "username" => q::set_username(&mut u, value).is_ok(),
        "password" => q::set_password(&mut u, value).is_ok(),
        "host" => q::set_host(&mut u, value).is_ok(),
        "hostname" => q::set_hostname(&mut u, value).is_ok(),
        "port" => q::set_port(&mut u, value).is_ok(),
        "pathname" => {
            q::set_pathname(&mut u, value);
            true
        }
        "search" => {
            q::set_search(&mut u, value);
            true
        }
        "hash" => {
            q::set_hash(&mut u, value);
            true
        }
        _ => false,
    };
    ok.then(|| url_parts(&u))
}

pub(crate) fn btoa(input: &str) -> Option<String> {
    let bytes = input
        .chars()
        .map(|c| u8::try_from(u32::from(c)).ok())
        .collect::<Option<Vec<u8>>>()?;
    Some(STANDARD.encode(bytes))
}

const FORGIVING: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::RequireNone)
        .with_decode_allow_trailing_bits(true),
);

/// Forgiving-base64 decode (HTML spec), returning a binary string.
pub(crate) fn atob(input: &str) -> Option<String> {
    let mut s: String = input
        .chars()
        .filter(|c| !matches!(c, '\t' | '\n' | '\x0c' | '\r' | ' '))
        .collect();
    if s.len() % 4 == 0 {
        for _ in 0..2 {
            if s.ends_with('=') {
                s.pop();
            }
        }
    }
    if s.len() % 4 == 1
        || !s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
    {
        return None;
    }
    let bytes = FORGIVING.decode(s.as_bytes()).ok()?;
    Some(bytes.into_iter().map(char::from).collect())
}

pub(crate) fn utf8_decode(bytes: &[u8], fatal: bool, skip_bom: bool) -> Option<String> {
    let bytes = if skip_bom {
        bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes)
    } else {
        bytes
    };
    if fatal {
        std::str::from_utf8(bytes).ok().map(str::to_string)
    } else {
        Some(String::from_utf8_lossy(bytes).into_owned())
    }
}

pub(crate) fn random_uuid(rng: &dyn SecureRandom) -> String {
    let mut b = [0u8; 16];
    if rng.fill(&mut b).is_err() {
        // The system RNG failing is not recoverable in a meaningful way;
        // fall back to a time-derived value rather than panicking.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        b = t.to_le_bytes();
    }
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

fn digest_alg(name: &str) -> Option<&'static ring::digest::Algorithm> {
    Some(match name {
        "sha1" => &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
        "sha256" => &ring::digest::SHA256,
        "sha384" => &ring::digest::SHA384,
        "sha512" => &ring::digest::SHA512,
        _ => return None,
    })
}

fn hmac_alg(name: &str) -> Option<ring::hmac::Algorithm> {
    Some(match name {
        "sha1" => ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
        "sha256" => ring::hmac::HMAC_SHA256,
        "sha384" => ring::hmac::HMAC_SHA384,
        "sha512" => ring::hmac::HMAC_SHA512,
        _ => return None,
    })
}

fn type_error(ctx: &Ctx<'_>, message: &str) -> rquickjs::Error {
    rquickjs::Exception::throw_type(ctx, message)
}

/// A header name or value read from a record: checked in Rust (its text,
/// the JS string it came from, and whether that string already is the
/// text), or what the glue's check made of it.
pub(crate) enum Text<'js> {
    Rust {
        text: String,
        js: rquickjs::String<'js>,
        same: bool,
    },
    Glue(rquickjs::String<'js>),
}

impl<'js> Text<'js> {
    pub(crate) fn into_js(self, ctx: &Ctx<'js>) -> Result<rquickjs::String<'js>> {
        match self {
            Text::Rust { js, same: true, .. } | Text::Glue(js) => Ok(js),
            Text::Rust { text, .. } => rquickjs::String::from_str(ctx.clone(), &text),
        }
    }

    pub(crate) fn into_rust(self) -> Result<String> {
        match self {
            Text::Rust { text, .. } => Ok(text),
            Text::Glue(js) => js.to_string(),
        }
    }
}

/// Reads a headers record (`{ name: value, ... }`) the way the glue's
/// `headerList` does: each own enumerable string key and its value (coerced
/// to a string), in order, checked and normalised, with the glue's
/// `hName`/`hValue` for anything Rust does not take as it is (their
/// errors are the glue's). Each `(name, value)` goes to `push`.
/// False (nothing read) when `init` is not an object, or is iterable (a
/// `Headers`, an array of pairs, a `Map`): the glue reads those.
pub(crate) fn record_headers<'js>(
    init: &Value<'js>,
    check_name: &Function<'js>,
    check_value: &Function<'js>,
    mut push: impl FnMut(Text<'js>, Text<'js>) -> Result<()>,
) -> Result<bool> {
    let Some(obj) = init.as_object() else {
        return Ok(false);
    };
    let iterator: Value = obj.get(rquickjs::atom::PredefinedAtom::SymbolIterator)?;
    if iterator.is_function() {
        return Ok(false);
    }
    for prop in obj.props::<rquickjs::String<'js>, Value<'js>>() {
        let (key, value) = prop?;
        let name = match key.to_string() {
            Ok(name) if crate::isolate::is_token(&name) => {
                if name.bytes().any(|b| b.is_ascii_uppercase()) {
                    Text::Rust {
                        text: name.to_ascii_lowercase(),
                        js: key,
                        same: false,
                    }
                } else {
                    Text::Rust {
                        text: name,
                        js: key,
                        same: true,
                    }
                }
            }
            _ => Text::Glue(check_name.call((key,))?),
        };
        let js = match value.as_string() {
            Some(s) => s.clone(),
            None => value.get::<rquickjs::Coerced<rquickjs::String<'js>>>()?.0,
        };
        let value = match js.to_string() {
            Ok(raw) => {
                let trimmed = crate::isolate::trim_http_whitespace(&raw);
                if !crate::isolate::is_byte_string(trimmed) {
                    Text::Glue(check_value.call((js,))?)
                } else if trimmed.len() == raw.len() {
                    Text::Rust {
                        text: raw,
                        js,
                        same: true,
                    }
                } else {
                    Text::Rust {
                        text: trimmed.to_owned(),
                        js,
                        same: false,
                    }
                }
            }
            // Not well-formed UTF-16 (a lone surrogate): never a byte string.
            Err(_) => Text::Glue(check_value.call((js,))?),
        };
        push(name, value)?;
    }
    Ok(true)
}

/// `N.objectHeaders(init, hName, hValue)`: the `[[name, value], ...]` list
/// of a headers record ([`record_headers`]), or undefined if `init` is not
/// one.
fn object_headers<'js>(
    ctx: &Ctx<'js>,
    init: Value<'js>,
    check_name: Function<'js>,
    check_value: Function<'js>,
) -> Result<Option<rquickjs::Array<'js>>> {
    let list = rquickjs::Array::new(ctx.clone())?;
    let mut i = 0;
    let record = record_headers(&init, &check_name, &check_value, |name, value| {
        let pair = rquickjs::Array::new(ctx.clone())?;
        pair.set(0, name.into_js(ctx)?)?;
        pair.set(1, value.into_js(ctx)?)?;
        list.set(i, pair)?;
        i += 1;
        Ok(())
    })?;
    Ok(record.then_some(list))
}

/// Builds the object of native functions handed to the glue.
pub(crate) fn install<'js>(ctx: &Ctx<'js>, shared: Arc<Shared>) -> Result<Object<'js>> {
    let n = Object::new(ctx.clone())?;
    let rng = Arc::new(ring::rand::SystemRandom::new());
    n.set(
        "maxBodyBytes",
        crate::isolate::MAX_STREAMED_BODY_BYTES as f64,
    )?;

    n.set(
        "lazyGlue",
        Function::new(ctx.clone(), |ctx: Ctx<'js>, name: String| {
            crate::isolate::load_lazy_glue(&ctx, &name)
        })?,
    )?;
    n.set(
        "utf8Encode",
        // Undefined for a string that is not well-formed (a lone surrogate).
        Function::new(ctx.clone(), |ctx: Ctx<'js>, s: rquickjs::String<'js>| {
            s.to_string()
                .ok()
                .map(|s| TypedArray::<u8>::new(ctx, s.into_bytes()))
                .transpose()
        })?,
    )?;
    n.set(
        "utf8Decode",
        Function::new(
            ctx.clone(),
            |bytes: TypedArray<'js, u8>, fatal: bool, skip_bom: bool| {
                utf8_decode(&copy_bytes(&bytes), fatal, skip_bom)
            },
        )?,
    )?;
    n.set(
        "objectHeaders",
        Function::new(
            ctx.clone(),
            |ctx: Ctx<'js>,
             init: Value<'js>,
             check_name: Function<'js>,
             check_value: Function<'js>| {
                object_headers(&ctx, init, check_name, check_value)
            },
        )?,
    )?;
    n.set(
        "b64encode",
        Function::new(ctx.clone(), |s: String| btoa(&s))?,
    )?;
    n.set(
        "b64decode",
        Function::new(ctx.clone(), |s: String| atob(&s))?,
    )?;
    n.set(
        "urlParse",
        Function::new(ctx.clone(), |input: String, base: Opt<String>| {
            url_parse(&input, base.0.as_deref())
        })?,
    )?;
    n.set(
        "urlSet",
        Function::new(ctx.clone(), |href: String, prop: String, value: String| {
            url_set(&href, &prop, &value)
        })?,
    )?;
    n.set(
        "formParse",
        Function::new(ctx.clone(), |s: String| {
            url::form_urlencoded::parse(s.as_bytes())
                .flat_map(|(k, v)| [k.into_owned(), v.into_owned()])
                .collect::<Vec<String>>()
        })?,
    )?;
    n.set(
        "formSerialize",
        Function::new(ctx.clone(), |flat: Vec<String>| {
            let mut ser = url::form_urlencoded::Serializer::new(String::new());
            for pair in flat.chunks(2) {
                if let [k, v] = pair {
                    ser.append_pair(k, v);
                }
            }
            ser.finish()
        })?,
    )?;
    n.set(
        "multipartParse",
        Function::new(
            ctx.clone(),
            |ctx: Ctx<'js>, bytes: TypedArray<'js, u8>, content_type: String| {
                let Some(boundary) = crate::multipart::boundary(&content_type) else {
                    return Ok(None);
                };
                let Some(parts) = crate::multipart::parse(&copy_bytes(&bytes), &boundary) else {
                    return Ok(None);
                };
                // [name, filename | undefined, type | undefined, bytes, ...]
                let out = rquickjs::Array::new(ctx.clone())?;
                let mut i = 0;
                for p in parts {
                    out.set(i, p.name)?;
                    out.set(i + 1, p.filename)?;
                    out.set(i + 2, p.content_type)?;
                    out.set(i + 3, TypedArray::<u8>::new(ctx.clone(), p.body)?)?;
                    i += 4;
                }
                Ok::<_, rquickjs::Error>(Some(out))
            },
        )?,
    )?;
    {
        let rng = Arc::clone(&rng);
        n.set(
            "randomBytes",
            Function::new(ctx.clone(), move |ctx: Ctx<'js>, len: usize| {
                let mut buf = vec![0u8; len.min(65536)];
                rng.fill(&mut buf)
                    .map_err(|_| type_error(&ctx, "the system random source failed"))?;
                TypedArray::<u8>::new(ctx, buf)
            })?,
        )?;
    }
    {
        let rng = Arc::clone(&rng);
        n.set(
            "randomUUID",
            Function::new(ctx.clone(), move || random_uuid(rng.as_ref()))?,
        )?;
    }
    n.set(
        "digest",
        Function::new(
            ctx.clone(),
            |ctx: Ctx<'js>, alg: String, data: TypedArray<'js, u8>| {
                let alg = digest_alg(&alg).ok_or_else(|| type_error(&ctx, "unknown digest"))?;
                let d = ring::digest::digest(alg, &copy_bytes(&data));
                TypedArray::<u8>::new_copy(ctx, d.as_ref())
            },
        )?,
    )?;
    n.set(
        "hmacSign",
        Function::new(
            ctx.clone(),
            |ctx: Ctx<'js>, alg: String, key: TypedArray<'js, u8>, data: TypedArray<'js, u8>| {
                let alg = hmac_alg(&alg).ok_or_else(|| type_error(&ctx, "unknown hash"))?;
                let key = ring::hmac::Key::new(alg, &copy_bytes(&key));
                let tag = ring::hmac::sign(&key, &copy_bytes(&data));
                TypedArray::<u8>::new_copy(ctx, tag.as_ref())
            },
        )?,
    )?;
    n.set(
        "hmacVerify",
        Function::new(
            ctx.clone(),
            |ctx: Ctx<'js>,
             alg: String,
             key: TypedArray<'js, u8>,
             data: TypedArray<'js, u8>,
             sig: TypedArray<'js, u8>| {
                let alg = hmac_alg(&alg).ok_or_else(|| type_error(&ctx, "unknown hash"))?;
                let key = ring::hmac::Key::new(alg, &copy_bytes(&key));
                Ok::<bool, rquickjs::Error>(
                    ring::hmac::verify(&key, &copy_bytes(&data), &copy_bytes(&sig)).is_ok(),
                )
            },
        )?,
    )?;
    install_ecdsa(ctx, &n, &rng)?;
    {
        let shared = Arc::clone(&shared);
        n.set(
            "log",
            Function::new(ctx.clone(), move |level: String, message: String| {
                shared.log(&level, message);
            })?,
        )?;
    }
    {
        let shared = Arc::clone(&shared);
        // `settled(done, error JSON, cookies | null)`: the handler failed
        // (done 2: it threw or its promise rejected; 3: it returned
        // something that cannot be sent).
        n.set(
            "settled",
            Function::new(
                ctx.clone(),
                move |done: i32, error: String, cookies: Option<Vec<String>>| {
                    shared.set_outcome(Ok(crate::isolate::Settled {
                        done,
                        result: None,
                        error: Some(error),
                        cookies: cookies.unwrap_or_default(),
                    }));
                },
            )?,
        )?;
    }
    {
        let shared = Arc::clone(&shared);
        // `answer(status, [[name, value], ...], body, cookies | null, handle |
        // null)`: the handler answered with a Response. Its body is bytes,
        // text or null, or `handle` names a kept body handed back unread.
        // False (nothing taken) for text that is not well-formed, which the
        // glue makes so first.
        n.set(
            "answer",
            Function::new(
                ctx.clone(),
                move |status: f64,
                      list: rquickjs::Array<'js>,
                      body: Value<'js>,
                      cookies: Option<Vec<String>>,
                      handle: Option<f64>| {
                    let bytes = if let Some(text) = body.as_string() {
                        match text.to_string() {
                            Ok(text) => text.into_bytes(),
                            Err(_) => return false,
                        }
                    } else if let Ok(array) = TypedArray::<u8>::from_value(body) {
                        copy_bytes(&array)
                    } else {
                        Vec::new()
                    };
                    let cookies = cookies.unwrap_or_default();
                    match crate::isolate::read_answer(status, &list, bytes, handle, &cookies) {
                        Ok(outcome) => shared.settle_with(outcome, cookies),
                        Err(e) => shared.set_outcome(Err(format!("reading the outcome: {e}"))),
                    }
                    true
                },
            )?,
        )?;
    }
    crate::quick::install(ctx, &n, Arc::clone(&shared))?;
    {
        let shared = Arc::clone(&shared);
        // `passed(cookies | null)`: the handler passed the request on.
        n.set(
            "passed",
            Function::new(ctx.clone(), move |cookies: Option<Vec<String>>| {
                shared.settle_with(
                    crate::types::InvocationOutcome::PassThrough,
                    cookies.unwrap_or_default(),
                );
            })?,
        )?;
    }
    {
        let shared = Arc::clone(&shared);
        // `rewrote(href, cookies | null)`: the handler answered with a URL.
        n.set(
            "rewrote",
            Function::new(
                ctx.clone(),
                move |url: String, cookies: Option<Vec<String>>| {
                    shared.settle_with(
                        crate::types::InvocationOutcome::Rewrite { url },
                        cookies.unwrap_or_default(),
                    );
                },
            )?,
        )?;
    }
    // `fulfilled(p, otherwise)`: the value of `p` if it is a promise that
    // has already been fulfilled, else `otherwise` (an async handler that
    // returned without waiting settles without a job).
    n.set(
        "fulfilled",
        Function::new(
            ctx.clone(),
            |p: Value<'js>, otherwise: Value<'js>| -> Result<Value<'js>> {
                match p.as_promise() {
                    Some(p) if p.state() == rquickjs::promise::PromiseState::Resolved => {
                        p.result::<Value<'js>>().unwrap_or(Ok(otherwise))
                    }
                    _ => Ok(otherwise),
                }
            },
        )?,
    )?;
    {
        let shared = Arc::clone(&shared);
        n.set(
            "waits",
            Function::new(ctx.clone(), move |n: i32| {
                shared.waits.store(n, std::sync::atomic::Ordering::Relaxed);
            })?,
        )?;
    }
    {
        let shared = Arc::clone(&shared);
        n.set("now", Function::new(ctx.clone(), move || shared.now_ms())?)?;
    }
    {
        let shared = Arc::clone(&shared);
        n.set(
            "hostCall",
            Function::new(
                ctx.clone(),
                move |kind: String, id: f64, meta: String, body: TypedArray<'js, u8>| {
                    // Bodies leave the isolate's memory limit here: bound them.
                    if body.len() > shared.max_host_body_bytes {
                        return false;
                    }
                    let body = copy_bytes(&body);
                    lock(&shared.host_ops).push(HostOp {
                        kind,
                        id,
                        meta,
                        body,
                    });
                    true
                },
            )?,
        )?;
    }
    Ok(n)
}

fn curve<'js>(ctx: &Ctx<'js>, name: &str) -> Result<ecdsa::Curve> {
    ecdsa::Curve::from_name(name).ok_or_else(|| type_error(ctx, "unsupported curve"))
}

/// `[pkcs8, d, point]` of a private key.
fn key_parts<'js>(ctx: &Ctx<'js>, k: ecdsa::PrivateKey) -> Result<rquickjs::Array<'js>> {
    let out = rquickjs::Array::new(ctx.clone())?;
    out.set(0, TypedArray::<u8>::new(ctx.clone(), k.pkcs8)?)?;
    out.set(1, TypedArray::<u8>::new(ctx.clone(), k.d)?)?;
    out.set(2, TypedArray::<u8>::new(ctx.clone(), k.point)?)?;
    Ok(out)
}

/// ECDSA natives; `null` results are bad key material or an unsupported
/// curve/hash pair, which the glue turns into `DOMException`s.
fn install_ecdsa<'js>(
    ctx: &Ctx<'js>,
    n: &Object<'js>,
    rng: &Arc<ring::rand::SystemRandom>,
) -> Result<()> {
    {
        let rng = Arc::clone(rng);
        n.set(
            "ecGenerate",
            Function::new(ctx.clone(), move |ctx: Ctx<'js>, c: String| {
                let c = curve(&ctx, &c)?;
                match ecdsa::generate(c, rng.as_ref()) {
                    Some(k) => key_parts(&ctx, k).map(Some),
                    None => Ok(None),
                }
            })?,
        )?;
    }
    {
        let rng = Arc::clone(rng);
        n.set(
            "ecFromPkcs8",
            Function::new(
                ctx.clone(),
                move |ctx: Ctx<'js>, c: String, bytes: TypedArray<'js, u8>| {
                    let c = curve(&ctx, &c)?;
                    match ecdsa::from_pkcs8(c, &copy_bytes(&bytes), rng.as_ref()) {
                        Some(k) => key_parts(&ctx, k).map(Some),
                        None => Ok(None),
                    }
                },
            )?,
        )?;
    }
    {
        let rng = Arc::clone(rng);
        n.set(
            "ecFromParts",
            Function::new(
                ctx.clone(),
                move |ctx: Ctx<'js>,
                      c: String,
                      d: TypedArray<'js, u8>,
                      point: TypedArray<'js, u8>| {
                    let c = curve(&ctx, &c)?;
                    match ecdsa::from_parts(c, &copy_bytes(&d), &copy_bytes(&point), rng.as_ref()) {
                        Some(k) => key_parts(&ctx, k).map(Some),
                        None => Ok(None),
                    }
                },
            )?,
        )?;
    }
    n.set(
        "ecSpkiToPoint",
        Function::new(
            ctx.clone(),
            |ctx: Ctx<'js>, c: String, spki: TypedArray<'js, u8>| {
                let c = curve(&ctx, &c)?;
                match ecdsa::point_from_spki(c, &copy_bytes(&spki)) {
                    Some(p) => TypedArray::<u8>::new(ctx, p).map(Some),
                    None => Ok(None),
                }
            },
        )?,
    )?;
    n.set(
        "ecPointToSpki",
        Function::new(
            ctx.clone(),
            |ctx: Ctx<'js>, c: String, point: TypedArray<'js, u8>| {
                let c = curve(&ctx, &c)?;
                TypedArray::<u8>::new(ctx, ecdsa::spki_from_point(c, &copy_bytes(&point)))
            },
        )?,
    )?;
    {
        let rng = Arc::clone(rng);
        n.set(
            "ecSign",
            Function::new(
                ctx.clone(),
                move |ctx: Ctx<'js>,
                      c: String,
                      hash: String,
                      pkcs8: TypedArray<'js, u8>,
                      data: TypedArray<'js, u8>| {
                    let c = curve(&ctx, &c)?;
                    match ecdsa::sign(
                        c,
                        &hash,
                        &copy_bytes(&pkcs8),
                        &copy_bytes(&data),
                        rng.as_ref(),
                    ) {
                        Some(sig) => TypedArray::<u8>::new(ctx, sig).map(Some),
                        None => Ok(None),
                    }
                },
            )?,
        )?;
    }
    n.set(
        "ecVerify",
        Function::new(
            ctx.clone(),
            |ctx: Ctx<'js>,
             c: String,
             hash: String,
             point: TypedArray<'js, u8>,
             sig: TypedArray<'js, u8>,
             data: TypedArray<'js, u8>| {
                let c = curve(&ctx, &c)?;
                Ok::<_, rquickjs::Error>(ecdsa::verify(
                    c,
                    &hash,
                    &copy_bytes(&point),
                    &copy_bytes(&sig),
                    &copy_bytes(&data),
                ))
            },
        )?,
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_forgiving() {
        assert_eq!(btoa("hello").as_deref(), Some("aGVsbG8="));
        assert_eq!(btoa("\u{ff}").as_deref(), Some("/w=="));
        assert_eq!(btoa("\u{100}"), None);
        assert_eq!(atob("aGVsbG8=").as_deref(), Some("hello"));
        assert_eq!(atob(" aGVs bG8 ").as_deref(), Some("hello"));
        assert_eq!(atob("aGVsbG8").as_deref(), Some("hello"));
        assert_eq!(atob("YQ").as_deref(), Some("a"));
        assert_eq!(
            atob("YR==").as_deref(),
            Some("a"),
            "trailing bits are discarded"
        );
        assert_eq!(atob("a"), None);
        assert_eq!(atob("aGVsbG8=="), None);
        assert_eq!(atob("aGV=bG8="), None);
        assert_eq!(atob("a-b_"), None);
        assert_eq!(atob("").as_deref(), Some(""));
    }

    #[test]
    fn uuid_shape() {
        let rng = ring::rand::SystemRandom::new();
        let u = random_uuid(&rng);
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
        assert!(matches!(&u[19..20], "8" | "9" | "a" | "b"));
        assert_ne!(u, random_uuid(&rng));
    }

    #[test]
    fn utf8() {
        assert_eq!(
            utf8_decode(b"\xEF\xBB\xBFa", false, true).as_deref(),
            Some("a")
        );
        assert_eq!(
            utf8_decode(b"\xEF\xBB\xBFa", false, false).as_deref(),
            Some("\u{feff}a")
        );
        assert_eq!(
            utf8_decode(b"a\xffb", false, true).as_deref(),
            Some("a\u{fffd}b")
        );
        assert_eq!(utf8_decode(b"a\xffb", true, true), None);
    }
}
