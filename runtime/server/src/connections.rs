//! Accepting HTTP connections: at most `http.max_connections` open at once and
//! `http.max_connections_per_address` from one client address, each given
//! `http.header_read_timeout` to send a request's headers and as long to take each write
//! (a client that pipelines requests and never reads the answers is closed), and a
//! graceful stop that lets requests in flight finish for up to [`STOP_GRACE`].
//! `axum::serve` offers none of these, so the loop drives hyper's HTTP/1 connections
//! itself.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use plinth_host::lock::Recover;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

use crate::config::HttpConfig;

/// What a connection over the cap is told before it is closed. Written without waiting:
/// a client that does not read it only misses the explanation.
const REFUSED: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
content-type: application/json\r\n\
retry-after: 1\r\n\
connection: close\r\n\
content-length: 74\r\n\
\r\n\
{\"code\":\"UNAVAILABLE\",\"message\":\"too many connections; try again shortly\"}";

/// How long a stop waits for connections to finish the request they are in.
pub const STOP_GRACE: Duration = Duration::from_secs(30);

/// Open connections per client address.
#[derive(Default)]
struct PerAddress(Mutex<HashMap<IpAddr, usize>>);

impl PerAddress {
    /// A place for one more connection from `address`, if it has fewer than `cap`.
    fn take(self: &Arc<Self>, address: IpAddr, cap: usize) -> Option<AddressSlot> {
        let mut open = self.0.lock().recover();
        let count = open.entry(address).or_insert(0);
        if *count >= cap {
            return None;
        }
        *count += 1;
        Some(AddressSlot {
            counts: self.clone(),
            address,
        })
    }
}

/// One connection's place under its address's cap, given back when the socket closes.
struct AddressSlot {
    counts: Arc<PerAddress>,
    address: IpAddr,
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut open = self.counts.0.lock().recover();
        if let Some(count) = open.get_mut(&self.address) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.address);
            }
        }
    }
}

/// Serves `router` on `listener` until `stop` turns true, then stops accepting, lets
/// each connection finish the request it is in, and returns once they have closed.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    http: &HttpConfig,
    mut stop: watch::Receiver<bool>,
) -> io::Result<()> {
    let slots = Arc::new(Semaphore::new(http.max_connections));
    let per_address = Arc::new(PerAddress::default());
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(http.header_read_timeout);
    // Every connection task holds a receiver: `closed()` is when they have all ended,
    // and a send tells them to finish.
    let (drain, _) = watch::channel(());
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.wait_for(|stopped| *stopped) => break,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) if is_connection_error(&e) => continue,
            Err(e) => {
                // Out of file descriptors, most likely: accepting again at once would
                // spin. A pause as axum::serve makes; a stop still ends it.
                tracing::error!(error = %e, "accepting a connection failed");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    _ = stop.wait_for(|stopped| *stopped) => break,
                }
            }
        };
        // Over a cap: refused at once rather than left waiting in the backlog.
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            let _ = stream.try_write(REFUSED);
            continue;
        };
        let Some(address_slot) = per_address.take(peer.ip(), http.max_connections_per_address)
        else {
            let _ = stream.try_write(REFUSED);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let io = TokioIo::new(CountedStream {
            stream,
            write_timeout: http.header_read_timeout,
            stalled: None,
            _slot: slot,
            _address_slot: address_slot,
        });
        let connection = builder
            .serve_connection(io, TowerToHyperService::new(router.clone()))
            .with_upgrades();
        let mut drained = drain.subscribe();
        tokio::spawn(async move {
            tokio::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => return,
                _ = drained.changed() => {}
            }
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        });
    }
    drop(listener);
    let _ = drain.send(());
    if tokio::time::timeout(STOP_GRACE, drain.closed())
        .await
        .is_err()
    {
        // A client that neither finishes its request nor reads its answer does not
        // hold the stop: its connection ends with the runtime.
        tracing::warn!("connections still open {STOP_GRACE:?} after the stop; leaving them");
    }
    Ok(())
}

/// Errors of one connection, not of the listener.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// A connection holding its place under `http.max_connections` for as long as the
/// socket lives: through a WebSocket upgrade too, which takes the stream with it.
struct CountedStream {
    stream: TcpStream,
    /// Longest a write may wait for the client to read.
    write_timeout: Duration,
    /// Since when writes have been waiting, as a timer at `write_timeout`.
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
    _slot: OwnedSemaphorePermit,
    _address_slot: AddressSlot,
}

impl CountedStream {
    /// Passes a write's result on, failing it once writes have waited `write_timeout`
    /// for a client that does not read.
    fn progress<T>(
        &mut self,
        cx: &mut Context<'_>,
        written: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if written.is_ready() {
            self.stalled = None;
            return written;
        }
        let timeout = self.write_timeout;
        let stalled = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        if stalled.as_mut().poll(cx).is_ready() {
            self.stalled = None;
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client has not read for too long",
            )));
        }
        Poll::Pending
    }
}

impl AsyncRead for CountedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for CountedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.stream).poll_write(cx, buf);
        this.progress(cx, written)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.stream).poll_write_vectored(cx, bufs);
        this.progress(cx, written)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let flushed = Pin::new(&mut this.stream).poll_flush(cx);
        this.progress(cx, flushed)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_refusal_is_a_complete_response() {
        let text = std::str::from_utf8(super::REFUSED).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let error: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(error["code"], "UNAVAILABLE");
    }
}
