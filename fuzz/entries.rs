//! What each fuzz target does with its input, shared by the targets
//! (`fuzz_targets/*.rs`, run by `scripts/fuzz.sh`) and by `tests/fuzz_corpus.rs`,
//! which replays every saved input through the same function in the test command.
//!
//! Each function must return normally for any input: a panic is the finding.
#![allow(dead_code, unreachable_pub)]

use mirror_reconnect::connection::{redact_url, ConnectionState, Protocol, StreamTarget, Target};
use mirror_reconnect::protocol::rtp::{RtpReceiver, RtpStatistics};
use mirror_reconnect::protocol::srt::srt_target;
use mirror_reconnect::ReconnectionConfig;

/// What a target does with one input.
pub type Entry = fn(&[u8]);

/// The targets, by name: the name of each one's corpus directory under `fuzz/corpus/`.
pub const TARGETS: &[(&str, Entry)] = &[
    ("srt_url", srt_url),
    ("config_yaml", config_yaml),
    ("state_json", state_json),
    ("rtp_datagrams", rtp_datagrams),
    #[cfg(feature = "libsrt")]
    ("libsrt_lengths", libsrt_lengths),
];

/// An `srt://` URL as the relay and `srt_target` take one: parsed, and redacted for
/// printing. The redacted URL never gives the passphrase back: read by the same
/// parser, its passphrase (if any) is the mask.
pub fn srt_url(data: &[u8]) {
    let Ok(url) = std::str::from_utf8(data) else {
        return;
    };
    let redacted = redact_url(url);
    let Ok(target) = srt_target(url) else {
        return;
    };
    let _ = format!("{target:?}");
    // An empty passphrase is no passphrase (no encryption), and nothing to hide.
    let Some(secret) = target
        .passphrase
        .as_ref()
        .map(|p| p.expose().to_owned())
        .filter(|p| !p.is_empty())
    else {
        return;
    };
    if let Ok(again) = srt_target(&redacted) {
        if let Some(leaked) = again
            .passphrase
            .filter(|p| p.expose() == secret && secret != "***")
        {
            panic!("the passphrase of {url:?} is in its redacted form {redacted:?}: {leaked:?}");
        }
    }
}

/// A YAML `ReconnectionConfig`: loaded, and for one that loads, every layer and a
/// builder made from it (where durations and counts are used).
pub fn config_yaml(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(config) = ReconnectionConfig::from_yaml_str(text) else {
        return;
    };
    let _ = config.builder();
    let _ = config.detect_layer();
    let _ = config.backoff();
    // What loads is written and loads again the same.
    let yaml = serde_yaml_ng::to_string(&config).expect("a loaded config writes");
    let again = ReconnectionConfig::from_yaml_str(&yaml)
        .unwrap_or_else(|e| panic!("{yaml:?}, written from a loaded config, does not load: {e}"));
    assert_eq!(again, config, "{yaml:?} loads as another config");
}

/// A stored state (the JSON the file and Redis stores keep): parsed, applied to a
/// target as a reconnect does, and written again.
pub fn state_json(data: &[u8]) {
    let Ok(state) = serde_json::from_slice::<ConnectionState>(data) else {
        return;
    };
    let mut target = Target::new(state.stream_id.clone(), Protocol::Srt);
    target.apply_state(&state);
    let written = serde_json::to_vec(&state).expect("a parsed state writes");
    let again: ConnectionState = serde_json::from_slice(&written).expect("a written state parses");
    assert_eq!(again.stream_id, state.stream_id);
}

/// Datagrams arriving at an RTP session, as its socket hands them over.
///
/// The input is the target's parameters (`name=value&…`, as in an `rtp://` query) up
/// to the first newline, then records of one byte of milliseconds since the last
/// datagram, one byte of length and that many bytes. Each datagram must come out as
/// exactly one of a packet (its own bytes, only the sequence number and timestamp
/// renumbered when `rewrite=true`), an error item or a skipped RTCP packet, and the
/// session's counters must say so. A second session restored from the first one's
/// state takes the same datagrams again.
pub fn rtp_datagrams(data: &[u8]) {
    let (query, mut records) = match data.iter().position(|&b| b == b'\n') {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[][..]),
    };
    let Ok(query) = std::str::from_utf8(query) else {
        return;
    };
    let mut target = Target::new("fuzz", Protocol::Rtp).address(([127, 0, 0, 1], 5004).into());
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        target = target.parameter(name, value);
    }
    let mut datagrams = Vec::new();
    let mut gap_ms = 0u64;
    while let [gap, len, rest @ ..] = records {
        let len = usize::from(*len).min(rest.len());
        gap_ms += u64::from(*gap);
        datagrams.push((gap_ms, &rest[..len]));
        records = &rest[len..];
    }
    let Some(stats) = rtp_session(&target, &datagrams) else {
        return;
    };
    // What the first session saved, a reconnect gives to the next one.
    let mut state = ConnectionState::new("fuzz", Protocol::Rtp);
    stats.write_parameters(&mut state.parameters);
    let read = RtpStatistics::from_parameters(&state.parameters);
    assert_eq!(
        (read.received, read.lost, read.restarts, read.rtcp),
        (stats.received, stats.lost, stats.restarts, stats.rtcp),
        "statistics read back differ"
    );
    target.apply_state(&state);
    rtp_session(&target, &datagrams);
}

/// One session over `datagrams` (milliseconds from its start, bytes); `None` when the
/// target is refused.
fn rtp_session(target: &Target, datagrams: &[(u64, &[u8])]) -> Option<RtpStatistics> {
    // The connector's words for true, in any case.
    let rewrite = target.parameters.get("rewrite").is_some_and(|v| {
        matches!(
            v.trim().to_ascii_lowercase().as_str(),
            "true" | "1" | "yes" | "on"
        )
    });
    let mut rtp = RtpReceiver::new(target).ok()?;
    let start = tokio::time::Instant::now();
    let (mut skipped, mut errors) = (0u64, 0u64);
    for &(at_ms, datagram) in datagrams {
        let at = start + std::time::Duration::from_millis(at_ms);
        match rtp.receive(datagram, at) {
            None => skipped += 1,
            Some(Err(_)) => errors += 1,
            Some(Ok(packet)) => {
                let out = &packet.payload[..];
                assert_eq!(out.len(), datagram.len(), "a packet is its whole datagram");
                let (same, renumbered) = if rewrite {
                    (out[..2] == datagram[..2] && out[8..] == datagram[8..], true)
                } else {
                    (out == datagram, false)
                };
                assert!(
                    same,
                    "bytes changed beyond the renumbering (rewrite: {renumbered})"
                );
                let sequence = u16::from_be_bytes([out[2], out[3]]);
                assert_eq!(
                    packet.sequence.map(|s| s.value()),
                    Some(u32::from(sequence)),
                    "the packet's sequence is not the one in its header"
                );
            }
        }
    }
    let stats = rtp.statistics();
    assert_eq!(skipped, stats.rtcp, "skipped datagrams are the RTCP ones");
    assert_eq!(
        errors,
        stats.invalid + stats.foreign_ssrc + stats.wrong_payload_type + stats.sequence_jumps,
        "every error item is counted once: {stats:?}"
    );
    Some(stats)
}

/// A connected pair of libsrt sockets on loopback: the caller sends, the accepted
/// socket receives.
#[cfg(feature = "libsrt")]
type LibSrtPair = (mirror_libsrt::Socket, mirror_libsrt::Socket);

/// The pair `libsrt_lengths` uses, made at its first input and kept until
/// [`libsrt_release`].
#[cfg(feature = "libsrt")]
static LIBSRT_PAIR: std::sync::Mutex<Option<std::sync::Arc<LibSrtPair>>> =
    std::sync::Mutex::new(None);

#[cfg(feature = "libsrt")]
fn libsrt_pair() -> std::sync::Arc<LibSrtPair> {
    use std::future::poll_fn;
    use std::sync::{Arc, PoisonError};

    let mut pair = LIBSRT_PAIR.lock().unwrap_or_else(PoisonError::into_inner);
    let pair = pair.get_or_insert_with(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a runtime");
        Arc::new(runtime.block_on(async {
            let listener = mirror_libsrt::Socket::new().expect("a socket");
            listener.set_live().expect("live mode");
            listener
                .set_latency(std::time::Duration::ZERO)
                .expect("latency");
            listener.bind(([127, 0, 0, 1], 0).into()).expect("bind");
            listener.listen(1).expect("listen");
            let address = listener.local_addr().expect("bound");
            let caller = mirror_libsrt::Socket::new().expect("a socket");
            caller.set_live().expect("live mode");
            caller
                .set_latency(std::time::Duration::ZERO)
                .expect("latency");
            caller.start_connect(address).expect("connect");
            let (accepted, connected) = tokio::join!(
                poll_fn(|cx| listener.poll_accept(cx)),
                poll_fn(|cx| caller.poll_connected(cx, address)),
            );
            connected.expect("connected");
            (caller, accepted.expect("accepted").0)
        }))
    });
    Arc::clone(pair)
}

/// Close the pair `libsrt_lengths` keeps and wait until libsrt is cleaned up: a
/// process that replayed it calls this before it exits, so that libsrt's teardown at
/// exit does not race its own threads. True when cleaned up (no other socket alive).
#[cfg(feature = "libsrt")]
pub fn libsrt_release() -> bool {
    let pair = LIBSRT_PAIR
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take();
    drop(pair);
    mirror_libsrt::wait_cleaned_up()
}

/// What crosses into libsrt with a length: the input is a receive buffer length (two
/// bytes), then a stream id, a passphrase and a packet filter set on a new socket
/// (NUL-separated; what is accepted reads back the same, or within libsrt's rules),
/// then a message sent over a connected pair (refused when longer than the socket's
/// payload size) and received into that buffer: whole when the buffer holds a
/// payload, an error and not a short read when it does not.
#[cfg(feature = "libsrt")]
pub fn libsrt_lengths(data: &[u8]) {
    use mirror_libsrt::{Socket, MAX_PAYLOAD, MAX_STREAM_ID};
    use std::sync::atomic::{AtomicU32, Ordering};

    let [hi, lo, rest @ ..] = data else {
        return;
    };
    let buffer_len = usize::from(u16::from_be_bytes([*hi, *lo])) % (2 * MAX_PAYLOAD);
    let mut fields = rest.splitn(4, |&b| b == 0);
    let mut text = || String::from_utf8_lossy(fields.next().unwrap_or_default()).into_owned();
    let (stream_id, passphrase, filter) = (text(), text(), text());
    let payload = fields.next().unwrap_or_default();

    let socket = Socket::new().expect("a socket");
    match socket.set_stream_id(&stream_id) {
        Ok(()) => assert_eq!(socket.stream_id().expect("a stream id"), stream_id),
        Err(_) => assert!(stream_id.len() > MAX_STREAM_ID, "{stream_id:?} refused"),
    }
    let accepted = socket.set_passphrase(&passphrase).is_ok();
    assert_eq!(
        accepted,
        (10..=79).contains(&passphrase.len()),
        "{passphrase:?}"
    );
    if socket.set_packet_filter(&filter).is_ok() {
        let _ = socket.packet_filter();
    }
    drop(socket);

    // Each message starts with its number, so that one left behind is told apart.
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let number = NEXT.fetch_add(1, Ordering::Relaxed);
    let message = [&number.to_be_bytes()[..], payload].concat();
    let pair = libsrt_pair();
    let (caller, receiver) = &*pair;
    let limit = caller.payload_size().expect("a payload size");
    assert!(limit <= MAX_PAYLOAD, "payload size {limit}");
    match caller.try_send(&message) {
        Ok(sent) => assert_eq!(sent, message.len()),
        Err(e) => {
            assert!(
                message.len() > limit,
                "{} bytes refused: {e}",
                message.len()
            );
            return;
        }
    }
    assert!(
        message.len() <= limit,
        "{} bytes sent, over {limit}",
        message.len()
    );
    let mut buf = vec![0u8; buffer_len];
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match receiver.try_recv(&mut buf) {
            Ok(got) => {
                let got = &buf[..got.len];
                let Some(head) = got.get(..4) else {
                    panic!(
                        "{} bytes received, shorter than any message sent",
                        got.len()
                    );
                };
                if head != number.to_be_bytes() {
                    continue; // one left behind by an earlier input
                }
                assert_eq!(got, &message[..], "received into {buffer_len} bytes");
                return;
            }
            Err(e) if e.is_would_block() => {
                assert!(std::time::Instant::now() < deadline, "nothing received");
                std::thread::sleep(std::time::Duration::from_micros(20));
            }
            Err(e) => {
                // libsrt's live mode wants room for a whole payload, whatever waits.
                let room = message
                    .len()
                    .max(receiver.payload_size().expect("a payload size"));
                assert!(buffer_len < room, "receive into {buffer_len} bytes: {e}");
                // What did not fit is gone or still queued: an earlier number next time.
                return;
            }
        }
    }
}
