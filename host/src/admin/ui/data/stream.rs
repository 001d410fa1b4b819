//! The dashboard's two event streams (server-sent events):
//! `GET /ui/api/stream` (first the samples kept, then one a second) and
//! `GET /ui/api/logs/{app}` (an app's recent guest lines from every node,
//! then the new ones as the gatherer brings them). Each keeps the gatherer
//! running while it is open, and sends a `: ping` comment every 15 s.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::time::{Interval, MissedTickBehavior};

use super::gather::{Gatherer, Viewer};
use crate::admin::reply::AdminBody;

/// How often a stream sends a comment, so proxies keep it open.
const PING: Duration = Duration::from_secs(15);
/// How often a log stream looks for new lines.
const LOG_POLL: Duration = Duration::from_secs(1);

/// One server-sent event.
fn event(name: &str, data: &str) -> Bytes {
    Bytes::from(format!("event: {name}\ndata: {data}\n\n"))
}

fn ticker(every: Duration) -> Interval {
    let start = tokio::time::Instant::now() + every;
    let mut interval = tokio::time::interval_at(start, every);
    interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
    interval
}

/// A `text/event-stream` response of `events`.
fn response(events: impl Stream<Item = Bytes> + Send + 'static) -> Response<AdminBody> {
    let frames = events.map(|bytes| Ok::<_, std::io::Error>(Frame::data(bytes)));
    let mut response = Response::new(BodyExt::boxed_unsync(StreamBody::new(frames)));
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// What a sample stream holds between events.
struct Samples {
    _viewer: Viewer,
    receiver: broadcast::Receiver<Arc<str>>,
    ping: Interval,
}

/// `GET /ui/api/stream`.
pub(crate) fn samples(gatherer: &Arc<Gatherer>) -> Response<AdminBody> {
    let (viewer, receiver) = gatherer.viewer();
    let kept = gatherer.state().samples();
    let mut history = String::from("{\"samples\":[");
    for (i, sample) in kept.iter().enumerate() {
        if i > 0 {
            history.push(',');
        }
        history.push_str(sample);
    }
    history.push_str("]}");
    let head = futures::stream::once(async move { event("history", &history) });
    let state = Samples {
        _viewer: viewer,
        receiver,
        ping: ticker(PING),
    };
    let tail = futures::stream::unfold(state, |mut state| async move {
        loop {
            tokio::select! {
                next = state.receiver.recv() => match next {
                    Ok(sample) => return Some((event("sample", &sample), state)),
                    Err(RecvError::Lagged(_)) => continue,
                    Err(RecvError::Closed) => return None,
                },
                _ = state.ping.tick() => return Some((Bytes::from_static(b": ping\n\n"), state)),
            }
        }
    });
    response(head.chain(tail))
}

/// What a log stream holds between events.
struct Lines {
    _viewer: Viewer,
    gatherer: Arc<Gatherer>,
    app: String,
    /// The index of the last line sent.
    sent: u64,
    poll: Interval,
    /// Polls since the last line or ping.
    quiet: u32,
}

impl Lines {
    /// The lines gathered since the last sent, as events.
    fn news(&mut self) -> Option<Bytes> {
        let lines = self.gatherer.state().lines_after(&self.app, self.sent);
        let last = lines.last()?.index;
        self.sent = last;
        let mut text = String::new();
        for line in &lines {
            let data = serde_json::to_string(line).unwrap_or_default();
            text.push_str(&format!("event: line\ndata: {data}\n\n"));
        }
        Some(Bytes::from(text))
    }
}

/// `GET /ui/api/logs/{app}` (the caller checked the app exists).
pub(crate) fn logs(gatherer: &Arc<Gatherer>, app: &str) -> Response<AdminBody> {
    let (viewer, _) = gatherer.viewer();
    let mut state = Lines {
        _viewer: viewer,
        gatherer: gatherer.clone(),
        app: app.to_string(),
        sent: 0,
        poll: ticker(LOG_POLL),
        quiet: 0,
    };
    // An open comment first, so the client sees the stream start at once.
    let head = state
        .news()
        .unwrap_or_else(|| Bytes::from_static(b": following\n\n"));
    let head = futures::stream::once(async move { head });
    let pings_every = (PING.as_secs() / LOG_POLL.as_secs()).max(1) as u32;
    let tail = futures::stream::unfold(state, move |mut state| async move {
        loop {
            state.poll.tick().await;
            if let Some(events) = state.news() {
                state.quiet = 0;
                return Some((events, state));
            }
            state.quiet += 1;
            if state.quiet >= pings_every {
                state.quiet = 0;
                return Some((Bytes::from_static(b": ping\n\n"), state));
            }
        }
    });
    response(head.chain(tail))
}
