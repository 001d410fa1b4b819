//! State and configuration, with the host's grants
//! (`shoal run counter.wasm --kv default --config greeting=hi`):
//!
//! - `GET /` answers the `greeting` config value;
//! - `GET /count` counts the request and answers the count, kept across
//!   requests and restarts of the host;
//! - `PUT /notes/:id` stores a JSON to-do item (`{"text": "...", "done": false}`),
//!   `GET /notes/:id` answers it, `DELETE /notes/:id` removes it,
//!   `POST /notes/:id/done` marks it done (a compare-and-swap: a
//!   concurrent change is never lost), and `GET /notes` lists every
//!   note's id.

use serde::{Deserialize, Serialize};
use shoal_sdk::kv::Store;
use shoal_sdk::{Error, Request, RequestExt, Response, Result, Router, StatusCode};

/// A to-do item, stored as JSON under `note:ID`.
#[derive(Serialize, Deserialize)]
struct Note {
    text: String,
    #[serde(default)]
    done: bool,
}

/// The key a note is kept under: notes share the store with the counter.
fn note_key(req: &Request) -> Result<String> {
    let id = req.param("id").unwrap_or_default();
    if id.is_empty() || id.len() > 64 {
        return Err(Error::bad_request("a note id is 1 to 64 characters"));
    }
    Ok(format!("note:{id}"))
}

fn greet(_req: Request) -> Result<String> {
    let greeting = shoal_sdk::config::get("greeting")?.unwrap_or_else(|| "hello".into());
    Ok(format!(
        "{greeting}! GET /count counts; PUT, GET and DELETE /notes/ID keep notes\n"
    ))
}

fn count(_req: Request) -> Result<String> {
    let count = Store::open_default()?.increment("count", 1)?;
    Ok(format!("{count}\n"))
}

fn put_note(req: Request) -> Result<(StatusCode, Response)> {
    let key = note_key(&req)?;
    let note: Note = req.into_body().json()?;
    let store = Store::open_default()?;
    let status = if store.exists(&key)? {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    store.set_json(&key, &note)?;
    Ok((status, shoal_sdk::json(&note)?))
}

fn get_note(req: Request) -> Result<Response> {
    let key = note_key(&req)?;
    match Store::open_default()?.get_json::<Note>(&key)? {
        Some(note) => shoal_sdk::json(&note),
        None => Err(Error::not_found().with_message("no such note")),
    }
}

fn delete_note(req: Request) -> Result<StatusCode> {
    let key = note_key(&req)?;
    let store = Store::open_default()?;
    if !store.exists(&key)? {
        return Err(Error::not_found().with_message("no such note"));
    }
    store.delete(&key)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Marks a note done with a compare-and-swap, so that a concurrent PUT is
/// either seen or retried on, never overwritten.
fn mark_done(req: Request) -> Result<Response> {
    let key = note_key(&req)?;
    let done = Store::open_default()?.cas_json(&key, |note: Option<Note>| {
        note.map(|note| Note { done: true, ..note })
    })?;
    match done {
        Some(note) => shoal_sdk::json(&note),
        None => Err(Error::not_found().with_message("no such note")),
    }
}

/// Every note's id, read a page of keys at a time.
fn list_notes(_req: Request) -> Result<Response> {
    let mut ids = Vec::new();
    for key in Store::open_default()?.keys() {
        if let Some(id) = key?.strip_prefix("note:") {
            ids.push(id.to_string());
        }
    }
    shoal_sdk::json(&ids)
}

#[shoal_sdk::http]
fn handle(req: Request) -> Response {
    Router::new()
        .get("/", greet)
        .get("/count", count)
        .get("/notes", list_notes)
        .put("/notes/:id", put_note)
        .get("/notes/:id", get_note)
        .delete("/notes/:id", delete_note)
        .post("/notes/:id/done", mark_done)
        .handle(req)
}
