//! The upstream's response body of a forwarded request, relayed frame by frame to actix-web or
//! hyper's server, aborting the client's response when the upstream breaks off, and giving
//! the upstream connection back to the pool once it was read to the end. The client's body
//! going the other way is in [`request_body`](super::request_body).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use actix_web::http::header::HeaderValue;
use actix_web::web::Bytes;
use futures_util::Stream;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

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
}

impl ResponseBody {
    pub fn new(
        body: Incoming,
        route: Arc<Route>,
        instance: String,
        request_id: HeaderValue,
        slot: Slot<Route>,
        lease: Lease,
    ) -> ResponseBody {
        ResponseBody {
            body,
            route,
            instance,
            request_id,
            relayed: 0,
            _slot: slot,
            lease: Some(lease),
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
            match ready!(Pin::new(&mut this.body).poll_frame(cx)) {
                None => {
                    this.ended();
                    return Poll::Ready(None);
                }
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data()
                        && !data.is_empty()
                    {
                        this.relayed += data.len() as u64;
                        return Poll::Ready(Some(Ok(data)));
                    }
                }
                Some(Err(e)) => return Poll::Ready(Some(Err(this.broke_off(e)))),
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
        let this = self.get_mut();
        match ready!(Pin::new(&mut this.body).poll_frame(cx)) {
            None => {
                this.ended();
                Poll::Ready(None)
            }
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    this.relayed += data.len() as u64;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Some(Err(e)) => Poll::Ready(Some(Err(this.broke_off(e)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
