//! A WASIp3 `wasi:http/handler` guest: async all the way down.

use bytes::Bytes;
use http_body_util::Full;
use wasip3::exports::http::handler::Guest;
use wasip3::http::types::{ErrorCode, Request, Response};
use wasip3::http_compat::{http_from_wasi_request, http_into_wasi_response};

struct P3Hello;

impl Guest for P3Hello {
    async fn handle(request: Request) -> Result<Response, ErrorCode> {
        let request = http_from_wasi_request(request)?;
        match request.uri().path() {
            "/echo" => http_into_wasi_response(http::Response::new(request.into_body())),
            path => {
                let body = format!("hello from wasip3 at {path}\n");
                http_into_wasi_response(http::Response::new(Full::new(Bytes::from(body))))
            }
        }
    }
}

wasip3::http::service::export!(P3Hello with_types_in wasip3);
