//! Answers every request with `hello from shoal\n`.

use wasip2::exports::http::incoming_handler::Guest;
use wasip2::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

struct Hello;

impl Guest for Hello {
    fn handle(_request: IncomingRequest, out: ResponseOutparam) {
        let response = OutgoingResponse::new(Fields::new());
        let body = response.body().unwrap();
        ResponseOutparam::set(out, Ok(response));
        let stream = body.write().unwrap();
        stream
            .blocking_write_and_flush(b"hello from shoal\n")
            .unwrap();
        drop(stream);
        OutgoingBody::finish(body, None).unwrap();
    }
}

wasip2::http::proxy::export!(Hello with_types_in wasip2);
