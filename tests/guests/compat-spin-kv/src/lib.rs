//! A spin-sdk 7 HTTP component that keeps state in Spin's key-value store
//! and reads Spin variables. `/script` runs a line per call; `/fill?n=N`
//! writes N keys and `/count` streams every key back.

use spin_sdk::http::{IntoResponse, Request, StatusCode};
use spin_sdk::http_service;
use spin_sdk::key_value::{Error, Store};
use spin_sdk::variables;

#[http_service]
async fn handle(request: Request) -> impl IntoResponse {
    let query = request.uri().query().unwrap_or_default().to_string();
    let answer = match request.uri().path() {
        "/script" => script().await,
        "/fill" => fill(&query).await,
        "/count" => count().await,
        "/open" => Store::open(param(&query, "store").unwrap_or_default())
            .await
            .map(|_| "opened\n".to_string()),
        "/variable" => Ok(format!(
            "{:?}\n",
            variables::get(param(&query, "name").unwrap_or_default()).await
        )),
        _ => return (StatusCode::NOT_FOUND, "not found\n".to_string()),
    };
    match answer {
        Ok(body) => (StatusCode::OK, body),
        Err(Error::AccessDenied) => (StatusCode::FORBIDDEN, "access-denied\n".into()),
        Err(error) => (StatusCode::BAD_REQUEST, format!("{error:?}\n")),
    }
}

fn param<'q>(query: &'q str, name: &str) -> Option<&'q str> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == name).then_some(v)
    })
}

fn text(value: Option<Vec<u8>>) -> String {
    value.map_or("none".into(), |v| String::from_utf8_lossy(&v).into_owned())
}

async fn script() -> Result<String, Error> {
    let mut lines = Vec::new();
    let store = Store::open_default().await?;
    store.set("a", b"1").await?;
    store.set("b", b"2").await?;
    lines.push(format!("get a: {}", text(store.get("a").await?)));
    lines.push(format!("exists a: {}", store.exists("a").await?));
    lines.push(format!(
        "exists missing: {}",
        store.exists("missing").await?
    ));
    let mut keys = store.get_keys().await.collect().await?;
    keys.sort();
    lines.push(format!("keys: {keys:?}"));
    store.delete("a").await?;
    store.delete("b").await?;
    lines.push(format!(
        "after delete, exists a: {}",
        store.exists("a").await?
    ));
    lines.push(format!(
        "open other: {:?}",
        Store::open("other").await.err()
    ));
    for name in ["greeting", "api_key", "Bad", "missing"] {
        lines.push(format!("variable {name}: {:?}", variables::get(name).await));
    }
    Ok(lines.join("\n") + "\n")
}

async fn fill(query: &str) -> Result<String, Error> {
    let n: usize = param(query, "n").and_then(|n| n.parse().ok()).unwrap_or(0);
    let store = Store::open_default().await?;
    for i in 0..n {
        store.set(format!("k{i:05}"), b"v").await?;
    }
    Ok(format!("filled {n}\n"))
}

/// Streams every key: how many, how many distinct.
async fn count() -> Result<String, Error> {
    let store = Store::open_default().await?;
    let mut keys = store.get_keys().await;
    let mut seen = Vec::new();
    while let Some(key) = keys.next().await {
        seen.push(key);
    }
    keys.result().await?;
    let total = seen.len();
    seen.sort();
    seen.dedup();
    Ok(format!("{total} keys, {} distinct\n", seen.len()))
}
