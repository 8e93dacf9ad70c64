//! Sockets against libsrt's own `srt-live-transmit` (srt-tools), on loopback: caller
//! and listener, stream ids, FEC, a wrong passphrase, and nobody there.

use std::future::poll_fn;
use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use mirror_libsrt::{RejectReason, Socket, SocketState, MAX_PAYLOAD};

struct Peer(Child);

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `srt-live-transmit udp://:INPUT OUTPUT`, fed a numbered datagram every 5 ms.
fn live_transmit(output: &str) -> (Peer, std::thread::JoinHandle<()>) {
    let input = free_port();
    let child = Command::new("srt-live-transmit")
        .args(["-q", "-ll", "fatal", "-chunk", "1316"])
        .arg(format!("udp://127.0.0.1:{input}"))
        .arg(output)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("srt-live-transmit runs (Debian: srt-tools)");
    let feeder = std::thread::spawn(move || {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut payload = [0x47u8; 1316];
        for n in 0u32..4000 {
            payload[..4].copy_from_slice(&n.to_be_bytes());
            let _ = socket.send_to(&payload, ("127.0.0.1", input));
            std::thread::sleep(Duration::from_millis(5));
        }
    });
    (Peer(child), feeder)
}

async fn connect(socket: &Socket, address: SocketAddr) -> mirror_libsrt::Result<()> {
    socket.start_connect(address)?;
    poll_fn(|cx| socket.poll_connected(cx, address)).await
}

/// Connect, retrying while the listener is still starting.
async fn connect_when_up(make: impl Fn() -> Socket, address: SocketAddr) -> Socket {
    for _ in 0..50 {
        let socket = make();
        if connect(&socket, address).await.is_ok() {
            return socket;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no SRT listener came up at {address}");
}

async fn receive(socket: &Socket, n: usize) -> Vec<(u32, Option<u32>)> {
    let mut buf = [0u8; MAX_PAYLOAD];
    let mut got = Vec::new();
    while got.len() < n {
        let message = tokio::time::timeout(
            Duration::from_secs(5),
            poll_fn(|cx| socket.poll_recv(cx, &mut buf)),
        )
        .await
        .expect("a message within 5 s")
        .expect("a message");
        assert_eq!(message.len, 1316);
        let number = u32::from_be_bytes(buf[..4].try_into().unwrap());
        got.push((number, message.sequence));
    }
    got
}

fn caller_socket(connect_timeout: Duration) -> Socket {
    let socket = Socket::new().unwrap();
    socket.set_latency(Duration::from_millis(80)).unwrap();
    socket.set_connect_timeout(connect_timeout).unwrap();
    socket
}

#[tokio::test]
async fn a_caller_receives_from_a_libsrt_listener_with_sequences_and_live_stats() {
    let port = free_port();
    let (_peer, _feeder) = live_transmit(&format!("srt://:{port}?mode=listener"));
    let address: SocketAddr = ([127, 0, 0, 1], port).into();
    let socket = connect_when_up(|| caller_socket(Duration::from_millis(500)), address).await;
    assert_eq!(socket.state(), SocketState::Connected);

    let got = receive(&socket, 100).await;
    // SRT's sequence numbers come with every message, one step per packet.
    for pair in got.windows(2) {
        let (a, b) = (pair[0].1.unwrap(), pair[1].1.unwrap());
        assert_eq!(b, (a + 1) & 0x7fff_ffff, "{got:?}");
        assert_eq!(pair[1].0, pair[0].0 + 1, "{got:?}");
    }
    let stats = socket.stats().unwrap();
    assert!(stats.received >= 100, "{stats:?}");
    assert!(
        stats.rtt > Duration::ZERO && stats.rtt < Duration::from_secs(1),
        "{stats:?}"
    );
}

#[tokio::test]
async fn a_listener_accepts_a_libsrt_caller_with_its_stream_id_and_fec() {
    let listener = Socket::new().unwrap();
    listener.bind(([127, 0, 0, 1], 0).into()).unwrap();
    listener.listen(4).unwrap();
    let port = listener.local_addr().unwrap().port();
    let (_peer, _feeder) = live_transmit(&format!(
        "srt://127.0.0.1:{port}?mode=caller&streamid=cam7&packetfilter=fec,cols:10,rows:5"
    ));
    let (socket, peer) = tokio::time::timeout(
        Duration::from_secs(10),
        poll_fn(|cx| listener.poll_accept(cx)),
    )
    .await
    .expect("a caller within 10 s")
    .unwrap();
    assert_eq!(peer.ip(), std::net::Ipv4Addr::LOCALHOST);
    assert_eq!(socket.peer_addr().unwrap(), peer);
    assert_eq!(socket.stream_id().unwrap(), "cam7");
    let filter = socket.packet_filter().unwrap();
    assert!(filter.starts_with("fec,"), "{filter:?}");
    receive(&socket, 50).await;
}

#[tokio::test]
async fn a_wrong_passphrase_is_rejected_as_a_bad_secret() {
    let port = free_port();
    let (_peer, _feeder) = live_transmit(&format!(
        "srt://:{port}?mode=listener&passphrase=the-right-passphrase"
    ));
    let address: SocketAddr = ([127, 0, 0, 1], port).into();
    let mut last = None;
    for _ in 0..50 {
        let socket = caller_socket(Duration::from_millis(500));
        socket.set_passphrase("a-wrong-passphrase").unwrap();
        match connect(&socket, address).await {
            Err(e) if e.reject_reason() == Some(RejectReason::Timeout) => {
                // The listener is still starting.
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => {
                last = Some(other);
                break;
            }
        }
    }
    let error = last.expect("the listener answered").unwrap_err();
    assert_eq!(
        error.reject_reason(),
        Some(RejectReason::BadSecret),
        "{error}"
    );
    assert!(!error.to_string().contains("a-wrong-passphrase"), "{error}");
}

#[tokio::test]
async fn nobody_listening_is_a_timeout() {
    let port = free_port();
    let socket = caller_socket(Duration::from_millis(300));
    let address: SocketAddr = ([127, 0, 0, 1], port).into();
    let error = connect(&socket, address).await.unwrap_err();
    assert_eq!(
        error.reject_reason(),
        Some(RejectReason::Timeout),
        "{error}"
    );
    assert_eq!(error.io_kind(), std::io::ErrorKind::TimedOut, "{error}");
}

#[test]
fn bad_options_are_refused_naming_the_option() {
    let socket = Socket::new().unwrap();
    let long = "x".repeat(513);
    let e = socket.set_stream_id(&long).unwrap_err();
    assert!(e.to_string().contains("streamid"), "{e}");
    let e = socket.set_passphrase("short").unwrap_err();
    assert!(
        e.to_string().contains("passphrase") && !e.to_string().contains("short"),
        "{e}"
    );
    let e = socket.set_key_length(20).unwrap_err();
    assert!(e.to_string().contains("pbkeylen"), "{e}");
    let e = socket.set_stream_id("a\0b").unwrap_err();
    assert!(e.to_string().contains("NUL"), "{e}");
}

#[test]
fn an_empty_packet_filter_is_an_error_not_a_crash() {
    // libsrt 1.5.1 dereferences nothing when given an empty SRTO_PACKETFILTER: the
    // whole process went down with SIGSEGV.
    let socket = Socket::new().unwrap();
    let error = socket.set_packet_filter("").unwrap_err();
    assert!(error.to_string().contains("packetfilter: empty"), "{error}");
    assert!(socket.set_packet_filter("fec,cols:10,rows:5").is_ok());
}

#[test]
fn the_udp_buffers_set_are_the_ones_read_back() {
    let socket = Socket::new().unwrap();
    socket.set_udp_buffers(1 << 20).unwrap();
    assert_eq!(socket.udp_buffers().unwrap(), (1 << 20, 1 << 20));
}

#[test]
fn the_srt_buffers_set_are_read_back_in_whole_packets() {
    let socket = Socket::new().unwrap();
    let (receive, send) = socket.buffers().unwrap();
    println!("libsrt's own: {receive} in, {send} out");
    assert_eq!((receive, send), (8_192 * 1_472, 8_192 * 1_472));
    socket.set_buffers(1_000 * 1_472).unwrap();
    assert_eq!(socket.buffers().unwrap(), (1_000 * 1_472, 1_000 * 1_472));
    // Rounded down to whole packets of 1 472 bytes.
    socket.set_buffers(1_000 * 1_472 + 1_000).unwrap();
    assert_eq!(socket.buffers().unwrap(), (1_000 * 1_472, 1_000 * 1_472));
}
