//! A WASIp2 `wasi:http` guest written against the raw WASI bindings, with
//! one route per behaviour Shoal's tests exercise.

use std::hint::black_box;
use std::time::{Duration, Instant};

use wasip2::exports::http::incoming_handler::Guest;
use wasip2::http::types::{
    ErrorCode, Fields, IncomingRequest, Method, OutgoingBody, OutgoingRequest, OutgoingResponse,
    ResponseOutparam, Scheme,
};

struct Probe;

impl Guest for Probe {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let path_with_query = request.path_with_query().unwrap_or_default();
        let (path, query) = path_with_query
            .split_once('?')
            .unwrap_or((&path_with_query, ""));
        match path {
            "/" | "/hello" => respond(out, 200, "hello from shoal\n"),
            "/echo" => echo(request, out),
            "/bytes" => {
                let n = param(query, "n").and_then(|n| n.parse().ok()).unwrap_or(0);
                respond(out, 200, &"x".repeat(n));
            }
            "/request" => describe(&request, &path_with_query, out),
            "/env" => env(param(query, "name").unwrap_or_default(), out),
            "/trailers" => trailers(out),
            "/env-count" => respond(out, 200, &std::env::vars().count().to_string()),
            "/fetch" => fetch(param(query, "url").unwrap_or_default(), out),
            "/log" => {
                println!("line to stdout");
                eprintln!("line to stderr");
                respond(out, 200, "logged\n");
            }
            "/busy" => {
                let ms = param(query, "ms")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(1000);
                busy(ms, out);
            }
            "/spin" => {
                let mut n = 0u64;
                loop {
                    n = black_box(n.wrapping_add(1));
                }
            }
            "/oom" => {
                let mut hoard = Vec::new();
                loop {
                    hoard.push(black_box(vec![7u8; 1 << 20]));
                }
            }
            "/recurse" => {
                let depth = recurse(black_box(0));
                respond(out, 200, &depth.to_string());
            }
            "/panic" => panic!("the probe panicked on purpose"),
            "/panic-mid-body" => {
                let response = OutgoingResponse::new(Fields::new());
                let body = response.body().unwrap();
                ResponseOutparam::set(out, Ok(response));
                write_all(&body, b"the first part\n");
                panic!("the probe panicked mid-body");
            }
            "/no-response" => {}
            "/fields" => hoard_fields(number(query, "mb", 512) << 20, out),
            "/field" => one_field(number(query, "kb", 1) << 10, out),
            "/entries" => hoard_entries(number(query, "n", 100_000), out),
            "/bodies" => hoard_bodies(number(query, "n", 512), out),
            "/flood" => {
                let n = number(query, "n", 5000);
                for i in 0..n {
                    println!("flood line {i}");
                }
                respond(out, 200, &format!("logged {n} lines\n"));
            }
            "/ansi" => {
                println!("\u{1b}[31mred\u{1b}[0m\rrewritten \u{1b}]0;title\u{7} end");
                respond(out, 200, "logged\n");
            }
            _ => respond(out, 404, "no such probe route\n"),
        }
    }
}

/// Builds header fields of 60,000 bytes each, keeping them all, until
/// they hold `bytes`; the host should stop the guest long before.
fn hoard_fields(bytes: u64, out: ResponseOutparam) {
    let value = vec![b'v'; 60_000];
    let mut hoard = Vec::new();
    let mut held = 0u64;
    while held < bytes {
        let fields = Fields::new();
        if let Err(error) = fields.append("x-hoard", &value) {
            return respond(
                out,
                200,
                &format!("refused after {held} bytes: {error:?}\n"),
            );
        }
        hoard.push(fields);
        held += value.len() as u64;
    }
    respond(
        out,
        200,
        &format!("held {} MiB in {} fields\n", held >> 20, hoard.len()),
    );
}

/// Tries one header of `bytes` bytes.
fn one_field(bytes: u64, out: ResponseOutparam) {
    let fields = Fields::new();
    match fields.append("x-one", &vec![b'v'; bytes as usize]) {
        Ok(()) => respond(out, 200, "accepted\n"),
        Err(error) => respond(out, 200, &format!("refused: {error:?}\n")),
    }
}

/// Makes `n` empty fields resources and keeps them.
fn hoard_entries(n: u64, out: ResponseOutparam) {
    let hoard: Vec<Fields> = (0..n).map(|_| Fields::new()).collect();
    respond(out, 200, &format!("held {} resources\n", hoard.len()));
}

/// Makes `n` responses and fills each one's body buffer with 1 MiB that
/// is never sent, keeping them all.
fn hoard_bodies(n: u64, out: ResponseOutparam) {
    let chunk = vec![b'b'; 64 << 10];
    let mut hoard = Vec::new();
    for _ in 0..n {
        let response = OutgoingResponse::new(Fields::new());
        let body = response.body().unwrap();
        let stream = body.write().unwrap();
        let mut written = 0;
        while written < 1 << 20 {
            let room = stream.check_write().unwrap_or(0) as usize;
            if room == 0 {
                break;
            }
            let n = room.min(chunk.len());
            stream.write(&chunk[..n]).unwrap();
            written += n;
        }
        // The stream goes before its body when the hoard is dropped.
        hoard.push((stream, body, response));
    }
    respond(out, 200, &format!("held {} unsent bodies\n", hoard.len()));
}

fn number(query: &str, name: &str, default: u64) -> u64 {
    param(query, name)
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Answers with the scheme, authority, target and `x-forwarded-prefix` the
/// host handed over.
fn describe(request: &IncomingRequest, path_with_query: &str, out: ResponseOutparam) {
    let scheme = match request.scheme() {
        Some(Scheme::Http) => "http".to_string(),
        Some(Scheme::Https) => "https".to_string(),
        Some(Scheme::Other(s)) => s,
        None => "none".to_string(),
    };
    let authority = request.authority().unwrap_or_default();
    let prefix = header(request, "x-forwarded-prefix").unwrap_or_default();
    respond(
        out,
        200,
        &format!("{scheme} {authority} {path_with_query} {prefix}\n"),
    );
}

/// Answers with the value of environment variable `name`, or 404.
fn env(name: String, out: ResponseOutparam) {
    match std::env::var(&name) {
        Ok(value) => respond(out, 200, &value),
        Err(_) => respond(out, 404, &format!("{name} is not set")),
    }
}

/// Answers with a body and an `x-checksum` trailer.
fn trailers(out: ResponseOutparam) {
    // HTTP/1.1 sends only trailers the head announces.
    let headers = Fields::from_list(&[("trailer".to_string(), b"x-checksum".to_vec())]).unwrap();
    let response = OutgoingResponse::new(headers);
    let body = response.body().unwrap();
    ResponseOutparam::set(out, Ok(response));
    write_all(&body, b"with trailers\n");
    let trailers = Fields::from_list(&[("x-checksum".to_string(), b"42".to_vec())]).unwrap();
    OutgoingBody::finish(body, Some(trailers)).unwrap();
}

/// Burns CPU for `ms` milliseconds, then answers.
fn busy(ms: u64, out: ResponseOutparam) {
    let until = Instant::now() + Duration::from_millis(ms);
    let mut n = 0u64;
    while Instant::now() < until {
        n = black_box(n.wrapping_add(1));
    }
    respond(out, 200, &format!("busy {ms}ms\n"));
}

#[allow(unconditional_recursion)]
fn recurse(n: u64) -> u64 {
    let mut frame = [0u8; 256];
    frame[(n % 256) as usize] = n as u8;
    black_box(&frame);
    black_box(recurse(black_box(n + 1))) + frame[0] as u64
}

fn param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == name).then(|| v.to_string())
    })
}

fn header(request: &IncomingRequest, name: &str) -> Option<String> {
    let values = request.headers().get(name);
    values
        .first()
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

fn respond(out: ResponseOutparam, status: u16, body: &str) {
    let headers =
        Fields::from_list(&[("content-type".to_string(), b"text/plain".to_vec())]).unwrap();
    let response = OutgoingResponse::new(headers);
    response.set_status_code(status).unwrap();
    let outgoing = response.body().unwrap();
    ResponseOutparam::set(out, Ok(response));
    write_all(&outgoing, body.as_bytes());
    OutgoingBody::finish(outgoing, None).unwrap();
}

fn write_all(body: &OutgoingBody, mut bytes: &[u8]) {
    let stream = body.write().unwrap();
    while !bytes.is_empty() {
        let n = bytes.len().min(4096);
        stream.blocking_write_and_flush(&bytes[..n]).unwrap();
        bytes = &bytes[n..];
    }
}

/// Streams the request body back as it arrives, never holding all of it.
fn echo(request: IncomingRequest, out: ResponseOutparam) {
    let response = OutgoingResponse::new(Fields::new());
    let outgoing = response.body().unwrap();
    ResponseOutparam::set(out, Ok(response));
    let incoming = request.consume().unwrap();
    let input = incoming.stream().unwrap();
    let output = outgoing.write().unwrap();
    while let Ok(chunk) = input.blocking_read(64 * 1024) {
        for piece in chunk.chunks(4096) {
            output.blocking_write_and_flush(piece).unwrap();
        }
    }
    drop(output);
    drop(input);
    OutgoingBody::finish(outgoing, None).unwrap();
}

/// Sends a GET to `url` and answers with what came back, or 403 when the
/// host's policy denied the host or the address it resolved to.
fn fetch(url: String, out: ResponseOutparam) {
    let Some(rest) = url.strip_prefix("http://") else {
        return respond(out, 400, "url must start with http://");
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let request = OutgoingRequest::new(Fields::new());
    request.set_method(&Method::Get).unwrap();
    request.set_scheme(Some(&Scheme::Http)).unwrap();
    request.set_authority(Some(authority)).unwrap();
    request.set_path_with_query(Some(path)).unwrap();
    let pending = match wasip2::http::outgoing_handler::handle(request, None) {
        Ok(pending) => pending,
        Err(code) => return denied_or_failed(out, code),
    };
    pending.subscribe().block();
    match pending.get() {
        Some(Ok(Ok(response))) => {
            let status = response.status();
            let body = response.consume().unwrap();
            let stream = body.stream().unwrap();
            let mut bytes = Vec::new();
            while let Ok(chunk) = stream.blocking_read(64 * 1024) {
                bytes.extend_from_slice(&chunk);
            }
            respond(
                out,
                200,
                &format!("upstream {status}: {}", String::from_utf8_lossy(&bytes)),
            );
        }
        Some(Ok(Err(code))) => denied_or_failed(out, code),
        _ => respond(out, 502, "no upstream response"),
    }
}

fn denied_or_failed(out: ResponseOutparam, code: ErrorCode) {
    match code {
        ErrorCode::HttpRequestDenied => respond(out, 403, "outbound request denied"),
        ErrorCode::DestinationIpProhibited => respond(out, 403, "outbound destination prohibited"),
        other => respond(out, 502, &format!("outbound request failed: {other:?}")),
    }
}

wasip2::http::proxy::export!(Probe with_types_in wasip2);
