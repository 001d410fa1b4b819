//! A spin-sdk 7 HTTP component (it exports `wasi:http/handler@0.3.0`).

use spin_sdk::http::{IntoResponse, Request};
use spin_sdk::http_service;

#[http_service]
async fn handle(request: Request) -> impl IntoResponse {
    format!("hello from spin-sdk at {}\n", request.uri().path())
}
