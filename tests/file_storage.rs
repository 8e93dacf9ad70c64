//! FileStorage: one JSON document per stream, atomic writes, safe names, TTL, corrupt
//! files, and the stack starting from the configured target when the file is bad.

mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::StreamExt;
use mirror_reconnect::connection::{ConnectionState, Protocol, Secret, Target};
use mirror_reconnect::restore::{FileStorage, StateStorage, StorageErrorKind, MAX_STATE_FILE};
use mirror_reconnect::ReconnectionConfig;

use support::feed::Feed;

fn state(stream_id: &str) -> ConnectionState {
    let mut state = ConnectionState::new(stream_id, Protocol::Srt);
    state.codec = Some("h264".into());
    state.parameters.insert("latency".into(), "120".into());
    state.statistics.packets_received = 42;
    state
}

/// Every file and directory under `dir`, relative, sorted.
fn tree(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read dir") {
            let path = entry.expect("dir entry").path();
            out.push(
                path.strip_prefix(dir)
                    .expect("under dir")
                    .display()
                    .to_string(),
            );
            if path.is_dir() {
                stack.push(path);
            }
        }
    }
    out.sort();
    out
}

#[tokio::test]
async fn saves_loads_and_deletes_across_store_instances() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = FileStorage::new(dir.path().join("states"));
    assert!(store.load("cam1").await.expect("load").is_none());

    let first = state("cam1");
    store.save(&first).await.expect("save");
    let reopened = FileStorage::new(dir.path().join("states"));
    assert_eq!(
        reopened.load("cam1").await.expect("load"),
        Some(first.clone())
    );

    let mut newer = first;
    newer.codec = Some("h265".into());
    store.save(&newer).await.expect("save again");
    assert_eq!(reopened.load("cam1").await.expect("load"), Some(newer));

    reopened.delete("cam1").await.expect("delete");
    assert!(store.load("cam1").await.expect("load").is_none());
    store
        .delete("cam1")
        .await
        .expect("deleting nothing is fine");
    assert_eq!(tree(&dir.path().join("states")), Vec::<String>::new());
}

#[tokio::test]
async fn hostile_stream_ids_stay_inside_the_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("states");
    let store = FileStorage::new(&root);
    let long = "x/".repeat(400);
    let ids = [
        "../escape",
        "../../../../tmp/escape",
        "a/b/c",
        "..",
        ".",
        "",
        " spaced id ",
        "/absolute",
        "Cam1",
        "cam1",
        "nul\0byte",
        "back\\slash",
        "ünïcødé/∂",
        long.as_str(),
    ];
    for id in ids {
        store.save(&state(id)).await.expect("save");
    }
    // Nothing outside `states`, nothing nested inside it, one file per id.
    assert_eq!(tree(dir.path()).first().map(String::as_str), Some("states"));
    let files = tree(&root);
    assert_eq!(files.len(), ids.len(), "{files:?}");
    assert!(files.iter().all(|f| !f.contains('/')), "{files:?}");
    assert_eq!(tree(dir.path()).len(), ids.len() + 1);
    for id in ids {
        assert_eq!(
            store.load(id).await.expect("load").map(|s| s.stream_id),
            Some(id.to_owned())
        );
        assert_eq!(store.path_for(id).parent(), Some(root.as_path()));
    }
}

#[tokio::test]
async fn ttl_is_honoured_from_the_saved_time_even_after_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ttl = Duration::from_secs(3600);
    let store = FileStorage::new(dir.path()).with_ttl(ttl);
    store.save(&state("cam1")).await.expect("save");
    assert!(store.load("cam1").await.expect("fresh").is_some());

    // The document says it was saved two hours ago.
    let path = store.path_for("cam1");
    let mut document: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("json");
    let saved_at = SystemTime::now() - Duration::from_secs(7200);
    document["saved_at"] = serde_json::Value::String(
        humantime_serde::re::humantime::format_rfc3339(saved_at).to_string(),
    );
    std::fs::write(&path, serde_json::to_vec(&document).expect("json")).expect("write");

    // A store without TTL still reads it; one with the TTL finds it expired, removes it.
    assert!(FileStorage::new(dir.path())
        .load("cam1")
        .await
        .expect("no ttl")
        .is_some());
    let restarted = FileStorage::new(dir.path()).with_ttl(ttl);
    assert!(restarted.load("cam1").await.expect("expired").is_none());
    assert!(!path.exists(), "an expired document is removed");
}

#[tokio::test]
async fn corrupt_or_unreadable_files_are_corrupt_errors_naming_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = FileStorage::new(dir.path());
    store.save(&state("good")).await.expect("save");
    let good = std::fs::read(store.path_for("good")).expect("read");
    store.save(&state("oversized")).await.expect("save");
    let mut oversized = std::fs::read(store.path_for("oversized")).expect("read");
    // Still the same document (JSON allows trailing white space), but past the limit.
    oversized.resize(MAX_STATE_FILE as usize + 1, b' ');

    type MakeBad = Box<dyn Fn(&Path)>;
    let cases: Vec<(&str, MakeBad)> = vec![
        (
            "garbage",
            Box::new(|p| std::fs::write(p, b"\x00\xffnot json").expect("write")),
        ),
        (
            "torn",
            Box::new(move |p| std::fs::write(p, &good[..good.len() / 2]).expect("write")),
        ),
        (
            "empty",
            Box::new(|p| std::fs::write(p, b"").expect("write")),
        ),
        (
            "wrong-shape",
            Box::new(|p| {
                std::fs::write(
                    p,
                    br#"{"version":1,"saved_at":"2024-01-01T00:00:00Z","state":{"codec":7}}"#,
                )
                .expect("write")
            }),
        ),
        (
            "future-version",
            Box::new(|p| {
                std::fs::write(p, br#"{"version":99,"saved_at":"2024-01-01T00:00:00Z","state":{"stream_id":"future-version","protocol":"srt","start_time":"2024-01-01T00:00:00Z","last_activity":"2024-01-01T00:00:00Z"}}"#).expect("write")
            }),
        ),
        (
            "oversized",
            Box::new(move |p| std::fs::write(p, &oversized).expect("write")),
        ),
        // A directory where the file should be cannot be read as one.
        (
            "unreadable",
            Box::new(|p| std::fs::create_dir(p).expect("mkdir")),
        ),
    ];
    for (id, make) in cases {
        let path = store.path_for(id);
        make(&path);
        let error = store.load(id).await.expect_err(id);
        assert_eq!(error.kind(), StorageErrorKind::Corrupt, "{id}: {error}");
        assert_eq!(error.stream_id(), id);
        let message = error.to_string();
        assert!(
            message.contains(&path.display().to_string()),
            "{id}: the error names the file: {message}"
        );
        println!("{id}: {message}");
    }
}

#[tokio::test]
async fn concurrent_saves_never_show_a_torn_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = FileStorage::new(dir.path());
    store.save(&state("cam1")).await.expect("first save");
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            for i in 0..200u32 {
                let mut s = state("cam1");
                // Documents of very different sizes, so a torn one would not parse.
                s.parameters
                    .insert("padding".into(), "p".repeat((i as usize * 97) % 5000));
                s.statistics.packets_received = u64::from(i);
                store.save(&s).await.expect("save");
            }
        })
    };
    let mut loads = 0;
    while !writer.is_finished() {
        let loaded = store.load("cam1").await.expect("every load parses");
        assert!(loaded.is_some());
        loads += 1;
    }
    writer.await.expect("writer");
    println!("{loads} loads during 200 saves, none torn");
    assert!(loads > 0);
    // No temporary files are left behind.
    assert_eq!(
        tree(dir.path()),
        vec![store
            .path_for("cam1")
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned()]
    );
}

fn config() -> ReconnectionConfig {
    ReconnectionConfig::from_yaml_str(
        "initial_delay: 10ms\nmax_delay: 50ms\nsave_interval: 20ms\nfirst_packet_timeout: 5s\n",
    )
    .expect("config")
}

/// Wait (real time, generous bound) until `check` holds.
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_file_starts_the_stream_from_its_configured_target() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = FileStorage::new(dir.path());
    std::fs::write(store.path_for("cam1"), b"{ this is not a state").expect("write");

    let feed = Feed::new(Duration::from_millis(5));
    let target = Target::new("cam1", Protocol::InProcess)
        .codec("av1")
        .parameter("latency", "200");
    let storage: Arc<dyn StateStorage> = Arc::new(store.clone());
    let mut packets = config().reconnecting_with(feed.clone(), target.clone(), storage);
    for _ in 0..20 {
        packets.next().await.expect("packet").expect("no error");
    }
    assert_eq!(feed.targets(), vec![target]);

    // The stream overwrote the bad file with its own state.
    let path = store.path_for("cam1");
    let mut saved = None;
    eventually("a valid state replaces the corrupt file", || {
        saved = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok());
        saved.is_some()
    })
    .await;
    drop(packets);
    let loaded = store.load("cam1").await.expect("valid now").expect("saved");
    assert_eq!(loaded.codec.as_deref(), Some("av1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saved_state_fills_in_what_the_target_leaves_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = FileStorage::new(dir.path()).with_ttl(Duration::from_secs(60));
    let mut saved = state("cam1");
    saved.codec = Some("h265".into());
    saved.parameters.insert("profile".into(), "main10".into());
    store.save(&saved).await.expect("save");

    let feed = Feed::new(Duration::from_millis(5));
    let storage: Arc<dyn StateStorage> = Arc::new(store);
    let mut packets = config().reconnecting_with(
        feed.clone(),
        Target::new("cam1", Protocol::InProcess).parameter("latency", "300"),
        storage,
    );
    packets.next().await.expect("packet").expect("no error");
    let targets = feed.targets();
    assert_eq!(targets.len(), 1);
    assert_eq!(targets[0].codec.as_deref(), Some("h265"));
    assert_eq!(targets[0].parameters["profile"], "main10");
    // Configured values win over saved ones.
    assert_eq!(targets[0].parameters["latency"], "300");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passphrase_never_reaches_the_files() {
    const PASSPHRASE: &str = "correct-horse-battery-staple-7f3a";
    let dir = tempfile::tempdir().expect("tempdir");
    let store = FileStorage::new(dir.path());
    let feed = Feed::new(Duration::from_millis(2));
    let target = Target::new("secret-cam", Protocol::InProcess)
        .codec("h264")
        .parameter("latency", "120")
        .passphrase(Secret::new(PASSPHRASE));
    let storage: Arc<dyn StateStorage> = Arc::new(store.clone());
    let mut packets = config().reconnecting_with(feed.clone(), target, storage);
    for _ in 0..100 {
        packets.next().await.expect("packet").expect("no error");
    }
    // The connector did get the passphrase: it is there to leak.
    assert_eq!(
        feed.targets()[0].passphrase.as_ref().map(Secret::expose),
        Some(PASSPHRASE)
    );
    // Stop cleanly: the stream ends once its final state is on disk, so no save is
    // still being written while the files are read.
    packets.stop_handle().stop();
    while packets.next().await.is_some() {}

    let mut scanned = 0;
    for name in tree(dir.path()) {
        let bytes = std::fs::read(dir.path().join(&name)).expect("read");
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            text.contains("secret-cam"),
            "{name} is a state file: {text}"
        );
        assert!(
            !text.contains(PASSPHRASE),
            "{name} holds the passphrase: {text}"
        );
        assert!(
            !text.contains("7f3a"),
            "{name} holds part of the passphrase"
        );
        scanned += 1;
    }
    assert_eq!(scanned, 1, "one state file was written and scanned");
}

#[tokio::test]
async fn a_state_past_the_file_limit_is_refused_when_saved() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = FileStorage::new(dir.path());
    let mut big = state("big");
    big.parameters
        .insert("note".into(), "x".repeat(MAX_STATE_FILE as usize));
    let error = store.save(&big).await.expect_err("too big to save");
    assert_eq!(error.kind(), StorageErrorKind::Other, "{error}");
    assert!(
        error.to_string().contains("more than the 1048576"),
        "{error}"
    );
    assert!(!store.path_for("big").exists(), "nothing is written");
}
