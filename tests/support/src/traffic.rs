//! Traffic for the tests: large bodies made on the fly, a duplex echo
//! client and a tiny upstream HTTP server.

use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

/// A deterministic pseudo-random byte stream of `len` bytes (xorshift), so
/// large bodies need no memory on either side.
pub struct Noise {
    state: u64,
    left: u64,
}

impl Noise {
    /// `len` bytes from `seed`.
    pub fn new(seed: u64, len: u64) -> Noise {
        Noise {
            state: seed | 1,
            left: len,
        }
    }
}

impl Read for Noise {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(self.left as usize);
        for byte in &mut buf[..n] {
            self.state ^= self.state << 13;
            self.state ^= self.state >> 7;
            self.state ^= self.state << 17;
            *byte = self.state as u8;
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// POSTs `len` bytes of [`Noise`] to `path` over one raw connection,
/// writing the request body on one thread while reading the response on
/// another, the way a full-duplex client does; returns the status and
/// whether the response body was exactly the bytes sent.
pub fn echo_duplex(addr: SocketAddr, path: &str, len: u64) -> (u16, bool) {
    use std::io::Write;
    let stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    stream
        .set_write_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut writer = stream.try_clone().unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-length: {len}\r\nconnection: close\r\n\r\n"
    );
    let sender = std::thread::spawn(move || {
        writer.write_all(head.as_bytes()).unwrap();
        std::io::copy(&mut Noise::new(7, len), &mut writer).unwrap();
    });
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    let status: u16 = line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut chunked = false;
    loop {
        line.clear();
        reader.read_line(&mut line).unwrap();
        if line == "\r\n" || line.is_empty() {
            break;
        }
        chunked |= line
            .to_ascii_lowercase()
            .starts_with("transfer-encoding: chunked");
    }
    let mut expected = Noise::new(7, len);
    let mut same = true;
    let mut total = 0u64;
    let mut compare = |bytes: &[u8]| {
        let mut want = vec![0u8; bytes.len()];
        if expected.read_exact(&mut want).is_err() || want != bytes {
            same = false;
        }
        total += bytes.len() as u64;
    };
    if chunked {
        loop {
            line.clear();
            reader.read_line(&mut line).unwrap();
            let size = usize::from_str_radix(line.trim(), 16).unwrap_or(0);
            if size == 0 {
                break;
            }
            let mut chunk = vec![0u8; size];
            reader.read_exact(&mut chunk).unwrap();
            compare(&chunk);
            line.clear();
            reader.read_line(&mut line).unwrap();
        }
    } else {
        let mut rest = Vec::new();
        reader.read_to_end(&mut rest).unwrap();
        compare(&rest);
    }
    sender.join().unwrap();
    (status, same && total == len)
}

/// A tiny HTTP/1.1 server on `127.0.0.1:0` that answers every request with
/// 200 and `body`, for outbound tests. It stops with the test process.
pub fn upstream(body: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            std::thread::spawn(move || {
                use std::io::Write;
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                // Read the request head; the tests send no bodies upstream.
                while reader.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
                    if line == "\r\n" {
                        break;
                    }
                    line.clear();
                }
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
            });
        }
    });
    addr
}
