//! Configuration: YAML with durations, defaults, unknown keys, validation.

use std::time::Duration;

use mirror_reconnect::backoff::{Backoff, Jitter};
use mirror_reconnect::config::{BackoffType, ConfigError, MAX_CONFIG_FILE};
use mirror_reconnect::ReconnectionConfig;

#[test]
fn defaults_are_the_documented_ones() {
    let c = ReconnectionConfig::default();
    assert_eq!(c.max_retries, 5);
    assert_eq!(c.initial_delay, Duration::from_secs(1));
    assert_eq!(c.max_delay, Duration::from_secs(30));
    assert_eq!(c.multiplier, 2.0);
    assert_eq!(c.backoff_type, BackoffType::Exponential);
    assert!(c.use_jitter);
    assert_eq!(c.jitter_mode(), Jitter::Equal);
    assert_eq!(c.health_thresholds.max_packet_loss, 0.05);
    assert_eq!(c.health_thresholds.max_latency, Duration::from_secs(1));
    assert_eq!(c.health_thresholds.max_error_rate, 0.1);
    assert_eq!(
        c.health_thresholds.timeout_duration,
        Duration::from_secs(30)
    );
    assert_eq!(c.first_packet_timeout, Duration::from_secs(10));
    assert!(c.persist_state);
    assert!(c.srt.retry_on_close);
    c.validate().unwrap();
}

#[test]
fn an_empty_document_is_all_defaults() {
    assert_eq!(
        ReconnectionConfig::from_yaml_str("").unwrap(),
        ReconnectionConfig::default()
    );
    assert_eq!(
        ReconnectionConfig::from_yaml_str("{}").unwrap(),
        ReconnectionConfig::default()
    );
}

#[test]
fn every_key_parses_with_human_durations() {
    let yaml = r#"
max_retries: 8
check_interval: 250ms
backoff_type: linear
initial_delay: 500ms
max_delay: 1m 30s
multiplier: 1.5
increment: 250ms
use_jitter: true
jitter: decorrelated
max_elapsed: 5m
first_packet_timeout: 4s
health_thresholds:
  max_packet_loss: 0.02
  max_latency: 800ms
  max_error_rate: 0.05
  timeout_duration: 10s
  min_packet_rate: 2
  min_samples: 50
silence:
  enabled: true
  phi_threshold: 10
  max_gap_margin: 3
  max_gap_half_life: 1m
  floor: 20ms
  ceiling: 2s
  min_samples: 32
persist_state: false
state_ttl: 2h
save_interval: 5s
srt:
  connect_timeout: 2s
  retry_on_close: false
rtp:
  session_timeout: 15s
  retry_on_timeout: false
"#;
    let c = ReconnectionConfig::from_yaml_str(yaml).unwrap();
    assert_eq!(c.max_retries, 8);
    assert_eq!(c.check_interval, Duration::from_millis(250));
    assert_eq!(c.backoff_type, BackoffType::Linear);
    assert_eq!(c.max_delay, Duration::from_secs(90));
    assert_eq!(c.increment, Some(Duration::from_millis(250)));
    assert_eq!(c.jitter_mode(), Jitter::Decorrelated);
    assert_eq!(c.max_elapsed, Some(Duration::from_secs(300)));
    assert_eq!(c.health_thresholds.min_packet_rate, 2.0);
    assert_eq!(c.silence.floor, Duration::from_millis(20));
    assert_eq!(c.state_ttl, Duration::from_secs(7_200));
    assert!(!c.srt.retry_on_close);
    assert_eq!(c.rtp.session_timeout, Duration::from_secs(15));
    assert!(!c.persist_state);
    // It round-trips through YAML.
    let text = serde_yaml_ng::to_string(&c).unwrap();
    assert_eq!(ReconnectionConfig::from_yaml_str(&text).unwrap(), c);
}

#[test]
fn the_backoff_follows_the_config() {
    let c = ReconnectionConfig::from_yaml_str(
        "backoff_type: linear\ninitial_delay: 1s\nincrement: 2s\nmax_delay: 6s\nuse_jitter: false",
    )
    .unwrap();
    let mut b = c.backoff();
    let delays: Vec<_> = (0..5).map(|_| b.next_delay().as_secs()).collect();
    assert_eq!(delays, [1, 3, 5, 6, 6]);

    let c = ReconnectionConfig::from_yaml_str(
        "backoff_type: fixed\ninitial_delay: 2s\nuse_jitter: false",
    )
    .unwrap();
    let mut b = c.backoff();
    assert_eq!(b.next_delay(), Duration::from_secs(2));
    assert_eq!(b.next_delay(), Duration::from_secs(2));
}

fn error_of(yaml: &str) -> String {
    ReconnectionConfig::from_yaml_str(yaml)
        .unwrap_err()
        .to_string()
}

#[test]
fn unknown_keys_are_errors_naming_the_key() {
    assert!(error_of("max_retires: 3").contains("max_retires"));
    assert!(error_of("health_thresholds:\n  max_loss: 0.1").contains("max_loss"));
    assert!(error_of("srt:\n  conect_timeout: 1s").contains("conect_timeout"));
}

#[test]
fn bad_values_are_errors_naming_the_field_and_the_rule() {
    let cases = [
        ("initial_delay: 0s", "initial_delay", "greater than zero"),
        ("initial_delay: -1s", "initial_delay", ""),
        ("max_delay: 500ms", "max_delay", "at least initial_delay"),
        ("multiplier: 0.5", "multiplier", "at least 1"),
        ("check_interval: 0ms", "check_interval", "greater than zero"),
        ("backoff_type: quadratic", "quadratic", "exponential"),
        ("jitter: sometimes", "sometimes", "decorrelated"),
        (
            "use_jitter: false\njitter: full",
            "jitter",
            "use_jitter is false",
        ),
        (
            "health_thresholds:\n  max_packet_loss: 1.5",
            "health_thresholds.max_packet_loss",
            "at most 1",
        ),
        (
            "health_thresholds:\n  max_error_rate: 0",
            "health_thresholds.max_error_rate",
            "above 0",
        ),
        (
            "health_thresholds:\n  min_packet_rate: -1",
            "health_thresholds.min_packet_rate",
            "zero (off) or more",
        ),
        (
            "health_thresholds:\n  timeout_duration: 0s",
            "health_thresholds.timeout_duration",
            "greater than zero",
        ),
        (
            "silence:\n  floor: 5s\n  ceiling: 1s",
            "silence.floor",
            "silence.ceiling",
        ),
        ("state_ttl: 0s", "state_ttl", "greater than zero"),
        ("max_retries: many", "max_retries", ""),
        ("initial_delay: soon", "initial_delay", ""),
    ];
    for (yaml, field, rule) in cases {
        let message = error_of(yaml);
        assert!(message.contains(field), "{yaml:?}: {message}");
        assert!(message.contains(rule), "{yaml:?}: {message}");
    }
}

#[test]
fn invalid_is_a_typed_error() {
    match ReconnectionConfig::from_yaml_str("multiplier: 0.1") {
        Err(ConfigError::Invalid { field, .. }) => assert_eq!(field, "multiplier"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_missing_file_names_the_file() {
    let e = ReconnectionConfig::from_yaml_file("/nonexistent/reconnect.yaml").unwrap_err();
    assert!(e.to_string().contains("/nonexistent/reconnect.yaml"), "{e}");
}

#[test]
fn a_parse_error_names_the_file() {
    let path =
        std::env::temp_dir().join(format!("mirror-reconnect-bad-{}.yaml", std::process::id()));
    std::fs::write(&path, "max_retries: [\n").unwrap();
    let e = ReconnectionConfig::from_yaml_file(&path)
        .unwrap_err()
        .to_string();
    std::fs::remove_file(&path).unwrap();
    assert!(e.contains(&path.display().to_string()), "{e}");
}

#[test]
fn a_config_file_past_its_limit_is_refused_not_read_whole() {
    let path =
        std::env::temp_dir().join(format!("mirror-reconnect-long-{}.yaml", std::process::id()));
    // Valid YAML all through (comments), one byte past the limit.
    let mut text = "# padding\n".repeat(MAX_CONFIG_FILE as usize / 10 + 1);
    text.truncate(MAX_CONFIG_FILE as usize + 1);
    std::fs::write(&path, &text).unwrap();
    let e = ReconnectionConfig::from_yaml_file(&path).unwrap_err();
    std::fs::remove_file(&path).unwrap();
    assert!(matches!(e, ConfigError::Io { .. }), "{e:?}");
    assert!(e.to_string().contains("longer than 1048576 bytes"), "{e}");
    // A device without an end is read no further than the limit.
    let e = ReconnectionConfig::from_yaml_file("/dev/zero").unwrap_err();
    assert!(e.to_string().contains("/dev/zero: longer than"), "{e}");
}

#[test]
fn values_past_their_bounds_are_errors_naming_the_key_and_the_bound() {
    const AGES: &str = "300000000000y";
    let cases = [
        (
            format!("check_interval: {AGES}"),
            "check_interval",
            "at most 24h",
        ),
        (
            "check_interval: 500us".into(),
            "check_interval",
            "at least 1ms",
        ),
        (
            "initial_delay: 25h\nmax_delay: 26h".into(),
            "initial_delay",
            "at most 24h",
        ),
        (format!("max_delay: {AGES}"), "max_delay", "at most 24h"),
        ("multiplier: 1000".into(), "multiplier", "at most 10"),
        ("multiplier: .nan".into(), "multiplier", "at least 1"),
        (format!("increment: {AGES}"), "increment", "at most 24h"),
        (format!("max_elapsed: {AGES}"), "max_elapsed", "at most 24h"),
        (
            format!("first_packet_timeout: {AGES}"),
            "first_packet_timeout",
            "at most 24h",
        ),
        (
            "max_retries: 4294967295".into(),
            "max_retries",
            "at most 1000000",
        ),
        (
            format!("health_thresholds:\n  max_latency: {AGES}"),
            "health_thresholds.max_latency",
            "at most 24h",
        ),
        (
            format!("health_thresholds:\n  timeout_duration: {AGES}"),
            "health_thresholds.timeout_duration",
            "at most 24h",
        ),
        (
            "health_thresholds:\n  min_packet_rate: 1e12".into(),
            "health_thresholds.min_packet_rate",
            "at most 1000000",
        ),
        (
            "health_thresholds:\n  min_samples: 18446744073709551615".into(),
            "health_thresholds.min_samples",
            "at most 1000000",
        ),
        (
            "silence:\n  min_samples: 0".into(),
            "silence.min_samples",
            "at least 1, not 0",
        ),
        (
            "silence:\n  min_samples: 4294967295".into(),
            "silence.min_samples",
            "at most 10000",
        ),
        (
            "silence:\n  phi_threshold: 1e300".into(),
            "silence.phi_threshold",
            "at most 100",
        ),
        (
            "silence:\n  max_gap_margin: 1e300".into(),
            "silence.max_gap_margin",
            "at most 100",
        ),
        (
            format!("silence:\n  max_gap_half_life: {AGES}"),
            "silence.max_gap_half_life",
            "at most 24h",
        ),
        (
            format!("silence:\n  ceiling: {AGES}"),
            "silence.ceiling",
            "at most 24h",
        ),
        (format!("state_ttl: {AGES}"), "state_ttl", "at most 30 days"),
        ("state_ttl: 31d".into(), "state_ttl", "at most 30 days"),
        (
            format!("save_interval: {AGES}"),
            "save_interval",
            "at most 24h",
        ),
        (
            format!("srt:\n  connect_timeout: {AGES}"),
            "srt.connect_timeout",
            "at most 24h",
        ),
        (
            format!("rtp:\n  session_timeout: {AGES}"),
            "rtp.session_timeout",
            "at most 24h",
        ),
        ("probe_interval: 5ms".into(), "probe_interval", "from 10ms"),
        ("probe_interval: 2h".into(), "probe_interval", "to 1h"),
        (
            "probe_first_after: 25h".into(),
            "probe_first_after",
            "at most 24h",
        ),
        ("stable_after: 25h".into(), "stable_after", "at most 24h"),
    ];
    let mut wrong = Vec::new();
    for (yaml, field, rule) in &cases {
        match ReconnectionConfig::from_yaml_str(yaml) {
            Ok(_) => wrong.push(format!("{yaml:?} was accepted")),
            Err(e) => {
                let message = e.to_string();
                if !message.contains(&format!("{field}: ")) || !message.contains(rule) {
                    wrong.push(format!("{yaml:?}: {message}"));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn the_bounds_themselves_are_valid() {
    let yaml = "
max_retries: 1000000
check_interval: 24h
initial_delay: 24h
max_delay: 24h
multiplier: 10
increment: 24h
max_elapsed: 24h
first_packet_timeout: 24h
health_thresholds:
  max_latency: 24h
  timeout_duration: 24h
  min_packet_rate: 1000000
  min_samples: 1000000
silence:
  phi_threshold: 100
  max_gap_margin: 100
  max_gap_half_life: 24h
  floor: 24h
  ceiling: 24h
  min_samples: 10000
state_ttl: 30days
save_interval: 24h
srt:
  connect_timeout: 24h
rtp:
  session_timeout: 24h
probe_interval: 1h
probe_first_after: 24h
stable_after: 24h
";
    ReconnectionConfig::from_yaml_str(yaml).unwrap();
    let low = "
max_retries: 0
check_interval: 1ms
initial_delay: 1ns
max_delay: 1ns
multiplier: 1
increment: 0s
max_elapsed: 1ns
first_packet_timeout: 1ms
health_thresholds:
  max_latency: 1ns
  timeout_duration: 1ms
  min_packet_rate: 0
  min_samples: 0
silence:
  max_gap_half_life: 1ms
  floor: 0s
  ceiling: 1ms
  min_samples: 1
state_ttl: 1ms
save_interval: 1ms
srt:
  connect_timeout: 1ms
rtp:
  session_timeout: 1ms
";
    ReconnectionConfig::from_yaml_str(low).unwrap();
}

#[test]
fn attempt_timeout_and_retry_on_close_apply_to_every_protocol_and_read_their_old_srt_keys() {
    let c = ReconnectionConfig::default();
    assert_eq!(c.attempt_timeout(), Duration::from_secs(3));
    assert!(c.retry_on_close());

    let c = ReconnectionConfig::from_yaml_str("attempt_timeout: 750ms\nretry_on_close: false\n")
        .unwrap();
    assert_eq!(c.attempt_timeout(), Duration::from_millis(750));
    assert!(!c.retry_on_close());

    // The old keys, under srt:, are still read.
    let c =
        ReconnectionConfig::from_yaml_str("srt:\n  connect_timeout: 2s\n  retry_on_close: false\n")
            .unwrap();
    assert_eq!(c.attempt_timeout(), Duration::from_secs(2));
    assert!(!c.retry_on_close());

    // Both given: the new ones win.
    let c = ReconnectionConfig::from_yaml_str(
        "attempt_timeout: 1s\nretry_on_close: true\nsrt:\n  connect_timeout: 2s\n  retry_on_close: false\n",
    )
    .unwrap();
    assert_eq!(c.attempt_timeout(), Duration::from_secs(1));
    assert!(c.retry_on_close());

    let error = error_of("attempt_timeout: 0s\n");
    assert!(error.contains("attempt_timeout"), "{error}");
}

#[test]
fn probe_first_after_defaults_to_5s_and_takes_zero_and_null() {
    let default = ReconnectionConfig::default();
    assert_eq!(default.probe_first_after, Some(Duration::from_secs(5)));
    let zero = ReconnectionConfig::from_yaml_str("probe_first_after: 0s").unwrap();
    assert_eq!(zero.probe_first_after, Some(Duration::ZERO));
    let never = ReconnectionConfig::from_yaml_str("probe_first_after: null").unwrap();
    assert_eq!(never.probe_first_after, None);
}

#[test]
fn failover_keys_are_read_and_bounded() {
    let c =
        ReconnectionConfig::from_yaml_str("failover: { switch_back_after: 30s, startup_wait: 2s }")
            .unwrap();
    assert_eq!(c.failover.switch_back_after, Duration::from_secs(30));
    assert_eq!(c.failover.startup_wait, Duration::from_secs(2));
    let d = ReconnectionConfig::from_yaml_str("{}").unwrap();
    assert_eq!(d.failover.switch_back_after, Duration::from_secs(10));
    for (yaml, field) in [
        (
            "failover: { switch_back_after: 10ms }",
            "failover.switch_back_after",
        ),
        (
            "failover: { switch_back_after: 25h }",
            "failover.switch_back_after",
        ),
        ("failover: { startup_wait: 25h }", "failover.startup_wait"),
    ] {
        let error = ReconnectionConfig::from_yaml_str(yaml)
            .unwrap_err()
            .to_string();
        assert!(error.contains(field), "{yaml}: {error}");
    }
    let unknown = ReconnectionConfig::from_yaml_str("failover: { switch_back: 1s }")
        .unwrap_err()
        .to_string();
    assert!(unknown.contains("switch_back"), "{unknown}");
}

#[test]
fn a_parse_error_quoting_a_value_shows_no_passphrase() {
    let e = ReconnectionConfig::from_yaml_str(
        "max_retries: \"srt://10.0.0.5:9000?mode=caller&passphrase=hunter2hunter2\"",
    )
    .unwrap_err()
    .to_string();
    assert!(!e.contains("hunter2"), "{e}");
    assert!(
        e.contains("max_retries") && e.contains("passphrase=***"),
        "{e}"
    );
}
