//! A `wasi:http` component that keeps state through
//! `wasi:keyvalue@0.2.0-draft` and reads `wasi:config@0.2.0-rc.1`, as one
//! is written for `wasmtime serve` or wasmCloud. `/script` runs every call
//! inside one request (wasmtime's store lives per instance) and answers a
//! line per step; `/open?store=NAME` answers how opening a store went.

wit_bindgen::generate!({ path: "wit", world: "app", generate_all });

use wasi::config::store as config;
use wasi::keyvalue::{atomics, batch, store};
use wasip2::exports::http::incoming_handler::Guest;
use wasip2::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

struct App;

impl Guest for App {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let target = request.path_with_query().unwrap_or_default();
        let (status, body) = match target.split_once('?').unwrap_or((&target, "")) {
            ("/script", _) => match script() {
                Ok(lines) => (200, lines.join("\n") + "\n"),
                Err(error) => (500, format!("failed: {error:?}\n")),
            },
            ("/open", query) => {
                let name = query.strip_prefix("store=").unwrap_or_default();
                match store::open(name) {
                    Ok(_) => (200, "opened\n".to_string()),
                    Err(error) => (403, format!("{error:?}\n")),
                }
            }
            _ => (404, "not found\n".to_string()),
        };
        respond(out, status, &body);
    }
}

fn text(value: Option<Vec<u8>>) -> String {
    value.map_or("none".into(), |v| String::from_utf8_lossy(&v).into_owned())
}

fn script() -> Result<Vec<String>, store::Error> {
    let mut lines = Vec::new();
    let bucket = store::open("")?;
    bucket.set("a", b"1")?;
    lines.push(format!("get a: {}", text(bucket.get("a")?)));
    lines.push(format!("exists a: {}", bucket.exists("a")?));
    lines.push(format!("exists missing: {}", bucket.exists("missing")?));
    lines.push(format!("get missing: {}", text(bucket.get("missing")?)));
    lines.push(format!(
        "increment c 5: {}",
        atomics::increment(&bucket, "c", 5)?
    ));
    lines.push(format!(
        "increment c 5: {}",
        atomics::increment(&bucket, "c", 5)?
    ));
    lines.push(format!("get c: {}", text(bucket.get("c")?)));
    bucket.set("b", b"2")?;
    let many = batch::get_many(&bucket, &["a".to_string(), "missing".to_string()])?;
    let many: Vec<String> = many
        .into_iter()
        .map(|kv| {
            kv.map_or("none".into(), |(k, v)| {
                format!("{k}={}", String::from_utf8_lossy(&v))
            })
        })
        .collect();
    lines.push(format!("get-many a missing: {}", many.join(" ")));
    lines.push(format!("list-keys: {}", sorted_keys(&bucket)?));
    batch::set_many(
        &bucket,
        &[
            ("d".to_string(), b"4".to_vec()),
            ("e".to_string(), b"5".to_vec()),
        ],
    )?;
    lines.push(format!("after set-many: {}", sorted_keys(&bucket)?));
    batch::delete_many(&bucket, &["a".to_string(), "b".to_string()])?;
    lines.push(format!("after delete-many: {}", sorted_keys(&bucket)?));
    bucket.delete("c")?;
    bucket.delete("missing")?;
    batch::delete_many(&bucket, &["d".to_string(), "e".to_string()])?;
    lines.push(format!("after delete: {}", sorted_keys(&bucket)?));
    lines.push(format!("config greeting: {:?}", config::get("greeting")));
    lines.push(format!("config missing: {:?}", config::get("missing")));
    let mut all = config::get_all().unwrap_or_default();
    all.sort();
    lines.push(format!("config all: {all:?}"));
    Ok(lines)
}

/// Every key, following cursors, sorted.
fn sorted_keys(bucket: &store::Bucket) -> Result<String, store::Error> {
    let mut keys = Vec::new();
    let mut cursor = None;
    loop {
        let page = bucket.list_keys(cursor)?;
        keys.extend(page.keys);
        match page.cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    keys.sort();
    Ok(format!("[{}]", keys.join(",")))
}

fn respond(out: ResponseOutparam, status: u16, body: &str) {
    let response = OutgoingResponse::new(Fields::new());
    response.set_status_code(status).unwrap();
    let outgoing = response.body().unwrap();
    ResponseOutparam::set(out, Ok(response));
    let stream = outgoing.write().unwrap();
    for piece in body.as_bytes().chunks(4096) {
        stream.blocking_write_and_flush(piece).unwrap();
    }
    drop(stream);
    OutgoingBody::finish(outgoing, None).unwrap();
}

wasip2::http::proxy::export!(App with_types_in wasip2);
