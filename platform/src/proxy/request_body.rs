//! The client's request body on its way upstream: piped from actix-web's payload or hyper's
//! incoming body into a `Send` body the upstream connection can poll, which a retry can poll
//! again when the failed attempt never touched it.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use actix_web::error::PayloadError;
use actix_web::web::{self, Bytes};
use futures_util::StreamExt;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::sync::mpsc;

use crate::sync::MutexExt;

/// The client's body on its way upstream, shared by every attempt of one request.
#[derive(Debug)]
pub struct Pipe {
    chunks: Mutex<mpsc::Receiver<Result<Bytes, String>>>,
    /// An attempt polled the body: what it took cannot be sent to another replica.
    started: AtomicBool,
    /// Reading the client's body failed (the client's fault, not the upstream's).
    failed: AtomicBool,
    /// Chunks handed to an attempt: an upload making progress is no hung replica.
    progress: AtomicU64,
    /// The attempt is waiting for the client's next chunk (the client is the slow side).
    awaiting_client: AtomicBool,
    /// The whole body was handed on.
    ended: AtomicBool,
}

impl Pipe {
    /// Starts reading `payload` on the worker (actix payloads are not `Send`), after `first` if
    /// the caller already read it; one chunk is read ahead and waits in the pipe until an attempt
    /// polls it.
    pub fn start(
        first: Option<Result<Bytes, PayloadError>>,
        mut payload: web::Payload,
    ) -> Arc<Pipe> {
        let (pipe, tx) = Pipe::new();
        actix_web::rt::spawn(async move {
            let mut next = first;
            if next.is_none() {
                next = payload.next().await;
            }
            while let Some(item) = next {
                let failed = item.is_err();
                if tx.send(item.map_err(|e| e.to_string())).await.is_err() || failed {
                    break;
                }
                next = payload.next().await;
            }
        });
        pipe
    }

    /// The same for a request hyper's server received (the front's direct path).
    pub fn start_incoming(mut body: Incoming) -> Arc<Pipe> {
        let (pipe, tx) = Pipe::new();
        tokio::spawn(async move {
            while let Some(frame) = body.frame().await {
                let item = match frame {
                    Ok(frame) => match frame.into_data() {
                        Ok(data) if data.is_empty() => continue,
                        Ok(data) => Ok(data),
                        // Trailers of the client's body are not forwarded.
                        Err(_) => continue,
                    },
                    Err(e) => Err(e.to_string()),
                };
                let failed = item.is_err();
                if tx.send(item).await.is_err() || failed {
                    break;
                }
            }
        });
        pipe
    }

    fn new() -> (Arc<Pipe>, mpsc::Sender<Result<Bytes, String>>) {
        let (tx, rx) = mpsc::channel(1);
        let pipe = Arc::new(Pipe {
            chunks: Mutex::new(rx),
            started: AtomicBool::new(false),
            failed: AtomicBool::new(false),
            progress: AtomicU64::new(0),
            awaiting_client: AtomicBool::new(false),
            ended: AtomicBool::new(false),
        });
        (pipe, tx)
    }

    pub fn started(&self) -> bool {
        self.started.load(Ordering::Relaxed)
    }

    pub fn failed(&self) -> bool {
        self.failed.load(Ordering::Relaxed)
    }

    /// How many chunks went on so far.
    pub fn progress(&self) -> u64 {
        self.progress.load(Ordering::Relaxed)
    }

    /// Whether the upstream waits for the client's next chunk, the body unfinished.
    pub fn stalled_by_client(&self) -> bool {
        self.awaiting_client.load(Ordering::Relaxed) && !self.ended.load(Ordering::Relaxed)
    }
}

/// The body of one upstream attempt.
#[derive(Debug)]
pub struct RequestBody {
    pipe: Option<Arc<Pipe>>,
    /// The client's Content-Length, when it sent one.
    length: Option<u64>,
}

impl RequestBody {
    pub fn empty() -> RequestBody {
        RequestBody {
            pipe: None,
            length: Some(0),
        }
    }

    pub fn from_pipe(pipe: &Arc<Pipe>, length: Option<u64>) -> RequestBody {
        RequestBody {
            pipe: Some(Arc::clone(pipe)),
            length,
        }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let Some(pipe) = &self.pipe else {
            return Poll::Ready(None);
        };
        pipe.started.store(true, Ordering::Relaxed);
        // Only one attempt polls at a time; the lock is never contended.
        let mut chunks = pipe.chunks.locked();
        let Poll::Ready(next) = chunks.poll_recv(cx) else {
            pipe.awaiting_client.store(true, Ordering::Relaxed);
            return Poll::Pending;
        };
        pipe.awaiting_client.store(false, Ordering::Relaxed);
        match next {
            Some(Ok(bytes)) => {
                pipe.progress.fetch_add(1, Ordering::Relaxed);
                Poll::Ready(Some(Ok(Frame::data(bytes))))
            }
            Some(Err(e)) => {
                pipe.failed.store(true, Ordering::Relaxed);
                Poll::Ready(Some(Err(io::Error::other(e))))
            }
            None => {
                pipe.ended.store(true, Ordering::Relaxed);
                Poll::Ready(None)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.pipe.is_none() || self.length == Some(0)
    }

    fn size_hint(&self) -> SizeHint {
        match self.length {
            Some(length) => SizeHint::with_exact(length),
            None => SizeHint::default(),
        }
    }
}
