//! Several routes with path and query parameters: `GET /users/:id`,
//! `GET /search?q=...`, `POST /users`, `GET /files/*path`; 404 for unknown
//! paths and 405 (with `Allow`) for the wrong method.

use shoal_sdk::{Error, Request, RequestExt, Response, Result, Router, StatusCode};

fn user(req: Request) -> Result<Response> {
    let id: u32 = req
        .param("id")
        .and_then(|id| id.parse().ok())
        .ok_or_else(|| Error::bad_request("a user id is a number"))?;
    Ok(shoal_sdk::text(format!("user {id}\n")))
}

fn search(req: Request) -> Result<Response> {
    let q = req
        .query_param("q")
        .ok_or_else(|| Error::bad_request("add ?q=TERMS"))?;
    Ok(shoal_sdk::text(format!("searching for {q:?}\n")))
}

fn create(req: Request) -> Result<(StatusCode, String)> {
    let name = req.into_body().text()?;
    Ok((StatusCode::CREATED, format!("created {}\n", name.trim())))
}

#[shoal_sdk::http]
fn handle(req: Request) -> Response {
    Router::new()
        .get("/users/:id", user)
        .post("/users", create)
        .get("/search", search)
        .get("/files/*path", |req: Request| {
            format!("file {}\n", req.param("path").unwrap_or_default())
        })
        .handle(req)
}
