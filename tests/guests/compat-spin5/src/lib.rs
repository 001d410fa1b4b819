//! A spin-sdk 5 HTTP component (it exports
//! `wasi:http/incoming-handler@0.2.0`) that keeps state in Spin's
//! key-value store and reads Spin variables. `/script` answers a line per
//! call.

use spin_sdk::http::{IntoResponse, Request, Response};
use spin_sdk::http_component;
use spin_sdk::key_value::{Error, Store};
use spin_sdk::variables;

#[http_component]
fn handle(request: Request) -> anyhow::Result<impl IntoResponse> {
    let (status, body) = match request.path() {
        "/script" => match script() {
            Ok(body) => (200, body),
            Err(error) => (400, format!("{error:?}\n")),
        },
        "/open" => match Store::open(request.query().strip_prefix("store=").unwrap_or_default()) {
            Ok(_) => (200, "opened\n".to_string()),
            Err(Error::AccessDenied) => (403, "access-denied\n".to_string()),
            Err(error) => (400, format!("{error:?}\n")),
        },
        _ => (404, "not found\n".to_string()),
    };
    Ok(Response::builder().status(status).body(body).build())
}

fn text(value: Option<Vec<u8>>) -> String {
    value.map_or("none".into(), |v| String::from_utf8_lossy(&v).into_owned())
}

fn script() -> Result<String, Error> {
    let mut lines = Vec::new();
    let store = Store::open_default()?;
    store.set("a", b"1")?;
    store.set("b", b"2")?;
    lines.push(format!("get a: {}", text(store.get("a")?)));
    lines.push(format!("exists a: {}", store.exists("a")?));
    lines.push(format!("exists missing: {}", store.exists("missing")?));
    let mut keys = store.get_keys()?;
    keys.sort();
    lines.push(format!("keys: {keys:?}"));
    store.delete("a")?;
    store.delete("b")?;
    lines.push(format!("after delete, exists a: {}", store.exists("a")?));
    lines.push(format!("open other: {:?}", Store::open("other").err()));
    for name in ["greeting", "api_key", "Bad", "missing"] {
        lines.push(format!("variable {name}: {:?}", variables::get(name)));
    }
    Ok(lines.join("\n") + "\n")
}
