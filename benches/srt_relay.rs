//! Relaying one SRT stream to UDP: libsrt's own `srt-live-transmit`, and our relay on
//! each SRT backend (`--srt-backend srt-tokio` and `--srt-backend libsrt`), in one run.
//!
//! Each run: a UDP feeder in this process sends numbered 1316-byte datagrams to an
//! `srt-live-transmit` caller (the encoder side), which sends them over SRT on
//! loopback to the program under test, an SRT listener relaying to a UDP socket here
//! that counts what arrives. Paced runs feed 5 000 datagrams a second (52.6 Mbit/s of
//! payload); flooded runs feed as fast as the feeder can. After a warm-up the sink
//! counts datagrams for a window while this process reads the relaying process's CPU
//! time (the sum over its threads of `/proc/PID/task/*/schedstat`), so each run gives
//! datagrams relayed per second and CPU per relayed datagram. Programs are
//! interleaved run by run; medians are reported, with ratios to `srt-live-transmit`
//! from the same run.
//!
//! Needs `srt-live-transmit` (srt-tools) and the relay built with the libsrt feature:
//! `cargo build --release --all-features --bin mirror-relay` (scripts/bench.sh does it).
//! `BENCH_QUICK=1` makes one short run of each.

use std::net::UdpSocket;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[path = "common/net_figures.rs"]
mod net_figures;
#[path = "common/quick.rs"]
mod quick;
#[path = "common/relaying.rs"]
mod relaying;

use net_figures::{factor, free_udp_port, median, spread, thousands};
use relaying::{process_cpu, relay_binary};

const PAYLOAD: usize = 1316;
const PACED_RATE: u32 = 5_000;
const LATENCY_MS: u32 = 120;

fn warmup() -> Duration {
    quick::pick(Duration::from_secs(2), Duration::from_millis(500))
}

fn window() -> Duration {
    quick::pick(Duration::from_secs(5), Duration::from_secs(1))
}

fn runs() -> usize {
    quick::pick(3, 1)
}

/// The program that relays.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Relay {
    LiveTransmit,
    OursSrtTokio,
    OursLibsrt,
}

impl Relay {
    fn label(self) -> &'static str {
        match self {
            Self::LiveTransmit => "srt-live-transmit (libsrt)",
            Self::OursSrtTokio => "our relay, `--srt-backend srt-tokio`",
            Self::OursLibsrt => "our relay, `--srt-backend libsrt`",
        }
    }
}

struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn quiet(command: &mut Command) -> std::io::Result<Guard> {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map(Guard)
}

fn start_relay(relay: Relay, port: u16, sink: u16) -> std::io::Result<Guard> {
    let input = format!("srt://127.0.0.1:{port}?mode=listener&latency={LATENCY_MS}");
    let output = format!("udp://127.0.0.1:{sink}");
    match relay {
        Relay::LiveTransmit => quiet(
            Command::new("srt-live-transmit")
                .args(["-q", "-ll", "fatal", "-chunk", "1316"])
                .arg(&input)
                .arg(&output),
        ),
        Relay::OursSrtTokio | Relay::OursLibsrt => {
            let backend = if relay == Relay::OursLibsrt {
                "libsrt"
            } else {
                "srt-tokio"
            };
            quiet(
                Command::new(relay_binary())
                    .args(["--quiet", "--srt-backend", backend])
                    .arg(&input)
                    .arg(&output),
            )
        }
    }
}

/// One run's figures.
#[derive(Debug, Clone, Copy)]
struct Window {
    per_sec: f64,
    us_per_packet: f64,
    fed_per_sec: f64,
}

fn run(relay: Relay, paced: bool) -> Option<Window> {
    let port = free_udp_port();
    let sink = UdpSocket::bind("127.0.0.1:0").ok()?;
    sink.set_read_timeout(Some(Duration::from_millis(100)))
        .ok()?;
    let _ = socket2_buffer(&sink);
    let sink_port = sink.local_addr().ok()?.port();
    let relaying = start_relay(relay, port, sink_port)
        .map_err(|e| eprintln!("{}: not started: {e}", relay.label()))
        .ok()?;
    std::thread::sleep(Duration::from_millis(300));
    let feed_port = free_udp_port();
    let _encoder = quiet(
        Command::new("srt-live-transmit")
            .args(["-q", "-ll", "fatal", "-chunk", "1316"])
            .arg(format!("udp://127.0.0.1:{feed_port}"))
            .arg(format!(
                "srt://127.0.0.1:{port}?mode=caller&latency={LATENCY_MS}"
            )),
    )
    .ok()?;
    let stop = Arc::new(AtomicBool::new(false));
    let fed = Arc::new(AtomicU64::new(0));
    let feeder = {
        let (stop, fed) = (Arc::clone(&stop), Arc::clone(&fed));
        std::thread::spawn(move || feed(feed_port, paced, &stop, &fed))
    };
    let received = Arc::new(AtomicU64::new(0));
    let counting = {
        let (stop, received) = (Arc::clone(&stop), Arc::clone(&received));
        std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while !stop.load(Ordering::Relaxed) {
                if sink.recv(&mut buf).is_ok() {
                    received.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };
    // Until the stream flows, then the warm-up.
    let started = Instant::now();
    while received.load(Ordering::Relaxed) == 0 && started.elapsed() < Duration::from_secs(15) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let flowing = received.load(Ordering::Relaxed) > 0;
    std::thread::sleep(warmup());
    let pid = relaying.0.id();
    let (cpu0, got0, fed0, t0) = (
        process_cpu(pid),
        received.load(Ordering::Relaxed),
        fed.load(Ordering::Relaxed),
        Instant::now(),
    );
    std::thread::sleep(window());
    let (cpu1, got1, fed1, elapsed) = (
        process_cpu(pid),
        received.load(Ordering::Relaxed),
        fed.load(Ordering::Relaxed),
        t0.elapsed(),
    );
    stop.store(true, Ordering::Relaxed);
    let _ = feeder.join();
    let _ = counting.join();
    drop(relaying);
    if !flowing {
        eprintln!("{}: nothing relayed within 15 s", relay.label());
        return None;
    }
    let packets = got1.saturating_sub(got0);
    let cpu = cpu1?.saturating_sub(cpu0?);
    Some(Window {
        per_sec: packets as f64 / elapsed.as_secs_f64(),
        us_per_packet: if packets == 0 {
            f64::NAN
        } else {
            cpu.as_secs_f64() * 1e6 / packets as f64
        },
        fed_per_sec: fed1.saturating_sub(fed0) as f64 / elapsed.as_secs_f64(),
    })
}

/// A large receive buffer for the sink, so that it is never what drops.
fn socket2_buffer(socket: &UdpSocket) -> std::io::Result<()> {
    socket2::SockRef::from(socket).set_recv_buffer_size(8 * 1024 * 1024)
}

fn feed(port: u16, paced: bool, stop: &AtomicBool, fed: &AtomicU64) {
    let Ok(socket) = UdpSocket::bind("127.0.0.1:0") else {
        return;
    };
    let mut payload = [0x47u8; PAYLOAD];
    let gap = Duration::from_secs(1) / PACED_RATE;
    let start = Instant::now();
    let mut n: u64 = 0;
    while !stop.load(Ordering::Relaxed) {
        if paced {
            let due = start + gap * u32::try_from(n).unwrap_or(u32::MAX);
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
        }
        payload[..8].copy_from_slice(&n.to_be_bytes());
        if socket.send_to(&payload, ("127.0.0.1", port)).is_ok() {
            fed.fetch_add(1, Ordering::Relaxed);
        }
        n += 1;
    }
}

fn main() {
    let Some(mut section) = relaying::open_section(
        "srt_relay",
        "SRT relaying: srt-live-transmit and our relay on each SRT backend",
    ) else {
        return;
    };
    let relays = [Relay::LiveTransmit, Relay::OursSrtTokio, Relay::OursLibsrt];
    section.para(&format!(
        "Measured in real time on loopback. A UDP feeder here sends numbered {PAYLOAD}-byte \
         datagrams to an `srt-live-transmit` caller, which sends them over SRT (latency \
         {LATENCY_MS} ms) to the program under test, an SRT listener relaying to a UDP \
         socket here that counts them. Paced: {PACED_RATE} datagrams a second fed \
         ({:.1} Mbit/s of payload); flooded: as fast as the feeder can. Each run counts \
         for {:?} after a {:?} warm-up and reads the relaying process's CPU time (all its \
         threads, `/proc/PID/task/*/schedstat`); {} runs per program and mode, \
         interleaved; medians, with the lowest and highest run. Our relay is the release \
         build of `mirror-relay` with the config's defaults (`--quiet`). \"vs \
         srt-live-transmit\" divides by srt-live-transmit's figure of the same table.",
        f64::from(PACED_RATE) * PAYLOAD as f64 * 8.0 / 1e6,
        window(),
        warmup(),
        runs(),
    ));
    let mut libsrt_paced_ratio = None;
    for paced in [true, false] {
        let mut figures: Vec<Vec<Window>> = vec![Vec::new(); relays.len()];
        for round in 0..runs() {
            for (i, relay) in relays.iter().enumerate() {
                match run(*relay, paced) {
                    Some(w) => {
                        eprintln!(
                            "{} run {round}: {:<40} {:>8.0}/s relayed ({:>8.0}/s fed), {:>6.2} µs CPU per datagram",
                            if paced { "paced" } else { "flooded" },
                            relay.label(),
                            w.per_sec,
                            w.fed_per_sec,
                            w.us_per_packet
                        );
                        figures[i].push(w);
                    }
                    None => eprintln!("run {round}: {}: no figures", relay.label()),
                }
            }
        }
        let med = |i: usize, f: fn(&Window) -> f64| -> f64 {
            let values: Vec<f64> = figures[i].iter().map(f).collect();
            if values.is_empty() {
                f64::NAN
            } else {
                median(&values)
            }
        };
        let base_cpu = med(0, |w| w.us_per_packet);
        let base_rate = med(0, |w| w.per_sec);
        let rows: Vec<Vec<String>> = relays
            .iter()
            .enumerate()
            .map(|(i, relay)| {
                let rates: Vec<f64> = figures[i].iter().map(|w| w.per_sec).collect();
                let cpus: Vec<f64> = figures[i].iter().map(|w| w.us_per_packet).collect();
                let (lo, hi) = if rates.is_empty() {
                    (f64::NAN, f64::NAN)
                } else {
                    spread(&rates)
                };
                let (clo, chi) = if cpus.is_empty() {
                    (f64::NAN, f64::NAN)
                } else {
                    spread(&cpus)
                };
                vec![
                    relay.label().to_owned(),
                    format!(
                        "{} ({}–{})",
                        thousands(med(i, |w| w.per_sec)),
                        thousands(lo),
                        thousands(hi)
                    ),
                    factor(med(i, |w| w.per_sec), base_rate),
                    format!(
                        "{:.2} µs ({:.2}–{:.2})",
                        med(i, |w| w.us_per_packet),
                        clo,
                        chi
                    ),
                    factor(med(i, |w| w.us_per_packet), base_cpu),
                ]
            })
            .collect();
        section.para(if paced {
            "### Paced (5 000 datagrams a second)"
        } else {
            "### Flooded"
        });
        section.table(
            &[
                "relaying program",
                "datagrams relayed per second (range)",
                "vs srt-live-transmit",
                "CPU per relayed datagram (range)",
                "vs srt-live-transmit",
            ],
            &rows,
        );
        if paced {
            libsrt_paced_ratio = Some(med(2, |w| w.us_per_packet) / base_cpu);
        }
    }
    if let Some(ratio) = libsrt_paced_ratio {
        section.target(
            "SRT relaying on libsrt / srt-live-transmit, CPU per datagram (paced)",
            "≤ ×1.0",
            &format!("×{ratio:.2}"),
            ratio <= 1.0,
        );
    }
    section.finish();
}
