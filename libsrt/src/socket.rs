//! One SRT socket: options, connecting, listening, messages and statistics, every
//! operation non-blocking and ready to be polled from async code.

use std::ffi::CString;
use std::fmt;
use std::mem::{size_of, MaybeUninit};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use libc::{c_int, c_void, sockaddr, sockaddr_in, sockaddr_in6, sockaddr_storage};

use crate::error::{Error, RejectReason, Result};
use crate::runtime::{Interest, ReadTurn, Runtime};
use crate::sys;

/// What a listener decides about a caller before the handshake completes: `Err`
/// refuses it with that reason (the caller sees it).
pub type ListenFilter = dyn Fn(&Caller<'_>) -> std::result::Result<(), RejectReason> + Send + Sync;

/// A caller knocking at a listener, as its listen filter sees it.
#[derive(Debug)]
pub struct Caller<'a> {
    socket: sys::SRTSOCKET,
    stream_id: &'a str,
    address: Option<SocketAddr>,
}

impl Caller<'_> {
    /// The stream id the caller sent (empty when none).
    pub fn stream_id(&self) -> &str {
        self.stream_id
    }

    /// Where the caller calls from.
    pub fn address(&self) -> Option<SocketAddr> {
        self.address
    }

    /// Encrypt this caller's connection with `passphrase` (10 to 79 bytes): each
    /// stream on a shared listener can have its own. Never part of an error message.
    pub fn set_passphrase(&self, passphrase: &str) -> Result<()> {
        check_passphrase(passphrase)?;
        set_string(self.socket, sys::SRTO_PASSPHRASE, passphrase, "passphrase")
    }
}

fn check_passphrase(passphrase: &str) -> Result<()> {
    if !(10..=79).contains(&passphrase.len()) {
        return Err(Error::new(
            sys::SRT_EINVPARAM,
            format!("passphrase: {} bytes, must be 10 to 79", passphrase.len()),
        ));
    }
    Ok(())
}

/// The filters of the listening sockets, by socket id. libsrt calls back with the
/// listener's id as its opaque value (not a pointer), so a callback that races with
/// the listener's close finds no filter and refuses, instead of touching freed memory.
static FILTERS: std::sync::Mutex<Vec<(sys::SRTSOCKET, Arc<ListenFilter>)>> =
    std::sync::Mutex::new(Vec::new());

fn filters() -> std::sync::MutexGuard<'static, Vec<(sys::SRTSOCKET, Arc<ListenFilter>)>> {
    FILTERS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// libsrt's listen callback: runs the listener's filter on the caller's stream id.
unsafe extern "C" fn listen_hook(
    opaque: *mut c_void,
    ns: sys::SRTSOCKET,
    _hsversion: c_int,
    peer: *const sockaddr,
    stream_id: *const libc::c_char,
) -> c_int {
    let listener = opaque as usize as sys::SRTSOCKET;
    let decision = std::panic::catch_unwind(|| {
        let filter = filters()
            .iter()
            .find(|(id, _)| *id == listener)
            .map(|(_, f)| Arc::clone(f));
        let Some(filter) = filter else {
            return Err(RejectReason::Close);
        };
        let id = if stream_id.is_null() {
            String::new()
        } else {
            // SAFETY: libsrt passes the caller's stream id as a NUL-terminated string
            // valid for the duration of the callback (empty when none was sent).
            unsafe { std::ffi::CStr::from_ptr(stream_id) }
                .to_string_lossy()
                .into_owned()
        };
        let address = if peer.is_null() {
            None
        } else {
            // SAFETY: libsrt passes the caller's address, a sockaddr_in or
            // sockaddr_in6 as its family says, valid for the callback; it is copied
            // into storage large enough for either.
            unsafe { RawAddr::copy_from(peer) }.to_socket_addr()
        };
        filter(&Caller {
            socket: ns,
            stream_id: &id,
            address,
        })
    })
    .unwrap_or(Err(RejectReason::Internal));
    match decision {
        Ok(()) => 0,
        Err(reason) => {
            // SAFETY: ns is the socket libsrt is handshaking; any value is accepted.
            unsafe { sys::srt_setrejectreason(ns, reason.code()) };
            -1
        }
    }
}

/// The longest stream id SRT carries.
pub const MAX_STREAM_ID: usize = 512;
/// The largest payload of one live-mode packet (an MTU of 1500 less the IP, UDP and
/// SRT headers): what a peer may send, so what a receive buffer must hold. What this
/// side may send is its [`payload_size`](Socket::payload_size), 1316 unless set.
pub const MAX_PAYLOAD: usize = 1456;

/// Where a socket stands (`SRT_SOCKSTATUS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SocketState {
    /// Created.
    Init,
    /// Bound.
    Opened,
    /// Listening.
    Listening,
    /// Handshake under way.
    Connecting,
    /// Connected.
    Connected,
    /// The connection broke (or never came to be).
    Broken,
    /// Closing.
    Closing,
    /// Closed.
    Closed,
    /// No such socket (any more).
    NonExistent,
}

impl SocketState {
    fn from_raw(state: c_int) -> Self {
        match state {
            sys::SRTS_INIT => Self::Init,
            sys::SRTS_OPENED => Self::Opened,
            sys::SRTS_LISTENING => Self::Listening,
            sys::SRTS_CONNECTING => Self::Connecting,
            sys::SRTS_CONNECTED => Self::Connected,
            sys::SRTS_BROKEN => Self::Broken,
            sys::SRTS_CLOSING => Self::Closing,
            sys::SRTS_CLOSED => Self::Closed,
            _ => Self::NonExistent,
        }
    }
}

/// What came with a received message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Message {
    /// Bytes written into the buffer.
    pub len: usize,
    /// SRT's sequence number of the message's (first) packet: 31 bits, never
    /// restarting on a connection, so a gap is a packet SRT gave up on.
    pub sequence: Option<u32>,
    /// The message number.
    pub number: Option<u32>,
    /// The sender's time for the message, in microseconds of libsrt's clock.
    pub source_time: i64,
}

/// SRT's own counters of a connection (`srt_bistats`), totals since it connected.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
#[non_exhaustive]
pub struct Stats {
    /// The smoothed round-trip time, measured continuously.
    pub rtt: Duration,
    /// Data packets received, retransmissions included.
    pub received: u64,
    /// ACK and NAK control packets received (a sender hears its receiver through them).
    pub received_control: u64,
    /// Unique data packets received (what the application gets, or got dropped).
    pub received_unique: u64,
    /// Data packets the receiver found missing (reported lost; many are recovered).
    pub receive_lost: u64,
    /// Retransmitted packets received (recovered losses).
    pub received_retransmitted: u64,
    /// Data packets the receiver gave up on (too late to deliver): lost for good.
    pub receive_dropped: u64,
    /// Packets that could not be decrypted.
    pub undecrypted: u64,
    /// Packets the packet filter (FEC) rebuilt.
    pub filter_rebuilt: u64,
    /// Losses the packet filter could not cover.
    pub filter_lost: u64,
    /// Data packets sent, retransmissions included.
    pub sent: u64,
    /// Data packets sent again.
    pub retransmitted: u64,
    /// Data packets the sender learned were lost.
    pub send_lost: u64,
    /// Data packets the sender dropped (too late to send).
    pub send_dropped: u64,
    /// Bytes received.
    pub received_bytes: u64,
    /// The receiving rate, Mbit/s, over the last interval.
    pub receive_rate_mbps: f64,
    /// The link bandwidth SRT estimates, Mbit/s.
    pub bandwidth_mbps: f64,
}

fn count(n: impl TryInto<u64>) -> u64 {
    n.try_into().unwrap_or(0)
}

impl Stats {
    fn from_raw(s: &sys::SRT_TRACEBSTATS) -> Self {
        let rtt = if s.msRTT.is_finite() && s.msRTT > 0.0 {
            Duration::from_secs_f64(s.msRTT.min(1e9) / 1000.0)
        } else {
            Duration::ZERO
        };
        Self {
            rtt,
            received: count(s.pktRecvTotal),
            received_control: count(s.pktRecvACKTotal) + count(s.pktRecvNAKTotal),
            received_unique: count(s.pktRecvUniqueTotal),
            receive_lost: count(s.pktRcvLossTotal),
            received_retransmitted: count(s.pktRcvRetrans),
            receive_dropped: count(s.pktRcvDropTotal),
            undecrypted: count(s.pktRcvUndecryptTotal),
            filter_rebuilt: count(s.pktRcvFilterSupplyTotal),
            filter_lost: count(s.pktRcvFilterLossTotal),
            sent: count(s.pktSentTotal),
            retransmitted: count(s.pktRetransTotal),
            send_lost: count(s.pktSndLossTotal),
            send_dropped: count(s.pktSndDropTotal),
            received_bytes: s.byteRecvTotal,
            receive_rate_mbps: s.mbpsRecvRate,
            bandwidth_mbps: s.mbpsBandwidth,
        }
    }
}

/// An SRT socket in live mode, non-blocking, watched by the crate's epoll thread.
///
/// Every operation that would wait has a `poll_*` form: it returns `Pending` and wakes
/// the task when libsrt says the socket is ready. Dropping the socket closes it.
pub struct Socket {
    id: sys::SRTSOCKET,
    interest: Arc<Interest>,
    runtime: Arc<Runtime>,
    closed: bool,
}

impl fmt::Debug for Socket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Socket")
            .field("id", &self.id)
            .field("state", &self.state())
            .finish()
    }
}

/// A socket address as libsrt takes it.
struct RawAddr {
    storage: sockaddr_storage,
    len: c_int,
}

impl RawAddr {
    fn new(address: SocketAddr) -> Self {
        // SAFETY: sockaddr_storage is plain data, valid when zeroed.
        let mut storage: sockaddr_storage = unsafe { std::mem::zeroed() };
        let len = match address {
            SocketAddr::V4(a) => {
                // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in,
                // as the socket API defines it.
                let sin =
                    unsafe { &mut *(&mut storage as *mut sockaddr_storage).cast::<sockaddr_in>() };
                sin.sin_family = libc::AF_INET as libc::sa_family_t;
                sin.sin_port = a.port().to_be();
                sin.sin_addr = libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                };
                size_of::<sockaddr_in>()
            }
            SocketAddr::V6(a) => {
                // SAFETY: as above, for sockaddr_in6.
                let sin6 =
                    unsafe { &mut *(&mut storage as *mut sockaddr_storage).cast::<sockaddr_in6>() };
                sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
                sin6.sin6_port = a.port().to_be();
                sin6.sin6_addr = libc::in6_addr {
                    s6_addr: a.ip().octets(),
                };
                sin6.sin6_flowinfo = a.flowinfo();
                sin6.sin6_scope_id = a.scope_id();
                size_of::<sockaddr_in6>()
            }
        };
        Self {
            storage,
            len: len as c_int,
        }
    }

    /// Copy the sockaddr at `address`.
    ///
    /// # Safety
    /// `address` points to a valid sockaddr_in or sockaddr_in6 (as its family says).
    unsafe fn copy_from(address: *const sockaddr) -> Self {
        let mut raw = Self::empty();
        // SAFETY: the caller guarantees a readable sockaddr; its family is read first.
        let family = c_int::from(unsafe { (*address).sa_family });
        let len = match family {
            libc::AF_INET => size_of::<sockaddr_in>(),
            libc::AF_INET6 => size_of::<sockaddr_in6>(),
            _ => {
                raw.len = 0;
                return raw;
            }
        };
        // SAFETY: the source holds `len` bytes for its family (the caller's guarantee)
        // and the storage is larger than either; the two do not overlap.
        unsafe {
            std::ptr::copy_nonoverlapping(
                address.cast::<u8>(),
                (&mut raw.storage as *mut sockaddr_storage).cast::<u8>(),
                len,
            );
        }
        raw.len = len as c_int;
        raw
    }

    fn empty() -> Self {
        Self {
            // SAFETY: plain data, valid when zeroed.
            storage: unsafe { std::mem::zeroed() },
            len: size_of::<sockaddr_storage>() as c_int,
        }
    }

    fn as_ptr(&self) -> *const sockaddr {
        (&self.storage as *const sockaddr_storage).cast()
    }

    fn as_mut_ptr(&mut self) -> *mut sockaddr {
        (&mut self.storage as *mut sockaddr_storage).cast()
    }

    /// The address libsrt wrote, if it is one of IPv4 or IPv6.
    fn to_socket_addr(&self) -> Option<SocketAddr> {
        let len = usize::try_from(self.len).ok()?;
        match c_int::from(self.storage.ss_family) {
            libc::AF_INET if len >= size_of::<sockaddr_in>() => {
                // SAFETY: the family says the storage holds a sockaddr_in, and
                // storage is aligned for it.
                let sin =
                    unsafe { &*(&self.storage as *const sockaddr_storage).cast::<sockaddr_in>() };
                let ip = Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes());
                Some(SocketAddrV4::new(ip, u16::from_be(sin.sin_port)).into())
            }
            libc::AF_INET6 if len >= size_of::<sockaddr_in6>() => {
                // SAFETY: as above, for sockaddr_in6.
                let sin6 =
                    unsafe { &*(&self.storage as *const sockaddr_storage).cast::<sockaddr_in6>() };
                let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
                Some(
                    SocketAddrV6::new(
                        ip,
                        u16::from_be(sin6.sin6_port),
                        sin6.sin6_flowinfo,
                        sin6.sin6_scope_id,
                    )
                    .into(),
                )
            }
            _ => None,
        }
    }
}

fn millis(d: Duration) -> i32 {
    i32::try_from(d.as_millis()).unwrap_or(i32::MAX)
}

impl Socket {
    /// A new live-mode socket (starting libsrt and its epoll thread if no socket is
    /// alive yet).
    pub fn new() -> Result<Self> {
        let runtime = Runtime::get()?;
        // SAFETY: libsrt is started (runtime); returns a socket id or SRT_INVALID_SOCK.
        let id = unsafe { sys::srt_create_socket() };
        if id == sys::SRT_INVALID_SOCK {
            return Err(Error::last("srt_create_socket"));
        }
        Self::adopt(id, runtime)
    }

    /// Take ownership of `id` (just created or accepted): non-blocking, watched.
    fn adopt(id: sys::SRTSOCKET, runtime: Arc<Runtime>) -> Result<Self> {
        let closing = |e: Error| {
            // SAFETY: id is a socket this function owns and nothing else uses.
            unsafe { sys::srt_close(id) };
            e
        };
        for option in [sys::SRTO_RCVSYN, sys::SRTO_SNDSYN] {
            set_int(id, option, 0, "blocking mode").map_err(closing)?;
        }
        let interest = runtime.register(id).map_err(closing)?;
        Ok(Self {
            id,
            interest,
            runtime,
            closed: false,
        })
    }

    /// The socket's id in libsrt.
    pub fn id(&self) -> i32 {
        self.id
    }

    /// Where the socket stands.
    pub fn state(&self) -> SocketState {
        // SAFETY: any id is accepted; an unknown one reads as SRTS_NONEXIST.
        SocketState::from_raw(unsafe { sys::srt_getsockstate(self.id) })
    }

    /// Why the connection was rejected or broke, as libsrt last recorded it.
    pub fn reject_reason(&self) -> RejectReason {
        // SAFETY: any id is accepted.
        RejectReason::from_code(unsafe { sys::srt_getrejectreason(self.id) })
    }

    /// Live mode (the default of a new socket, set again explicitly).
    pub fn set_live(&self) -> Result<()> {
        set_int(self.id, sys::SRTO_TRANSTYPE, sys::SRTT_LIVE, "transtype")
    }

    /// SRT latency, both ways (`SRTO_LATENCY`, whole milliseconds).
    pub fn set_latency(&self, latency: Duration) -> Result<()> {
        set_int(self.id, sys::SRTO_LATENCY, millis(latency), "latency")
    }

    /// The receiver latency agreed in the handshake.
    pub fn receive_latency(&self) -> Result<Duration> {
        let ms = get_int(self.id, sys::SRTO_RCVLATENCY, "rcvlatency")?;
        Ok(Duration::from_millis(u64::try_from(ms).unwrap_or(0)))
    }

    /// How long the handshake may take (`SRTO_CONNTIMEO`).
    pub fn set_connect_timeout(&self, timeout: Duration) -> Result<()> {
        set_int(
            self.id,
            sys::SRTO_CONNTIMEO,
            millis(timeout).max(1),
            "conntimeo",
        )
    }

    /// How long a silent peer is waited for before the connection breaks
    /// (`SRTO_PEERIDLETIMEO`).
    pub fn set_peer_idle_timeout(&self, timeout: Duration) -> Result<()> {
        set_int(
            self.id,
            sys::SRTO_PEERIDLETIMEO,
            millis(timeout).max(1),
            "peeridletimeo",
        )
    }

    /// The stream id sent in the handshake (at most 512 bytes).
    pub fn set_stream_id(&self, stream_id: &str) -> Result<()> {
        if stream_id.len() > MAX_STREAM_ID {
            return Err(Error::new(
                sys::SRT_EINVPARAM,
                format!(
                    "streamid: {} bytes, at most {MAX_STREAM_ID}",
                    stream_id.len()
                ),
            ));
        }
        set_string(self.id, sys::SRTO_STREAMID, stream_id, "streamid")
    }

    /// The stream id: the caller's, on an accepted socket.
    pub fn stream_id(&self) -> Result<String> {
        get_string(self.id, sys::SRTO_STREAMID, "streamid")
    }

    /// Encrypt with this passphrase (10 to 79 bytes). The passphrase is never part of
    /// an error message.
    pub fn set_passphrase(&self, passphrase: &str) -> Result<()> {
        check_passphrase(passphrase)?;
        set_string(self.id, sys::SRTO_PASSPHRASE, passphrase, "passphrase")
    }

    /// The longest message this socket sends in live mode (`SRTO_PAYLOADSIZE`):
    /// 1316 bytes (seven MPEG-TS packets) unless set before connecting.
    pub fn payload_size(&self) -> Result<usize> {
        let bytes = get_int(self.id, sys::SRTO_PAYLOADSIZE, "payloadsize")?;
        Ok(usize::try_from(bytes).unwrap_or(0))
    }

    /// The key length in force, in bytes (`SRTO_PBKEYLEN`): on a connected socket,
    /// the one agreed with the peer; 0 when unencrypted or not yet decided.
    pub fn key_length(&self) -> Result<i32> {
        get_int(self.id, sys::SRTO_PBKEYLEN, "pbkeylen")
    }

    /// The key length, 16, 24 or 32 bytes (`SRTO_PBKEYLEN`).
    pub fn set_key_length(&self, bytes: i32) -> Result<()> {
        if ![16, 24, 32].contains(&bytes) {
            return Err(Error::new(
                sys::SRT_EINVPARAM,
                format!("pbkeylen: {bytes}, must be 16, 24 or 32"),
            ));
        }
        set_int(self.id, sys::SRTO_PBKEYLEN, bytes, "pbkeylen")
    }

    /// A packet filter, such as FEC: `fec,cols:10,rows:5` (`SRTO_PACKETFILTER`).
    ///
    /// An empty filter is an error here: libsrt 1.5.1 crashes on one.
    pub fn set_packet_filter(&self, filter: &str) -> Result<()> {
        if filter.is_empty() {
            return Err(Error::new(
                sys::SRT_EINVPARAM,
                "packetfilter: empty (leave it unset for none)",
            ));
        }
        set_string(self.id, sys::SRTO_PACKETFILTER, filter, "packetfilter")
    }

    /// The packet filter agreed with the peer (on a connected socket).
    pub fn packet_filter(&self) -> Result<String> {
        get_string(self.id, sys::SRTO_PACKETFILTER, "packetfilter")
    }

    /// The UDP socket buffers libsrt asks the kernel for, each way, in bytes
    /// (`SRTO_UDP_RCVBUF` and `SRTO_UDP_SNDBUF`; libsrt's defaults are 8 192 packets
    /// of 1 500 bytes in and 64 KiB out). Set before `bind` or a connect: the
    /// socket's UDP socket is made then. The kernel caps what it grants at
    /// `net.core.rmem_max` and `wmem_max`.
    pub fn set_udp_buffers(&self, bytes: i32) -> Result<()> {
        set_int(self.id, sys::SRTO_UDP_RCVBUF, bytes, "udp_rcvbuf")?;
        set_int(self.id, sys::SRTO_UDP_SNDBUF, bytes, "udp_sndbuf")
    }

    /// The UDP receive and send buffer sizes asked for, in bytes.
    pub fn udp_buffers(&self) -> Result<(i32, i32)> {
        Ok((
            get_int(self.id, sys::SRTO_UDP_RCVBUF, "udp_rcvbuf")?,
            get_int(self.id, sys::SRTO_UDP_SNDBUF, "udp_sndbuf")?,
        ))
    }

    /// SRT's own receive and send buffers, each, in bytes (`SRTO_RCVBUF` and
    /// `SRTO_SNDBUF`; libsrt's defaults are 8 192 packets each). libsrt keeps them as
    /// a count of packets of the MSS less the IP and UDP headers (1 472 bytes with the
    /// default MSS), rounded down, at least 32; the receive buffer may not be larger
    /// than the flow-control window (`SRTO_FC`, 25 600 packets by default). Set before
    /// `bind` or a connect.
    pub fn set_buffers(&self, bytes: i32) -> Result<()> {
        set_int(self.id, sys::SRTO_RCVBUF, bytes, "rcvbuf")?;
        set_int(self.id, sys::SRTO_SNDBUF, bytes, "sndbuf")
    }

    /// SRT's receive and send buffer sizes, in bytes, as libsrt reports them.
    pub fn buffers(&self) -> Result<(i32, i32)> {
        Ok((
            get_int(self.id, sys::SRTO_RCVBUF, "rcvbuf")?,
            get_int(self.id, sys::SRTO_SNDBUF, "sndbuf")?,
        ))
    }

    /// Rendezvous mode.
    pub fn set_rendezvous(&self, on: bool) -> Result<()> {
        set_int(self.id, sys::SRTO_RENDEZVOUS, i32::from(on), "rendezvous")
    }

    /// Let a listener accept members of socket groups (`SRTO_GROUPCONNECT`).
    pub fn set_group_connect(&self, on: bool) -> Result<()> {
        set_int(
            self.id,
            sys::SRTO_GROUPCONNECT,
            i32::from(on),
            "groupconnect",
        )
    }

    /// Bind to `address`.
    pub fn bind(&self, address: SocketAddr) -> Result<()> {
        let raw = RawAddr::new(address);
        // SAFETY: raw holds a valid sockaddr of raw.len bytes for the whole call.
        if unsafe { sys::srt_bind(self.id, raw.as_ptr(), raw.len) } < 0 {
            return Err(Error::last(&format!("bind {address}")));
        }
        Ok(())
    }

    /// Decide about each caller before its handshake completes (set before
    /// [`listen`](Self::listen)): `filter` gets the caller (its stream id, empty when
    /// it sent none, and address; it may set the caller's passphrase), and an `Err`
    /// refuses it with that reason, which the caller sees. It runs on libsrt's thread:
    /// keep it short.
    pub fn set_listen_filter<F>(&self, filter: F) -> Result<()>
    where
        F: Fn(&Caller<'_>) -> std::result::Result<(), RejectReason> + Send + Sync + 'static,
    {
        {
            let mut all = filters();
            all.retain(|(id, _)| *id != self.id);
            all.push((self.id, Arc::new(filter)));
        }
        // SAFETY: listen_hook matches srt_listen_callback_fn and never unwinds; the
        // opaque value is the listener's id, not a pointer, and is only compared.
        let done = unsafe {
            sys::srt_listen_callback(self.id, Some(listen_hook), self.id as usize as *mut c_void)
        };
        if done < 0 {
            filters().retain(|(id, _)| *id != self.id);
            return Err(Error::last("listen callback"));
        }
        Ok(())
    }

    /// Listen for callers (after [`bind`](Self::bind)).
    pub fn listen(&self, backlog: i32) -> Result<()> {
        // SAFETY: plain call on an owned socket id.
        if unsafe { sys::srt_listen(self.id, backlog.max(1)) } < 0 {
            return Err(Error::last("listen"));
        }
        Ok(())
    }

    /// Start the handshake with a listener at `address`; the connection is made when
    /// [`poll_connected`](Self::poll_connected) says so.
    pub fn start_connect(&self, address: SocketAddr) -> Result<()> {
        let raw = RawAddr::new(address);
        // SAFETY: raw holds a valid sockaddr of raw.len bytes for the whole call.
        if unsafe { sys::srt_connect(self.id, raw.as_ptr(), raw.len) } < 0 {
            return Err(self.connect_error(address));
        }
        Ok(())
    }

    /// Start a rendezvous handshake between `local` and `remote`.
    pub fn start_rendezvous(&self, local: SocketAddr, remote: SocketAddr) -> Result<()> {
        let (l, r) = (RawAddr::new(local), RawAddr::new(remote));
        // SAFETY: both hold valid sockaddrs of their lengths for the whole call.
        if unsafe { sys::srt_rendezvous(self.id, l.as_ptr(), l.len, r.as_ptr(), r.len) } < 0 {
            return Err(self.connect_error(remote));
        }
        Ok(())
    }

    fn connect_error(&self, address: SocketAddr) -> Error {
        let error = Error::last(&format!("connect to {address}"));
        match self.reject_reason() {
            RejectReason::Unknown => error,
            reason => error.with_reject(reason),
        }
    }

    /// Whether the handshake started by [`start_connect`](Self::start_connect) is done:
    /// `Ok` once connected; an error with the reject reason when it failed.
    pub fn poll_connected(&self, cx: &mut Context<'_>, address: SocketAddr) -> Poll<Result<()>> {
        if let Some(done) = self.connected(address) {
            return Poll::Ready(done);
        }
        self.interest.on_writable(cx.waker());
        self.interest.on_readable(cx.waker());
        match self.connected(address) {
            Some(done) => Poll::Ready(done),
            None => Poll::Pending,
        }
    }

    fn connected(&self, address: SocketAddr) -> Option<Result<()>> {
        match self.state() {
            SocketState::Connected => Some(Ok(())),
            SocketState::Init | SocketState::Opened | SocketState::Connecting => None,
            state => {
                let reason = self.reject_reason();
                let code = if reason == RejectReason::Timeout {
                    sys::SRT_ENOSERVER
                } else {
                    sys::SRT_ECONNREJ
                };
                Some(Err(Error::new(
                    code,
                    format!("connect to {address}: {reason} (socket {state:?})"),
                )
                .with_reject(reason)))
            }
        }
    }

    /// Accept the next caller, with its address.
    pub fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<Result<(Socket, SocketAddr)>> {
        loop {
            let ReadTurn::Try(tick) = self.interest.read_turn(cx.waker()) else {
                return Poll::Pending;
            };
            match self.try_accept() {
                Err(e) if e.is_would_block() => self.interest.read_blocked(tick),
                done => return Poll::Ready(done),
            }
        }
    }

    fn try_accept(&self) -> Result<(Socket, SocketAddr)> {
        let mut peer = RawAddr::empty();
        // SAFETY: peer is writable storage of peer.len bytes; libsrt writes at most
        // that and stores the length it wrote.
        let id = unsafe { sys::srt_accept(self.id, peer.as_mut_ptr(), &mut peer.len) };
        if id == sys::SRT_INVALID_SOCK {
            return Err(Error::last("accept"));
        }
        let socket = Self::adopt(id, Arc::clone(&self.runtime))?;
        let address = peer
            .to_socket_addr()
            .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
        Ok((socket, address))
    }

    /// Receive one message into `buf` (live mode: one packet, at most
    /// [`MAX_PAYLOAD`] bytes).
    ///
    /// In live mode `buf` must hold the socket's [`payload_size`](Self::payload_size)
    /// (or [`MAX_PAYLOAD`], which always does): libsrt refuses a shorter buffer with
    /// an error, whatever the length of the message waiting.
    ///
    /// A socket the epoll has not said readable since its last empty read is not asked
    /// again: a refused non-blocking read costs libsrt an internal exception.
    pub fn poll_recv(&self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<Result<Message>> {
        loop {
            let ReadTurn::Try(tick) = self.interest.read_turn(cx.waker()) else {
                return Poll::Pending;
            };
            // libsrt's own readiness, read without a failing call.
            if !self.has_events(sys::SRT_EPOLL_IN | sys::SRT_EPOLL_ERR) {
                self.interest.read_blocked(tick);
                continue;
            }
            match self.try_recv(buf) {
                Err(e) if e.is_would_block() => self.interest.read_blocked(tick),
                done => return Poll::Ready(done),
            }
        }
    }

    /// Whether libsrt has any of `events` (`SRT_EPOLL_*`) pending on the socket now
    /// (`SRTO_EVENT`); true when it cannot tell, so that the caller tries.
    fn has_events(&self, events: c_int) -> bool {
        get_int(self.id, sys::SRTO_EVENT, "event").map_or(true, |now| now & events != 0)
    }

    /// How many packets libsrt holds in the receive buffer (`SRTO_RCVDATA`), ready to
    /// read or waiting for their play time. A connection that broke keeps them: they
    /// become readable at their play time, until libsrt closes the socket.
    pub fn receive_buffered(&self) -> Result<usize> {
        let n = get_int(self.id, sys::SRTO_RCVDATA, "rcvdata")?;
        Ok(usize::try_from(n).unwrap_or(0))
    }

    /// How many packets libsrt still holds to send (`SRTO_SNDDATA`): sent but not yet
    /// acknowledged, or not yet sent.
    pub fn send_buffered(&self) -> Result<usize> {
        let n = get_int(self.id, sys::SRTO_SNDDATA, "snddata")?;
        Ok(usize::try_from(n).unwrap_or(0))
    }

    /// Close the socket now (`srt_close`): a connected peer is sent SRT's shutdown.
    /// What libsrt still had to send is dropped (live mode lingers not); wait for
    /// [`send_buffered`](Self::send_buffered) to reach zero first to keep it. Every
    /// later call on the socket fails; dropping a closed socket does nothing more.
    pub fn close(&mut self) {
        if std::mem::replace(&mut self.closed, true) {
            return;
        }
        filters().retain(|(id, _)| *id != self.id);
        self.runtime.deregister(self.id);
        // SAFETY: the socket is owned by self and no longer watched; closing an id
        // libsrt already broke is an error, not UB. `closed` makes this the only call.
        unsafe { sys::srt_close(self.id) };
        self.interest.wake_all();
    }

    /// Receive one message if one is ready (`buf` as for [`poll_recv`](Self::poll_recv)).
    pub fn try_recv(&self, buf: &mut [u8]) -> Result<Message> {
        let mut control = sys::SRT_MSGCTRL::default();
        let len = c_int::try_from(buf.len()).unwrap_or(c_int::MAX);
        // SAFETY: buf is writable for len bytes and control is a valid SRT_MSGCTRL,
        // both for the whole call; libsrt writes at most len bytes.
        let n = unsafe { sys::srt_recvmsg2(self.id, buf.as_mut_ptr().cast(), len, &mut control) };
        if n < 0 {
            return Err(Error::last("recv"));
        }
        Ok(Message {
            len: n as usize,
            sequence: u32::try_from(control.pktseq).ok(),
            number: u32::try_from(control.msgno).ok(),
            source_time: control.srctime,
        })
    }

    /// Send `payload` as one message (in live mode at most
    /// [`payload_size`](Self::payload_size) bytes: a longer one is an error).
    pub fn poll_send(&self, cx: &mut Context<'_>, payload: &[u8]) -> Poll<Result<usize>> {
        match self.try_send(payload) {
            Err(e) if e.is_would_block() => {}
            done => return Poll::Ready(done),
        }
        self.interest.on_writable(cx.waker());
        match self.try_send(payload) {
            Err(e) if e.is_would_block() => Poll::Pending,
            done => Poll::Ready(done),
        }
    }

    /// Send `payload` as one message if there is room.
    pub fn try_send(&self, payload: &[u8]) -> Result<usize> {
        let len = c_int::try_from(payload.len()).map_err(|_| {
            Error::new(sys::SRT_ELARGEMSG, format!("send: {} bytes", payload.len()))
        })?;
        // SAFETY: payload is readable for len bytes for the whole call; a null
        // control is allowed (defaults).
        let n = unsafe {
            sys::srt_sendmsg2(self.id, payload.as_ptr().cast(), len, std::ptr::null_mut())
        };
        if n < 0 {
            return Err(Error::last("send"));
        }
        Ok(n as usize)
    }

    /// SRT's counters of this connection, without clearing them.
    pub fn stats(&self) -> Result<Stats> {
        let mut raw = MaybeUninit::<sys::SRT_TRACEBSTATS>::zeroed();
        // SAFETY: raw is a writable SRT_TRACEBSTATS (zeroed: valid plain data) for the
        // whole call; libsrt fills it.
        if unsafe { sys::srt_bistats(self.id, raw.as_mut_ptr(), 0, 1) } < 0 {
            return Err(Error::last("bistats"));
        }
        // SAFETY: zero-initialised plain data, filled by libsrt.
        Ok(Stats::from_raw(&unsafe { raw.assume_init() }))
    }

    /// The local address.
    pub fn local_addr(&self) -> Result<SocketAddr> {
        let mut raw = RawAddr::empty();
        // SAFETY: raw is writable storage of raw.len bytes.
        if unsafe { sys::srt_getsockname(self.id, raw.as_mut_ptr(), &mut raw.len) } < 0 {
            return Err(Error::last("getsockname"));
        }
        raw.to_socket_addr()
            .ok_or_else(|| Error::new(sys::SRT_EINVPARAM, "getsockname: not an IP address"))
    }

    /// The peer's address: the caller's, on an accepted socket. libsrt 1.5 keeps none
    /// for a socket that called (it is the address it connected to).
    pub fn peer_addr(&self) -> Result<SocketAddr> {
        let mut raw = RawAddr::empty();
        // SAFETY: raw is writable storage of raw.len bytes.
        if unsafe { sys::srt_getpeername(self.id, raw.as_mut_ptr(), &mut raw.len) } < 0 {
            return Err(Error::last("getpeername"));
        }
        raw.to_socket_addr().ok_or_else(|| {
            Error::new(
                sys::SRT_ENOCONN,
                "getpeername: libsrt has no peer address for this socket",
            )
        })
    }
}

impl Drop for Socket {
    fn drop(&mut self) {
        self.close();
    }
}

fn set_int(id: sys::SRTSOCKET, option: c_int, value: i32, name: &str) -> Result<()> {
    let value: c_int = value;
    // SAFETY: value is a readable int for the call; libsrt copies it.
    let done = unsafe {
        sys::srt_setsockflag(
            id,
            option,
            (&value as *const c_int).cast::<c_void>(),
            size_of::<c_int>() as c_int,
        )
    };
    if done < 0 {
        return Err(Error::last(&format!("set {name}")));
    }
    Ok(())
}

fn get_int(id: sys::SRTSOCKET, option: c_int, name: &str) -> Result<i32> {
    let mut value: c_int = 0;
    let mut len = size_of::<c_int>() as c_int;
    // SAFETY: value is writable for len bytes; libsrt writes at most that.
    let done = unsafe {
        sys::srt_getsockflag(
            id,
            option,
            (&mut value as *mut c_int).cast::<c_void>(),
            &mut len,
        )
    };
    if done < 0 {
        return Err(Error::last(&format!("get {name}")));
    }
    Ok(value)
}

fn set_string(id: sys::SRTSOCKET, option: c_int, value: &str, name: &str) -> Result<()> {
    // libsrt takes the bytes and their length; a NUL inside would be cut there by
    // peers, so it is refused.
    let value = CString::new(value)
        .map_err(|_| Error::new(sys::SRT_EINVPARAM, format!("{name}: contains a NUL byte")))?;
    let bytes = value.as_bytes();
    let len = c_int::try_from(bytes.len())
        .map_err(|_| Error::new(sys::SRT_EINVPARAM, format!("{name}: too long")))?;
    // SAFETY: bytes is readable for len bytes for the call; libsrt copies them.
    if unsafe { sys::srt_setsockflag(id, option, bytes.as_ptr().cast::<c_void>(), len) } < 0 {
        return Err(Error::last(&format!("set {name}")));
    }
    Ok(())
}

fn get_string(id: sys::SRTSOCKET, option: c_int, name: &str) -> Result<String> {
    let mut buf = [0u8; MAX_STREAM_ID + 1];
    let mut len = buf.len() as c_int;
    // SAFETY: buf is writable for len bytes; libsrt writes at most that and stores the
    // length it wrote.
    if unsafe { sys::srt_getsockflag(id, option, buf.as_mut_ptr().cast::<c_void>(), &mut len) } < 0
    {
        return Err(Error::last(&format!("get {name}")));
    }
    let len = usize::try_from(len).unwrap_or(0).min(buf.len());
    let text = &buf[..len];
    let text = text.split(|b| *b == 0).next().unwrap_or_default();
    Ok(String::from_utf8_lossy(text).into_owned())
}

/// Whether libsrt is started by this crate now: while any [`Socket`] is alive.
pub fn is_running() -> bool {
    Runtime::is_running()
}

/// Wait until libsrt, started by this crate, has been cleaned up: returns true once
/// every socket dropped so far has been closed and `srt_cleanup` has returned (within
/// about 100 ms of the last drop), false at once while a [`Socket`] is still alive.
///
/// Call it before a process exits, after the last socket is gone: libsrt tears down
/// its own threads at exit, and that must not race a cleanup still under way (a
/// process can crash on its way out otherwise).
///
/// ```
/// let socket = mirror_libsrt::Socket::new()?;
/// assert!(!mirror_libsrt::wait_cleaned_up(), "a socket is alive");
/// drop(socket);
/// assert!(mirror_libsrt::wait_cleaned_up());
/// # Ok::<(), mirror_libsrt::Error>(())
/// ```
pub fn wait_cleaned_up() -> bool {
    Runtime::wait_cleaned_up()
}

/// The version of the libsrt linked, as (major, minor, patch).
pub fn version() -> (u8, u8, u8) {
    // SAFETY: no arguments; a constant of the library.
    let v = unsafe { sys::srt_getversion() };
    (
        ((v >> 16) & 0xff) as u8,
        ((v >> 8) & 0xff) as u8,
        (v & 0xff) as u8,
    )
}
