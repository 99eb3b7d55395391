//! The socket under hyper: it notes when bytes move (for the idle timeout),
//! answers in the API's JSON where hyper answers a request it cannot parse
//! with an empty body, and then closes gently.
//!
//! hyper answers such a request itself, before any handler is called: `400`
//! (a malformed request line, header or body length; a target that is not
//! ASCII), `414` (a target over 64 KiB) or `431` (a head over
//! `max_head_bytes`, or over 100 headers), each with `content-length: 0`, and
//! then closes the connection. It offers no hook for that answer, so it is
//! recognized where it is written: a write that starts with
//! `HTTP/1.x 400|414|431 ` and whose head says `content-length: 0` and no
//! `content-type`. No answer of the API's own looks like that (each has a
//! content type, its errors are JSON), and no body it streams can start a
//! write with a status line (JSON and SSE carry no raw CR LF; chunk sizes
//! lead chunked writes), so nothing else is ever rewritten.
//!
//! Invariants: a connection's permit is released only when its socket is
//! closed. After a replaced answer the socket is shut for writing and read
//! (what is read is dropped) until the client closes, for at most
//! [`LINGER`] and [`LINGER_BYTES`]: closing with the rest of a refused
//! request unread would make the kernel send a reset, and the client would
//! lose the answer.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;

use super::connection::Activity;
use super::limits::Limits;

/// Longest wait for a refused client to read its answer and close.
const LINGER: Duration = Duration::from_secs(2);
/// Most bytes of a refused request read and dropped while lingering.
const LINGER_BYTES: usize = 1 << 20;
/// hyper's own bound on a request target, whatever `max_uri_bytes` says.
const HYPER_MAX_URI: usize = u16::MAX as usize - 1;

/// A connection's socket, as hyper reads and writes it.
pub(super) struct Socket {
    /// `None` only once dropped (lingering takes it).
    stream: Option<TcpStream>,
    activity: Arc<Activity>,
    /// Released with the socket.
    permit: Option<OwnedSemaphorePermit>,
    /// The JSON answer that replaced hyper's empty one, and how much of it
    /// is written.
    answer: Option<(Vec<u8>, usize)>,
    max_head_bytes: usize,
    max_uri_bytes: usize,
}

impl Socket {
    pub(super) fn new(
        stream: TcpStream,
        permit: OwnedSemaphorePermit,
        activity: Arc<Activity>,
        limits: &Limits,
    ) -> Socket {
        Socket {
            stream: Some(stream),
            activity,
            permit: Some(permit),
            answer: None,
            max_head_bytes: limits.max_head_bytes,
            max_uri_bytes: limits.max_uri_bytes.min(HYPER_MAX_URI),
        }
    }

    fn stream(&mut self) -> Pin<&mut TcpStream> {
        Pin::new(
            self.stream
                .as_mut()
                .expect("the stream is taken only on drop"),
        )
    }

    /// Write what is left of the replacing answer, if any.
    fn poll_answer(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            let Some((answer, written)) = self.answer.take() else {
                return Poll::Ready(Ok(()));
            };
            if written >= answer.len() {
                self.answer = Some((answer, written));
                return Poll::Ready(Ok(()));
            }
            let polled = self.stream().poll_write(cx, &answer[written..]);
            let n = match polled {
                Poll::Ready(Ok(n)) => n,
                Poll::Ready(Err(e)) => {
                    self.answer = Some((answer, written));
                    return Poll::Ready(Err(e));
                }
                Poll::Pending => {
                    self.answer = Some((answer, written));
                    return Poll::Pending;
                }
            };
            if n == 0 {
                self.answer = Some((answer, written));
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.activity.touch();
            self.answer = Some((answer, written + n));
        }
    }

    /// The JSON answer for hyper's bodiless one, if `buf` starts with one.
    fn replacement(&self, buf: &[u8]) -> Option<Vec<u8>> {
        let status = automatic_answer(buf)?;
        let (reason, code, message) = match status {
            414 => (
                "URI Too Long",
                "uri_too_long",
                format!(
                    "the request target (path and query) is longer than {} bytes",
                    self.max_uri_bytes
                ),
            ),
            431 => (
                "Request Header Fields Too Large",
                "headers_too_large",
                format!(
                    "the request line and headers are larger than {} bytes, or more than 100 headers",
                    self.max_head_bytes
                ),
            ),
            _ => (
                "Bad Request",
                "bad_request",
                "the request is not HTTP/1.1 that this server reads: a malformed request line, header or body length, or a target that is not ASCII".to_string(),
            ),
        };
        let body = serde_json::json!({"error": {"code": code, "message": message}}).to_string();
        Some(
            format!(
                "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            )
            .into_bytes(),
        )
    }
}

/// The status of hyper's own answer to an unparsable request, if `buf`
/// starts with one (see the module doc).
fn automatic_answer(buf: &[u8]) -> Option<u16> {
    let rest = buf.strip_prefix(b"HTTP/1.")?;
    let status = match rest.get(1..6)? {
        b" 400 " => 400,
        b" 414 " => 414,
        b" 431 " => 431,
        _ => return None,
    };
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&buf[..end + 2]).to_ascii_lowercase();
    (head.contains("\r\ncontent-length: 0\r\n") && !head.contains("\r\ncontent-type:"))
        .then_some(status)
}

impl AsyncRead for Socket {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let read = ready!(this.stream().poll_read(cx, buf));
        if buf.filled().len() > before {
            this.activity.touch();
        }
        Poll::Ready(read)
    }
}

impl AsyncWrite for Socket {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.answer.is_some() {
            // hyper writes nothing after its answer; whatever it is, ours
            // went in its place.
            ready!(this.poll_answer(cx))?;
            return Poll::Ready(Ok(buf.len()));
        }
        if let Some(answer) = this.replacement(buf) {
            this.answer = Some((answer, 0));
            // Taken whole; ours goes out now or on the flush that follows.
            if let Poll::Ready(Err(e)) = this.poll_answer(cx) {
                return Poll::Ready(Err(e));
            }
            return Poll::Ready(Ok(buf.len()));
        }
        let n = ready!(this.stream().poll_write(cx, buf))?;
        if n > 0 {
            this.activity.touch();
        }
        Poll::Ready(Ok(n))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let first = bufs
            .iter()
            .find(|b| !b.is_empty())
            .map_or(&[][..], |b| &**b);
        if this.answer.is_some() || automatic_answer(first).is_some() {
            return Pin::new(this).poll_write(cx, first);
        }
        let n = ready!(this.stream().poll_write_vectored(cx, bufs))?;
        if n > 0 {
            this.activity.touch();
        }
        Poll::Ready(Ok(n))
    }

    fn is_write_vectored(&self) -> bool {
        self.stream
            .as_ref()
            .is_some_and(|stream| stream.is_write_vectored())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_answer(cx))?;
        this.stream().poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_answer(cx))?;
        this.stream().poll_shutdown(cx)
    }
}

impl Drop for Socket {
    fn drop(&mut self) {
        let (Some(stream), Some((answer, written))) = (self.stream.take(), self.answer.take())
        else {
            return;
        };
        let rest = answer.get(written..).unwrap_or_default().to_vec();
        let permit = self.permit.take();
        // Outside a runtime (never, in the server) the socket just closes.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(linger(stream, rest, permit));
        }
    }
}

/// Finish a replaced answer, shut the socket for writing, and read until the
/// client closes (bounded), so that it reads the answer rather than a reset.
async fn linger(mut stream: TcpStream, rest: Vec<u8>, permit: Option<OwnedSemaphorePermit>) {
    let drained = tokio::time::timeout(LINGER, async {
        stream.write_all(&rest).await?;
        stream.shutdown().await?;
        let mut sink = vec![0u8; 16 << 10];
        let mut read = 0;
        while read < LINGER_BYTES {
            let n = stream.read(&mut sink).await?;
            if n == 0 {
                break;
            }
            read += n;
        }
        Ok::<_, io::Error>(())
    })
    .await;
    if let Ok(Err(e)) = drained {
        tracing::debug!("closing a refused connection: {e}");
    }
    drop(permit);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_hypers_bodiless_answers_are_recognized() {
        let hyper = |status: &str| {
            format!(
                "HTTP/1.1 {status}\r\nconnection: close\r\ncontent-length: 0\r\ndate: Mon, 30 Nov 2026 17:32:24 GMT\r\n\r\n"
            )
        };
        assert_eq!(
            automatic_answer(hyper("400 Bad Request").as_bytes()),
            Some(400)
        );
        assert_eq!(
            automatic_answer(hyper("414 URI Too Long").as_bytes()),
            Some(414)
        );
        assert_eq!(
            automatic_answer(hyper("431 Request Header Fields Too Large").as_bytes()),
            Some(431)
        );
        assert_eq!(automatic_answer(hyper("404 Not Found").as_bytes()), None);
        assert_eq!(automatic_answer(hyper("200 OK").as_bytes()), None);
        let ours = "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 0\r\n\r\n";
        assert_eq!(automatic_answer(ours.as_bytes()), None, "a JSON answer");
        let body = "HTTP/1.1 400 Bad Request\r\ncontent-length: 79\r\n\r\n";
        assert_eq!(automatic_answer(body.as_bytes()), None, "it has a body");
        assert_eq!(automatic_answer(b"HTTP/1.1 400 Bad"), None, "no whole head");
        assert_eq!(automatic_answer(b"1a\r\n{\"events\":[]}\r\n"), None);
    }
}
