//! The outgoing body (of the response, or of an outbound request), written
//! as it is produced.

use std::io;

use wasip2::io::streams::OutputStream;

use crate::error::{Error, Result};

/// Bytes written to the network at most per call.
const WRITE: usize = 4096;

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
