//! libsrt started once for the process, and the one thread that waits on its epoll
//! and wakes the tasks whose sockets became ready.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::task::Waker;
use std::thread::JoinHandle;

use libc::c_int;

use crate::error::{Error, Result};
use crate::sys;

/// How long the epoll thread waits before it looks whether it should stop (libsrt's
/// epoll cannot be woken by a system descriptor, so a stop is seen within this).
const WAIT_MS: i64 = 100;
/// Events taken from the epoll at once.
const EVENTS: usize = 64;

/// The running library: started while any socket lives, cleaned up (`srt_cleanup`)
/// when the last one is gone.
static CURRENT: Mutex<Weak<Runtime>> = Mutex::new(Weak::new());

/// The epoll threads of runtimes dropped and not yet waited for: each ends once it has
/// called `srt_cleanup`.
static STOPPING: Mutex<Vec<JoinHandle<()>>> = Mutex::new(Vec::new());

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// libsrt, started, with its epoll thread (which cleans up after the runtime is
/// dropped).
pub(crate) struct Runtime {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

/// What the epoll thread shares with the sockets.
struct Shared {
    eid: c_int,
    interests: Mutex<HashMap<sys::SRTSOCKET, Arc<Interest>>>,
    stop: AtomicBool,
}

impl fmt::Debug for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Runtime")
            .field("eid", &self.shared.eid)
            .field("sockets", &lock(&self.shared.interests).len())
            .finish()
    }
}

impl Runtime {
    /// The running library, started if it is not.
    pub(crate) fn get() -> Result<Arc<Self>> {
        let mut current = lock(&CURRENT);
        if let Some(runtime) = current.upgrade() {
            return Ok(runtime);
        }
        let runtime = Arc::new(Self::start()?);
        *current = Arc::downgrade(&runtime);
        Ok(runtime)
    }

    /// Whether libsrt is started by this crate now (some socket is alive).
    pub(crate) fn is_running() -> bool {
        lock(&CURRENT).strong_count() > 0
    }

    /// Wait until every runtime dropped so far has cleaned libsrt up; false, at once,
    /// while a socket is alive.
    pub(crate) fn wait_cleaned_up() -> bool {
        if Self::is_running() {
            return false;
        }
        let threads = std::mem::take(&mut *lock(&STOPPING));
        for thread in threads {
            // The thread cannot panic (it only waits and calls libsrt); if it did,
            // it has ended all the same.
            let _ = thread.join();
        }
        true
    }

    fn start() -> Result<Self> {
        // SAFETY: srt_startup may be called from any thread; libsrt counts the calls
        // and srt_cleanup (in Drop) undoes one.
        if unsafe { sys::srt_startup() } < 0 {
            return Err(Error::last("srt_startup"));
        }
        // SAFETY: sets libsrt's global log level; any int is accepted. libsrt would
        // otherwise print its own errors (a rejected caller, say) on stderr: they are
        // reported through the errors this crate returns instead.
        unsafe { sys::srt_setloglevel(libc::LOG_CRIT) };
        // SAFETY: no arguments; returns an epoll id or -1.
        let eid = unsafe { sys::srt_epoll_create() };
        if eid < 0 {
            let error = Error::last("srt_epoll_create");
            // SAFETY: undoes the srt_startup above.
            unsafe { sys::srt_cleanup() };
            return Err(error);
        }
        // SAFETY: eid is the epoll just created. An empty epoll then waits out the
        // timeout instead of failing at once (which would spin the thread).
        unsafe { sys::srt_epoll_set(eid, sys::SRT_EPOLL_ENABLE_EMPTY) };
        let shared = Arc::new(Shared {
            eid,
            interests: Mutex::new(HashMap::new()),
            stop: AtomicBool::new(false),
        });
        let thread = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("libsrt-epoll".into())
                .spawn(move || shared.run())
        };
        match thread {
            Ok(thread) => Ok(Self {
                shared,
                thread: Some(thread),
            }),
            Err(e) => {
                // SAFETY: the epoll and the startup made above, released once.
                unsafe {
                    sys::srt_epoll_release(eid);
                    sys::srt_cleanup();
                }
                Err(Error::new(
                    sys::SRT_ETHREAD,
                    format!("cannot start the libsrt epoll thread: {e}"),
                ))
            }
        }
    }

    /// Watch `socket` for readiness; its wakers are in the returned interest.
    pub(crate) fn register(&self, socket: sys::SRTSOCKET) -> Result<Arc<Interest>> {
        let interest = Arc::new(Interest::default());
        lock(&self.shared.interests).insert(socket, Arc::clone(&interest));
        let events =
            sys::SRT_EPOLL_IN | sys::SRT_EPOLL_OUT | sys::SRT_EPOLL_ERR | sys::SRT_EPOLL_ET;
        // SAFETY: the epoll is alive while self is; `events` outlives the call, which
        // copies it; a socket id libsrt does not know is an error, not UB.
        if unsafe { sys::srt_epoll_add_usock(self.shared.eid, socket, &events) } < 0 {
            lock(&self.shared.interests).remove(&socket);
            return Err(Error::last("srt_epoll_add_usock"));
        }
        Ok(interest)
    }

    /// Stop watching `socket` (before it is closed).
    pub(crate) fn deregister(&self, socket: sys::SRTSOCKET) {
        // SAFETY: as in register; removing a socket that is not there is an error,
        // which changes nothing.
        unsafe { sys::srt_epoll_remove_usock(self.shared.eid, socket) };
        lock(&self.shared.interests).remove(&socket);
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        // The epoll thread sees this within WAIT_MS, then releases the epoll and calls
        // srt_cleanup itself: the last socket's drop never waits for it (it may run on
        // an async task's thread). A start meanwhile is safe: libsrt counts
        // srt_startup and srt_cleanup calls and cleans up only at zero. The thread is
        // kept so that a process can wait for it before it exits (`wait_cleaned_up`):
        // libsrt's own teardown at exit must not race its threads.
        self.shared.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            let mut stopping = lock(&STOPPING);
            stopping.retain(|t| !t.is_finished());
            stopping.push(thread);
        }
    }
}

impl Shared {
    fn run(&self) {
        self.wait_until_stopped();
        // SAFETY: every socket is gone (each held the runtime, whose drop set `stop`)
        // and this thread was the epoll's last user: the epoll and this runtime's
        // srt_startup are released once.
        unsafe {
            sys::srt_epoll_release(self.eid);
            sys::srt_cleanup();
        }
    }

    fn wait_until_stopped(&self) {
        let mut events = [sys::SRT_EPOLL_EVENT::default(); EVENTS];
        while !self.stop.load(Ordering::Acquire) {
            // SAFETY: `events` is a valid, writable array of EVENTS entries for the
            // whole call, and the epoll lives until this thread has been joined.
            let n = unsafe {
                sys::srt_epoll_uwait(self.eid, events.as_mut_ptr(), EVENTS as c_int, WAIT_MS)
            };
            if n <= 0 {
                // A timeout (0), or an error (-1: no socket is fatal here, as the
                // epoll accepts being empty): look at the stop flag and wait again.
                continue;
            }
            let ready = &events[..(n as usize).min(EVENTS)];
            let interests: Vec<(Arc<Interest>, c_int)> = {
                let map = lock(&self.interests);
                ready
                    .iter()
                    .filter_map(|e| map.get(&e.fd).map(|i| (Arc::clone(i), e.events)))
                    .collect()
            };
            for (interest, flags) in interests {
                interest.wake(flags);
            }
        }
    }
}

/// The tasks waiting on one socket, and what the epoll said of it.
#[derive(Debug)]
pub(crate) struct Interest {
    state: Mutex<State>,
}

impl Default for Interest {
    fn default() -> Self {
        Self {
            state: Mutex::new(State {
                read: None,
                write: None,
                // Unknown until the epoll says: try once.
                readable: true,
                read_tick: 0,
            }),
        }
    }
}

#[derive(Debug)]
struct State {
    read: Option<Waker>,
    write: Option<Waker>,
    /// Whether a read may succeed: set by every IN (or ERR) event, cleared by a read
    /// that would block, unless an event came in between (`read_tick`).
    readable: bool,
    /// Counts IN and ERR events.
    read_tick: u64,
}

/// Whether to try a read now, and the event count it was decided at.
pub(crate) enum ReadTurn {
    /// Try: the socket may have something.
    Try(u64),
    /// Nothing to read: the waker is registered.
    Wait,
}

impl Interest {
    /// Wake the reader on IN or ERR, the writer on OUT or ERR.
    fn wake(&self, flags: c_int) {
        let (read, write) = {
            let mut state = lock(&self.state);
            let error = flags & sys::SRT_EPOLL_ERR != 0;
            let read = if error || flags & sys::SRT_EPOLL_IN != 0 {
                state.readable = true;
                state.read_tick = state.read_tick.wrapping_add(1);
                state.read.take()
            } else {
                None
            };
            let write = (error || flags & sys::SRT_EPOLL_OUT != 0)
                .then(|| state.write.take())
                .flatten();
            (read, write)
        };
        if let Some(w) = read {
            w.wake();
        }
        if let Some(w) = write {
            w.wake();
        }
    }

    /// Wake the reader and the writer as an error would (the socket was closed here):
    /// their next call fails instead of waiting for an event that cannot come.
    pub(crate) fn wake_all(&self) {
        self.wake(sys::SRT_EPOLL_ERR);
    }

    /// Whether a read is worth trying; if not, `waker` is woken when it is.
    pub(crate) fn read_turn(&self, waker: &Waker) -> ReadTurn {
        let mut state = lock(&self.state);
        if state.readable {
            return ReadTurn::Try(state.read_tick);
        }
        match &state.read {
            Some(w) if w.will_wake(waker) => {}
            _ => state.read = Some(waker.clone()),
        }
        ReadTurn::Wait
    }

    /// A read tried at event count `tick` would have blocked: not readable, unless an
    /// event came since.
    pub(crate) fn read_blocked(&self, tick: u64) {
        let mut state = lock(&self.state);
        if state.read_tick == tick {
            state.readable = false;
        }
    }

    /// Wake `waker` when the socket can be read (or accepted on), or fails.
    pub(crate) fn on_readable(&self, waker: &Waker) {
        let mut state = lock(&self.state);
        match &state.read {
            Some(w) if w.will_wake(waker) => {}
            _ => state.read = Some(waker.clone()),
        }
    }

    /// Wake `waker` when the socket can be written (or has connected), or fails.
    pub(crate) fn on_writable(&self, waker: &Waker) {
        let mut state = lock(&self.state);
        match &state.write {
            Some(w) if w.will_wake(waker) => {}
            _ => state.write = Some(waker.clone()),
        }
    }
}
