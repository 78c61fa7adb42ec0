//! Quick objects: the invocation's `Request` and `context`, and the usual
//! `new Response(text, { headers: { ... } })`, made in Rust.
//!
//! Most functions build their answer from a string (or nothing), at most a
//! numeric status and a headers record, and return it untouched. In the glue
//! such a `Response` costs several objects (its record, its header list and
//! pairs, a `WeakMap` entry) and reading them all back out when it is
//! returned. Made here, it is one object of a Rust class ([`Quick`])
//! holding the status, headers and text in Rust; returned untouched, Rust
//! takes them as they are ([`answer_quick`]).
//!
//! The invocation's `Request` is one too: Rust makes it with its method,
//! URL, headers and body ([`RequestParts`]), and a function that never
//! looks at it never pays for its record. So is its `context`, which holds
//! what its data is made of until a member is first read, and only then
//! makes it JSON ([`ContextSource`]).
//!
//! The glue's `Response` constructor calls [`response`] first. It reads
//! `init.status`, `init.statusText` and `init.headers` in the glue's order,
//! each once, and stops at the first thing it does not handle (a status out
//! of range or not a number, a `statusText`, headers that are not a record,
//! a body that is not text): it then hands the glue the object and what it
//! read so far (`[object, stage, a, b]`), and the glue goes on from there
//! with its own rules, so every error is the glue's.
//!
//! A quick object's fields move to the glue's record the first time
//! JavaScript looks at it (`takeQuick` in the glue, [`take`] here); from
//! then on it is like any other `Request` or `Response`.

use std::sync::Arc;

use rquickjs::class::{JsClass, Trace, Tracer};
use rquickjs::function::Opt;
use rquickjs::{Array, Class, Ctx, Function, JsLifetime, Object, Result, Value};

use crate::alloc::Budget;
use crate::isolate::Shared;
use crate::types::{HttpResponse, InvocationOutcome};

/// The `content-type` a text body brings when its headers have none (the
/// glue's `extractBody`).
const TEXT_TYPE: &str = "text/plain;charset=UTF-8";

/// What a quick response holds until the glue or the outcome takes it.
#[derive(Debug)]
pub(crate) struct ResponseParts {
    status: u16,
    /// Validated and lowercased, as the glue's `headerList` makes them.
    headers: Vec<(String, String)>,
    /// The body given as text; `None` for no body.
    text: Option<String>,
}

/// Bytes counted in an isolate's memory budget until dropped.
#[derive(Debug)]
struct Charge {
    budget: Arc<Budget>,
    bytes: usize,
}

impl Charge {
    /// Counts `bytes`, or `None` if they do not fit under the limit.
    fn new(budget: &Arc<Budget>, bytes: usize) -> Option<Charge> {
        budget.charge(bytes).then(|| Charge {
            budget: Arc::clone(budget),
            bytes,
        })
    }

    /// Counts `bytes` even past the limit (see [`Budget::charge_anyway`]).
    fn anyway(budget: &Arc<Budget>, bytes: usize) -> Charge {
        budget.charge_anyway(bytes);
        Charge {
            budget: Arc::clone(budget),
            bytes,
        }
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.budget.release(self.bytes);
    }
}

/// What a quick response's fields are counted as: their text, and the
/// strings' and pairs' own room.
fn response_bytes(headers: &[(String, String)], text: Option<&str>) -> usize {
    let pairs: usize = headers.iter().map(|(k, v)| k.len() + v.len() + 64).sum();
    pairs + text.map_or(0, str::len) + 64
}

/// What the invocation's request holds until the glue takes it, as
/// `request_parts` validated and normalised it.
#[derive(Debug)]
pub(crate) struct RequestParts {
    pub(crate) method: String,
    pub(crate) url: String,
    pub(crate) headers: RequestHeaders,
    /// `None` for GET and HEAD.
    pub(crate) body: Option<Vec<u8>>,
}

/// The headers of a quick request, as the glue takes them: joined
/// ([`crate::isolate::joined_headers`]), at once or when it takes them.
#[derive(Debug, PartialEq)]
pub(crate) enum RequestHeaders {
    /// As they came in a request the invocation owns: checked and joined
    /// only if the function looks at its request.
    Pairs(Vec<(String, String)>),
    /// Joined already (a borrowed request's: joining copies them once,
    /// where keeping them would copy each name and value).
    Joined(String),
}

impl RequestHeaders {
    fn bytes(&self) -> usize {
        match self {
            RequestHeaders::Pairs(p) => p.iter().map(|(k, v)| k.len() + v.len() + 2).sum(),
            RequestHeaders::Joined(s) => s.len(),
        }
    }

    pub(crate) fn joined(self) -> String {
        match self {
            RequestHeaders::Pairs(p) => crate::isolate::joined_headers(&p),
            RequestHeaders::Joined(s) => s,
        }
    }
}

/// The fields a quick object still holds.
#[derive(Debug, Default)]
enum Held {
    Response(ResponseParts),
    Request(RequestParts),
    /// The invocation's `context`: what its data is made of.
    Context(ContextSource),
    /// Taken by the glue or the outcome, or never there (a `Response` the
    /// glue finished making).
    #[default]
    Gone,
}

/// The Rust side of a quick `Request`, `Response` or `context`: its fields
/// while they are still here, and their bytes, counted in the isolate's
/// memory budget meanwhile (the engine's allocator does not see Rust's
/// strings, and a function may keep these objects in a global).
#[derive(Debug, Default)]
pub(crate) struct Quick {
    held: Held,
    charge: Option<Charge>,
}

impl Quick {
    pub(crate) fn request(parts: RequestParts, budget: &Arc<Budget>) -> Quick {
        let bytes = parts.method.len()
            + parts.url.len()
            + parts.headers.bytes()
            + parts.body.as_ref().map_or(0, Vec::len)
            + 128;
        Quick {
            held: Held::Request(parts),
            charge: Some(Charge::anyway(budget, bytes)),
        }
    }

    pub(crate) fn context(source: ContextSource, budget: &Arc<Budget>) -> Quick {
        // The request's own members (the deploy's are the isolate's, shared).
        let c = &source.request;
        let bytes = c.ip.len()
            + c.request_id.len()
            + c.params
                .iter()
                .map(|(k, v)| k.len() + v.len())
                .sum::<usize>()
            + 256;
        Quick {
            held: Held::Context(source),
            charge: Some(Charge::anyway(budget, bytes)),
        }
    }
}

/// What an invocation's `context` is made of until JavaScript first reads a
/// member: most functions never do, and never pay for its JSON.
#[derive(Debug)]
pub(crate) struct ContextSource {
    /// The deploy's members as JSON (`"account":…,"site":…`), made once
    /// per isolate while they stay the same.
    pub(crate) deploy: Arc<str>,
    /// The request's (its address, id, geo and params).
    pub(crate) request: Arc<crate::types::RequestContext>,
}

impl ContextSource {
    /// The context's data as the glue parses it (the env travels apart).
    fn json(&self) -> serde_json::Result<String> {
        let mut out = Vec::with_capacity(self.deploy.len() + 160);
        out.push(b'{');
        out.extend_from_slice(self.deploy.as_bytes());
        crate::isolate::request_context_members(&mut out, &self.request)?;
        out.push(b'}');
        // serde_json writes UTF-8, so this never copies.
        Ok(String::from_utf8(out)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()))
    }
}

impl<'js> Trace<'js> for Quick {
    // Only Rust data: nothing to mark.
    fn trace<'a>(&self, _tracer: Tracer<'a, 'js>) {}
}

// SAFETY: `Quick` holds no JS values, so it is the same type under any
// `'js`.
#[allow(unsafe_code)]
unsafe impl<'js> JsLifetime<'js> for Quick {
    type Changed<'to> = Quick;
}

impl<'js> JsClass<'js> for Quick {
    const NAME: &'static str = "Quick";
    type Mutable = rquickjs::class::Writable;

    // Instances get the prototype of what they are (the glue's
    // `Request.prototype`, `Response.prototype` or a subclass's); the class
    // has no constructor of its own.
    fn constructor(_ctx: &Ctx<'js>) -> Result<Option<rquickjs::Constructor<'js>>> {
        Ok(None)
    }
}

/// Where [`response`] stopped: the glue goes on from there.
#[derive(Clone, Copy)]
enum Stage {
    /// `init` is not an object (nor null or undefined): nothing was read.
    Init = 0,
    /// `a` is `init.status`, which needs the glue's checks.
    Status = 1,
    /// `a` is the status, `b` is `init.statusText` (not undefined).
    StatusText = 2,
    /// `a` is the status, `b` is `init.headers`, which is not a record.
    Headers = 3,
    /// `a` is the status, `b` is the header list (`[[name, value], ...]`):
    /// the body is not text (or not one this status may have).
    Body = 4,
}

/// `N.response(newTarget, body, init, hName, hValue, bodyType?)`: a quick
/// response (an object), or `[object, stage, a, b]` for the glue to
/// finish. `body_type` is the content type a text body brings
/// (`Response.json` gives its own).
pub(crate) fn response<'js>(
    ctx: Ctx<'js>,
    new_target: Value<'js>,
    body: Value<'js>,
    init: Value<'js>,
    checks: (Function<'js>, Function<'js>),
    body_type: Option<String>,
    budget: &Arc<Budget>,
) -> Result<Value<'js>> {
    let (check_name, check_value) = checks;
    let proto = prototype_of(&ctx, &new_target)?;
    let slow = |stage: Stage, a: Value<'js>, b: Value<'js>| -> Result<Value<'js>> {
        let object = Class::instance_proto(Quick::default(), proto.clone())?;
        let out = Array::new(ctx.clone())?;
        out.set(0, object)?;
        out.set(1, stage as i32)?;
        out.set(2, a)?;
        out.set(3, b)?;
        Ok(out.into_value())
    };
    let undefined = || Value::new_undefined(ctx.clone());
    // Only the body is left for the glue (stage 4): the list so far.
    let body_to_glue = |status: u16, headers: &[(String, String)]| -> Result<Value<'js>> {
        let list = pairs_array(&ctx, headers)?;
        slow(
            Stage::Body,
            Value::new_int(ctx.clone(), i32::from(status)),
            list.into_value(),
        )
    };
    let mut status = 200u16;
    let mut headers = Vec::new();
    if !(init.is_undefined() || init.is_null()) {
        let Some(init) = init.as_object() else {
            return slow(Stage::Init, undefined(), undefined());
        };
        let s: Value = init.get("status")?;
        if !s.is_undefined() {
            match s.as_number() {
                Some(n) if n.fract() == 0.0 && (200.0..=599.0).contains(&n) => status = n as u16,
                _ => return slow(Stage::Status, s, undefined()),
            }
        }
        let status_value = || Value::new_int(ctx.clone(), i32::from(status));
        let t: Value = init.get("statusText")?;
        if !t.is_undefined() {
            return slow(Stage::StatusText, status_value(), t);
        }
        let h: Value = init.get("headers")?;
        if !(h.is_undefined() || h.is_null()) {
            let record = crate::natives::record_headers(&h, &check_name, &check_value, |k, v| {
                headers.push((k.into_rust()?, v.into_rust()?));
                Ok(())
            })?;
            if !record {
                return slow(Stage::Headers, status_value(), h);
            }
        }
    }
    let text = if body.is_undefined() || body.is_null() {
        None
    } else {
        // Text with a lone surrogate is the glue's (it sends it well-formed).
        match body.as_string().map(rquickjs::String::to_string) {
            Some(Ok(text)) if !matches!(status, 204 | 205 | 304) => Some(text),
            _ => return body_to_glue(status, &headers),
        }
    };
    if text.is_some() && !headers.iter().any(|(name, _)| name == "content-type") {
        let kind = body_type.unwrap_or_else(|| TEXT_TYPE.to_string());
        headers.push(("content-type".to_string(), kind));
    }
    // Past the memory limit, the glue keeps the body (as the JS string it
    // already is) and the engine's own limit applies. (The list has its
    // content type already: the glue adds none.) A safety net: reading the
    // text out of the engine made a copy of it in the engine's heap first,
    // so that copy meets the limit before this charge does, unless only the
    // counted overhead of many headers is left to exceed it.
    let Some(charge) = Charge::new(budget, response_bytes(&headers, text.as_deref())) else {
        return body_to_glue(status, &headers);
    };
    let parts = ResponseParts {
        status,
        headers,
        text,
    };
    let quick = Quick {
        held: Held::Response(parts),
        charge: Some(charge),
    };
    let object = Class::instance_proto(quick, proto)?;
    Ok(object.into_value())
}

/// `new.target.prototype`, or `Object.prototype` if that is not an object
/// (what a class constructor does).
fn prototype_of<'js>(ctx: &Ctx<'js>, new_target: &Value<'js>) -> Result<Object<'js>> {
    if let Some(target) = new_target.as_object() {
        let proto: Value = target.get(rquickjs::atom::PredefinedAtom::Prototype)?;
        if let Some(proto) = proto.into_object() {
            return Ok(proto);
        }
    }
    let plain = Object::new(ctx.clone())?;
    match plain.get_prototype() {
        Some(proto) => Ok(proto),
        None => Ok(plain),
    }
}

fn pairs_array<'js>(ctx: &Ctx<'js>, headers: &[(String, String)]) -> Result<Array<'js>> {
    let list = Array::new(ctx.clone())?;
    for (i, (name, value)) in headers.iter().enumerate() {
        let pair = Array::new(ctx.clone())?;
        pair.set(0, name.as_str())?;
        pair.set(1, value.as_str())?;
        list.set(i, pair)?;
    }
    Ok(list)
}

/// The fields `value` still holds if it is a quick object (taken: they
/// are there at most once); with `only_response`, a request's stay.
fn take_held(value: &Value<'_>, want: Want) -> Held {
    let Ok(class) = Class::<Quick>::from_value(value) else {
        return Held::Gone;
    };
    let Ok(mut cell) = class.try_borrow_mut() else {
        return Held::Gone;
    };
    let fits = match &cell.held {
        Held::Response(_) => want != Want::Context,
        Held::Request(_) => want == Want::Message,
        Held::Context(_) => want == Want::Context,
        Held::Gone => false,
    };
    if !fits {
        return Held::Gone;
    }
    // What is taken leaves the budget with the object's claim on it.
    cell.charge = None;
    std::mem::take(&mut cell.held)
}

/// What a caller of [`take_held`] may take: a getter of one class called
/// on an object of another must leave it as it is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Want {
    /// A request's or a response's fields.
    Message,
    Response,
    Context,
}

/// `N.take(o)`: the fields of a quick request or response not taken yet
/// (they move to the glue): `[false, status, [[name, value], ...], text |
/// null]` for a response, `[true, method, url, "name\nvalue...",
/// Uint8Array | undefined]` for a request; undefined for anything else.
pub(crate) fn take<'js>(ctx: Ctx<'js>, value: Value<'js>) -> Result<Value<'js>> {
    if !value.is_object() {
        return Ok(Value::new_undefined(ctx));
    }
    let held = take_held(&value, Want::Message);
    if matches!(held, Held::Gone | Held::Context(_)) {
        return Ok(Value::new_undefined(ctx));
    }
    let out = Array::new(ctx.clone())?;
    match held {
        Held::Gone | Held::Context(_) => {}
        Held::Response(parts) => {
            out.set(0, false)?;
            out.set(1, i32::from(parts.status))?;
            out.set(2, pairs_array(&ctx, &parts.headers)?)?;
            match parts.text {
                Some(text) => out.set(3, text)?,
                None => out.set(3, Value::new_null(ctx.clone()))?,
            }
        }
        Held::Request(parts) => {
            out.set(0, true)?;
            out.set(1, parts.method)?;
            out.set(2, parts.url)?;
            out.set(3, parts.headers.joined())?;
            if let Some(body) = parts.body {
                out.set(4, rquickjs::TypedArray::<u8>::new(ctx.clone(), body)?)?;
            }
        }
    }
    Ok(out.into_value())
}

/// `N.answerQuick(o, cookies | null)`: settles the invocation with `o` if it
/// is a quick response JavaScript never looked at; false (nothing done)
/// otherwise.
pub(crate) fn answer_quick(
    shared: &Shared,
    value: &Value<'_>,
    cookies: Option<Vec<String>>,
) -> bool {
    let Held::Response(quick) = take_held(value, Want::Response) else {
        return false;
    };
    let cookies = cookies.unwrap_or_default();
    let outcome = outcome(
        quick.status,
        quick.headers,
        quick.text.map(String::into_bytes).unwrap_or_default(),
        None,
        &cookies,
    );
    shared.settle_with(outcome, cookies);
    true
}

/// The outcome of a `Response` answer: its headers, then one `set-cookie`
/// per cookie the function set through `context.cookies`.
pub(crate) fn outcome(
    status: u16,
    mut headers: Vec<(String, String)>,
    body: Vec<u8>,
    body_handle: Option<u32>,
    cookies: &[String],
) -> InvocationOutcome {
    headers.extend(
        cookies
            .iter()
            .map(|c| ("set-cookie".to_string(), c.clone())),
    );
    InvocationOutcome::Response(HttpResponse {
        status,
        headers,
        body,
        body_handle,
    })
}

/// Installs the quick objects' natives on the glue's `N`.
pub(crate) fn install<'js>(ctx: &Ctx<'js>, n: &Object<'js>, shared: Arc<Shared>) -> Result<()> {
    let budget = Arc::clone(shared.budget());
    n.set(
        "response",
        Function::new(
            ctx.clone(),
            move |ctx: Ctx<'js>,
                  new_target: Value<'js>,
                  body: Value<'js>,
                  init: Value<'js>,
                  check_name: Function<'js>,
                  check_value: Function<'js>,
                  body_type: Opt<String>| {
                response(
                    ctx,
                    new_target,
                    body,
                    init,
                    (check_name, check_value),
                    body_type.0,
                    &budget,
                )
            },
        )?,
    )?;
    n.set(
        "take",
        Function::new(ctx.clone(), |ctx: Ctx<'js>, value: Value<'js>| {
            take(ctx, value)
        })?,
    )?;
    // `takeContext(o)`: the JSON of a quick context not read yet, else
    // undefined.
    n.set(
        "takeContext",
        Function::new(ctx.clone(), |value: Value<'js>| {
            match take_held(&value, Want::Context) {
                Held::Context(source) => source.json().map(Some).map_err(|e| {
                    rquickjs::Error::new_from_js_message("context", "JSON", e.to_string())
                }),
                _ => Ok(None),
            }
        })?,
    )?;
    n.set(
        "answerQuick",
        Function::new(
            ctx.clone(),
            move |value: Value<'js>, cookies: Option<Vec<String>>| {
                answer_quick(&shared, &value, cookies)
            },
        )?,
    )?;
    Ok(())
}
