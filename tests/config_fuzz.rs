//! Random values (zero, tiny, huge, negative, NaN, infinite) in every numeric and
//! duration field of the config: validation never panics, and a config that validates
//! runs a whole stack for 10 s of (paused) time without a panic anywhere.

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Once};
use std::time::Duration;

use futures_util::StreamExt;
use mirror_reconnect::backoff::Jitter;
use mirror_reconnect::config::BackoffType;
use mirror_reconnect::connection::{
    channel, ChannelConnection, ConnectionState, Packet, Protocol, Target,
};
use mirror_reconnect::ReconnectionConfig;
use proptest::prelude::*;
use tokio::time::Instant;

thread_local! {
    /// Panics on this thread. A current-thread runtime polls its spawned tasks on the
    /// thread that runs it, and catches their panics: this still sees them.
    static PANICS: Cell<usize> = const { Cell::new(0) };
}

fn count_panics() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let report = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS.with(|p| p.set(p.get() + 1));
            report(info);
        }));
    });
}

fn duration() -> impl Strategy<Value = Duration> {
    prop_oneof![
        Just(Duration::ZERO),
        Just(Duration::MAX),
        Just(Duration::from_secs(24 * 3600)),
        Just(Duration::from_secs(30 * 24 * 3600)),
        (0u64..2_000_000).prop_map(Duration::from_nanos),
        (1u64..120_000).prop_map(Duration::from_millis),
        (0u64..200_000).prop_map(Duration::from_secs),
        (any::<u64>(), 0u32..1_000_000_000).prop_map(|(s, n)| Duration::new(s, n)),
    ]
}

fn float() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>(),
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        Just(-0.0),
        Just(f64::MAX),
        -10.0..10.0f64,
        0.0..1.0f64,
        0.0..200.0f64,
    ]
}

fn count() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0u64),
        Just(u64::MAX),
        Just(u64::from(u32::MAX)),
        0u64..64,
        0u64..2_000_000,
        any::<u64>(),
    ]
}

/// Values most of which pass validation, and some of which do not.
fn plausible_value() -> impl Strategy<Value = Value> {
    let duration = prop_oneof![
        3 => (1u64..2_000).prop_map(Duration::from_millis),
        2 => (1u64..=86_400).prop_map(Duration::from_secs),
        1 => Just(Duration::from_millis(1)),
        1 => Just(Duration::from_secs(24 * 3600)),
        1 => duration(),
    ];
    let float = prop_oneof![
        2 => 0.0..=1.0f64,
        2 => 1.0..=10.0f64,
        1 => 0.0..=100.0f64,
        1 => float(),
    ];
    let count = prop_oneof![3 => 1u64..64, 1 => 0u64..=10_000, 1 => count()];
    (duration, float, count).prop_map(|(duration, float, count)| Value {
        duration,
        float,
        count,
    })
}

/// The numeric and duration fields, by number.
const FIELDS: usize = 24;

/// One random value, of each kind a field may need.
#[derive(Debug, Clone, Copy)]
struct Value {
    duration: Duration,
    float: f64,
    count: u64,
}

fn value() -> impl Strategy<Value = Value> {
    (duration(), float(), count()).prop_map(|(duration, float, count)| Value {
        duration,
        float,
        count,
    })
}

/// Set field number `field` of `c` from `v`.
fn set(c: &mut ReconnectionConfig, field: usize, v: Value) {
    let Value {
        duration: d,
        float: f,
        count: n,
    } = v;
    let n32 = u32::try_from(n).unwrap_or(u32::MAX);
    match field {
        0 => c.max_retries = n32,
        1 => c.check_interval = d,
        2 => c.initial_delay = d,
        3 => c.max_delay = d,
        4 => c.multiplier = f,
        5 => c.increment = Some(d),
        6 => c.max_elapsed = Some(d),
        7 => c.first_packet_timeout = d,
        8 => c.health_thresholds.max_packet_loss = f,
        9 => c.health_thresholds.max_latency = d,
        10 => c.health_thresholds.max_error_rate = f,
        11 => c.health_thresholds.timeout_duration = d,
        12 => c.health_thresholds.min_packet_rate = f,
        13 => c.health_thresholds.min_samples = n,
        14 => c.silence.phi_threshold = f,
        15 => c.silence.max_gap_margin = f,
        16 => c.silence.max_gap_half_life = d,
        17 => c.silence.floor = d,
        18 => c.silence.ceiling = d,
        19 => c.silence.min_samples = n32,
        20 => c.state_ttl = d,
        21 => c.save_interval = d,
        22 => c.srt.connect_timeout = d,
        _ => c.rtp.session_timeout = d,
    }
}

/// The switches that change which code the values reach.
fn switches() -> impl Strategy<Value = (BackoffType, bool, Option<Jitter>, bool, bool, bool)> {
    (
        prop_oneof![
            Just(BackoffType::Exponential),
            Just(BackoffType::Linear),
            Just(BackoffType::Fixed)
        ],
        any::<bool>(),
        prop_oneof![
            Just(None),
            Just(Some(Jitter::None)),
            Just(Some(Jitter::Proportional)),
            Just(Some(Jitter::Full)),
            Just(Some(Jitter::Equal)),
            Just(Some(Jitter::Decorrelated)),
        ],
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
    )
}

fn config_with(
    changes: &[(usize, Value)],
    (backoff, use_jitter, jitter, silence, persist, retry_on_close): (
        BackoffType,
        bool,
        Option<Jitter>,
        bool,
        bool,
        bool,
    ),
) -> ReconnectionConfig {
    let mut c = ReconnectionConfig {
        backoff_type: backoff,
        use_jitter,
        jitter: if use_jitter { jitter } else { None },
        persist_state: persist,
        ..ReconnectionConfig::default()
    };
    c.silence.enabled = silence;
    c.srt.retry_on_close = retry_on_close;
    for &(field, v) in changes {
        set(&mut c, field, v);
    }
    c
}

/// The whole stack from `config` over an in-process connector whose connections
/// send a packet every 20 ms (with a 700 ms pause now and then) and then hang up, and
/// one connect in four is refused; consumed for 10 s of paused time.
fn run_for_ten_seconds(config: &ReconnectionConfig) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let attempts = Arc::new(AtomicUsize::new(0));
        let connector = tower::service_fn(move |target: Target| {
            let n = attempts.fetch_add(1, Ordering::Relaxed);
            async move {
                if n % 4 == 3 {
                    return Err(std::io::Error::other("refused"));
                }
                let (tx, conn) = channel(
                    ConnectionState::new(target.stream_id, Protocol::InProcess),
                    64,
                );
                tokio::spawn(async move {
                    for i in 0..(50 + n % 200) {
                        let gap = if i % 97 == 96 { 700 } else { 20 };
                        tokio::time::sleep(Duration::from_millis(gap)).await;
                        let packet = Packet::new(vec![i as u8], Instant::now());
                        if tx.send(packet).await.is_err() {
                            return;
                        }
                    }
                });
                Ok::<ChannelConnection, std::io::Error>(conn)
            }
        });
        let mut packets = config.reconnecting(connector, Target::new("cam1", Protocol::InProcess));
        let consume = async { while packets.next().await.is_some() {} };
        let _ = tokio::time::timeout(Duration::from_secs(10), consume).await;
    });
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn validation_never_panics(
        values in proptest::collection::vec(value(), FIELDS),
        switches in switches(),
    ) {
        let changes: Vec<(usize, Value)> = values.into_iter().enumerate().collect();
        let config = config_with(&changes, switches);
        let _ = config.validate();
        // And through YAML, as a file would give them.
        if let Ok(yaml) = serde_yaml_ng::to_string(&config) {
            let _ = ReconnectionConfig::from_yaml_str(&yaml);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(160))]

    #[test]
    fn a_config_that_validates_runs_without_a_panic(
        changes in proptest::collection::vec((0..FIELDS, plausible_value()), 1..4),
        switches in switches(),
    ) {
        count_panics();
        let config = config_with(&changes, switches);
        if config.validate().is_ok() {
            let before = PANICS.with(Cell::get);
            run_for_ten_seconds(&config);
            let panics = PANICS.with(Cell::get) - before;
            prop_assert_eq!(panics, 0, "{:?}", config);
        }
    }
}
