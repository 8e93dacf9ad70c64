//! `--streams FILE`: many streams in one process, each its own stack and task.
//!
//! ```yaml
//! reconnect: { max_retries: 10 }        # defaults for every stream (any config key)
//! streams:
//!   - id: cam1
//!     input: "srt://:9000?mode=listener&streamid=cam1"
//!     output: "udp://127.0.0.1:5001"
//!   - id: cam2
//!     input: "srt://10.0.0.5:9000?mode=caller&streamid=cam2"
//!     backups: ["rtp://0.0.0.0:5004"]
//!     output: "srt://127.0.0.1:9100?mode=caller"
//!     reconnect: { max_retries: 20 }    # overrides, key by key
//! ```

use std::collections::BTreeSet;
use std::path::Path;

use mirror_reconnect::connection::redact_url;
use mirror_reconnect::protocol::srt::srt_target;
use mirror_reconnect::ReconnectionConfig;
use serde::Deserialize;
use serde_yaml_ng::{Mapping, Value};

use crate::cli;

/// Streams in one file at most: each is a task and its sockets.
pub(crate) const MAX_STREAMS: usize = 10_000;
/// The longest streams file: 64 MiB, thousands of bytes for each of the most streams.
pub(crate) const MAX_FILE: u64 = 64 * 1024 * 1024;
/// The longest stream id (SRT's own limit on a stream id is 512 bytes).
const MAX_ID: usize = 512;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDoc {
    #[serde(default)]
    reconnect: Option<Value>,
    streams: Vec<EntryDoc>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EntryDoc {
    id: String,
    input: String,
    #[serde(default)]
    backups: Vec<String>,
    output: String,
    #[serde(default)]
    reconnect: Option<Value>,
}

/// One stream of the file, checked.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct StreamSpec {
    pub(crate) id: String,
    /// The input, then its backups.
    pub(crate) inputs: Vec<cli::Input>,
    pub(crate) output: cli::Output,
    pub(crate) config: ReconnectionConfig,
}

/// `overlay`'s keys over `base`'s, mappings merged key by key.
fn merged(base: &Value, overlay: &Value) -> Value {
    match (base, overlay) {
        (Value::Mapping(base), Value::Mapping(overlay)) => {
            let mut out: Mapping = base.clone();
            for (key, value) in overlay {
                let next = match base.get(key) {
                    Some(old) => merged(old, value),
                    None => value.clone(),
                };
                out.insert(key.clone(), next);
            }
            Value::Mapping(out)
        }
        (_, Value::Null) => base.clone(),
        (_, overlay) => overlay.clone(),
    }
}

/// A config from YAML values: parsed and validated, the error naming the key.
fn config_of(value: &Value) -> Result<ReconnectionConfig, String> {
    let config: ReconnectionConfig = match value {
        Value::Null => ReconnectionConfig::default(),
        value => serde_yaml_ng::from_value(value.clone()).map_err(|e| e.to_string())?,
    };
    config.validate().map_err(|e| e.to_string())?;
    Ok(config)
}

/// A streams file, checked.
#[derive(Debug, Clone)]
pub(crate) struct Streams {
    /// The file's `reconnect:` defaults (what the shared state store is opened with).
    pub(crate) defaults: ReconnectionConfig,
    pub(crate) streams: Vec<StreamSpec>,
}

/// Read and check a streams file. The error names the file, the stream and the key.
pub(crate) fn load(path: &Path) -> Result<Streams, String> {
    let shown = path.display();
    let text = cli::read_at_most(path, MAX_FILE)
        .and_then(|bytes| String::from_utf8(bytes).map_err(|e| e.to_string()))
        .map_err(|e| format!("--streams {shown}: {e}"))?;
    parse(&text).map_err(|e| format!("--streams {shown}: {e}"))
}

/// Check a streams file's text. The error shows no secret, even where the YAML
/// parser quotes a value.
pub(crate) fn parse(text: &str) -> Result<Streams, String> {
    check(text).map_err(|e| redact_url(&e))
}

fn check(text: &str) -> Result<Streams, String> {
    let doc: FileDoc = serde_yaml_ng::from_str(text).map_err(|e| e.to_string())?;
    if doc.streams.is_empty() {
        return Err("no streams".to_owned());
    }
    if doc.streams.len() > MAX_STREAMS {
        return Err(format!(
            "{} streams, at most {MAX_STREAMS}",
            doc.streams.len()
        ));
    }
    let defaults = doc.reconnect.unwrap_or(Value::Null);
    let default_config = config_of(&defaults).map_err(|e| format!("reconnect: {e}"))?;
    let mut seen = BTreeSet::new();
    let mut out = Vec::with_capacity(doc.streams.len());
    for (i, entry) in doc.streams.into_iter().enumerate() {
        let id = entry.id.trim().to_owned();
        if id.is_empty() || id.len() > MAX_ID || id.chars().any(char::is_control) {
            return Err(format!(
                "stream {}: id {:?} must be 1 to {MAX_ID} bytes of printable text",
                i + 1,
                entry.id.chars().take(40).collect::<String>()
            ));
        }
        if !seen.insert(id.clone()) {
            return Err(format!("stream {id}: the id is used twice"));
        }
        let named = |e: String| format!("stream {id}: {e}");
        let mut inputs = Vec::with_capacity(1 + entry.backups.len());
        let urls = std::iter::once(("input", &entry.input))
            .chain(entry.backups.iter().map(|url| ("backups", url)));
        for (what, url) in urls {
            let input = cli::parse_input(what, url).map_err(|e| named(e.to_string()))?;
            if let cli::Input::Srt(url) = &input {
                srt_target(url).map_err(|e| named(format!("{what}: {e}")))?;
            }
            inputs.push(input);
        }
        let output = cli::parse_output(&entry.output).map_err(|e| named(e.to_string()))?;
        if let cli::Output::Srt(url) = &output {
            srt_target(url).map_err(|e| named(format!("output: {e}")))?;
        }
        let overrides = entry.reconnect.unwrap_or(Value::Null);
        let config = config_of(&merged(&defaults, &overrides))
            .map_err(|e| named(format!("reconnect: {e}")))?;
        out.push(StreamSpec {
            id,
            inputs,
            output,
            config,
        });
    }
    Ok(Streams {
        defaults: default_config,
        streams: out,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO: &str = r#"
reconnect: { max_retries: 10, silence: { floor: 20ms } }
streams:
  - id: cam1
    input: "srt://:9000?mode=listener&streamid=cam1"
    output: "udp://127.0.0.1:5001"
  - id: cam2
    input: "srt://10.0.0.5:9000?mode=caller&streamid=cam2"
    backups: ["rtp://0.0.0.0:5004"]
    output: "srt://127.0.0.1:9100?mode=caller"
    reconnect: { max_retries: 20, silence: { ceiling: 2s } }
"#;

    #[test]
    fn a_yaml_error_quoting_a_value_shows_no_passphrase() {
        // A whole document that is one string: the YAML error quotes it.
        let secret = "hunter2hunter2";
        let cases = [
            format!("\"srt://10.0.0.5:9000?mode=caller&passphrase={secret}\""),
            format!(
                "streams:\n  - id: a\n    input: udp://:1\n    output: \"-\"\n    \
                 reconnect: {{ max_retries: \"srt://:1?passphrase={secret}\" }}\n"
            ),
        ];
        for text in cases {
            let err = parse(&text).unwrap_err();
            assert!(!err.contains(secret), "{err}");
            assert!(err.contains("passphrase=***"), "{err}");
        }
    }

    #[test]
    fn a_streams_file_without_an_end_is_read_no_further_than_its_limit() {
        let err = load(Path::new("/dev/zero")).unwrap_err();
        assert!(err.contains("--streams /dev/zero: longer than"), "{err}");
    }

    #[test]
    fn defaults_apply_to_every_stream_and_overrides_key_by_key() {
        let streams = parse(TWO).unwrap().streams;
        assert_eq!(streams.len(), 2);
        assert_eq!(streams[0].config.max_retries, 10);
        assert_eq!(streams[1].config.max_retries, 20);
        // A nested override keeps the nested defaults it does not name.
        let floor = std::time::Duration::from_millis(20);
        assert_eq!(streams[1].config.silence.floor, floor);
        assert_eq!(
            streams[1].config.silence.ceiling,
            std::time::Duration::from_secs(2)
        );
        assert_eq!(streams[0].config.silence.floor, floor);
        assert_eq!(streams[1].inputs.len(), 2);
    }

    #[test]
    fn errors_name_the_stream_and_the_key() {
        let cases = [
            (
                TWO.replace("max_retries: 20", "max_retrys: 20"),
                "stream cam2: reconnect: ",
            ),
            (
                TWO.replace("max_retries: 20", "max_retrys: 20"),
                "max_retrys",
            ),
            (
                TWO.replace("id: cam2", "id: cam1"),
                "stream cam1: the id is used twice",
            ),
            (
                TWO.replace("udp://127.0.0.1:5001", "tcp://x:1"),
                "stream cam1: ",
            ),
            (
                TWO.replace("max_retries: 10", "max_retries: 10000000"),
                "reconnect: ",
            ),
            (TWO.replace("    backups:", "    backup:"), "backup"),
            ("streams: []".to_owned(), "no streams"),
            (TWO.replace("id: cam1", "id: \"\""), "stream 1: id"),
        ];
        for (text, needle) in cases {
            let error = parse(&text).unwrap_err();
            assert!(error.contains(needle), "{needle:?} not in {error:?}");
        }
    }

    #[test]
    fn a_passphrase_in_a_bad_stream_is_not_repeated() {
        let text = TWO.replace(
            "srt://10.0.0.5:9000?mode=caller&streamid=cam2",
            "srt://10.0.0.5:9000?mode=nonsense&passphrase=correct-horse-battery",
        );
        let error = parse(&text).unwrap_err();
        assert!(error.starts_with("stream cam2: "), "{error}");
        assert!(!error.contains("correct-horse-battery"), "{error}");
    }
}
