//! The bytes under hyper: a TCP stream shared with the connection object
//! (for the hand-out check), TLS on top of it (feature `rustls`), and the
//! tap between them and hyper that tells the pool what arrived (plaintext
//! bytes for HTTP/1's retry rule; HTTP/2 SETTINGS and GOAWAY frames).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpStream;

use super::conn::ConnState;

/// A TCP stream whose socket the connection object can also look at (the
/// hand-out check reads its recorded readiness). Reads and writes go
/// through the reactor's readiness and `try_read` / `try_write`, as tokio's
/// own owned halves do; only hyper's connection task reads and writes it.
pub(crate) struct SharedTcp(pub(crate) Arc<TcpStream>);

impl AsyncRead for SharedTcp {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            ready!(self.0.poll_read_ready(cx))?;
            let want = buf.remaining();
            let mut got = None;
            // As tokio's own `poll_read`: a read shorter than the buffer
            // emptied the socket, so its readiness is cleared now (by
            // answering `WouldBlock` to `try_io` after the read) and the next
            // read waits for the reactor instead of making a system call
            // that finds nothing. `ReadBuf` is a `BufMut`: no zeroing.
            let r = self.0.try_io(Interest::READABLE, || {
                let n = self.0.try_read_buf(buf)?;
                got = Some(n);
                if n > 0 && n < want {
                    Err(io::ErrorKind::WouldBlock.into())
                } else {
                    Ok(n)
                }
            });
            match (r, got) {
                (_, Some(_)) | (Ok(_), None) => return Poll::Ready(Ok(())),
                // The readiness was stale (now cleared).
                (Err(e), None) if e.kind() == io::ErrorKind::WouldBlock => continue,
                (Err(e), None) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncWrite for SharedTcp {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.0.poll_write_ready(cx))?;
            match self.0.try_write(buf) {
                Ok(n) => return Poll::Ready(Ok(n)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.0.poll_write_ready(cx))?;
            match self.0.try_write_vectored(bufs) {
                Ok(n) => return Poll::Ready(Ok(n)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // As tokio's `TcpStream::poll_shutdown`: a FIN, at once.
        let r = socket2::SockRef::from(&*self.0).shutdown(std::net::Shutdown::Write);
        Poll::Ready(match r {
            Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(()),
            r => r,
        })
    }
}

/// The stream hyper speaks over: plain TCP or TLS.
pub(crate) enum Stream {
    Plain(SharedTcp),
    #[cfg(feature = "rustls")]
    Tls(Box<tokio_rustls::client::TlsStream<SharedTcp>>),
}

macro_rules! each {
    ($self:ident, $s:ident => $e:expr) => {
        match $self.get_mut() {
            Stream::Plain($s) => {
                let $s = Pin::new($s);
                $e
            }
            #[cfg(feature = "rustls")]
            Stream::Tls($s) => {
                let $s = Pin::new(&mut **$s);
                $e
            }
        }
    };
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        each!(self, s => s.poll_read(cx, buf))
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        each!(self, s => s.poll_write(cx, buf))
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        each!(self, s => s.poll_write_vectored(cx, bufs))
    }
    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(s) => s.is_write_vectored(),
            #[cfg(feature = "rustls")]
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each!(self, s => s.poll_flush(cx))
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each!(self, s => s.poll_shutdown(cx))
    }
}

/// Follows the HTTP/2 frames the server sends (9-byte headers; payloads
/// are skipped, not parsed): a complete SETTINGS frame (not an ACK) and a
/// GOAWAY frame header are reported to the connection's state.
#[derive(Debug, Default)]
pub(crate) struct FrameScan {
    head: [u8; 9],
    have: usize,
    /// Payload bytes of the current frame still to come.
    left: u32,
    /// The current frame is a SETTINGS frame (not an ACK).
    settings: bool,
    /// A SETTINGS frame was read: h2 applies it (and queues its ACK)
    /// before it reads again, so the next read is when to look.
    settings_read: bool,
}

const FRAME_SETTINGS: u8 = 0x4;
const FRAME_GOAWAY: u8 = 0x7;
const FLAG_ACK: u8 = 0x1;

impl FrameScan {
    /// Bytes the server sent, in order.
    pub(crate) fn feed(&mut self, mut b: &[u8], state: &ConnState) {
        while !b.is_empty() {
            if self.left > 0 {
                let n = (self.left as usize).min(b.len());
                self.left -= n as u32;
                b = &b[n..];
                if self.left == 0 {
                    self.frame_done();
                }
                continue;
            }
            let n = (9 - self.have).min(b.len());
            self.head[self.have..self.have + n].copy_from_slice(&b[..n]);
            self.have += n;
            b = &b[n..];
            if self.have < 9 {
                continue;
            }
            self.have = 0;
            let h = self.head;
            let len = u32::from_be_bytes([0, h[0], h[1], h[2]]);
            self.settings = h[3] == FRAME_SETTINGS && h[4] & FLAG_ACK == 0;
            if h[3] == FRAME_GOAWAY {
                state.goaway_seen();
            }
            self.left = len;
            if len == 0 {
                self.frame_done();
            }
        }
    }

    fn frame_done(&mut self) {
        if std::mem::take(&mut self.settings) {
            self.settings_read = true;
        }
    }
}

/// Sits between the stream and hyper: counts the plaintext bytes read
/// (HTTP/1: "EOF before any response byte"), follows HTTP/2 frames
/// ([`FrameScan`]), and marks the connection closed at EOF or on a read
/// error, before hyper's connection task has even seen it.
pub(crate) struct Tap {
    pub(crate) io: Stream,
    pub(crate) state: Arc<ConnState>,
    pub(crate) scan: Option<FrameScan>,
}

impl AsyncRead for Tap {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(scan) = &mut this.scan {
            if std::mem::take(&mut scan.settings_read) {
                // h2 applied the SETTINGS frame before reading again.
                this.state.settings_applied();
            }
        }
        let before = buf.filled().len();
        let r = ready!(Pin::new(&mut this.io).poll_read(cx, buf));
        match &r {
            Ok(()) => {
                let got = &buf.filled()[before..];
                if got.is_empty() && buf.remaining() > 0 {
                    this.state.read_closed();
                } else {
                    this.state.bytes_read(got.len());
                    if let Some(scan) = &mut this.scan {
                        scan.feed(got, &this.state);
                    }
                }
            }
            Err(e) => this.state.read_failed(e),
        }
        Poll::Ready(r)
    }
}

impl AsyncWrite for Tap {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(ty: u8, flags: u8, payload: &[u8]) -> Vec<u8> {
        let len = payload.len() as u32;
        let mut v = len.to_be_bytes()[1..].to_vec();
        v.extend_from_slice(&[ty, flags, 0, 0, 0, 0]);
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn frames_split_anywhere_are_followed() {
        let mut wire = Vec::new();
        wire.extend(frame(FRAME_SETTINGS, 0, &[0, 3, 0, 0, 0, 4])); // MCS = 4
        wire.extend(frame(0x8, 0, &[0, 0, 1, 0])); // WINDOW_UPDATE
        wire.extend(frame(FRAME_SETTINGS, FLAG_ACK, &[])); // an ACK: not reported
        wire.extend(frame(0x0, 0, &[7; 300])); // DATA whose payload looks like frames
        wire.extend(frame(FRAME_GOAWAY, 0, &[0, 0, 0, 1, 0, 0, 0, 0]));
        for chunk in [1, 2, 5, 9, 10, 64, wire.len()] {
            let state = ConnState::new(false);
            let mut scan = FrameScan::default();
            let mut settings = 0;
            for part in wire.chunks(chunk) {
                scan.feed(part, &state);
                if std::mem::take(&mut scan.settings_read) {
                    settings += 1;
                }
            }
            assert_eq!(
                settings, 1,
                "chunk {chunk}: one SETTINGS frame (the ACK is not one)"
            );
            assert!(state.is_goaway(), "chunk {chunk}: the GOAWAY was seen");
            assert_eq!(
                (scan.have, scan.left),
                (0, 0),
                "chunk {chunk}: at a boundary"
            );
        }
    }

    #[test]
    fn no_goaway_no_report() {
        let state = ConnState::new(false);
        let mut scan = FrameScan::default();
        scan.feed(&frame(0x0, 0, &[FRAME_GOAWAY; 20]), &state);
        assert!(!state.is_goaway());
    }
}
