//! The raw C interface of libsrt 1.5, declared by hand for the calls this crate makes.
//!
//! Names and values follow `srt/srt.h` of libsrt 1.5.1 (Debian's `libsrt-openssl-dev`,
//! pkg-config name `srt`). The struct layouts are checked against that header by the
//! `layout` test, which compiles a C program with the system's compiler.
//!
//! Everything here is `unsafe` to call; the rest of the crate is the safe interface.

#![allow(non_camel_case_types, non_snake_case, missing_docs)]

use libc::{c_char, c_int, c_void, sockaddr};

/// An SRT socket (or group) id.
pub type SRTSOCKET = c_int;

/// The invalid socket id.
pub const SRT_INVALID_SOCK: SRTSOCKET = -1;
/// The error return value of most calls.
pub const SRT_ERROR: c_int = -1;

// SRT_SOCKSTATUS
pub const SRTS_INIT: c_int = 1;
pub const SRTS_OPENED: c_int = 2;
pub const SRTS_LISTENING: c_int = 3;
pub const SRTS_CONNECTING: c_int = 4;
pub const SRTS_CONNECTED: c_int = 5;
pub const SRTS_BROKEN: c_int = 6;
pub const SRTS_CLOSING: c_int = 7;
pub const SRTS_CLOSED: c_int = 8;
pub const SRTS_NONEXIST: c_int = 9;

// SRT_SOCKOPT (the ones used)
pub const SRTO_SNDSYN: c_int = 1;
pub const SRTO_RCVSYN: c_int = 2;
pub const SRTO_SNDBUF: c_int = 5;
pub const SRTO_RCVBUF: c_int = 6;
pub const SRTO_LINGER: c_int = 7;
pub const SRTO_UDP_SNDBUF: c_int = 8;
pub const SRTO_UDP_RCVBUF: c_int = 9;
pub const SRTO_RENDEZVOUS: c_int = 12;
pub const SRTO_REUSEADDR: c_int = 15;
pub const SRTO_EVENT: c_int = 18;
pub const SRTO_SNDDATA: c_int = 19;
pub const SRTO_RCVDATA: c_int = 20;
pub const SRTO_LATENCY: c_int = 23;
pub const SRTO_PASSPHRASE: c_int = 26;
pub const SRTO_PBKEYLEN: c_int = 27;
pub const SRTO_CONNTIMEO: c_int = 36;
pub const SRTO_RCVLATENCY: c_int = 43;
pub const SRTO_PEERLATENCY: c_int = 44;
pub const SRTO_STREAMID: c_int = 46;
pub const SRTO_PAYLOADSIZE: c_int = 49;
pub const SRTO_TRANSTYPE: c_int = 50;
pub const SRTO_PEERIDLETIMEO: c_int = 55;
pub const SRTO_GROUPCONNECT: c_int = 57;
pub const SRTO_PACKETFILTER: c_int = 60;

// SRT_TRANSTYPE
pub const SRTT_LIVE: c_int = 0;

// SRT_ERRNO (the ones told apart)
pub const SRT_SUCCESS: c_int = 0;
pub const SRT_ECONNSETUP: c_int = 1000;
pub const SRT_ENOSERVER: c_int = 1001;
pub const SRT_ECONNREJ: c_int = 1002;
pub const SRT_ESOCKFAIL: c_int = 1003;
pub const SRT_ESECFAIL: c_int = 1004;
pub const SRT_ESCLOSED: c_int = 1005;
pub const SRT_ECONNFAIL: c_int = 2000;
pub const SRT_ECONNLOST: c_int = 2001;
pub const SRT_ENOCONN: c_int = 2002;
pub const SRT_ETHREAD: c_int = 3001;
pub const SRT_EINVOP: c_int = 5000;
pub const SRT_EBOUNDSOCK: c_int = 5001;
pub const SRT_EINVPARAM: c_int = 5003;
pub const SRT_EINVSOCK: c_int = 5004;
pub const SRT_EDUPLISTEN: c_int = 5011;
pub const SRT_ELARGEMSG: c_int = 5012;
pub const SRT_EBINDCONFLICT: c_int = 5015;
pub const SRT_EASYNCFAIL: c_int = 6000;
pub const SRT_EASYNCSND: c_int = 6001;
pub const SRT_EASYNCRCV: c_int = 6002;
pub const SRT_ETIMEOUT: c_int = 6003;
pub const SRT_ECONGEST: c_int = 6004;

// SRT_REJECT_REASON
pub const SRT_REJ_UNKNOWN: c_int = 0;
pub const SRT_REJ_SYSTEM: c_int = 1;
pub const SRT_REJ_PEER: c_int = 2;
pub const SRT_REJ_RESOURCE: c_int = 3;
pub const SRT_REJ_ROGUE: c_int = 4;
pub const SRT_REJ_BACKLOG: c_int = 5;
pub const SRT_REJ_IPE: c_int = 6;
pub const SRT_REJ_CLOSE: c_int = 7;
pub const SRT_REJ_VERSION: c_int = 8;
pub const SRT_REJ_RDVCOOKIE: c_int = 9;
pub const SRT_REJ_BADSECRET: c_int = 10;
pub const SRT_REJ_UNSECURE: c_int = 11;
pub const SRT_REJ_MESSAGEAPI: c_int = 12;
pub const SRT_REJ_CONGESTION: c_int = 13;
pub const SRT_REJ_FILTER: c_int = 14;
pub const SRT_REJ_GROUP: c_int = 15;
pub const SRT_REJ_TIMEOUT: c_int = 16;
/// Reject codes from here on are the predefined server codes (HTTP-like).
pub const SRT_REJC_PREDEFINED: c_int = 1000;
/// Reject codes from here on are for applications.
pub const SRT_REJC_USERDEFINED: c_int = 2000;

// SRT_EPOLL_OPT
pub const SRT_EPOLL_IN: c_int = 0x1;
pub const SRT_EPOLL_OUT: c_int = 0x4;
pub const SRT_EPOLL_ERR: c_int = 0x8;
pub const SRT_EPOLL_ET: c_int = 1 << 31;
// SRT_EPOLL_FLAGS
pub const SRT_EPOLL_ENABLE_EMPTY: i32 = 1;

/// `SRT_EPOLL_EVENT`: one event `srt_epoll_uwait` reports.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct SRT_EPOLL_EVENT {
    pub fd: SRTSOCKET,
    pub events: c_int,
}

/// `SRT_MSGCTRL`: what comes with a message.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct SRT_MSGCTRL {
    pub flags: c_int,
    pub msgttl: c_int,
    pub inorder: c_int,
    pub boundary: c_int,
    pub srctime: i64,
    pub pktseq: i32,
    pub msgno: i32,
    pub grpdata: *mut c_void,
    pub grpdata_size: usize,
}

impl Default for SRT_MSGCTRL {
    /// The values of libsrt's `srt_msgctrl_default`.
    fn default() -> Self {
        Self {
            flags: 0,
            msgttl: -1,
            inorder: 0,
            boundary: 0,
            srctime: 0,
            pktseq: -1,
            msgno: -1,
            grpdata: std::ptr::null_mut(),
            grpdata_size: 0,
        }
    }
}

/// `SRT_TRACEBSTATS` (`struct CBytePerfMon`), as in libsrt 1.5.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct SRT_TRACEBSTATS {
    // global measurements
    pub msTimeStamp: i64,
    pub pktSentTotal: i64,
    pub pktRecvTotal: i64,
    pub pktSndLossTotal: c_int,
    pub pktRcvLossTotal: c_int,
    pub pktRetransTotal: c_int,
    pub pktSentACKTotal: c_int,
    pub pktRecvACKTotal: c_int,
    pub pktSentNAKTotal: c_int,
    pub pktRecvNAKTotal: c_int,
    pub usSndDurationTotal: i64,
    pub pktSndDropTotal: c_int,
    pub pktRcvDropTotal: c_int,
    pub pktRcvUndecryptTotal: c_int,
    pub byteSentTotal: u64,
    pub byteRecvTotal: u64,
    pub byteRcvLossTotal: u64,
    pub byteRetransTotal: u64,
    pub byteSndDropTotal: u64,
    pub byteRcvDropTotal: u64,
    pub byteRcvUndecryptTotal: u64,
    // local measurements
    pub pktSent: i64,
    pub pktRecv: i64,
    pub pktSndLoss: c_int,
    pub pktRcvLoss: c_int,
    pub pktRetrans: c_int,
    pub pktRcvRetrans: c_int,
    pub pktSentACK: c_int,
    pub pktRecvACK: c_int,
    pub pktSentNAK: c_int,
    pub pktRecvNAK: c_int,
    pub mbpsSendRate: f64,
    pub mbpsRecvRate: f64,
    pub usSndDuration: i64,
    pub pktReorderDistance: c_int,
    pub pktRcvAvgBelatedTime: f64,
    pub pktRcvBelated: i64,
    pub pktSndDrop: c_int,
    pub pktRcvDrop: c_int,
    pub pktRcvUndecrypt: c_int,
    pub byteSent: u64,
    pub byteRecv: u64,
    pub byteRcvLoss: u64,
    pub byteRetrans: u64,
    pub byteSndDrop: u64,
    pub byteRcvDrop: u64,
    pub byteRcvUndecrypt: u64,
    // instant measurements
    pub usPktSndPeriod: f64,
    pub pktFlowWindow: c_int,
    pub pktCongestionWindow: c_int,
    pub pktFlightSize: c_int,
    pub msRTT: f64,
    pub mbpsBandwidth: f64,
    pub byteAvailSndBuf: c_int,
    pub byteAvailRcvBuf: c_int,
    pub mbpsMaxBW: f64,
    pub byteMSS: c_int,
    pub pktSndBuf: c_int,
    pub byteSndBuf: c_int,
    pub msSndBuf: c_int,
    pub msSndTsbPdDelay: c_int,
    pub pktRcvBuf: c_int,
    pub byteRcvBuf: c_int,
    pub msRcvBuf: c_int,
    pub msRcvTsbPdDelay: c_int,
    pub pktSndFilterExtraTotal: c_int,
    pub pktRcvFilterExtraTotal: c_int,
    pub pktRcvFilterSupplyTotal: c_int,
    pub pktRcvFilterLossTotal: c_int,
    pub pktSndFilterExtra: c_int,
    pub pktRcvFilterExtra: c_int,
    pub pktRcvFilterSupply: c_int,
    pub pktRcvFilterLoss: c_int,
    pub pktReorderTolerance: c_int,
    // new in 1.5.0
    pub pktSentUniqueTotal: i64,
    pub pktRecvUniqueTotal: i64,
    pub byteSentUniqueTotal: u64,
    pub byteRecvUniqueTotal: u64,
    pub pktSentUnique: i64,
    pub pktRecvUnique: i64,
    pub byteSentUnique: u64,
    pub byteRecvUnique: u64,
}

/// `srt_listen_callback_fn`: called on libsrt's thread for each caller's handshake;
/// returning -1 rejects it.
pub type srt_listen_callback_fn = unsafe extern "C" fn(
    opaque: *mut c_void,
    ns: SRTSOCKET,
    hsversion: c_int,
    peeraddr: *const sockaddr,
    streamid: *const c_char,
) -> c_int;

#[link(name = "srt")]
extern "C" {
    pub fn srt_startup() -> c_int;
    pub fn srt_cleanup() -> c_int;
    pub fn srt_getversion() -> u32;

    pub fn srt_create_socket() -> SRTSOCKET;
    pub fn srt_bind(u: SRTSOCKET, name: *const sockaddr, namelen: c_int) -> c_int;
    pub fn srt_listen(u: SRTSOCKET, backlog: c_int) -> c_int;
    pub fn srt_accept(u: SRTSOCKET, addr: *mut sockaddr, addrlen: *mut c_int) -> SRTSOCKET;
    pub fn srt_listen_callback(
        lsn: SRTSOCKET,
        hook_fn: Option<srt_listen_callback_fn>,
        hook_opaque: *mut c_void,
    ) -> c_int;
    pub fn srt_connect(u: SRTSOCKET, name: *const sockaddr, namelen: c_int) -> c_int;
    pub fn srt_rendezvous(
        u: SRTSOCKET,
        local_name: *const sockaddr,
        local_namelen: c_int,
        remote_name: *const sockaddr,
        remote_namelen: c_int,
    ) -> c_int;
    pub fn srt_close(u: SRTSOCKET) -> c_int;
    pub fn srt_getpeername(u: SRTSOCKET, name: *mut sockaddr, namelen: *mut c_int) -> c_int;
    pub fn srt_getsockname(u: SRTSOCKET, name: *mut sockaddr, namelen: *mut c_int) -> c_int;
    pub fn srt_getsockflag(
        u: SRTSOCKET,
        opt: c_int,
        optval: *mut c_void,
        optlen: *mut c_int,
    ) -> c_int;
    pub fn srt_setsockflag(u: SRTSOCKET, opt: c_int, optval: *const c_void, optlen: c_int)
        -> c_int;

    pub fn srt_sendmsg2(
        u: SRTSOCKET,
        buf: *const c_char,
        len: c_int,
        mctrl: *mut SRT_MSGCTRL,
    ) -> c_int;
    pub fn srt_recvmsg2(
        u: SRTSOCKET,
        buf: *mut c_char,
        len: c_int,
        mctrl: *mut SRT_MSGCTRL,
    ) -> c_int;

    pub fn srt_getlasterror_str() -> *const c_char;
    pub fn srt_getlasterror(errno_loc: *mut c_int) -> c_int;
    pub fn srt_clearlasterror();

    pub fn srt_bistats(
        u: SRTSOCKET,
        perf: *mut SRT_TRACEBSTATS,
        clear: c_int,
        instantaneous: c_int,
    ) -> c_int;
    pub fn srt_getsockstate(u: SRTSOCKET) -> c_int;

    pub fn srt_epoll_create() -> c_int;
    pub fn srt_epoll_add_usock(eid: c_int, u: SRTSOCKET, events: *const c_int) -> c_int;
    pub fn srt_epoll_remove_usock(eid: c_int, u: SRTSOCKET) -> c_int;
    pub fn srt_epoll_uwait(
        eid: c_int,
        fds_set: *mut SRT_EPOLL_EVENT,
        fds_size: c_int,
        ms_timeout: i64,
    ) -> c_int;
    pub fn srt_epoll_set(eid: c_int, flags: i32) -> i32;
    pub fn srt_epoll_release(eid: c_int) -> c_int;

    pub fn srt_setloglevel(ll: c_int);

    pub fn srt_getrejectreason(sock: SRTSOCKET) -> c_int;
    pub fn srt_setrejectreason(sock: SRTSOCKET, value: c_int) -> c_int;
    pub fn srt_rejectreason_str(id: c_int) -> *const c_char;
}
