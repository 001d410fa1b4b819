//! The incoming body (of the request, or of the response to an outbound
//! request), read as it arrives or all at once.

use std::io;

use wasip2::http::types::{IncomingBody, IncomingRequest, IncomingResponse};
use wasip2::io::poll::Pollable;
use wasip2::io::streams::{InputStream, StreamError};

use crate::error::{Error, Result};
use crate::executor::Wait;

/// Bytes read from the network at most per chunk.
const CHUNK: u64 = 64 * 1024;

/// An incoming body (of the request, or of the response to an outbound
/// request). Read it in chunks as it arrives, or all at once.
#[derive(Default)]
pub struct Body {
    /// Where the bytes come from; `None` for an empty or finished body. A
    /// trait object, so that a handler that never reads a body never links
    /// the code (and the WASI imports) that opens one: each import costs
    /// every instantiation of the component.
    source: Option<Box<dyn Source>>,
    /// What [`io::Read`] took from the stream and has not handed out yet.
    leftover: Vec<u8>,
    /// How much of `leftover` is handed out.
    taken: usize,
}

/// The bytes of an incoming message.
trait Source {
    /// Up to `max` bytes: waiting for some when `blocking`, else what is
    /// there (maybe nothing). `Err(Closed)` at the end.
    fn read(&mut self, max: u64, blocking: bool) -> std::result::Result<Vec<u8>, StreamError>;
    /// Ready once bytes (or the end) can be read without waiting.
    fn subscribe(&mut self) -> Option<Pollable>;
}

/// A request or a response whose body is opened on first read.
struct Incoming<M> {
    // Field order matters: the stream must drop before its body.
    stream: Option<InputStream>,
    body: Option<IncomingBody>,
    /// Not opened yet: a handler that never reads the body never pays for
    /// opening it.
    message: Option<M>,
}

/// What a body can be opened from.
trait Consume {
    fn consume_body(&self) -> Option<IncomingBody>;
}

impl Consume for IncomingRequest {
    fn consume_body(&self) -> Option<IncomingBody> {
        self.consume().ok()
    }
}

impl Consume for IncomingResponse {
    fn consume_body(&self) -> Option<IncomingBody> {
        self.consume().ok()
    }
}

impl<M: Consume> Incoming<M> {
    fn stream(&mut self) -> Option<&InputStream> {
        if let Some(message) = self.message.take()
            && let Some(body) = message.consume_body()
        {
            self.stream = body.stream().ok();
            self.body = Some(body);
        }
        self.stream.as_ref()
    }
}

impl<M: Consume> Source for Incoming<M> {
    fn read(&mut self, max: u64, blocking: bool) -> std::result::Result<Vec<u8>, StreamError> {
        match self.stream() {
            Some(stream) if blocking => stream.blocking_read(max),
            Some(stream) => stream.read(max),
            None => Err(StreamError::Closed),
        }
    }

    fn subscribe(&mut self) -> Option<Pollable> {
        self.stream().map(InputStream::subscribe)
    }
}

impl Body {
    /// A body with no bytes.
    pub fn empty() -> Body {
        Body::default()
    }

    pub(crate) fn of_request(request: IncomingRequest) -> Body {
        Body::of(request)
    }

    pub(crate) fn of_response(response: IncomingResponse) -> Body {
        Body::of(response)
    }

    fn of<M: Consume + 'static>(message: M) -> Body {
        Body {
            source: Some(Box::new(Incoming {
                stream: None,
                body: None,
                message: Some(message),
            })),
            ..Body::default()
        }
    }

    /// What [`io::Read`] buffered and has not handed out, if anything.
    fn take_leftover(&mut self) -> Option<Vec<u8>> {
        if self.taken >= self.leftover.len() {
            return None;
        }
        let rest = self.leftover.split_off(self.taken);
        self.leftover.clear();
        self.taken = 0;
        Some(rest)
    }

    /// The next chunk of the body, or `None` at its end. Blocks until bytes
    /// arrive.
    pub fn chunk(&mut self) -> Result<Option<Vec<u8>>> {
        if let Some(rest) = self.take_leftover() {
            return Ok(Some(rest));
        }
        loop {
            let Some(source) = &mut self.source else {
                return Ok(None);
            };
            match source.read(CHUNK, true) {
                Ok(bytes) if bytes.is_empty() => continue,
                Ok(bytes) => return Ok(Some(bytes)),
                Err(error) => return self.end(error),
            }
        }
    }

    /// The next chunk of the body, or `None` at its end: [`Body::chunk`]
    /// for `async` handlers, which lets their other futures (say, an
    /// outbound request) progress while it waits.
    pub async fn next_chunk(&mut self) -> Result<Option<Vec<u8>>> {
        if let Some(rest) = self.take_leftover() {
            return Ok(Some(rest));
        }
        loop {
            let Some(source) = &mut self.source else {
                return Ok(None);
            };
            match source.read(CHUNK, false) {
                Ok(bytes) if bytes.is_empty() => {
                    if let Some(ready) = source.subscribe() {
                        Wait::new(ready).await
                    }
                }
                Ok(bytes) => return Ok(Some(bytes)),
                Err(error) => return self.end(error),
            }
        }
    }

    /// The stream ended, cleanly or not.
    fn end(&mut self, error: StreamError) -> Result<Option<Vec<u8>>> {
        self.source = None;
        match error {
            StreamError::Closed => Ok(None),
            StreamError::LastOperationFailed(e) => Err(Error::bad_request(format!(
                "reading the body failed: {}",
                e.to_debug_string()
            ))),
        }
    }

    /// The whole body.
    pub fn bytes(mut self) -> Result<Vec<u8>> {
        let mut all = Vec::new();
        while let Some(chunk) = self.chunk()? {
            all.extend_from_slice(&chunk);
        }
        Ok(all)
    }

    /// The whole body as UTF-8 text (400 if it is not).
    pub fn text(self) -> Result<String> {
        Ok(String::from_utf8(self.bytes()?)?)
    }

    /// The whole body parsed as JSON (400 if it does not parse).
    #[cfg(feature = "json")]
    pub fn json<T: serde::de::DeserializeOwned>(self) -> Result<T> {
        Ok(serde_json::from_slice(&self.bytes()?)?)
    }
}

/// Reads the body as it arrives (e.g. `std::io::copy(&mut body, out)`).
impl io::Read for Body {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.taken >= self.leftover.len() {
            match self.chunk() {
                Ok(Some(chunk)) => {
                    self.leftover = chunk;
                    self.taken = 0;
                }
                Ok(None) => return Ok(0),
                Err(e) => return Err(io::Error::other(e.message().to_string())),
            }
        }
        let rest = &self.leftover[self.taken..];
        let n = rest.len().min(buf.len());
        buf[..n].copy_from_slice(&rest[..n]);
        self.taken += n;
        Ok(n)
    }
}
