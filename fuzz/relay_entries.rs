//! What the fuzz targets over `mirror-relay`'s own inputs do with their input: its
//! command line, its streams file and its idle-fill slate. The relay's modules are
//! compiled into each of these targets (`fuzz_targets/relay_*.rs`) and into the
//! relay's tests, which replay the saved inputs.
//!
//! Each function must return normally for any input: a panic is the finding.
#![allow(dead_code, unreachable_pub)]

use std::ffi::OsString;
use std::net::IpAddr;
use std::os::unix::ffi::{OsStrExt, OsStringExt};

use mirror_reconnect::protocol::srt::srt_target;

use crate::{cli, fill, streams};

/// What a target does with one input.
pub type Entry = fn(&[u8]);

/// The targets, by name: the name of each one's corpus directory under `fuzz/corpus/`.
pub const TARGETS: &[(&str, Entry)] = &[
    ("relay_args", relay_args),
    ("relay_streams", relay_streams),
    ("relay_slate", relay_slate),
];

/// Whether `text` could make the relay look a name up (a `HOST:PORT` whose host is not
/// an IP address): those inputs are skipped, so fuzzing stays off the network. It
/// errs on the side of skipping: the host is everything since the last `/`.
fn may_resolve(text: &str) -> bool {
    text.match_indices(':').any(|(at, _)| {
        let port_follows = text[at + 1..].starts_with(|c: char| c.is_ascii_digit() || c == '+');
        let start = text[..at].rfind('/').map_or(0, |slash| slash + 1);
        let host = &text[start..at];
        let host = host.strip_prefix('[').unwrap_or(host);
        let host = host.strip_suffix(']').unwrap_or(host);
        port_follows && !host.is_empty() && host.parse::<IpAddr>().is_err()
    })
}

/// The non-empty SRT passphrases among `texts`, each with the text it came from.
fn passphrases<'a>(texts: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    texts
        .into_iter()
        .filter_map(|text| srt_target(text).ok()?.passphrase)
        .map(|p| p.expose().to_owned())
        .filter(|p| !p.is_empty())
        .collect()
}

/// `message` must not show `secrets`, the passphrases in the input. A passphrase
/// counts as shown when the message says it and the message said of the same input
/// with `passphrase=SECRET` replaced (`again(own, other)`) does not: so the passphrase
/// occurring elsewhere in the input, or in the program's own words, is not a leak.
fn assert_no_secret(message: &str, secrets: Vec<String>, again: impl Fn(&str, &str) -> String) {
    for secret in secrets {
        if !message.contains(&secret) {
            continue;
        }
        let own = format!("passphrase={secret}");
        let other = format!("passphrase={}", "Z".repeat(secret.len()));
        assert!(
            again(&own, &other).contains(&secret),
            "the passphrase {secret:?} is shown in {message:?}"
        );
    }
}

/// `from` replaced by `to` in `bytes`.
fn replace_bytes(bytes: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut rest = bytes;
    while let Some(&first) = rest.first() {
        if !from.is_empty() && rest.starts_with(from) {
            out.extend_from_slice(to);
            rest = &rest[from.len()..];
        } else {
            out.push(first);
            rest = &rest[1..];
        }
    }
    out
}

/// The relay's command line: arguments separated by NUL bytes, as a process gets
/// them. What parses is a complete run description; what does not is a usage error
/// that shows no passphrase.
pub fn relay_args(data: &[u8]) {
    let args: Vec<OsString> = data
        .split(|&b| b == 0)
        .map(|arg| OsString::from_vec(arg.to_vec()))
        .collect();
    // Arguments that are not UTF-8 are read as what is shown of them.
    let shown: Vec<String> = args
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    if shown.iter().any(|t| may_resolve(t)) {
        return;
    }
    match cli::parse(args.clone()) {
        Ok(parsed) => {
            let _ = format!("{parsed:?}");
        }
        Err(error) => {
            let again = |own: &str, other: &str| {
                let args = args.iter().map(|a| {
                    OsString::from_vec(replace_bytes(
                        a.as_bytes(),
                        own.as_bytes(),
                        other.as_bytes(),
                    ))
                });
                cli::parse(args).map_or_else(|e| e.to_string(), |_| String::new())
            };
            let secrets = passphrases(shown.iter().map(String::as_str));
            assert_no_secret(&error.to_string(), secrets, again);
        }
    }
}

/// Every string in a YAML document, keys included.
fn strings(value: &serde_yaml_ng::Value, out: &mut Vec<String>) {
    use serde_yaml_ng::Value;
    match value {
        Value::String(s) => out.push(s.clone()),
        Value::Sequence(items) => items.iter().for_each(|v| strings(v, out)),
        Value::Mapping(map) => map.iter().for_each(|(k, v)| {
            strings(k, out);
            strings(v, out);
        }),
        Value::Tagged(tagged) => strings(&tagged.value, out),
        _ => {}
    }
}

/// A streams file (`--streams FILE`): what loads has one to 10 000 streams, each with
/// an input and a distinct id; what does not is an error that shows no passphrase.
pub fn relay_streams(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut texts = Vec::new();
    if let Ok(doc) = serde_yaml_ng::from_str::<serde_yaml_ng::Value>(text) {
        strings(&doc, &mut texts);
    }
    if texts.iter().any(|t| may_resolve(t)) || may_resolve(text) {
        return;
    }
    match streams::parse(text) {
        Ok(file) => {
            assert!((1..=streams::MAX_STREAMS).contains(&file.streams.len()));
            let mut ids: Vec<&str> = file.streams.iter().map(|s| s.id.as_str()).collect();
            ids.sort_unstable();
            ids.dedup();
            assert_eq!(ids.len(), file.streams.len(), "an id is used twice");
            assert!(file.streams.iter().all(|s| !s.inputs.is_empty()));
        }
        Err(error) => {
            let again = |own: &str, other: &str| {
                streams::parse(&text.replace(own, other))
                    .err()
                    .unwrap_or_default()
            };
            assert_no_secret(&error, passphrases(texts.iter().map(String::as_str)), again);
        }
    }
}

/// An idle-fill slate (`--idle-fill FILE.ts`): what loads is whole TS packets, sent
/// at a positive pace, and loops.
pub fn relay_slate(data: &[u8]) {
    let Ok(mut slate) = fill::IdleFill::from_ts(data) else {
        return;
    };
    assert!(!slate.every().is_zero(), "a slate sent with no pause");
    let mut sent = 0;
    while sent < data.len() {
        let datagram = slate.next_datagram();
        assert!(!datagram.is_empty() && datagram.len() % 188 == 0);
        assert!(datagram.chunks(188).all(|p| p[0] == 0x47));
        sent += datagram.len();
    }
    assert_eq!(sent, data.len(), "one loop is the whole slate");
}
