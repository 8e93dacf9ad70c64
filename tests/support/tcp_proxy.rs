//! A loopback TCP proxy that can be cut and healed: a network partition between the
//! clients that go through it and the server, while other clients reach the server
//! directly.

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

/// A proxy on a free port of 127.0.0.1 to `upstream`. Dropping it closes everything.
pub struct TcpProxy {
    port: u16,
    up: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl TcpProxy {
    /// Start forwarding to `upstream`. Must run inside a Tokio runtime.
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy on loopback");
        let port = listener.local_addr().expect("proxy address").port();
        let (up, _) = watch::channel(true);
        let task = tokio::spawn(accept(listener, upstream, up.subscribe()));
        Self { port, up, task }
    }

    /// The port clients connect to.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Close every connection through the proxy, and close new ones as soon as they
    /// are accepted, until [`heal`](Self::heal).
    pub fn cut(&self) {
        self.up.send_replace(false);
    }

    /// Forward again.
    pub fn heal(&self) {
        self.up.send_replace(true);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        // The accept task owns the connections' JoinSet: aborting it closes them all.
        self.task.abort();
    }
}

async fn accept(listener: TcpListener, upstream: SocketAddr, up: watch::Receiver<bool>) {
    let mut connections = JoinSet::new();
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        // Reap finished connections so the set does not grow.
        while connections.try_join_next().is_some() {}
        if !*up.borrow() {
            drop(client);
            continue;
        }
        connections.spawn(forward(client, upstream, up.clone()));
    }
}

async fn forward(mut client: TcpStream, upstream: SocketAddr, mut up: watch::Receiver<bool>) {
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        return;
    };
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
        _ = up.wait_for(|up| !*up) => {}
    }
}
