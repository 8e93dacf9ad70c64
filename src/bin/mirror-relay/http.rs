//! `--metrics-addr`: `GET /metrics` (Prometheus text) and `GET /streams` (JSON, one
//! object per stream), on one small HTTP/1.1 listener. At most `--metrics-clients`
//! clients are answered at once, each for at most `CLIENT_TIMEOUT` with a head of at
//! most `MAX_HEAD`: what scrapers (or a flood) cost is bounded; others wait in the
//! listen backlog until a client is done.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use mirror_reconnect::metrics::PrometheusHandle;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::status::Board;

/// The longest request head read: a scraper's GET is a few hundred bytes.
const MAX_HEAD: usize = 8 * 1024;
/// How long a client has to send its request, and to take the answer.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);

/// Bind `addr` and serve it on this runtime for as long as the process runs,
/// answering at most `clients` (at least one) at once.
pub(crate) async fn serve(
    addr: SocketAddr,
    metrics: PrometheusHandle,
    board: Board,
    clients: usize,
) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    let turns = Arc::new(Semaphore::new(clients.max(1)));
    tokio::spawn(async move {
        loop {
            // A turn first: past the limit, a client is not accepted until one is done.
            let Ok(turn) = Arc::clone(&turns).acquire_owned().await else {
                return; // never closed
            };
            let Ok((stream, _)) = listener.accept().await else {
                // Out of descriptors, say: try again shortly.
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            let (metrics, board) = (metrics.clone(), board.clone());
            tokio::spawn(async move {
                let _ =
                    tokio::time::timeout(CLIENT_TIMEOUT, answer(stream, &metrics, &board)).await;
                drop(turn);
            });
        }
    });
    Ok(())
}

/// The response to a request head: status line, content type, body.
fn respond(
    head: &[u8],
    metrics: &PrometheusHandle,
    board: &Board,
) -> (&'static str, &'static str, String) {
    let line = head.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    const TEXT: &str = "text/plain; charset=utf-8";
    if method != "GET" && method != "HEAD" {
        return ("405 Method Not Allowed", TEXT, "only GET\n".to_owned());
    }
    match path {
        "/metrics" => ("200 OK", "text/plain; version=0.0.4", metrics.render()),
        "/streams" => ("200 OK", "application/json", board.json() + "\n"),
        _ => (
            "404 Not Found",
            TEXT,
            "GET /metrics or /streams\n".to_owned(),
        ),
    }
}

async fn answer(
    mut stream: TcpStream,
    metrics: &PrometheusHandle,
    board: &Board,
) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && !head.ends_with(b"\n\n") {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
        if head.len() > MAX_HEAD {
            let reply = "HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
            return stream.write_all(reply.as_bytes()).await;
        }
    }
    let (status, kind, body) = respond(&head, metrics, board);
    let head_only = head.starts_with(b"HEAD ");
    let reply = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(reply.as_bytes()).await?;
    if !head_only {
        stream.write_all(body.as_bytes()).await?;
    }
    stream.shutdown().await
}
