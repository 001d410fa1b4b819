//! A wstd HTTP server: a greeting, and an echo that streams the body back.

use wstd::http::body::Body;
use wstd::http::{Error, Request, Response};

#[wstd::http_server]
async fn main(request: Request<Body>) -> Result<Response<Body>, Error> {
    match request.uri().path() {
        "/echo" => Ok(Response::new(request.into_body())),
        path => Ok(Response::new(format!("hello from wstd at {path}\n").into())),
    }
}
