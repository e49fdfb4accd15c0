//! When a client connection has been idle long enough to close: no request in progress for
//! `idle_timeout`, counted from the end of the last one (or from the handshake). A request is
//! in progress from its head until its response's body has been sent ([`Guarded`]), so a
//! slow upload or a long event stream is never idle. hyper closes neither an HTTP/1.1
//! connection that never sends a request nor an idle HTTP/2 one, so without this any client
//! could hold connections (and their descriptors) for ever, as nginx's `keepalive_timeout`
//! prevents.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::Instant;

use crate::proxy::direct::FrontBody;

/// What one connection is doing.
#[derive(Debug)]
pub struct Activity {
    since: Instant,
    in_flight: AtomicUsize,
    /// When the last request began or ended, in milliseconds after `since`.
    last_ms: AtomicU64,
}

/// A request in progress; dropping it ends it.
#[derive(Debug)]
pub struct Busy(Arc<Activity>);

impl Activity {
    pub fn new() -> Arc<Activity> {
        Arc::new(Activity {
            since: Instant::now(),
            in_flight: AtomicUsize::new(0),
            last_ms: AtomicU64::new(0),
        })
    }

    fn touch(&self) {
        let ms = u64::try_from(self.since.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// Marks a request in progress until the returned guard is dropped.
    pub fn begin(self: &Arc<Self>) -> Busy {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.touch();
        Busy(Arc::clone(self))
    }

    /// Returns once the connection has had no request in progress for `timeout`.
    pub async fn idle_for(&self, timeout: Duration) {
        loop {
            let last = self.since + Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
            let idle_until = last + timeout;
            if self.in_flight.load(Ordering::Relaxed) == 0 && Instant::now() >= idle_until {
                return;
            }
            // Busy: look again a timeout later (a request that ends meanwhile moves `last`).
            let wake = if self.in_flight.load(Ordering::Relaxed) == 0 {
                idle_until
            } else {
                Instant::now() + timeout
            };
            tokio::time::sleep_until(wake).await;
        }
    }
}

/// A response body that holds `G` until it is sent (or dropped): its request's [`Busy`]
/// mark, or its place among the requests the app serves (`backend`).
pub struct Guarded<G> {
    body: FrontBody,
    _guard: G,
}

impl<G> Guarded<G> {
    pub fn new(body: FrontBody, guard: G) -> Guarded<G> {
        Guarded {
            body,
            _guard: guard,
        }
    }
}

impl<G: Unpin> Body for Guarded<G> {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(75);

    /// How long `idle_for` takes to return after `script` ran, on paused (virtual) time.
    async fn idle_after(activity: &Arc<Activity>) -> Duration {
        let start = Instant::now();
        activity.idle_for(TIMEOUT).await;
        start.elapsed()
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_without_requests_is_idle_after_the_timeout() {
        let activity = Activity::new();
        assert_eq!(idle_after(&activity).await, TIMEOUT);
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_in_progress_keeps_it_and_the_timeout_counts_from_its_end() {
        let activity = Activity::new();
        let busy = activity.begin();
        let watched = Arc::clone(&activity);
        let watch = tokio::spawn(async move { idle_after(&watched).await });
        // A request longer than the timeout.
        tokio::time::sleep(TIMEOUT * 3).await;
        assert!(!watch.is_finished());
        drop(busy);
        let ended = Instant::now();
        let waited = watch.await.unwrap();
        assert!(waited >= TIMEOUT * 3, "{waited:?}");
        assert_eq!(Instant::now() - ended, TIMEOUT);
    }

    #[tokio::test(start_paused = true)]
    async fn each_request_restarts_the_count() {
        let activity = Activity::new();
        let watched = Arc::clone(&activity);
        let watch = tokio::spawn(async move { idle_after(&watched).await });
        for _ in 0..3 {
            tokio::time::sleep(TIMEOUT / 2).await;
            drop(activity.begin());
        }
        assert_eq!(watch.await.unwrap(), TIMEOUT / 2 * 3 + TIMEOUT);
    }
}
