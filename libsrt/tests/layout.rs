//! The hand-written declarations against the system's `srt/srt.h`: a C program
//! compiled here with the system's compiler prints every constant, struct size and
//! field offset this crate declares, and each must match.

use std::mem::{offset_of, size_of};
use std::process::Command;

use mirror_libsrt::sys;

/// (C expression, value in Rust).
fn expected() -> Vec<(String, i64)> {
    let mut all: Vec<(String, i64)> = Vec::new();
    let mut c = |name: &str, value: i64| all.push((name.to_owned(), value));
    macro_rules! constants {
        ($($name:ident),* $(,)?) => {$( c(stringify!($name), i64::from(sys::$name)); )*};
    }
    constants!(
        SRT_INVALID_SOCK,
        SRT_ERROR,
        SRTS_INIT,
        SRTS_OPENED,
        SRTS_LISTENING,
        SRTS_CONNECTING,
        SRTS_CONNECTED,
        SRTS_BROKEN,
        SRTS_CLOSING,
        SRTS_CLOSED,
        SRTS_NONEXIST,
        SRTO_SNDSYN,
        SRTO_RCVSYN,
        SRTO_LINGER,
        SRTO_RENDEZVOUS,
        SRTO_REUSEADDR,
        SRTO_EVENT,
        SRTO_SNDDATA,
        SRTO_RCVDATA,
        SRTO_LATENCY,
        SRTO_PASSPHRASE,
        SRTO_PBKEYLEN,
        SRTO_CONNTIMEO,
        SRTO_RCVLATENCY,
        SRTO_PEERLATENCY,
        SRTO_STREAMID,
        SRTO_PAYLOADSIZE,
        SRTO_TRANSTYPE,
        SRTO_PEERIDLETIMEO,
        SRTO_GROUPCONNECT,
        SRTO_PACKETFILTER,
        SRTT_LIVE,
        SRT_SUCCESS,
        SRT_ECONNSETUP,
        SRT_ENOSERVER,
        SRT_ECONNREJ,
        SRT_ESOCKFAIL,
        SRT_ESECFAIL,
        SRT_ESCLOSED,
        SRT_ECONNFAIL,
        SRT_ECONNLOST,
        SRT_ENOCONN,
        SRT_ETHREAD,
        SRT_EINVOP,
        SRT_EBOUNDSOCK,
        SRT_EINVPARAM,
        SRT_EINVSOCK,
        SRT_EDUPLISTEN,
        SRT_ELARGEMSG,
        SRT_EBINDCONFLICT,
        SRT_EASYNCFAIL,
        SRT_EASYNCSND,
        SRT_EASYNCRCV,
        SRT_ETIMEOUT,
        SRT_ECONGEST,
        SRT_REJ_UNKNOWN,
        SRT_REJ_SYSTEM,
        SRT_REJ_PEER,
        SRT_REJ_RESOURCE,
        SRT_REJ_ROGUE,
        SRT_REJ_BACKLOG,
        SRT_REJ_IPE,
        SRT_REJ_CLOSE,
        SRT_REJ_VERSION,
        SRT_REJ_RDVCOOKIE,
        SRT_REJ_BADSECRET,
        SRT_REJ_UNSECURE,
        SRT_REJ_MESSAGEAPI,
        SRT_REJ_CONGESTION,
        SRT_REJ_FILTER,
        SRT_REJ_GROUP,
        SRT_REJ_TIMEOUT,
        SRT_REJC_PREDEFINED,
        SRT_REJC_USERDEFINED,
        SRT_EPOLL_IN,
        SRT_EPOLL_OUT,
        SRT_EPOLL_ERR,
        SRT_EPOLL_ET,
        SRT_EPOLL_ENABLE_EMPTY,
    );
    macro_rules! layout {
        ($c_type:literal, $rust:ty, [$($field:ident),* $(,)?]) => {
            c(concat!("sizeof(", $c_type, ")"), size_of::<$rust>() as i64);
            $( c(concat!("offsetof(", $c_type, ", ", stringify!($field), ")"),
                 offset_of!($rust, $field) as i64); )*
        };
    }
    layout!("SRT_EPOLL_EVENT", sys::SRT_EPOLL_EVENT, [fd, events]);
    layout!(
        "SRT_MSGCTRL",
        sys::SRT_MSGCTRL,
        [
            flags,
            msgttl,
            inorder,
            boundary,
            srctime,
            pktseq,
            msgno,
            grpdata,
            grpdata_size
        ]
    );
    layout!(
        "SRT_TRACEBSTATS",
        sys::SRT_TRACEBSTATS,
        [
            msTimeStamp,
            pktSentTotal,
            pktRecvTotal,
            pktSndLossTotal,
            pktRcvLossTotal,
            pktRetransTotal,
            pktSentACKTotal,
            pktRecvACKTotal,
            pktSentNAKTotal,
            pktRecvNAKTotal,
            usSndDurationTotal,
            pktSndDropTotal,
            pktRcvDropTotal,
            pktRcvUndecryptTotal,
            byteSentTotal,
            byteRecvTotal,
            byteRcvLossTotal,
            byteRetransTotal,
            byteSndDropTotal,
            byteRcvDropTotal,
            byteRcvUndecryptTotal,
            pktSent,
            pktRecv,
            pktSndLoss,
            pktRcvLoss,
            pktRetrans,
            pktRcvRetrans,
            pktSentACK,
            pktRecvACK,
            pktSentNAK,
            pktRecvNAK,
            mbpsSendRate,
            mbpsRecvRate,
            usSndDuration,
            pktReorderDistance,
            pktRcvAvgBelatedTime,
            pktRcvBelated,
            pktSndDrop,
            pktRcvDrop,
            pktRcvUndecrypt,
            byteSent,
            byteRecv,
            byteRcvLoss,
            byteRetrans,
            byteSndDrop,
            byteRcvDrop,
            byteRcvUndecrypt,
            usPktSndPeriod,
            pktFlowWindow,
            pktCongestionWindow,
            pktFlightSize,
            msRTT,
            mbpsBandwidth,
            byteAvailSndBuf,
            byteAvailRcvBuf,
            mbpsMaxBW,
            byteMSS,
            pktSndBuf,
            byteSndBuf,
            msSndBuf,
            msSndTsbPdDelay,
            pktRcvBuf,
            byteRcvBuf,
            msRcvBuf,
            msRcvTsbPdDelay,
            pktSndFilterExtraTotal,
            pktRcvFilterExtraTotal,
            pktRcvFilterSupplyTotal,
            pktRcvFilterLossTotal,
            pktSndFilterExtra,
            pktRcvFilterExtra,
            pktRcvFilterSupply,
            pktRcvFilterLoss,
            pktReorderTolerance,
            pktSentUniqueTotal,
            pktRecvUniqueTotal,
            byteSentUniqueTotal,
            byteRecvUniqueTotal,
            pktSentUnique,
            pktRecvUnique,
            byteSentUnique,
            byteRecvUnique,
        ]
    );
    all
}

#[test]
fn declarations_match_the_system_header() {
    let expected = expected();
    let dir = tempdir();
    let source = dir.join("layout.c");
    let mut program = String::from(
        "#include <stdio.h>\n#include <stddef.h>\n#include <srt/srt.h>\nint main(void) {\n",
    );
    for (expression, _) in &expected {
        program.push_str(&format!(
            "  printf(\"%lld\\n\", (long long)(int)({expression}));\n"
        ));
    }
    program.push_str("  return 0;\n}\n");
    std::fs::write(&source, program).unwrap();
    let binary = dir.join("layout");
    let compiler = std::env::var("CC").unwrap_or_else(|_| "cc".to_owned());
    let include = pkg_config_cflags();
    let built = Command::new(&compiler)
        .args(include.split_whitespace())
        .arg(&source)
        .arg("-o")
        .arg(&binary)
        .output()
        .unwrap_or_else(|e| panic!("cannot run the C compiler {compiler:?}: {e}"));
    assert!(
        built.status.success(),
        "the layout check did not compile against srt/srt.h (is libsrt-openssl-dev installed?):\n{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let run = Command::new(&binary).output().unwrap();
    assert!(run.status.success());
    let values: Vec<i64> = String::from_utf8(run.stdout)
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    assert_eq!(values.len(), expected.len());
    let wrong: Vec<String> = expected
        .iter()
        .zip(&values)
        .filter(|((_, rust), c)| rust != *c)
        .map(|((name, rust), c)| format!("{name}: C says {c}, Rust says {rust}"))
        .collect();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

fn pkg_config_cflags() -> String {
    Command::new("pkg-config")
        .args(["--cflags", "srt"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

fn tempdir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("mirror-libsrt-layout-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
