//! The upstream's response body of a forwarded request, relayed frame by frame to actix-web or
//! hyper's server, aborting the client's response when the upstream breaks off, and giving
//! the upstream connection back to the pool once it was read to the end, or when the upstream
//! goes quiet mid-body for longer than the read timeout (nginx's `proxy_read_timeout`). The
//! client's body going the other way is in [`request_body`](super::request_body).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use actix_web::http::header::HeaderValue;
use actix_web::web::Bytes;
use futures_util::Stream;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::time::{Instant, Sleep};

use super::pool::Lease;
use super::resolve::Route;
use super::slots::Slot;

/// The upstream's response body for actix-web: data frames in order, trailers dropped (actix
/// cannot send them), and an upstream error passed on so the client's response is aborted
/// (HTTP/1.1: connection closed before the declared length or the last chunk; HTTP/2:
/// `RST_STREAM`), never ended cleanly short.
pub struct ResponseBody {
    body: Incoming,
    route: Arc<Route>,
    instance: String,
    request_id: HeaderValue,
    relayed: u64,
    /// Holds the request's place among those in flight until the body is done.
    _slot: Slot<Route>,
    /// The upstream connection, back to the pool once the body has been read to its end.
    lease: Option<Lease>,
    /// The longest the upstream may send nothing, and the deadline of its current silence:
    /// armed when a read has to wait (a body that is there at once reads no clock), moved on
    /// when a wait follows a frame.
    read_timeout: Duration,
    silence: Option<Pin<Box<Sleep>>>,
    framed_since_armed: bool,
}

impl ResponseBody {
    pub fn new(
        body: Incoming,
        route: Arc<Route>,
        instance: String,
        request_id: HeaderValue,
        slot: Slot<Route>,
        lease: Lease,
        read_timeout: Duration,
    ) -> ResponseBody {
        ResponseBody {
            body,
            route,
            instance,
            request_id,
            relayed: 0,
            _slot: slot,
            lease: Some(lease),
            read_timeout,
            silence: None,
            framed_since_armed: false,
        }
    }

    /// The body was read to its end: the connection can carry another request.
    fn ended(&mut self) {
        if let Some(lease) = self.lease.take() {
            lease.release();
        }
    }
}

impl Drop for ResponseBody {
    /// hyper's server stops polling a body that says it is at its end (its length reached), so
    /// the end is often seen here, not in a poll. A body dropped before its end drops the
    /// connection (closing it).
    fn drop(&mut self) {
        if self.body.is_end_stream() {
            self.ended();
        }
    }
}

impl ResponseBody {
    /// The upstream's next frame, or an error once it has been silent for the read timeout.
    fn poll_upstream(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        match Pin::new(&mut self.body).poll_frame(cx) {
            Poll::Ready(None) => {
                self.ended();
                Poll::Ready(None)
            }
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.relayed += data.len() as u64;
                }
                self.framed_since_armed = true;
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(self.broke_off(e)))),
            Poll::Pending => {
                let timeout = self.read_timeout;
                let framed = std::mem::take(&mut self.framed_since_armed);
                let silence = match &mut self.silence {
                    Some(silence) => {
                        if framed {
                            silence.as_mut().reset(Instant::now() + timeout);
                        }
                        silence
                    }
                    slot @ None => slot.insert(Box::pin(tokio::time::sleep(timeout))),
                };
                ready!(silence.as_mut().poll(cx));
                Poll::Ready(Some(Err(self.went_quiet())))
            }
        }
    }

    fn went_quiet(&self) -> io::Error {
        self.route.metrics.upstream_error("timeout");
        tracing::warn!(
            request_id = self.request_id.to_str().unwrap_or_default(),
            application = %self.route.target.name,
            upstream = %self.instance,
            relayed = self.relayed,
            "upstream sent nothing of the response body for {} s (proxy_read_timeout); the client's response is aborted",
            self.read_timeout.as_secs()
        );
        io::Error::new(io::ErrorKind::TimedOut, "upstream response body timed out")
    }

    fn broke_off(&self, e: hyper::Error) -> io::Error {
        self.route.metrics.upstream_error("broken");
        tracing::warn!(
            request_id = self.request_id.to_str().unwrap_or_default(),
            application = %self.route.target.name,
            upstream = %self.instance,
            relayed = self.relayed,
            "upstream broke off the response body ({e}); the client's response is aborted"
        );
        io::Error::other(e)
    }
}

impl Stream for ResponseBody {
    type Item = Result<Bytes, io::Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            match ready!(this.poll_upstream(cx)) {
                None => return Poll::Ready(None),
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data()
                        && !data.is_empty()
                    {
                        return Poll::Ready(Some(Ok(data)));
                    }
                }
                Some(Err(e)) => return Poll::Ready(Some(Err(e))),
            }
        }
    }
}

/// The same body for hyper's server (the front's direct path): frames in order, trailers
/// included, an upstream error passed on so hyper aborts the client's response.
impl Body for ResponseBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        self.get_mut().poll_upstream(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
