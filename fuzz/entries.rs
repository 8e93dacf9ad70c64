//! What each fuzz target does with its input, shared by the targets
//! (`fuzz_targets/*.rs`, run by `scripts/fuzz.sh`) and by `tests/fuzz_corpus.rs`,
//! which replays every saved input through the same function in the test command.
//!
//! Each function must return normally for any input: a panic is the finding.
#![allow(dead_code, unreachable_pub)]

use mirror_reconnect::connection::{redact_url, ConnectionState, Protocol, StreamTarget, Target};
use mirror_reconnect::protocol::srt::srt_target;
use mirror_reconnect::ReconnectionConfig;

/// What a target does with one input.
pub type Entry = fn(&[u8]);

/// The targets, by name: the name of each one's corpus directory under `fuzz/corpus/`.
pub const TARGETS: &[(&str, Entry)] = &[
    ("srt_url", srt_url),
    ("config_yaml", config_yaml),
    ("state_json", state_json),
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
