//! Bodies: the incoming request body, read as it arrives, and the response
//! body, given whole or written as a stream.

use std::io;

use wasip2::http::types::{IncomingBody, IncomingRequest, IncomingResponse, OutgoingBody};
use wasip2::io::poll::Pollable;
use wasip2::io::streams::{InputStream, OutputStream, StreamError};

use crate::error::{Error, Result};
use crate::executor::Wait;

/// Bytes read from the network at most per chunk.
const CHUNK: u64 = 64 * 1024;

/// Bytes written to the network at most per call.
const WRITE: usize = 4096;

/// An incoming body (of a request, or of a response to [`crate::fetch`]).
/// Read it in chunks as it arrives, or all at once.
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

/// Writes a response body as it is produced; also [`std::io::Write`].
pub struct BodyWriter {
    stream: OutputStream,
}

impl BodyWriter {
    pub(crate) fn from_stream(stream: OutputStream) -> BodyWriter {
        BodyWriter { stream }
    }

    /// Sends `bytes`, blocking while the client is slower than the guest.
    pub fn write(&mut self, mut bytes: &[u8]) -> Result<()> {
        while !bytes.is_empty() {
            let n = bytes.len().min(WRITE);
            self.stream
                .blocking_write_and_flush(&bytes[..n])
                .map_err(|_| Error::internal("the client went away"))?;
            bytes = &bytes[n..];
        }
        Ok(())
    }
}

impl io::Write for BodyWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        BodyWriter::write(self, buf)
            .map_err(|e| io::Error::new(io::ErrorKind::BrokenPipe, e.message().to_string()))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Writes a streamed response body; see [`crate::stream`].
pub type Producer = Box<dyn FnOnce(&mut BodyWriter) -> Result<()>>;

/// The body of a [`crate::Response`].
#[derive(Default)]
pub enum ResponseBody {
    /// No bytes.
    #[default]
    Empty,
    /// These bytes.
    Bytes(Vec<u8>),
    /// These bytes, which live as long as the program (a literal): nothing
    /// is copied, and a handler answering one allocates nothing.
    Static(&'static [u8]),
    /// Written by this function after the status and headers are sent.
    Stream(Producer),
}

impl ResponseBody {
    /// The bytes of a body given whole (`None` for a stream).
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            ResponseBody::Empty => Some(&[]),
            ResponseBody::Bytes(bytes) => Some(bytes),
            ResponseBody::Static(bytes) => Some(bytes),
            ResponseBody::Stream(_) => None,
        }
    }

    /// Writes the body into `body` and finishes it.
    pub(crate) fn send(self, body: OutgoingBody) -> Result<()> {
        let stream = body
            .write()
            .map_err(|_| Error::internal("the response body was already taken"))?;
        let mut writer = BodyWriter { stream };
        let result = match self {
            ResponseBody::Empty => Ok(()),
            ResponseBody::Bytes(bytes) => writer.write(&bytes),
            ResponseBody::Static(bytes) => writer.write(bytes),
            ResponseBody::Stream(produce) => produce(&mut writer),
        };
        drop(writer);
        OutgoingBody::finish(body, None)
            .map_err(|_| Error::internal("finishing the response body failed"))?;
        result
    }
}

impl From<Vec<u8>> for ResponseBody {
    fn from(bytes: Vec<u8>) -> Self {
        ResponseBody::Bytes(bytes)
    }
}

impl From<String> for ResponseBody {
    fn from(text: String) -> Self {
        ResponseBody::Bytes(text.into_bytes())
    }
}

impl From<&'static str> for ResponseBody {
    fn from(text: &'static str) -> Self {
        ResponseBody::Static(text.as_bytes())
    }
}

impl From<&'static [u8]> for ResponseBody {
    fn from(bytes: &'static [u8]) -> Self {
        ResponseBody::Static(bytes)
    }
}

impl From<()> for ResponseBody {
    fn from(_: ()) -> Self {
        ResponseBody::Empty
    }
}
