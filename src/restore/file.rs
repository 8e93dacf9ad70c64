use std::fmt::Write as _;
use std::fs;
use std::io::{self, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use super::{StateStorage, StorageError, StorageErrorKind, StorageFuture};
use crate::connection::ConnectionState;

/// The longest state document a [`FileStorage`] writes or reads: 1 MiB (a stream's
/// state is a few KiB at most).
pub const MAX_STATE_FILE: u64 = 1024 * 1024;

/// The version of the document format written by [`FileStorage`].
const FORMAT_VERSION: u32 = 1;

/// Encoded names longer than this are shortened and suffixed with a hash, so that a
/// file name stays well under the 255 bytes most file systems allow.
const MAX_ENCODED_LEN: usize = 180;

/// States kept as one JSON file per stream in a directory: survives restarts.
///
/// The embedded default store. Each stream's state is one document,
/// `<encoded stream id>.json`, holding the format version, the time it was saved and
/// the [`ConnectionState`]:
///
/// ```json
/// { "version": 1, "saved_at": "2024-05-01T12:00:00.123456789Z", "state": { "stream_id": "cam1", … } }
/// ```
///
/// - **Safe names.** The file name is the stream id with every byte outside
///   `a-z 0-9 _ -` written as `%XX` (so `/`, `..`, spaces and upper case cannot
///   escape the directory or collide on a case-insensitive file system); very long ids
///   are shortened and made unique with a hash. [`path_for`](Self::path_for) tells
///   which file a stream uses.
/// - **Atomic writes.** A save writes a temporary file in the same directory, flushes
///   it to disk, renames it over the old document and flushes the directory, so a
///   crash at any point leaves either the old document or the new one, never a torn
///   one.
/// - **TTL.** With [`with_ttl`](Self::with_ttl), a document older than the TTL (by
///   its `saved_at`, so across restarts too) loads as nothing and is removed.
/// - **Bounded.** A document is at most [`MAX_STATE_FILE`] bytes: a longer state is
///   refused when saved ([`StorageErrorKind::Other`]), and a longer file is not read
///   whole but loads as a corrupt one.
/// - **Errors.** A file that cannot be read or parsed loads as a
///   [`StorageErrorKind::Corrupt`] error naming the file;
///   [`StateRestoreLayer`](super::StateRestoreLayer) then starts the stream from its
///   configured target.
///
/// File work runs on Tokio's blocking pool, never on the stream's task.
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use mirror_reconnect::connection::{ConnectionState, Protocol};
/// use mirror_reconnect::restore::{FileStorage, StateStorage};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), mirror_reconnect::restore::StorageError> {
/// # let dir = tempfile::tempdir().unwrap();
/// let storage = FileStorage::new(dir.path()).with_ttl(Duration::from_secs(3600));
/// let mut state = ConnectionState::new("live/cam 1", Protocol::Srt);
/// state.codec = Some("h264".into());
/// storage.save(&state).await?;
///
/// // The file stays inside the directory, whatever the stream id holds.
/// let path = storage.path_for("live/cam 1");
/// assert_eq!(path.parent(), Some(dir.path()));
/// assert_eq!(path.file_name().unwrap(), "live%2fcam%201.json");
///
/// // Another store on the same directory (a restarted process) sees it.
/// let again: Arc<dyn StateStorage> = Arc::new(FileStorage::new(dir.path()));
/// assert_eq!(again.load("live/cam 1").await?.unwrap().codec.as_deref(), Some("h264"));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct FileStorage {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    ttl: Option<Duration>,
    temp_counter: AtomicU64,
}

/// One stream's file.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Document {
    version: u32,
    #[serde(with = "humantime_serde")]
    saved_at: SystemTime,
    state: ConnectionState,
}

impl FileStorage {
    /// A store in `dir`, created on the first save if missing. States never expire.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            inner: Arc::new(Inner {
                dir: dir.into(),
                ttl: None,
                temp_counter: AtomicU64::new(0),
            }),
        }
    }

    /// States expire `ttl` after they were saved (usually the config's `state_ttl`).
    #[must_use]
    pub fn with_ttl(self, ttl: Duration) -> Self {
        Self {
            inner: Arc::new(Inner {
                dir: self.inner.dir.clone(),
                ttl: Some(ttl),
                temp_counter: AtomicU64::new(0),
            }),
        }
    }

    /// The directory the documents live in.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The TTL, if states expire.
    pub fn ttl(&self) -> Option<Duration> {
        self.inner.ttl
    }

    /// The file that holds (or would hold) the state of `stream_id`: always directly
    /// inside [`dir`](Self::dir).
    pub fn path_for(&self, stream_id: &str) -> PathBuf {
        self.inner.dir.join(file_name(stream_id))
    }

    /// Run `f` on the blocking pool: file system calls may block for a long time on a
    /// busy or remote disk, which must not stall the streams sharing the runtime.
    fn blocking<T, F>(&self, stream_id: &str, f: F) -> StorageFuture<'static, T>
    where
        T: Send + 'static,
        F: FnOnce(&Inner) -> Result<T, StorageError> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        let stream_id = stream_id.to_owned();
        Box::pin(async move {
            match tokio::task::spawn_blocking(move || f(&inner)).await {
                Ok(result) => result,
                Err(join) => Err(StorageError::new(
                    StorageErrorKind::Other,
                    stream_id,
                    format!("file store task failed: {join}"),
                )),
            }
        })
    }
}

impl Inner {
    fn save(&self, state: &ConnectionState) -> Result<(), StorageError> {
        let path = self.dir.join(file_name(&state.stream_id));
        let unavailable = |what: &str, e: io::Error| {
            StorageError::new(
                StorageErrorKind::Unavailable,
                &state.stream_id,
                format!("cannot {what} {}", path.display()),
            )
            .with_source(e)
        };
        let document = Document {
            version: FORMAT_VERSION,
            saved_at: SystemTime::now(),
            state: state.clone(),
        };
        let json = serde_json::to_vec_pretty(&document).map_err(|e| {
            StorageError::new(
                StorageErrorKind::Other,
                &state.stream_id,
                "cannot encode the state as JSON",
            )
            .with_source(e)
        })?;
        if json.len() as u64 > MAX_STATE_FILE {
            return Err(StorageError::new(
                StorageErrorKind::Other,
                &state.stream_id,
                format!(
                    "the state is {} bytes as JSON, more than the {MAX_STATE_FILE} a state file may have",
                    json.len()
                ),
            ));
        }
        fs::create_dir_all(&self.dir).map_err(|e| unavailable("create the directory of", e))?;

        // Temporary names start with a dot, which no encoded stream id does.
        let temp = self.dir.join(format!(
            ".{}.{}.{}.tmp",
            file_name(&state.stream_id),
            std::process::id(),
            self.temp_counter.fetch_add(1, Ordering::Relaxed)
        ));
        let written = write_synced(&temp, &json).and_then(|()| fs::rename(&temp, &path));
        if let Err(e) = written {
            // Best effort: a leftover temporary file is harmless, only untidy.
            let _ = fs::remove_file(&temp);
            return Err(unavailable("write", e));
        }
        sync_dir(&self.dir).map_err(|e| unavailable("flush the directory of", e))
    }

    fn load(&self, stream_id: &str) -> Result<Option<ConnectionState>, StorageError> {
        let path = self.dir.join(file_name(stream_id));
        let corrupt = |message: String| {
            StorageError::new(
                StorageErrorKind::Corrupt,
                stream_id,
                format!("{}: {message}", path.display()),
            )
        };
        let mut bytes = Vec::new();
        let read = fs::File::open(&path)
            .and_then(|file| file.take(MAX_STATE_FILE + 1).read_to_end(&mut bytes));
        match read {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(corrupt("cannot read the file".into()).with_source(e)),
        }
        if bytes.len() as u64 > MAX_STATE_FILE {
            return Err(corrupt(format!(
                "longer than {MAX_STATE_FILE} bytes, more than any state this store writes"
            )));
        }
        let document: Document = serde_json::from_slice(&bytes)
            .map_err(|e| corrupt(format!("not a saved stream state: {e}")))?;
        if document.version != FORMAT_VERSION {
            return Err(corrupt(format!(
                "unsupported format version {} (expected {FORMAT_VERSION})",
                document.version
            )));
        }
        if document.state.stream_id != stream_id {
            return Err(corrupt(format!(
                "holds the state of stream {:?}",
                document.state.stream_id
            )));
        }
        if let Some(ttl) = self.ttl {
            // A clock that went backwards makes the document look fresh, not expired.
            let age = SystemTime::now()
                .duration_since(document.saved_at)
                .unwrap_or_default();
            if age >= ttl {
                tracing::debug!(stream_id, ?age, "saved state expired; removing it");
                let _ = fs::remove_file(&path);
                return Ok(None);
            }
        }
        Ok(Some(document.state))
    }

    fn delete(&self, stream_id: &str) -> Result<(), StorageError> {
        let path = self.dir.join(file_name(stream_id));
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => {
                return Err(StorageError::new(
                    StorageErrorKind::Unavailable,
                    stream_id,
                    format!("cannot remove {}", path.display()),
                )
                .with_source(e))
            }
        }
        sync_dir(&self.dir).map_err(|e| {
            StorageError::new(
                StorageErrorKind::Unavailable,
                stream_id,
                format!("cannot flush the directory {}", self.dir.display()),
            )
            .with_source(e)
        })
    }
}

/// Write `bytes` to a new file at `path` and flush it to the disk.
fn write_synced(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Flush a directory's entries (a rename or a removal) to the disk.
#[cfg(unix)]
fn sync_dir(dir: &Path) -> io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

/// Directories cannot be opened for flushing here; the rename is atomic all the same.
#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> io::Result<()> {
    Ok(())
}

/// The file name of `stream_id`'s document: `a-z`, `0-9`, `_` and `-` kept, every
/// other byte (of the UTF-8 encoding) written as `%xx`; an empty id is `%`.
fn file_name(stream_id: &str) -> String {
    let mut encoded = String::with_capacity(stream_id.len() + 5);
    if stream_id.is_empty() {
        encoded.push('%');
    }
    for byte in stream_id.bytes() {
        match byte {
            b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' => encoded.push(char::from(byte)),
            _ => {
                let _ = write!(encoded, "%{byte:02x}");
            }
        }
    }
    if encoded.len() > MAX_ENCODED_LEN {
        // Cut on a whole escape, then tell ids with the same start apart by a hash of
        // the whole id. `~` never appears in an untruncated name.
        let mut cut = MAX_ENCODED_LEN;
        while let Some(pos) = encoded[..cut].rfind('%').filter(|&p| p + 3 > cut) {
            cut = pos;
        }
        encoded.truncate(cut);
        let _ = write!(encoded, "~{:016x}", fnv1a(stream_id.as_bytes()));
    }
    encoded.push_str(".json");
    encoded
}

/// FNV-1a, 64 bits: a hash that stays the same across builds and platforms, as file
/// names must.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

impl StateStorage for FileStorage {
    fn save<'a>(&'a self, state: &'a ConnectionState) -> StorageFuture<'a, ()> {
        let state = state.clone();
        let stream_id = state.stream_id.clone();
        self.blocking(&stream_id, move |inner| inner.save(&state))
    }

    fn load<'a>(&'a self, stream_id: &'a str) -> StorageFuture<'a, Option<ConnectionState>> {
        let id = stream_id.to_owned();
        self.blocking(stream_id, move |inner| inner.load(&id))
    }

    fn delete<'a>(&'a self, stream_id: &'a str) -> StorageFuture<'a, ()> {
        let id = stream_id.to_owned();
        self.blocking(stream_id, move |inner| inner.delete(&id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_stay_inside_the_directory() {
        for id in [
            "",
            ".",
            "..",
            "../../etc/passwd",
            "/abs/path",
            "a b",
            "CAM1",
            "cam1",
            "nul\0byte",
            "back\\slash",
            "ünï",
        ] {
            let name = file_name(id);
            assert!(!name.contains('/'), "{id:?} -> {name}");
            assert!(!name.contains('\\'), "{id:?} -> {name}");
            assert!(!name.contains('\0'), "{id:?} -> {name}");
            assert!(!name.starts_with('.'), "{id:?} -> {name}");
            assert!(name.ends_with(".json"), "{id:?} -> {name}");
            assert!(name.len() < 255, "{id:?} -> {name}");
            assert_eq!(Path::new(&name).components().count(), 1, "{id:?} -> {name}");
        }
    }

    #[test]
    fn names_are_distinct() {
        let ids = [
            "a", "A", "a b", "a%20b", "a_b", "a-b", "", "%", "a.b", "a/b",
        ];
        let mut names: Vec<_> = ids.iter().map(|id| file_name(id)).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), ids.len(), "{names:?}");
    }

    #[test]
    fn long_names_are_shortened_and_distinct() {
        let a = "x".repeat(1000);
        let b = format!("{}y", "x".repeat(999));
        let c = "/".repeat(500);
        for id in [&a, &b, &c] {
            let name = file_name(id);
            assert!(name.len() <= MAX_ENCODED_LEN + 17 + 5, "{}", name.len());
            assert!(!name.contains('/'));
        }
        assert_ne!(file_name(&a), file_name(&b));
        // A cut never splits an escape.
        let name = file_name(&c);
        let stem = name.trim_end_matches(".json");
        let (encoded, _) = stem.split_once('~').unwrap_or((stem, ""));
        assert_eq!(encoded.len() % 3, 0, "{encoded}");
    }
}
