//! Just enough HTTP/1.1 to talk to etcd's JSON gateway on loopback or a
//! LAN: POST a JSON body over a kept-alive connection and read the reply
//! (by length or chunked), or read a chunked reply as a stream of lines
//! (a watch). Every wait is bounded by the connection's timeouts.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// Replies larger than this are refused: etcd's own limit on a request is
/// 1.5 MiB by default, and a range reply of many keys stays far below.
const MAX_REPLY: usize = 64 << 20;

pub struct Conn {
    reader: BufReader<TcpStream>,
    host: String,
}

/// How a reply's body is framed.
enum Body {
    Length(usize),
    Chunked,
    /// Until the server closes the connection.
    ToEnd,
}

impl Conn {
    /// Connects to `host:port`, waiting at most `timeout` for the
    /// connection and then for each read and write.
    pub fn connect(host: &str, timeout: Duration) -> io::Result<Conn> {
        let mut last = io::Error::new(io::ErrorKind::NotFound, format!("{host}: no address"));
        for addr in host.to_socket_addrs()? {
            match TcpStream::connect_timeout(&addr, timeout) {
                Ok(s) => {
                    s.set_nodelay(true)?;
                    s.set_read_timeout(Some(timeout))?;
                    s.set_write_timeout(Some(timeout))?;
                    return Ok(Conn {
                        reader: BufReader::new(s),
                        host: host.to_string(),
                    });
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// Changes how long a read may wait (a watch waits for events).
    pub fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        self.reader.get_ref().set_read_timeout(t)
    }

    /// POSTs `body` to `path`; returns the status and the whole reply,
    /// and whether the connection may be used again.
    pub fn post(&mut self, path: &str, body: &[u8]) -> io::Result<(u16, Vec<u8>, bool)> {
        let (status, framing, keep) = self.send(path, body)?;
        let reply = match framing {
            Body::Length(n) if n > MAX_REPLY => return Err(too_large()),
            Body::Length(n) => {
                let mut v = vec![0; n];
                self.reader.read_exact(&mut v)?;
                v
            }
            Body::Chunked => {
                let mut v = Vec::new();
                while let Some(chunk) = self.chunk()? {
                    if v.len() + chunk.len() > MAX_REPLY {
                        return Err(too_large());
                    }
                    v.extend_from_slice(&chunk);
                }
                v
            }
            Body::ToEnd => {
                let mut v = Vec::new();
                (&mut self.reader)
                    .take(MAX_REPLY as u64 + 1)
                    .read_to_end(&mut v)?;
                if v.len() > MAX_REPLY {
                    return Err(too_large());
                }
                return Ok((status, v, false));
            }
        };
        Ok((status, reply, keep))
    }

    /// POSTs `body` to `path` and returns the status; the reply is then
    /// read with `next_line`, for as long as the server streams it.
    pub fn post_stream(&mut self, path: &str, body: &[u8]) -> io::Result<u16> {
        let (status, framing, _) = self.send(path, body)?;
        match framing {
            Body::Chunked => Ok(status),
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "a streamed reply that is not chunked",
            )),
        }
    }

    /// The next newline-terminated line of a streamed reply, without the
    /// newline; `None` at its end. Lines may span chunks.
    pub fn next_line(&mut self, pending: &mut Vec<u8>) -> io::Result<Option<Vec<u8>>> {
        loop {
            if let Some(i) = pending.iter().position(|&b| b == b'\n') {
                let line = pending[..i].to_vec();
                pending.drain(..=i);
                return Ok(Some(line));
            }
            match self.chunk()? {
                Some(c) if pending.len() + c.len() > MAX_REPLY => return Err(too_large()),
                Some(c) => pending.extend_from_slice(&c),
                None if pending.is_empty() => return Ok(None),
                None => return Ok(Some(std::mem::take(pending))),
            }
        }
    }

    fn send(&mut self, path: &str, body: &[u8]) -> io::Result<(u16, Body, bool)> {
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n",
            self.host,
            body.len()
        );
        // One write, so that the request goes out in one segment.
        let mut request = head.into_bytes();
        request.extend_from_slice(body);
        let s = self.reader.get_mut();
        s.write_all(&request)?;
        s.flush()?;
        self.head()
    }

    /// Reads the status line and headers.
    fn head(&mut self) -> io::Result<(u16, Body, bool)> {
        let line = self.line()?;
        let status = line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse::<u16>().ok())
            .ok_or_else(|| bad(&format!("status line {line:?}")))?;
        let (mut framing, mut keep) = (Body::ToEnd, true);
        loop {
            let line = self.line()?;
            if line.is_empty() {
                break;
            }
            let Some((name, value)) = line.split_once(':') else {
                return Err(bad(&format!("header {line:?}")));
            };
            let value = value.trim();
            match name.to_ascii_lowercase().as_str() {
                "content-length" => {
                    let n = value.parse().map_err(|_| bad("content-length"))?;
                    framing = Body::Length(n);
                }
                "transfer-encoding" if value.eq_ignore_ascii_case("chunked") => {
                    framing = Body::Chunked
                }
                "connection" if value.eq_ignore_ascii_case("close") => keep = false,
                _ => {}
            }
        }
        Ok((status, framing, keep))
    }

    /// One chunk of a chunked body; `None` after the last.
    fn chunk(&mut self) -> io::Result<Option<Vec<u8>>> {
        let line = self.line()?;
        let size = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size, 16).map_err(|_| bad("chunk size"))?;
        if size > MAX_REPLY {
            return Err(too_large());
        }
        if size == 0 {
            // Trailers, then the empty line.
            while !self.line()?.is_empty() {}
            return Ok(None);
        }
        let mut c = vec![0; size];
        self.reader.read_exact(&mut c)?;
        if !self.line()?.is_empty() {
            return Err(bad("chunk end"));
        }
        Ok(Some(c))
    }

    /// One CRLF-terminated line of the head or of the chunk framing.
    fn line(&mut self) -> io::Result<String> {
        let mut v = Vec::new();
        (&mut self.reader).take(8192).read_until(b'\n', &mut v)?;
        if v.last() != Some(&b'\n') {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed in a reply",
            ));
        }
        v.pop();
        if v.last() == Some(&b'\r') {
            v.pop();
        }
        String::from_utf8(v).map_err(|_| bad("a line that is not UTF-8"))
    }
}

fn bad(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("bad HTTP reply: {what}"),
    )
}

fn too_large() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, "HTTP reply too large")
}
