//! A loopback HTTP relay in front of a real registry that injects one fault into the first
//! response for one blob: the connection cut halfway through the body, the body stalled
//! (the connection kept open, nothing more sent), or a 500 instead of the blob. Everything
//! else is relayed as is, and bytes sent to clients are counted.
//!
//! Each request is sent on with `Connection: close`, so one connection carries one request
//! and the relay never has to find where a response ends.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The fault to inject.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Relay the headers and half the body, then close both connections.
    Cut,
    /// Relay the headers and half the body, then send nothing more (connection open).
    Stall,
    /// Answer `500 Internal Server Error` without asking the registry.
    ServerError,
}

/// A running relay; stops accepting on drop (stalled connections are closed then).
pub struct FaultRelay {
    /// Where clients connect.
    pub addr: String,
    served: Arc<AtomicU64>,
    armed: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    stalled: Arc<Mutex<Vec<TcpStream>>>,
}

struct Shared {
    backend: String,
    blob: String,
    fault: Fault,
    served: Arc<AtomicU64>,
    armed: Arc<AtomicBool>,
    stalled: Arc<Mutex<Vec<TcpStream>>>,
}

impl FaultRelay {
    /// Relays to `backend` (`HOST:PORT`); the first GET of `/v2/.../blobs/<blob>` gets `fault`.
    pub fn start(backend: &str, blob: &str, fault: Fault) -> FaultRelay {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let relay = FaultRelay {
            addr,
            served: Arc::new(AtomicU64::new(0)),
            armed: Arc::new(AtomicBool::new(true)),
            stop: Arc::new(AtomicBool::new(false)),
            stalled: Arc::new(Mutex::new(Vec::new())),
        };
        let shared = Arc::new(Shared {
            backend: backend.to_string(),
            blob: blob.to_string(),
            fault,
            served: relay.served.clone(),
            armed: relay.armed.clone(),
            stalled: relay.stalled.clone(),
        });
        let stop = relay.stop.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = client else { continue };
                let shared = shared.clone();
                std::thread::spawn(move || serve(client, &shared));
            }
        });
        relay
    }

    /// `docker://ADDR/name`.
    pub fn url(&self, name: &str) -> String {
        format!("docker://{}/{name}", self.addr)
    }

    /// Whether the fault was injected already.
    pub fn fired(&self) -> bool {
        !self.armed.load(Ordering::SeqCst)
    }

    /// Bytes sent to clients since the last [`reset`](Self::reset).
    pub fn served(&self) -> u64 {
        self.served.load(Ordering::SeqCst)
    }

    /// Zeroes the byte counter.
    pub fn reset(&self) {
        self.served.store(0, Ordering::SeqCst);
    }
}

impl Drop for FaultRelay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees `stop`.
        let _ = TcpStream::connect(&self.addr);
        for s in self.stalled.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

/// Reads the request head (GET/HEAD only: no body) up to the blank line.
fn read_head(client: &mut TcpStream) -> Option<Vec<u8>> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if client.read(&mut byte).ok()? == 0 || head.len() > 64 << 10 {
            return None;
        }
        head.push(byte[0]);
    }
    Some(head)
}

/// The head with any `Connection:` header replaced by `Connection: close`.
fn close_after(head: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(head);
    let mut out = String::new();
    for line in text.split("\r\n").filter(|l| !l.is_empty()) {
        if !line.to_ascii_lowercase().starts_with("connection:") {
            out.push_str(line);
            out.push_str("\r\n");
        }
    }
    out.push_str("Connection: close\r\n\r\n");
    out.into_bytes()
}

fn serve(mut client: TcpStream, shared: &Shared) {
    let Some(head) = read_head(&mut client) else {
        return;
    };
    let first_line = String::from_utf8_lossy(&head)
        .lines()
        .next()
        .unwrap_or("")
        .to_string();
    let is_target = first_line.starts_with("GET ")
        && first_line.contains(&format!("/blobs/{}", shared.blob))
        && shared.armed.swap(false, Ordering::SeqCst);
    if is_target && shared.fault == Fault::ServerError {
        let _ = client.write_all(
            b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        );
        return;
    }
    let Ok(mut server) = TcpStream::connect(&shared.backend) else {
        return;
    };
    if server.write_all(&close_after(&head)).is_err() {
        return;
    }
    // The response: all of it, or for the target up to half its body.
    let mut sent_body = 0u64;
    let mut body_len: Option<u64> = None;
    let mut head_buf = Vec::new();
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = match server.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let mut chunk = &buf[..n];
        if is_target {
            if body_len.is_none() {
                head_buf.extend_from_slice(chunk);
                let Some(end) = find(&head_buf, b"\r\n\r\n") else {
                    continue;
                };
                body_len = Some(content_length(&head_buf[..end]).unwrap_or(0));
                let body_start = head_buf[end + 4..].to_vec();
                if client.write_all(&head_buf[..end + 4]).is_err() {
                    return;
                }
                shared.served.fetch_add(end as u64 + 4, Ordering::SeqCst);
                head_buf = body_start;
                chunk = &head_buf;
            }
            let half = body_len.unwrap_or(0) / 2;
            let room = half.saturating_sub(sent_body) as usize;
            let take = chunk.len().min(room);
            if client.write_all(&chunk[..take]).is_err() {
                return;
            }
            shared.served.fetch_add(take as u64, Ordering::SeqCst);
            sent_body += take as u64;
            if sent_body >= half {
                match shared.fault {
                    Fault::Cut => {
                        let _ = client.shutdown(Shutdown::Both);
                    }
                    Fault::Stall => {
                        // Keep the client connection open and silent until the relay is
                        // dropped; the client has to give up by itself.
                        shared.stalled.lock().unwrap().push(client);
                    }
                    Fault::ServerError => unreachable!(),
                }
                return;
            }
            head_buf.clear();
            continue;
        }
        if client.write_all(chunk).is_err() {
            return;
        }
        shared.served.fetch_add(n as u64, Ordering::SeqCst);
    }
    let _ = client.shutdown(Shutdown::Write);
    // Give a slow reader a moment before the socket closes with data unread.
    let _ = client.set_read_timeout(Some(Duration::from_secs(1)));
    let _ = client.read(&mut buf);
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn content_length(head: &[u8]) -> Option<u64> {
    String::from_utf8_lossy(head).lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case("content-length")
            .then(|| v.trim().parse().ok())?
    })
}
