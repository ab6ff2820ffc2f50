//! A watch on the tar block structure, in front of the tar parser.
//!
//! The `tar` crate reads PAX extended headers and GNU long names whole into memory, however
//! large the header claims to be: a small compressed layer could expand into one multi-GB
//! "path". [`HeaderGuard`] follows the 512-byte block structure as the bytes pass (headers,
//! data rounded up to blocks, PAX `size` overrides) and refuses extension headers over the
//! limit before the parser sees them. It copies nothing but PAX records (bounded by the
//! limit, kept to learn a `size` override). A sparse entry stops the watch (its extra header
//! blocks are not followed); the importer refuses sparse entries anyway.

use std::io::{self, Read};

use super::LayerError;

const BLOCK: u64 = 512;

enum State {
    /// Collecting a header block.
    Header { buf: Box<[u8; 512]>, filled: usize },
    /// Skipping `remaining` bytes of data and padding; `pax` collects PAX records.
    Data {
        remaining: u64,
        data: u64,
        pax: Option<Vec<u8>>,
    },
    /// End-of-archive marker seen, or structure no longer followed: pass through.
    Done,
}

pub(super) struct HeaderGuard<R> {
    inner: R,
    state: State,
    max: u64,
    layer: String,
    /// A PAX `size` for the next non-extension entry.
    pending_size: Option<u64>,
}

impl<R: Read> HeaderGuard<R> {
    pub(super) fn new(inner: R, max_extension_bytes: u64, layer: &str) -> Self {
        HeaderGuard {
            inner,
            state: State::Header {
                buf: Box::new([0; 512]),
                filled: 0,
            },
            max: max_extension_bytes,
            layer: layer.to_string(),
            pending_size: None,
        }
    }

    pub(super) fn into_inner(self) -> R {
        self.inner
    }

    fn feed(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            match &mut self.state {
                State::Done => return Ok(()),
                State::Header { buf, filled } => {
                    let take = (512 - *filled).min(bytes.len());
                    buf[*filled..*filled + take].copy_from_slice(&bytes[..take]);
                    *filled += take;
                    bytes = &bytes[take..];
                    if *filled == 512 {
                        let header = std::mem::replace(buf, Box::new([0; 512]));
                        self.state = self.next_state(&header)?;
                    }
                }
                State::Data {
                    remaining,
                    data,
                    pax,
                } => {
                    let take = (*remaining).min(bytes.len() as u64) as usize;
                    if let Some(p) = pax {
                        let keep = (*data).min(take as u64) as usize;
                        p.extend_from_slice(&bytes[..keep]);
                        *data -= keep as u64;
                    }
                    *remaining -= take as u64;
                    bytes = &bytes[take..];
                    if *remaining == 0 {
                        if let Some(p) = pax {
                            self.pending_size = pax_size(p);
                        }
                        self.state = State::Header {
                            buf: Box::new([0; 512]),
                            filled: 0,
                        };
                    }
                }
            }
        }
        Ok(())
    }

    fn next_state(&mut self, h: &[u8; 512]) -> io::Result<State> {
        if h.iter().all(|&b| b == 0) {
            return Ok(State::Done);
        }
        let kind = h[156];
        let Some(header_size) = parse_size(&h[124..136]) else {
            // Let the parser report the malformed header.
            return Ok(State::Done);
        };
        let size = match kind {
            b'x' | b'g' | b'L' | b'K' => {
                if header_size > self.max {
                    return Err(io::Error::other(LayerError::LimitExceeded {
                        layer: self.layer.clone(),
                        what: "bytes in one extended tar header",
                        limit: self.max,
                    }));
                }
                header_size
            }
            b'S' => return Ok(State::Done),
            _ => self.pending_size.take().unwrap_or(header_size),
        };
        let remaining = size.div_ceil(BLOCK) * BLOCK;
        let pax = (kind == b'x').then(|| Vec::with_capacity(size as usize));
        if remaining == 0 {
            if let Some(p) = &pax {
                self.pending_size = pax_size(p);
            }
            return Ok(State::Header {
                buf: Box::new([0; 512]),
                filled: 0,
            });
        }
        Ok(State::Data {
            remaining,
            data: size,
            pax,
        })
    }
}

impl<R: Read> Read for HeaderGuard<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.feed(&buf[..n])?;
        Ok(n)
    }
}

/// A tar numeric field: octal text, or base-256 when the high bit of the first byte is set.
fn parse_size(field: &[u8]) -> Option<u64> {
    if field[0] & 0x80 != 0 {
        let mut v: u64 = u64::from(field[0] & 0x7f);
        for &b in &field[1..] {
            v = v.checked_mul(256)?.checked_add(u64::from(b))?;
        }
        return Some(v);
    }
    let text: Vec<u8> = field
        .iter()
        .copied()
        .skip_while(|&b| b == b' ' || b == 0)
        .take_while(|&b| b != b' ' && b != 0)
        .collect();
    if text.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(std::str::from_utf8(&text).ok()?, 8).ok()
}

/// The `size` record of PAX extended header data (`"<len> key=value\n"` records).
fn pax_size(mut data: &[u8]) -> Option<u64> {
    let mut size = None;
    while !data.is_empty() {
        let sp = data.iter().position(|&b| b == b' ')?;
        let len: usize = std::str::from_utf8(&data[..sp]).ok()?.parse().ok()?;
        if len <= sp || len > data.len() {
            return size;
        }
        let record = &data[sp + 1..len];
        let record = record.strip_suffix(b"\n").unwrap_or(record);
        if let Some(v) = record.strip_prefix(b"size=") {
            size = std::str::from_utf8(v).ok()?.parse().ok();
        }
        data = &data[len..];
    }
    size
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields() {
        assert_eq!(parse_size(b"00000001750\0"), Some(1000));
        assert_eq!(parse_size(b"        \0\0\0\0"), Some(0));
        let mut b256 = [0u8; 12];
        b256[0] = 0x80;
        b256[11] = 7;
        b256[10] = 1;
        assert_eq!(parse_size(&b256), Some(263));
        assert_eq!(pax_size(b"11 size=42\n20 path=a/b/c/d/e/f\n"), Some(42));
        assert_eq!(pax_size(b"16 path=abcdefg\n"), None);
    }
}
