//! A reconnecting relay: receive a live stream over SRT, RTP or UDP, keep it connected
//! through failures with the full `mirror-reconnect` layer stack, and pass it on.
//!
//! ```sh
//! # The self-contained demo: a local SRT sender, scripted network trouble, a report.
//! cargo run --release --bin mirror-relay -- --demo
//!
//! # A real SRT ingest (listening for an encoder) relayed to UDP, with metrics:
//! cargo run --release --bin mirror-relay -- --metrics-addr 127.0.0.1:9184 \
//!     'srt://:9000?mode=listener&streamid=cam1&latency=200' udp://127.0.0.1:5000
//! ```
//!
//! Built on the crate's public API only. Exit status: 0 on a clean stop (Ctrl-C,
//! SIGTERM, `--duration`), 1 when the stream gave up, 2 on a bad command line or config.

mod cli;
mod demo;
mod fill;
mod http;
mod output;
mod status;
mod streams;

/// The fuzz targets over the relay's own inputs, for replaying their saved inputs.
#[cfg(test)]
#[path = "../../../fuzz/relay_entries.rs"]
mod relay_entries;
#[cfg(test)]
#[path = "../../../fuzz/replay.rs"]
mod replay;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use mirror_reconnect::connection::{redact_url, Connection, Protocol, Target};
use mirror_reconnect::driver::Events;
use mirror_reconnect::failover::{Failover, Source};
use mirror_reconnect::health::HealthHandle;
use mirror_reconnect::metrics::StreamMetrics;
use mirror_reconnect::protocol::srt::{srt_target, SrtConnector, SrtProbe};
use mirror_reconnect::protocol::udp::UdpConnector;
use mirror_reconnect::redis::{Fleet, FleetSlot, LeaseManager, RedisStorage, StreamLease};
use mirror_reconnect::restore::{FileStorage, MemoryStorage, StateStorage};
use mirror_reconnect::{BoxError, ReconnectionConfig};
use tokio_util::sync::CancellationToken;
use tower::Service;

/// Print each of `events` as one JSON line on stderr.
fn print_events(events: &Events) {
    events.on_event(|event| match serde_json::to_string(event) {
        Ok(line) => eprintln!("{line}"),
        Err(e) => eprintln!("mirror-relay: event not printable: {e}"),
    });
}

/// Why the relay stopped other than cleanly.
enum Failure {
    /// Bad command line, config or setup: exit 2.
    Usage(String),
    /// The stream gave up or an output failed: exit 1.
    Runtime(String),
}

impl Failure {
    /// What went wrong, in words, whatever the exit status.
    fn message(self) -> String {
        match self {
            Self::Usage(m) | Self::Runtime(m) => m,
        }
    }
}

fn usage(e: impl std::fmt::Display) -> Failure {
    Failure::Usage(e.to_string())
}

fn main() -> ExitCode {
    let args = match cli::parse(std::env::args_os().skip(1)) {
        Ok(args) => args,
        Err(e) => {
            eprintln!("mirror-relay: {e} (try --help)");
            return ExitCode::from(2);
        }
    };
    if args.help {
        print!("{}", cli::USAGE);
        return ExitCode::SUCCESS;
    }
    init_logging(&args);

    // One thread carries the stream: a packet crosses no thread inside the relay
    // (benches/srt_relay.rs measured it against the multi-threaded runtime).
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("mirror-relay: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(async {
        if let Some((addr, epoch, stream_id)) = &args.demo_sender {
            demo::sender_main(*addr, *epoch, stream_id).await
        } else if args.demo {
            demo::run(&args).await
        } else {
            run(&args).await
        }
    });
    // Detached saves and closes get a moment to finish; nothing waits longer.
    runtime.shutdown_timeout(Duration::from_secs(2));
    // The runtime's tasks held the last libsrt sockets: libsrt's cleanup finishes
    // before the process exits, so that libsrt's own teardown at exit cannot race it.
    #[cfg(feature = "libsrt")]
    let _ = mirror_libsrt::wait_cleaned_up();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(message)) => {
            eprintln!("mirror-relay: {message}");
            ExitCode::from(2)
        }
        Err(Failure::Runtime(message)) => {
            eprintln!("mirror-relay: {message}");
            ExitCode::from(1)
        }
    }
}

/// Log lines on stderr, one each: warnings and errors by default, `--log-level` or
/// RUST_LOG for more or fewer, `--quiet` for none.
fn init_logging(args: &cli::Args) {
    use tracing_subscriber::EnvFilter;

    let filter = if args.quiet {
        EnvFilter::new("off")
    } else if let Some(level) = &args.log_level {
        EnvFilter::new(level)
    } else {
        match EnvFilter::try_from_env("RUST_LOG") {
            Ok(filter) => filter,
            Err(e) => {
                if std::env::var_os("RUST_LOG").is_some_and(|v| !v.is_empty()) {
                    eprintln!("mirror-relay: RUST_LOG is not a filter ({e}); logging warnings");
                }
                EnvFilter::new("warn")
            }
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        // Plain text: the subscriber is built without colours, and asking for them
        // on a terminal printed a warning instead.
        .with_ansi(false)
        .with_writer(status::screen::LogWriter)
        .init();
}

/// Cancelled by Ctrl-C, SIGTERM or the end of `--duration`.
fn stop_token(duration: Option<Duration>) -> Result<CancellationToken, Failure> {
    let token = CancellationToken::new();
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| Failure::Runtime(format!("cannot watch SIGTERM: {e}")))?;
    let stop = token.clone();
    tokio::spawn(async move {
        let deadline = async {
            match duration {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
            _ = deadline => {}
        }
        stop.cancel();
    });
    Ok(token)
}

/// The store, and the same store as a `RedisStorage` when it is one (shared by relays,
/// so its saves get fenced by the stream's lease).
async fn open_storage(
    spec: &cli::StateSpec,
    config: &ReconnectionConfig,
) -> Result<(Arc<dyn StateStorage>, Option<RedisStorage>), Failure> {
    Ok(match spec {
        cli::StateSpec::Memory => (Arc::new(MemoryStorage::with_ttl(config.state_ttl)), None),
        cli::StateSpec::File(dir) => {
            std::fs::create_dir_all(dir)
                .map_err(|e| usage(format!("--state file:{}: {e}", dir.display())))?;
            (
                Arc::new(FileStorage::new(dir).with_ttl(config.state_ttl)),
                None,
            )
        }
        cli::StateSpec::Redis(url) => {
            let redis = RedisStorage::builder(url.clone())
                .ttl(config.state_ttl)
                .build()
                .map_err(|e| usage(format!("--state {}: {e}", redact_url(url))))?;
            (Arc::new(redis.clone()), Some(redis))
        }
    })
}

/// Who this process is, in lease records.
fn owner_name() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "localhost".to_owned());
    format!("mirror-relay@{host}:{}", std::process::id())
}

/// Everything a stream's relay loop needs besides its connector.
struct Relay {
    config: ReconnectionConfig,
    storage: Arc<dyn StateStorage>,
    stop: CancellationToken,
    events_json: bool,
    status_line: bool,
    metrics: bool,
    /// With a shared (Redis) store, the stream is owned through a lease, and the
    /// store's saves of it are fenced by that lease.
    leases: Option<(LeaseManager, RedisStorage)>,
    /// With a streams file and a Redis store: the relays sharing the file, among
    /// which this one owns only its share of the streams.
    fleet: Option<Fleet>,
    /// Opened once the stream is this relay's (after its lease, with leases).
    output: cli::Output,
    /// Packets an SRT output keeps while its receiver is away.
    output_buffer: usize,
    /// What to send while no source delivers.
    idle_fill: Option<fill::IdleFill>,
    /// The process's connectors: clones share their listeners, so listener inputs
    /// of several streams on one port share one socket, routed by stream id.
    connectors: Connectors,
    /// Where the stream's row for `GET /streams` goes, and under which id (the
    /// streams file's; else the input's stream id).
    board: status::Board,
    board_id: Option<String>,
}

/// One connector per SRT library for the whole process.
#[derive(Clone)]
struct Connectors {
    srt: SrtConnector,
    #[cfg(feature = "libsrt")]
    libsrt: mirror_reconnect::protocol::srt::LibSrtConnector,
}

impl Connectors {
    fn new() -> Self {
        Self {
            srt: SrtConnector::new(),
            #[cfg(feature = "libsrt")]
            libsrt: mirror_reconnect::protocol::srt::LibSrtConnector::new(),
        }
    }
}

/// What every stream of the process shares.
struct Shared {
    storage: Arc<dyn StateStorage>,
    leases: Option<(LeaseManager, RedisStorage)>,
    fleet: Option<Fleet>,
    stop: CancellationToken,
    connectors: Connectors,
    board: status::Board,
}

/// How long a stream's lease outlives a relay that died, unless `--lease-ttl` says.
const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(10);

/// Open the store, the leases, the metrics endpoint and the stop signal.
async fn shared(args: &cli::Args, config: &ReconnectionConfig) -> Result<Shared, Failure> {
    let (storage, redis) = open_storage(&args.state, config).await?;
    let board = status::Board::default();
    if let Some(addr) = args.metrics_addr {
        let metrics = mirror_reconnect::metrics::install_prometheus_recorder()
            .map_err(|e| usage(format!("--metrics-addr {addr}: {e}")))?;
        http::serve(addr, metrics, board.clone(), args.metrics_clients)
            .await
            .map_err(|e| usage(format!("--metrics-addr {addr}: {e}")))?;
    }
    let leases = match (&args.state, redis) {
        (cli::StateSpec::Redis(url), Some(redis)) => Some((
            LeaseManager::builder(url.clone(), owner_name())
                .ttl(args.lease_ttl.unwrap_or(DEFAULT_LEASE_TTL))
                .build()
                .map_err(|e| usage(format!("--state {}: {e}", redact_url(url))))?,
            redis,
        )),
        _ => None,
    };
    Ok(Shared {
        storage,
        leases,
        fleet: None,
        stop: stop_token(args.duration)?,
        connectors: Connectors::new(),
        board,
    })
}

impl Shared {
    /// One stream's relay.
    fn relay(
        &self,
        args: &cli::Args,
        id: Option<&str>,
        config: ReconnectionConfig,
        output: &cli::Output,
        status_line: bool,
    ) -> Relay {
        // Its own stop, under the process's: a stream removed from the streams file
        // stops alone.
        let stop = self.stop.child_token();
        Relay {
            config,
            storage: Arc::clone(&self.storage),
            stop,
            events_json: args.events_json,
            status_line,
            metrics: args.metrics_addr.is_some(),
            leases: self.leases.clone(),
            fleet: self.fleet.clone(),
            output: output.clone(),
            output_buffer: args.output_buffer,
            idle_fill: args.idle_fill.clone(),
            connectors: self.connectors.clone(),
            board: self.board.clone(),
            board_id: id.map(str::to_owned),
        }
    }
}

async fn run(args: &cli::Args) -> Result<(), Failure> {
    if let Some(path) = &args.streams {
        let file = streams::load(path).map_err(Failure::Usage)?;
        return run_streams(args, path, file).await;
    }
    let config = match &args.config {
        Some(path) => ReconnectionConfig::from_yaml_file(path).map_err(usage)?,
        None => ReconnectionConfig::default(),
    };
    let shared = shared(args, &config).await?;
    let (Some(input), Some(output)) = (&args.input, &args.output) else {
        return Err(usage("missing INPUT or OUTPUT"));
    };
    let status_line =
        !args.events_json && !args.quiet && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let relay = shared.relay(args, None, config, output, status_line);
    let inputs: Vec<&cli::Input> = std::iter::once(input).chain(&args.backups).collect();
    relay.run(&inputs, args.srt_backend).await
}

/// One running stream of a streams file.
struct Running {
    spec: streams::StreamSpec,
    stop: CancellationToken,
    task: tokio::task::Id,
}

/// Every stream of a streams file, each its own stack on its own task: a stream that
/// gives up, fails or panics is reported and the others go on. SIGHUP re-reads the
/// file: added streams start, removed ones stop cleanly (their final state saved),
/// changed ones restart, unchanged ones are not touched; a file that does not load is
/// reported and the running streams go on. Runs until stopped or every stream has
/// ended; exits 1 if any stream ended in failure.
async fn run_streams(
    args: &cli::Args,
    path: &std::path::Path,
    file: streams::Streams,
) -> Result<(), Failure> {
    let mut shared = shared(args, &file.defaults).await?;
    // Relays sharing this file and this Redis divide its streams between them.
    if let Some((leases, _)) = &shared.leases {
        let fleet = Fleet::join(leases, file.streams.len());
        let (stop, leaving) = (shared.stop.clone(), fleet.clone());
        // Leaving first lets the others' shares grow while this relay's streams stop.
        tokio::spawn(async move {
            stop.cancelled().await;
            leaving.leave().await;
        });
        shared.fleet = Some(fleet);
    }
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .map_err(|e| Failure::Runtime(format!("cannot watch SIGHUP: {e}")))?;
    // A terminal shows every stream in a table redrawn each second; logs and events
    // printed meanwhile appear above it.
    let table =
        (!args.events_json && !args.quiet && std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .then(|| {
                let board = shared.board.clone();
                tokio::spawn(async move {
                    let mut tick = tokio::time::interval(Duration::from_secs(1));
                    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
                    loop {
                        tick.tick().await;
                        status::screen::draw(&status::table(&board.rows()));
                    }
                })
            });
    let local = tokio::task::LocalSet::new();
    let backend = args.srt_backend;
    let outcome = local
        .run_until(async {
            let mut tasks = tokio::task::JoinSet::new();
            let mut running: std::collections::BTreeMap<String, Running> = Default::default();
            // Changed streams wait here for their old task to end (its sockets freed).
            let mut restarts: std::collections::HashMap<tokio::task::Id, streams::StreamSpec> =
                Default::default();
            // Removed streams: their rows go when their task ends.
            let mut removing: std::collections::HashSet<tokio::task::Id> = Default::default();
            let mut failed = 0usize;
            for spec in file.streams {
                running.insert(spec.id.clone(), start(&shared, args, &mut tasks, spec, backend));
            }
            tracing::info!(streams = running.len(), "relaying");
            loop {
                tokio::select! {
                    done = tasks.join_next_with_id() => {
                        let Some(done) = done else { break };
                        let (task, outcome) = match done {
                            Ok((task, outcome)) => (task, outcome.map_err(Failure::message)),
                            Err(e) => (e.id(), Err(if e.is_panic() {
                                "panicked (a defect: please report it)".to_owned()
                            } else {
                                e.to_string()
                            })),
                        };
                        if let Some(spec) = restarts.remove(&task) {
                            tracing::warn!(stream_id = %spec.id, "stream restarted with its new settings");
                            running.insert(spec.id.clone(), start(&shared, args, &mut tasks, spec, backend));
                            continue;
                        }
                        let id = running
                            .iter()
                            .find(|(_, r)| r.task == task)
                            .map(|(id, _)| id.clone());
                        if let Some(id) = &id {
                            running.remove(id);
                            if removing.remove(&task) {
                                shared.board.forget(id);
                            }
                        }
                        if let Err(message) = outcome {
                            failed += 1;
                            let id = id.as_deref().unwrap_or("?");
                            status::screen::say(&format!("mirror-relay: stream {id}: {message}"));
                        }
                    }
                    _ = hangup.recv() => {
                        let file = match streams::load(path) {
                            Ok(file) => file,
                            Err(e) => {
                                status::screen::say(&format!(
                                    "mirror-relay: {e}; the running streams go on"
                                ));
                                continue;
                            }
                        };
                        let wanted: std::collections::BTreeMap<String, streams::StreamSpec> =
                            file.streams.into_iter().map(|s| (s.id.clone(), s)).collect();
                        if let Some(fleet) = &shared.fleet {
                            fleet.set_streams(wanted.len());
                        }
                        let (mut added, mut removed, mut changed) = (0, 0, 0);
                        for (id, run) in &running {
                            match wanted.get(id) {
                                None => {
                                    removed += 1;
                                    run.stop.cancel();
                                    removing.insert(run.task);
                                }
                                Some(spec) if *spec != run.spec => {
                                    changed += 1;
                                    run.stop.cancel();
                                    restarts.insert(run.task, spec.clone());
                                }
                                Some(_) => {}
                            }
                        }
                        for (id, spec) in wanted {
                            if let Some(run) = running.get(&id) {
                                // Removed by an earlier re-read and still stopping:
                                // started again once it has stopped.
                                if removing.remove(&run.task) {
                                    restarts.insert(run.task, spec);
                                }
                                continue;
                            }
                            added += 1;
                            running.insert(id, start(&shared, args, &mut tasks, spec, backend));
                        }
                        tracing::warn!(added, removed, changed, "streams file re-read");
                    }
                }
            }
            if failed > 0 {
                return Err(Failure::Runtime(format!(
                    "{failed} stream{} ended in failure",
                    if failed == 1 { "" } else { "s" }
                )));
            }
            Ok(())
        })
        .await;
    if let Some(table) = table {
        table.abort();
    }
    outcome
}

/// Start one stream's relay on the local task set.
fn start(
    shared: &Shared,
    args: &cli::Args,
    tasks: &mut tokio::task::JoinSet<Result<(), Failure>>,
    spec: streams::StreamSpec,
    backend: cli::SrtBackend,
) -> Running {
    // One status line cannot show several streams: logs and metrics do.
    let relay = shared.relay(
        args,
        Some(&spec.id),
        spec.config.clone(),
        &spec.output,
        false,
    );
    let stop = relay.stop.clone();
    let inputs = spec.inputs.clone();
    let handle = tasks.spawn_local(async move {
        let inputs: Vec<&cli::Input> = inputs.iter().collect();
        relay.run(&inputs, backend).await
    });
    Running {
        spec,
        stop,
        task: handle.id(),
    }
}

/// One input, ready to build: its target, and whether it waits for its sender.
fn target_of(input: &cli::Input) -> Result<(Target, bool), Failure> {
    Ok(match input {
        cli::Input::Srt(url) => {
            let target = srt_target(url).map_err(|e| usage(format!("input: {e}")))?;
            let passive = target.parameters.get("mode").map(String::as_str) == Some("listener");
            (target, passive)
        }
        cli::Input::Rtp(addr) => (
            Target::new(format!("rtp://{addr}"), Protocol::Rtp).address(*addr),
            true,
        ),
        cli::Input::Udp(addr) => (
            Target::new(format!("udp://{addr}"), Protocol::Udp).address(*addr),
            true,
        ),
    })
}

/// How an input is named in events, metrics and the status line: its URL, secrets
/// redacted.
fn name_of(input: &cli::Input) -> String {
    match input {
        cli::Input::Srt(url) => redact_url(url),
        cli::Input::Rtp(addr) => format!("rtp://{addr}"),
        cli::Input::Udp(addr) => format!("udp://{addr}"),
    }
}

/// One input's stack, as a failover source, with what the relay watches of it.
struct Opened {
    name: String,
    stream_id: String,
    source: Box<dyn Source>,
    events: Events,
    health: HealthHandle,
}

impl Relay {
    /// `"stream ID: "` in a streams file's relay, where a message must say which
    /// stream it is about; nothing for the one stream of a command line.
    fn whose(&self, board_id: &str) -> String {
        if self.board_id.is_some() {
            format!("stream {board_id}: ")
        } else {
            String::new()
        }
    }

    /// Build one input's stack on `connector`.
    fn open_with<C>(
        &self,
        name: String,
        connector: C,
        target: Target,
        passive: bool,
        probe: Option<SrtProbe>,
        owned: &Owned,
    ) -> Result<Opened, Failure>
    where
        C: Service<Target> + Clone + Send + Unpin + 'static,
        C::Response: Connection,
        C::Error: Into<BoxError>,
        C::Future: Send + Unpin + 'static,
    {
        let stream_id = target.stream_id.clone();
        let mut builder = self
            .config
            .builder()
            .storage(Arc::clone(&owned.storage))
            .cancel_token(owned.stop.clone());
        if passive {
            builder = builder.passive();
        }
        if let Some(probe) = probe {
            builder = builder.probe(probe);
        }
        let packets = builder.build(connector, target);
        let events = packets.event_bus().clone();
        let Some(health) = packets.health_handle() else {
            return Err(Failure::Runtime("the stack counts no health".into()));
        };
        Ok(Opened {
            name,
            stream_id,
            source: Box::new(packets),
            events,
            health,
        })
    }

    /// Build one input's stack, on the connector its scheme (and `backend`) names.
    fn open(
        &self,
        input: &cli::Input,
        backend: cli::SrtBackend,
        owned: &Owned,
    ) -> Result<Opened, Failure> {
        let (target, passive) = target_of(input)?;
        let name = name_of(input);
        match input {
            cli::Input::Srt(_) => match backend {
                cli::SrtBackend::SrtTokio => {
                    let connector = self.connectors.srt.clone();
                    // A caller probes its listener while it waits out a backoff delay.
                    let probe = connector.probe();
                    self.open_with(name, connector, target, passive, Some(probe), owned)
                }
                #[cfg(feature = "libsrt")]
                cli::SrtBackend::Libsrt => {
                    let connector = self.connectors.libsrt.clone();
                    let probe = connector.probe();
                    self.open_with(name, connector, target, passive, Some(probe), owned)
                }
                #[cfg(not(feature = "libsrt"))]
                cli::SrtBackend::Libsrt => Err(usage(
                    "--srt-backend libsrt needs a build with the libsrt feature",
                )),
            },
            cli::Input::Rtp(_) => {
                let connector = self.config.rtp.connector();
                self.open_with(name, connector, target, passive, None, owned)
            }
            cli::Input::Udp(_) => {
                self.open_with(name, UdpConnector::new(), target, passive, None, owned)
            }
        }
    }

    /// Relay one stream from `inputs` (the input, then its backups) until stopped or
    /// given up. Inputs listening for a caller, or for RTP/UDP senders, wait for their
    /// sender as long as it takes.
    ///
    /// With leases, the stream is produced only while this relay holds its lease:
    /// it waits for the lease, and stops producing the moment the lease is lost. In
    /// a fleet, it then waits for the lease again, as it does after handing the
    /// stream over to a relay with fewer streams than its share.
    async fn run(
        mut self,
        inputs: &[&cli::Input],
        backend: cli::SrtBackend,
    ) -> Result<(), Failure> {
        let (primary, _) = target_of(inputs[0])?;
        let stream_id = primary.stream_id.clone();
        let board_id = self.board_id.clone().unwrap_or_else(|| stream_id.clone());
        let Some((leases, redis)) = self.leases.clone() else {
            let owned = Owned {
                storage: Arc::clone(&self.storage),
                stop: self.stop.clone(),
                slot: None,
            };
            return self
                .produce(inputs, backend, &stream_id, &board_id, owned)
                .await
                .map(drop);
        };
        loop {
            self.board.mark(&board_id, "waiting");
            let Some((lease, slot)) = self.wait_for_lease(&leases, &stream_id).await else {
                return Ok(());
            };
            let watch = lease.keep_alive();
            let stop = self.stop.child_token();
            let lost = watch.lost_token();
            {
                let stop = stop.clone();
                tokio::spawn(async move {
                    tokio::select! {
                        () = lost.cancelled() => stop.cancel(),
                        () = stop.cancelled() => {}
                    }
                });
            }
            let owned = Owned {
                // A relay that lost the lease (paused, cut off) must not write over
                // the state of the one that took the stream over.
                storage: Arc::new(redis.fenced(&watch)),
                stop: stop.clone(),
                slot,
            };
            let outcome = self
                .produce(inputs, backend, &stream_id, &board_id, owned)
                .await;
            // Ends the watcher above.
            stop.cancel();
            let lost = watch.lost_reason();
            if lost.is_none() {
                if let Err(e) = watch.release().await {
                    status::screen::say(&format!(
                        "mirror-relay: {}lease not released (it expires by itself): {e}",
                        self.whose(&board_id)
                    ));
                }
            }
            match (outcome, lost) {
                (Err(failure), _) => return Err(failure),
                (Ok(_), Some(why)) if self.fleet.is_none() => {
                    return Err(Failure::Runtime(format!(
                        "stream {stream_id}: lease lost: {why}"
                    )));
                }
                (Ok(_), _) if self.stop.is_cancelled() => return Ok(()),
                (Ok(_), Some(why)) => {
                    tracing::warn!(stream_id = %stream_id, %why, "lease lost; waiting to own the stream again");
                }
                (Ok(HandedOver(true)), None) => {
                    tracing::warn!(stream_id = %stream_id, "handed over: this relay owned more than its share");
                }
                (Ok(HandedOver(false)), None) => return Ok(()),
            }
        }
    }

    /// Wait until this relay owns the stream, or is stopped (`None`).
    async fn wait_for_lease(
        &self,
        leases: &LeaseManager,
        stream_id: &str,
    ) -> Option<(StreamLease, Option<FleetSlot>)> {
        let acquire = async {
            match &self.fleet {
                Some(fleet) => {
                    let (lease, slot) = fleet.acquire(stream_id).await;
                    (lease, Some(slot))
                }
                None => (leases.acquire(stream_id).await, None),
            }
        };
        tokio::pin!(acquire);
        let mut ticker = tokio::time::interval(Duration::from_secs(1));
        let got = loop {
            tokio::select! {
                got = &mut acquire => break Some(got),
                () = self.stop.cancelled() => break None,
                _ = ticker.tick() => {
                    // Another relay owns the stream, or the store does not answer
                    // (the log says which).
                    if self.status_line {
                        status::show(&format!("{stream_id}  waiting for the lease / store"));
                    }
                }
            }
        };
        if self.status_line {
            status::finish();
        }
        got
    }

    /// Produce the stream while it is this relay's: until `owned.stop`, the end of
    /// the inputs, or (in a fleet) this relay owning more than its share.
    async fn produce(
        &mut self,
        inputs: &[&cli::Input],
        backend: cli::SrtBackend,
        stream_id: &str,
        board_id: &str,
        mut owned: Owned,
    ) -> Result<HandedOver, Failure> {
        let mut output =
            output::Output::open(&self.output, backend, self.output_buffer, &owned.stop)
                .await
                .map_err(|e| usage(format!("output: {e}")))?;
        let mut handed_over = false;
        let mut sources = Vec::new();
        for input in inputs {
            sources.push(self.open(input, backend, &owned)?);
        }
        let mut packets = Failover::new(stream_id.to_owned()).config(self.config.failover);
        let mut watched = Vec::new();
        for opened in sources {
            if self.events_json {
                print_events(&opened.events);
            }
            let tally = status::Tally::watch(&opened.events);
            if self.metrics {
                let reporter = StreamMetrics::new(opened.stream_id.clone(), opened.health.clone())
                    .events(&opened.events);
                tokio::spawn(reporter.run());
            }
            watched.push((opened.name.clone(), tally, opened.health));
            packets = packets.source(opened.name, opened.source);
        }
        if self.events_json && watched.len() > 1 {
            print_events(packets.event_bus());
        }

        let mut ticker = tokio::time::interval(Duration::from_secs(1));
        let mut idle_fill = self.idle_fill.take();
        let mut fill_ticker = tokio::time::interval(
            idle_fill
                .as_ref()
                .map_or(Duration::from_secs(3600), |f| f.every()),
        );
        fill_ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_packet = tokio::time::Instant::now();
        let mut filling = false;
        let mut bytes_this_second = 0u64;
        let mut outcome = Ok(());
        loop {
            tokio::select! {
                item = packets.next() => match item {
                    Some(Ok(packet)) => {
                        last_packet = tokio::time::Instant::now();
                        if std::mem::take(&mut filling) {
                            tracing::warn!(stream_id = %stream_id, "media back: idle fill off");
                        }
                        watched[packets.active_index()].1.streaming();
                        bytes_this_second += packet.payload.len() as u64;
                        if let Err(e) = output.send(&packet.payload).await {
                            outcome = Err(Failure::Runtime(format!("output: {e}")));
                            break;
                        }
                    }
                    Some(Err(e)) => {
                        outcome = Err(Failure::Runtime(e.to_string()));
                        break;
                    }
                    None => break,
                },
                _ = fill_ticker.tick(), if idle_fill.is_some() => {
                    if last_packet.elapsed() >= fill::IDLE_AFTER {
                        if !std::mem::replace(&mut filling, true) {
                            tracing::warn!(stream_id = %stream_id, "no source delivers: idle fill on");
                        }
                        if let Some(fill) = idle_fill.as_mut() {
                            if let Err(e) = output.send(&fill.next_datagram()).await {
                                outcome = Err(Failure::Runtime(format!("output: {e}")));
                                break;
                            }
                        }
                    }
                }
                _ = ticker.tick() => {
                    let bits = bytes_this_second as f64 * 8.0;
                    let (name, tally, health) = &watched[packets.active_index()];
                    self.board.set(status::Row::of(board_id, name, tally, health, bits));
                    if self.status_line {
                        let mut extra = output.describe();
                        if watched.len() > 1 {
                            extra = format!("{extra}  from {name}");
                        }
                        status::show(&status::line(stream_id, tally, health, bits, &extra));
                    }
                    bytes_this_second = 0;
                    // Over this relay's share of the fleet: stop cleanly (the
                    // final state saved) so the lease goes to a relay under its share.
                    if owned.slot.as_mut().is_some_and(FleetSlot::hand_over) {
                        handed_over = true;
                        owned.stop.cancel();
                    }
                }
            }
        }
        if self.status_line {
            status::finish();
        }
        self.board
            .mark(board_id, if outcome.is_ok() { "ended" } else { "failed" });
        // Stopping cleanly: the driver's stream ends only once the restore layer has
        // saved the state the stream stopped with, so the lease below is released
        // after that save, never before it.
        drop(packets);
        let whose = self.whose(board_id);
        if let Some(fill) = &idle_fill {
            if fill.sent > 0 {
                status::screen::say(&format!(
                    "mirror-relay: {whose}idle fill sent {} datagrams while no source delivered",
                    fill.sent
                ));
            }
        }
        let dropped = output.dropped();
        if dropped > 0 {
            status::screen::say(&format!(
                "mirror-relay: {whose}the output dropped {dropped} packets while its receiver was away"
            ));
        }
        if let Err(e) = output.close().await {
            status::screen::say(&format!("mirror-relay: {whose}closing the output: {e}"));
        }
        outcome.map(|()| HandedOver(handed_over))
    }
}

/// Whether a stream stopped being produced to hand it over to another relay.
struct HandedOver(bool);

/// What a stream is produced under while it is this relay's.
struct Owned {
    storage: Arc<dyn StateStorage>,
    /// Cancelled to stop producing.
    stop: CancellationToken,
    /// The stream's place in this relay's share of a fleet.
    slot: Option<FleetSlot>,
}

#[cfg(test)]
mod fuzz_replay {
    #[test]
    fn every_saved_fuzz_input_of_the_relay_passes_its_target_again() {
        let replayed = crate::replay::replay(crate::relay_entries::TARGETS);
        eprintln!("replayed {replayed} inputs");
    }
}
