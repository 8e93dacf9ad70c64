//! Many SRT streams: one `mirror-relay --streams FILE` relaying all of them, against
//! one `srt-live-transmit` process per stream (what an operator would run instead),
//! in one run.
//!
//! Each run: this process opens one SRT caller per stream (libsrt, all on one local
//! UDP port; srt-tokio callers on ports of their own for our relay on srt-tokio, whose
//! listener tells callers apart by address and port alone) and sends numbered
//! 1316-byte messages on each at a steady rate, from 200 streams at 20 a second to
//! 1 000 at 5 (see [`scenarios`]). The
//! program under test listens, relays every stream to one UDP socket here that counts
//! what arrives and from which stream, and gets measured: CPU time (the sum over its
//! threads, and over its processes, of `/proc/PID/task/*/schedstat`) over a window
//! after a warm-up, and memory (PSS and RSS from `/proc/PID/smaps_rollup`) at the end
//! of the window. Our relay has every stream on one listening port, routed by stream
//! id, as its streams file allows; `srt-live-transmit` takes one port per process.
//!
//! Needs `srt-live-transmit` (srt-tools), libsrt, and the relay built with the libsrt
//! feature: `cargo build --release --all-features --bin mirror-relay` (scripts/bench.sh
//! does it). `BENCH_QUICK=1` makes a short run with 50 streams; `RELAY_SCALE_STREAMS=N`
//! (and `RELAY_SCALE_RATE=R`) makes one run of N streams instead.

use std::io::Write as _;
use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::SinkExt;
use mirror_libsrt::Socket;
use srt_tokio::SrtSocket;

#[path = "common/net_figures.rs"]
mod net_figures;
#[path = "common/quick.rs"]
mod quick;
#[path = "common/relaying.rs"]
mod relaying;

use net_figures::{factor, free_udp_port, thousands, Section};
use relaying::{process_cpu, relay_binary};

const PAYLOAD: usize = 1316;
const LATENCY_MS: u32 = 120;

/// The runs: (streams, messages a second on each stream). `RELAY_SCALE_STREAMS=N`
/// (and `RELAY_SCALE_RATE=R`, 20 by default) makes one run of N streams instead.
///
/// 200 streams at 20 messages a second is what two cores carry with one
/// `srt-live-transmit` per stream, the encoders and the counting all on them; 1 000 at
/// 5 a second is the count an operator asks about, where they do not.
fn scenarios() -> Vec<(usize, u32)> {
    let var = |name: &str| -> Option<u64> {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .filter(|n| *n > 0)
    };
    if let Some(n) = var("RELAY_SCALE_STREAMS") {
        let rate = var("RELAY_SCALE_RATE").map_or(20, |r| u32::try_from(r).unwrap_or(20));
        return vec![(usize::try_from(n).unwrap_or(1), rate)];
    }
    quick::pick(vec![(200, 20), (1_000, 5)], vec![(50, 20)])
}

fn warmup() -> Duration {
    quick::pick(Duration::from_secs(5), Duration::from_secs(1))
}

fn window() -> Duration {
    quick::pick(Duration::from_secs(15), Duration::from_secs(2))
}

/// How long every caller may take to connect.
fn connecting() -> Duration {
    quick::pick(Duration::from_secs(120), Duration::from_secs(20))
}

/// The program that relays.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Relay {
    LiveTransmit,
    OursLibsrt,
    OursSrtTokio,
}

impl Relay {
    fn label(self) -> &'static str {
        match self {
            Self::LiveTransmit => "one srt-live-transmit (libsrt) per stream",
            Self::OursLibsrt => "one mirror-relay, `--srt-backend libsrt`",
            Self::OursSrtTokio => "one mirror-relay, `--srt-backend srt-tokio`",
        }
    }
}

/// Started processes, killed when dropped.
struct Guards(Vec<Child>);

impl Drop for Guards {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
        }
        for child in &mut self.0 {
            let _ = child.wait();
        }
    }
}

impl Guards {
    fn pids(&self) -> Vec<u32> {
        self.0.iter().map(Child::id).collect()
    }
}

fn quiet(command: &mut Command) -> std::io::Result<Child> {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
}

/// Starts `relay` for `n` streams relaying to `sink`; the address each stream's
/// caller connects to, with the stream id it sends.
fn start(
    relay: Relay,
    n: usize,
    sink: u16,
    dir: &std::path::Path,
) -> std::io::Result<(Guards, Vec<(SocketAddr, String)>)> {
    let output = format!("udp://127.0.0.1:{sink}");
    let ids: Vec<String> = (0..n).map(|i| format!("cam{i}")).collect();
    match relay {
        Relay::LiveTransmit => {
            let mut guards = Guards(Vec::with_capacity(n));
            let mut targets = Vec::with_capacity(n);
            for id in ids {
                let port = free_udp_port();
                guards.0.push(quiet(
                    Command::new("srt-live-transmit")
                        .args(["-q", "-ll", "fatal", "-chunk", "1316"])
                        .arg(format!(
                            "srt://127.0.0.1:{port}?mode=listener&latency={LATENCY_MS}"
                        ))
                        .arg(&output),
                )?);
                targets.push((SocketAddr::from(([127, 0, 0, 1], port)), id));
            }
            Ok((guards, targets))
        }
        Relay::OursLibsrt | Relay::OursSrtTokio => {
            let port = free_udp_port();
            let mut text = String::from("streams:\n");
            for id in &ids {
                text.push_str(&format!(
                    "  - id: {id}\n    input: \"srt://127.0.0.1:{port}?mode=listener&streamid={id}&latency={LATENCY_MS}\"\n    output: \"{output}\"\n"
                ));
            }
            let path = dir.join("relay.yaml");
            std::fs::File::create(&path)?.write_all(text.as_bytes())?;
            let backend = if relay == Relay::OursLibsrt {
                "libsrt"
            } else {
                "srt-tokio"
            };
            let child = quiet(
                Command::new(relay_binary())
                    .args(["--quiet", "--srt-backend", backend, "--streams"])
                    .arg(&path)
                    // The relay's file store goes to the run's own directory.
                    .current_dir(dir),
            )?;
            let address = SocketAddr::from(([127, 0, 0, 1], port));
            Ok((
                Guards(vec![child]),
                ids.into_iter().map(|id| (address, id)).collect(),
            ))
        }
    }
}

/// CPU time of each of `pids` (`None` for one that is gone).
fn each_cpu(pids: &[u32]) -> Vec<Option<Duration>> {
    pids.iter().map(|pid| process_cpu(*pid)).collect()
}

/// (PSS, RSS) of those of `pids` still running, in KiB.
fn total_memory(pids: &[u32]) -> (u64, u64) {
    let mut pss = 0;
    let mut rss = 0;
    for pid in pids {
        let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")) else {
            continue;
        };
        let field = |name: &str| -> u64 {
            text.lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        pss += field("Pss:");
        rss += field("Rss:");
    }
    (pss, rss)
}

/// How long the listeners get to start before their idle CPU is read.
const IDLE_SETTLE: Duration = Duration::from_secs(3);

fn idle_window() -> Duration {
    quick::pick(Duration::from_secs(5), Duration::from_secs(1))
}

/// `read()`, and the middle of the time it took: reading a thousand processes'
/// threads takes a while on a loaded machine, and a window measured from the start
/// of one read to the start of the next would not match the CPU read.
fn timed<R>(read: impl FnOnce() -> R) -> (R, Instant) {
    let start = Instant::now();
    let value = read();
    let took = start.elapsed();
    (value, start + took / 2)
}

/// The CPU the processes used between two readings, and how many of them ended in
/// between (they count nothing).
fn cpu_between(before: &[Option<Duration>], after: &[Option<Duration>]) -> (Duration, usize) {
    let mut cpu = Duration::ZERO;
    let mut ended = 0;
    for (before, after) in before.iter().zip(after) {
        match (before, after) {
            (Some(before), Some(after)) => cpu += after.saturating_sub(*before),
            _ => ended += 1,
        }
    }
    (cpu, ended)
}

/// One run's figures.
#[derive(Debug, Clone, Copy)]
struct Figures {
    connected: usize,
    broken: u64,
    flowing: usize,
    fed_per_sec: f64,
    per_sec: f64,
    us_per_packet: f64,
    cpu_share: f64,
    /// CPU per second of wall time with every listener up and no caller yet.
    idle_share: f64,
    pss_kib: u64,
    rss_kib: u64,
    processes: usize,
    /// Processes that ended by the end of the window.
    ended: usize,
    threads: usize,
}

/// What the encoders have done so far.
#[derive(Debug, Default)]
struct EncoderCounts {
    /// Callers connected now.
    connected: AtomicUsize,
    /// Connections that broke after they were made (each one is connected again).
    broken: AtomicU64,
    /// Messages sent.
    fed: AtomicU64,
}

/// One encoder per stream, all in one thread as one libsrt process would be: each
/// connects (all from one local port, one libsrt multiplexer), sends
/// `rate` numbered messages a second as soon as it is connected, and connects again
/// when its connection is refused or breaks, until `stop`.
fn encoders(
    targets: &[(SocketAddr, String)],
    rate: u32,
    stop: &AtomicBool,
    counts: &EncoderCounts,
) {
    let shared = free_udp_port();
    let mut cx = Context::from_waker(Waker::noop());
    let open = |address: SocketAddr, id: &str| -> Option<Socket> {
        let socket = Socket::new().ok()?;
        socket.set_live().ok()?;
        socket
            .set_latency(Duration::from_millis(LATENCY_MS.into()))
            .ok()?;
        // Patient: one process per stream is slow to answer when there are many.
        socket.set_connect_timeout(Duration::from_secs(15)).ok()?;
        socket.set_stream_id(id).ok()?;
        socket
            .bind(SocketAddr::from(([127, 0, 0, 1], shared)))
            .ok()?;
        socket.start_connect(address).ok()?;
        Some(socket)
    };
    enum Caller {
        Connecting(Option<Socket>),
        Up(Socket, u64),
    }
    let mut callers: Vec<Caller> = targets
        .iter()
        .map(|(a, id)| Caller::Connecting(open(*a, id)))
        .collect();
    let mut payload = [0x47u8; PAYLOAD];
    // One message every `gap`, round robin over the streams; connecting ones are
    // polled every CONNECT_POLL.
    const CONNECT_POLL: Duration = Duration::from_millis(20);
    let gap = Duration::from_secs(1) / rate / u32::try_from(targets.len().max(1)).unwrap_or(1);
    let start = Instant::now();
    let mut polled = start;
    let mut n: u64 = 0;
    while !stop.load(Ordering::Relaxed) {
        let due = start + gap.mul_f64(n as f64);
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        if polled.elapsed() >= CONNECT_POLL {
            polled = Instant::now();
            for (caller, (address, id)) in callers.iter_mut().zip(targets) {
                if let Caller::Connecting(pending) = caller {
                    match pending
                        .as_ref()
                        .map(|s| s.poll_connected(&mut cx, *address))
                    {
                        Some(Poll::Pending) => {}
                        Some(Poll::Ready(Ok(()))) => {
                            if let Some(socket) = pending.take() {
                                counts.connected.fetch_add(1, Ordering::Relaxed);
                                *caller = Caller::Up(socket, 0);
                            }
                        }
                        // Refused or timed out (the listener not up yet): again.
                        Some(Poll::Ready(Err(_))) | None => *pending = open(*address, id),
                    }
                }
            }
        }
        let k = (n % callers.len().max(1) as u64) as usize;
        n += 1;
        let Some(caller) = callers.get_mut(k) else {
            continue;
        };
        if let Caller::Up(socket, sequence) = caller {
            payload[..8].copy_from_slice(&(k as u64).to_be_bytes());
            payload[8..16].copy_from_slice(&sequence.to_be_bytes());
            *sequence += 1;
            match socket.try_send(&payload) {
                Ok(_) => {
                    counts.fed.fetch_add(1, Ordering::Relaxed);
                }
                // The send buffer is full: this message is lost, as live video's would be.
                Err(e) if e.is_would_block() => {}
                Err(_) => {
                    counts.connected.fetch_sub(1, Ordering::Relaxed);
                    counts.broken.fetch_add(1, Ordering::Relaxed);
                    let (address, id) = &targets[k];
                    *caller = Caller::Connecting(open(*address, id));
                }
            }
        }
    }
}

/// The encoders for a relay on srt-tokio, whose shared listener tells callers apart by
/// address and port alone (libsrt callers on one local port would look like one
/// caller): one srt-tokio caller per stream, each on its own UDP socket, all tasks of
/// one thread, otherwise doing what [`encoders`] does.
fn tokio_encoders(
    targets: Vec<(SocketAddr, String)>,
    rate: u32,
    stop: Arc<AtomicBool>,
    counts: Arc<EncoderCounts>,
) {
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        eprintln!("srt-tokio encoders: no runtime");
        return;
    };
    let n = targets.len();
    runtime.block_on(async move {
        let mut tasks = tokio::task::JoinSet::new();
        for (k, (address, id)) in targets.into_iter().enumerate() {
            let (stop, counts) = (Arc::clone(&stop), Arc::clone(&counts));
            // Spread evenly over one period, as the libsrt encoders' round robin is.
            let offset = Duration::from_secs(1).mul_f64(k as f64 / n as f64 / f64::from(rate));
            tasks.spawn(async move {
                tokio::time::sleep(offset).await;
                let period = Duration::from_secs(1) / rate;
                let mut sequence = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let call = SrtSocket::builder()
                        .latency(Duration::from_millis(LATENCY_MS.into()))
                        .call(address, Some(&id));
                    let Ok(Ok(mut socket)) =
                        tokio::time::timeout(Duration::from_secs(15), call).await
                    else {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    };
                    counts.connected.fetch_add(1, Ordering::Relaxed);
                    let mut tick = tokio::time::interval(period);
                    while !stop.load(Ordering::Relaxed) {
                        tick.tick().await;
                        let mut payload = vec![0x47u8; PAYLOAD];
                        payload[..8].copy_from_slice(&(k as u64).to_be_bytes());
                        payload[8..16].copy_from_slice(&sequence.to_be_bytes());
                        sequence += 1;
                        let send = socket.send((Instant::now(), Bytes::from(payload)));
                        match tokio::time::timeout(Duration::from_secs(1), send).await {
                            Ok(Ok(())) => {
                                counts.fed.fetch_add(1, Ordering::Relaxed);
                            }
                            Ok(Err(_)) | Err(_) => {
                                counts.connected.fetch_sub(1, Ordering::Relaxed);
                                counts.broken.fetch_add(1, Ordering::Relaxed);
                                break;
                            }
                        }
                    }
                }
            });
        }
        while tasks.join_next().await.is_some() {}
    });
}

/// Counts what arrives at the sink, in all and per stream.
struct Sink {
    total: AtomicU64,
    per_stream: Mutex<Vec<u64>>,
}

impl Sink {
    fn snapshot(&self) -> Vec<u64> {
        self.per_stream
            .lock()
            .map(|v| v.clone())
            .unwrap_or_default()
    }
}

fn run(relay: Relay, n: usize, rate: u32) -> Option<Figures> {
    let dir = tempfile::tempdir().ok()?;
    let sink_socket = UdpSocket::bind("127.0.0.1:0").ok()?;
    sink_socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .ok()?;
    let _ = socket2::SockRef::from(&sink_socket).set_recv_buffer_size(16 * 1024 * 1024);
    let sink_port = sink_socket.local_addr().ok()?.port();
    let stop = Arc::new(AtomicBool::new(false));
    let sink = Arc::new(Sink {
        total: AtomicU64::new(0),
        per_stream: Mutex::new(vec![0; n]),
    });
    let counting = {
        let (stop, sink) = (Arc::clone(&stop), Arc::clone(&sink));
        std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while !stop.load(Ordering::Relaxed) {
                let Ok(len) = sink_socket.recv(&mut buf) else {
                    continue;
                };
                sink.total.fetch_add(1, Ordering::Relaxed);
                if len >= 8 {
                    let mut index = [0u8; 8];
                    index.copy_from_slice(&buf[..8]);
                    let index = u64::from_be_bytes(index) as usize;
                    if let Ok(mut v) = sink.per_stream.lock() {
                        if let Some(count) = v.get_mut(index) {
                            *count += 1;
                        }
                    }
                }
            }
        })
    };
    let finish = |counting: std::thread::JoinHandle<()>| {
        stop.store(true, Ordering::Relaxed);
        let _ = counting.join();
    };
    let (guards, targets) = match start(relay, n, sink_port, dir.path()) {
        Ok(started) => started,
        Err(e) => {
            eprintln!("{}: not started: {e}", relay.label());
            finish(counting);
            return None;
        }
    };
    // What the listeners cost before anyone calls.
    let idle_share = {
        let pids = guards.pids();
        std::thread::sleep(IDLE_SETTLE);
        let (before, start) = timed(|| each_cpu(&pids));
        std::thread::sleep(idle_window());
        let (after, end) = timed(|| each_cpu(&pids));
        let (cpu, _) = cpu_between(&before, &after);
        cpu.as_secs_f64() / end.saturating_duration_since(start).as_secs_f64()
    };
    let counts = Arc::new(EncoderCounts::default());
    let stop_encoders = Arc::new(AtomicBool::new(false));
    let encoding = {
        let (counts, stop) = (Arc::clone(&counts), Arc::clone(&stop_encoders));
        if relay == Relay::OursSrtTokio {
            std::thread::spawn(move || tokio_encoders(targets, rate, stop, counts))
        } else {
            std::thread::spawn(move || encoders(&targets, rate, &stop, &counts))
        }
    };
    let began = Instant::now();
    while counts.connected.load(Ordering::Relaxed) < n && began.elapsed() < connecting() {
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!(
        "{}: {} of {n} callers connected after {:.1} s",
        relay.label(),
        counts.connected.load(Ordering::Relaxed),
        began.elapsed().as_secs_f64()
    );
    std::thread::sleep(warmup());
    let pids = guards.pids();
    let threads = |pids: &[u32]| -> usize {
        pids.iter()
            .filter_map(|pid| std::fs::read_dir(format!("/proc/{pid}/task")).ok())
            .map(Iterator::count)
            .sum()
    };
    // Every figure the window needs, read at once.
    let read = || {
        timed(|| {
            (
                each_cpu(&pids),
                sink.total.load(Ordering::Relaxed),
                counts.fed.load(Ordering::Relaxed),
                counts.broken.load(Ordering::Relaxed),
                sink.snapshot(),
            )
        })
    };
    let ((cpu0, got0, fed0, broken0, counts0), t0) = read();
    std::thread::sleep(window());
    let ((cpu1, got1, fed1, broken1, counts1), t1) = read();
    let elapsed = t1.saturating_duration_since(t0);
    let memory = total_memory(&pids);
    let thread_count = threads(&pids);
    let connected = counts.connected.load(Ordering::Relaxed);
    stop_encoders.store(true, Ordering::Relaxed);
    let _ = encoding.join();
    drop(guards);
    finish(counting);
    let (pss, rss) = memory;
    // A process that ended before the window's end counts no CPU, and is reported.
    let (cpu, ended) = cpu_between(&cpu0, &cpu1);
    if ended == pids.len() {
        eprintln!("{}: every relaying process ended", relay.label());
        return None;
    }
    let packets = got1.saturating_sub(got0);
    let flowing = counts1
        .iter()
        .zip(&counts0)
        .filter(|(after, before)| after > before)
        .count();
    Some(Figures {
        connected,
        broken: broken1.saturating_sub(broken0),
        flowing,
        fed_per_sec: fed1.saturating_sub(fed0) as f64 / elapsed.as_secs_f64(),
        per_sec: packets as f64 / elapsed.as_secs_f64(),
        us_per_packet: if packets == 0 {
            f64::NAN
        } else {
            cpu.as_secs_f64() * 1e6 / packets as f64
        },
        cpu_share: cpu.as_secs_f64() / elapsed.as_secs_f64(),
        idle_share,
        pss_kib: pss,
        rss_kib: rss,
        processes: pids.len(),
        ended,
        threads: thread_count,
    })
}

fn kib(value: f64) -> String {
    if value >= 10_240.0 {
        format!("{:.1} MiB", value / 1024.0)
    } else {
        format!("{value:.0} KiB")
    }
}

fn main() {
    let Some(mut section) = relaying::open_section(
        "relay_scale",
        "Many SRT streams: one relay for all against one srt-live-transmit per stream",
    ) else {
        return;
    };
    section.para(&format!(
        "Measured in real time on loopback; in each run, one run of each program, one \
         after the other. This process opens one SRT caller per stream (libsrt, latency \
         {LATENCY_MS} ms, all on one local UDP port, in one thread; for our relay on \
         srt-tokio, whose listener tells callers apart by address and port alone, srt-tokio \
         callers each on its own port, tasks of one thread), each sending \
         numbered {PAYLOAD}-byte messages at a steady rate as soon as it is connected, and \
         connecting again if its connection is refused or breaks, as an encoder does. The \
         program under test relays every stream to one UDP socket here that counts what \
         arrives from each stream. `srt-live-transmit` runs as one listener process per \
         stream, each on its own port (`-chunk 1316`, `-q -ll fatal`); our relay is one \
         `mirror-relay --quiet --srt-backend … --streams FILE` process with every stream \
         listening on one port, routed by stream id, on the config's defaults. \"CPU \
         before any caller\" is read over {:?}, {:?} after the program started, before the \
         encoders start. Once every caller is connected (or after {:?}): a {:?} warm-up, \
         then a {:?} window. CPU is the sum over the \
         relaying processes and their threads of `/proc/PID/task/*/schedstat` over the \
         window, \"CPU used\" that sum per second of the window (200 % is the whole \
         machine, which the encoders here share), memory the sum of the processes' PSS \
         (shared pages divided among the processes that map them) and RSS (shared pages \
         counted in every process) from `/proc/PID/smaps_rollup` at the end of the window, \
         divided by the streams. \"vs srt-live-transmit\" divides by srt-live-transmit's \
         figure of the same run; \"—\" where it relayed nothing.",
        idle_window(),
        IDLE_SETTLE,
        connecting(),
        warmup(),
        window(),
    ));
    for (n, rate) in scenarios() {
        scenario(&mut section, n, rate);
    }
    section.finish();
}

/// One run of every program with `n` streams of `rate` messages a second: a table and
/// its targets.
fn scenario(section: &mut Section, n: usize, rate: u32) {
    section.para(&format!(
        "### {n} streams, {rate} messages a second each ({} in all, {:.0} kbit/s of \
         payload a stream)",
        thousands((u64::from(rate) * n as u64) as f64),
        f64::from(rate) * PAYLOAD as f64 * 8.0 / 1e3,
    ));
    let relays = [Relay::LiveTransmit, Relay::OursLibsrt, Relay::OursSrtTokio];
    let figures: Vec<Option<Figures>> = relays
        .iter()
        .map(|relay| {
            let figures = run(*relay, n, rate);
            match &figures {
                Some(f) => eprintln!("{}: {f:?}", relay.label()),
                None => eprintln!("{}: no figures", relay.label()),
            }
            figures
        })
        .collect();
    let base = figures[0];
    // CPU per message compares like with like only when every stream of the baseline
    // was flowing; otherwise it is what a saturated machine gave, and left out.
    let cpu_base = base.filter(|b| b.connected == n && b.flowing == n);
    let per_stream = |kib_total: u64| kib_total as f64 / n as f64;
    let rows: Vec<Vec<String>> = relays
        .iter()
        .zip(&figures)
        .map(|(relay, f)| match f {
            None => std::iter::once(relay.label().to_owned())
                .chain(std::iter::once("not measured".to_owned()))
                .chain((0..11).map(|_| "—".to_owned()))
                .collect(),
            Some(f) => vec![
                relay.label().to_owned(),
                format!("{} / {}", f.connected, n),
                f.broken.to_string(),
                format!("{} / {}", f.flowing, n),
                format!(
                    "{} ({} fed)",
                    thousands(f.per_sec),
                    thousands(f.fed_per_sec)
                ),
                if f.us_per_packet.is_finite() {
                    format!("{:.2} µs", f.us_per_packet)
                } else {
                    "—".to_owned()
                },
                cpu_base.map_or("—".to_owned(), |b| {
                    factor(f.us_per_packet, b.us_per_packet)
                }),
                format!("{:.0} %", f.cpu_share * 100.0),
                format!("{:.0} %", f.idle_share * 100.0),
                kib(per_stream(f.pss_kib)),
                base.map_or("—".to_owned(), |b| {
                    factor(f.pss_kib as f64, b.pss_kib as f64)
                }),
                kib(per_stream(f.rss_kib)),
                if f.ended == 0 {
                    format!("{} / {}", f.processes, thousands(f.threads as f64))
                } else {
                    format!(
                        "{} ({} ended) / {}",
                        f.processes,
                        f.ended,
                        thousands(f.threads as f64)
                    )
                },
            ],
        })
        .collect();
    section.table(
        &[
            "relaying",
            "callers connected",
            "connections broken in the window",
            "streams flowing in the window",
            "messages relayed per second",
            "CPU per relayed message",
            "vs srt-live-transmit",
            "CPU used (% of one core)",
            "CPU before any caller (% of one core)",
            "memory per stream (PSS)",
            "vs srt-live-transmit",
            "memory per stream (RSS)",
            "processes / threads",
        ],
        &rows,
    );
    if let Some(b) = base.filter(|b| b.connected < n) {
        section.para(&format!(
            "Only {} of the {n} `srt-live-transmit` processes had their caller connected \
             after {:?}, and they relayed {} messages a second in the window. Before any \
             caller, the {n} idle listeners (libsrt's threads waking on their timers in \
             every process) used {:.0} % of one core of this machine's {}. CPU per \
             message is compared only where every stream flowed.",
            b.connected,
            connecting(),
            thousands(b.per_sec),
            b.idle_share * 100.0,
            std::thread::available_parallelism().map_or(0, usize::from),
        ));
    }
    if let (Some(b), Some(Some(ours))) = (base, figures.get(1)) {
        let cpu = cpu_base.map_or(f64::NAN, |c| ours.us_per_packet / c.us_per_packet);
        let memory = ours.pss_kib as f64 / b.pss_kib as f64;
        if cpu.is_finite() {
            section.target(
            &format!("{n} SRT streams, one relay on libsrt / one srt-live-transmit each, CPU per message"),
            "≤ ×1.0",
            &format!("×{cpu:.2}"),
            cpu <= 1.0,
        );
        }
        section.target(
            &format!(
                "{n} SRT streams, one relay on libsrt / one srt-live-transmit each, memory (PSS)"
            ),
            "≤ ×1.0",
            &format!("×{memory:.2}"),
            memory <= 1.0,
        );
    }
}
