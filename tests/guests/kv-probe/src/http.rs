//! The HTTP plumbing of the probe: answers, request bodies, query
//! parameters, percent-decoding and JSON strings.

use wasip2::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

/// A response to send.
pub struct Reply {
    status: u16,
    body: Vec<u8>,
}

impl Reply {
    pub fn text(status: u16, body: &str) -> Reply {
        Reply::bytes(status, body.as_bytes().to_vec())
    }

    pub fn bytes(status: u16, body: Vec<u8>) -> Reply {
        Reply { status, body }
    }

    pub fn send(self, out: ResponseOutparam) {
        let response = OutgoingResponse::new(Fields::new());
        response.set_status_code(self.status).unwrap();
        let outgoing = response.body().unwrap();
        ResponseOutparam::set(out, Ok(response));
        let stream = outgoing.write().unwrap();
        for piece in self.body.chunks(4096) {
            stream.blocking_write_and_flush(piece).unwrap();
        }
        drop(stream);
        OutgoingBody::finish(outgoing, None).unwrap();
    }
}

/// The whole request body.
pub fn read_body(request: IncomingRequest) -> Vec<u8> {
    let body = request.consume().unwrap();
    let stream = body.stream().unwrap();
    let mut bytes = Vec::new();
    while let Ok(chunk) = stream.blocking_read(64 * 1024) {
        bytes.extend_from_slice(&chunk);
    }
    bytes
}

/// The non-empty lines of a body.
pub fn body_lines(body: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(body)
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Query parameter `name`, percent-decoded.
pub fn param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == name).then(|| decode(v))
    })
}

/// `%XX` decoded (invalid escapes are kept as they are).
pub fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `s` as a JSON string literal.
pub fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
