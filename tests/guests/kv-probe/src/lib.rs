//! A WASIp2 guest with one route per key-value and config call Shoal's
//! tests exercise, on `wasi:keyvalue@0.2.0-draft2` and
//! `wasi:config@0.2.0-draft-2024-09-27`. Keys in paths are
//! percent-decoded; errors answer `variant: message` (403 for
//! access-denied, 400 for the rest).

mod bindings {
    wit_bindgen::generate!({ path: "wit", world: "imports", generate_all });
}

mod http;

use bindings::wasi::config::store as config;
use bindings::wasi::keyvalue::{atomics, batch, store};
use wasip2::exports::http::incoming_handler::Guest;
use wasip2::http::types::{IncomingRequest, Method, ResponseOutparam};

use http::{Reply, body_lines, decode, json_string, param, read_body};

struct KvProbe;

impl Guest for KvProbe {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let target = request.path_with_query().unwrap_or_default();
        let (path, query) = target.split_once('?').unwrap_or((&target, ""));
        let segments: Vec<String> = path
            .trim_start_matches('/')
            .split('/')
            .map(decode)
            .collect();
        let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
        let method = request.method();
        let reply = match route(&method, &segments, query, request) {
            Ok(reply) => reply,
            Err(error) => failed(&error),
        };
        reply.send(out);
    }
}

fn route(
    method: &Method,
    segments: &[&str],
    query: &str,
    request: IncomingRequest,
) -> Result<Reply, store::Error> {
    match (method, segments) {
        (Method::Put, ["kv", name, key]) => {
            open(name)?.set(key, &read_body(request))?;
            Ok(Reply::text(200, "stored\n"))
        }
        (Method::Get, ["kv", name, key]) => Ok(match open(name)?.get(key)? {
            Some(value) => Reply::bytes(200, value),
            None => Reply::text(404, "absent\n"),
        }),
        (Method::Delete, ["kv", name, key]) => {
            open(name)?.delete(key)?;
            Ok(Reply::text(200, "deleted\n"))
        }
        (Method::Get, ["exists", name, key]) => {
            Ok(Reply::text(200, &open(name)?.exists(key)?.to_string()))
        }
        (Method::Get, ["keys", name]) => keys(name, param(query, "cursor")),
        (Method::Post, ["incr", name, key]) => {
            let by = param(query, "by").and_then(|b| b.parse().ok()).unwrap_or(1);
            let value = atomics::increment(&open(name)?, key, by)?;
            Ok(Reply::text(200, &value.to_string()))
        }
        (Method::Post, ["cas", name, key]) => {
            cas_append(name, key, &param(query, "append").unwrap_or_default())
        }
        (Method::Post, ["cas-conflict", name, key]) => cas_conflict(name, key),
        (Method::Post, ["many", name]) => set_many(name, &read_body(request)),
        (Method::Post, ["get-many", name]) => get_many(name, &read_body(request)),
        (Method::Post, ["delete-many", name]) => {
            let keys = body_lines(&read_body(request));
            batch::delete_many(&open(name)?, &keys)?;
            Ok(Reply::text(200, &format!("deleted {}\n", keys.len())))
        }
        (Method::Post, ["fill", name]) => fill(name, query),
        (Method::Get, ["open-many"]) => Ok(open_many(query)),
        (Method::Get, ["config", key]) => Ok(config_get(key)),
        (Method::Get, ["config-all"]) => Ok(config_all()),
        (Method::Get, ["bench", "counter"]) => {
            let bucket = open("default")?;
            let _ = bucket.get("counter")?;
            let value = atomics::increment(&bucket, "counter", 1)?;
            Ok(Reply::text(200, &value.to_string()))
        }
        (Method::Get, ["bench", "read"]) => {
            let value = open("default")?.get("read")?;
            Ok(Reply::text(200, &value.map_or(0, |v| v.len()).to_string()))
        }
        _ => Ok(Reply::text(404, "no such kv-probe route\n")),
    }
}

fn open(name: &str) -> Result<store::Bucket, store::Error> {
    store::open(name)
}

/// `variant: message`, as the tests read it.
fn describe(error: &store::Error) -> String {
    match error {
        store::Error::NoSuchStore => "no-such-store".into(),
        store::Error::AccessDenied => "access-denied".into(),
        store::Error::Other(message) => format!("other: {message}"),
    }
}

fn failed(error: &store::Error) -> Reply {
    let status = match error {
        store::Error::AccessDenied => 403,
        store::Error::NoSuchStore => 404,
        store::Error::Other(_) => 400,
    };
    Reply::text(status, &format!("{}\n", describe(error)))
}

/// One page of keys as JSON: `{"keys":[...],"cursor":"..."|null}`.
fn keys(name: &str, cursor: Option<String>) -> Result<Reply, store::Error> {
    let page = open(name)?.list_keys(cursor.filter(|c| !c.is_empty()).as_deref())?;
    let keys: Vec<String> = page.keys.iter().map(|k| json_string(k)).collect();
    let cursor = page.cursor.map_or("null".to_string(), |c| json_string(&c));
    Ok(Reply::text(
        200,
        &format!("{{\"keys\":[{}],\"cursor\":{cursor}}}", keys.join(",")),
    ))
}

/// Appends `item` to the comma-separated list at `key` with a
/// compare-and-swap loop; answers how many attempts it took.
fn cas_append(name: &str, key: &str, item: &str) -> Result<Reply, store::Error> {
    let bucket = open(name)?;
    let mut cas = atomics::Cas::new(&bucket, key)?;
    for attempt in 1..=10_000 {
        let next = match cas.current()? {
            Some(list) if !list.is_empty() => format!("{},{item}", String::from_utf8_lossy(&list)),
            _ => item.to_string(),
        };
        match atomics::swap(cas, next.as_bytes()) {
            Ok(()) => return Ok(Reply::text(200, &format!("{attempt}\n"))),
            Err(atomics::CasError::CasFailed(retry)) => cas = retry,
            Err(atomics::CasError::StoreError(error)) => return Err(error),
        }
    }
    Ok(Reply::text(409, "gave up after 10000 attempts\n"))
}

/// A swap that loses to a write made after its `current`, then wins with
/// the handle the failure gave back: one line per step.
fn cas_conflict(name: &str, key: &str) -> Result<Reply, store::Error> {
    let bucket = open(name)?;
    let mut lines = Vec::new();
    let cas = atomics::Cas::new(&bucket, key)?;
    lines.push(format!("current {}", shown(cas.current()?)));
    bucket.set(key, b"theirs")?;
    let retry = match atomics::swap(cas, b"mine") {
        Ok(()) => {
            lines.push("swap won against a newer write".into());
            return Ok(Reply::text(200, &lines.join("\n")));
        }
        Err(atomics::CasError::CasFailed(retry)) => retry,
        Err(atomics::CasError::StoreError(error)) => return Err(error),
    };
    lines.push("swap cas-failed".into());
    lines.push(format!("retry current {}", shown(retry.current()?)));
    match atomics::swap(retry, b"mine") {
        Ok(()) => lines.push("retry swapped".into()),
        Err(atomics::CasError::CasFailed(_)) => lines.push("retry cas-failed".into()),
        Err(atomics::CasError::StoreError(error)) => return Err(error),
    }
    lines.push(format!("get {}", shown(bucket.get(key)?)));
    Ok(Reply::text(200, &(lines.join("\n") + "\n")))
}

fn shown(value: Option<Vec<u8>>) -> String {
    value.map_or("none".into(), |v| String::from_utf8_lossy(&v).into_owned())
}

/// Sets every `key=value` line of the body in one call.
fn set_many(name: &str, body: &[u8]) -> Result<Reply, store::Error> {
    let pairs: Vec<(String, Vec<u8>)> = body_lines(body)
        .into_iter()
        .map(|line| match line.split_once('=') {
            Some((k, v)) => (decode(k), v.as_bytes().to_vec()),
            None => (decode(&line), Vec::new()),
        })
        .collect();
    batch::set_many(&open(name)?, &pairs)?;
    Ok(Reply::text(200, &format!("stored {}\n", pairs.len())))
}

/// `key=value` or `key absent` per key line of the body.
fn get_many(name: &str, body: &[u8]) -> Result<Reply, store::Error> {
    let keys: Vec<String> = body_lines(body).iter().map(|k| decode(k)).collect();
    let found = batch::get_many(&open(name)?, &keys)?;
    let lines: Vec<String> = found
        .into_iter()
        .map(|(key, value)| match value {
            Some(v) => format!("{key}={}", String::from_utf8_lossy(&v)),
            None => format!("{key} absent"),
        })
        .collect();
    Ok(Reply::text(200, &(lines.join("\n") + "\n")))
}

/// `n` single sets of `{prefix}{i:05}` to `size` bytes, from `from`.
fn fill(name: &str, query: &str) -> Result<Reply, store::Error> {
    let number = |k, d| param(query, k).and_then(|v| v.parse().ok()).unwrap_or(d);
    let (from, n, size): (u64, u64, usize) = (
        number("from", 0),
        number("n", 0),
        number("size", 1) as usize,
    );
    let prefix = param(query, "prefix").unwrap_or_default();
    let bucket = open(name)?;
    let value = vec![b'v'; size];
    for i in from..from + n {
        bucket.set(&format!("{prefix}{i:05}"), &value)?;
    }
    Ok(Reply::text(200, &format!("filled {n}\n")))
}

/// Opens `store` `n` times, keeping every handle: how many opened, and
/// the first error.
fn open_many(query: &str) -> Reply {
    let n: usize = param(query, "n").and_then(|v| v.parse().ok()).unwrap_or(1);
    let name = param(query, "store").unwrap_or_else(|| "default".into());
    let mut held = Vec::new();
    for _ in 0..n {
        match store::open(&name) {
            Ok(bucket) => held.push(bucket),
            Err(error) => {
                return Reply::text(
                    200,
                    &format!("opened {}, then {}\n", held.len(), describe(&error)),
                );
            }
        }
    }
    Reply::text(200, &format!("opened {}\n", held.len()))
}

fn config_get(key: &str) -> Reply {
    match config::get(key) {
        Ok(Some(value)) => Reply::text(200, &value),
        Ok(None) => Reply::text(404, "absent\n"),
        Err(error) => Reply::text(500, &format!("{error:?}\n")),
    }
}

fn config_all() -> Reply {
    match config::get_all() {
        Ok(pairs) => {
            let lines: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
            Reply::text(200, &(lines.join("\n") + "\n"))
        }
        Err(error) => Reply::text(500, &format!("{error:?}\n")),
    }
}

wasip2::http::proxy::export!(KvProbe with_types_in wasip2);
