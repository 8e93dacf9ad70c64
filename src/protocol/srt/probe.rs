//! The SRT caller's probe: one induction handshake datagram, which every SRT listener
//! answers at once and without keeping any state (libsrt answers it with a SYN cookie).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use bytes::BytesMut;
use srt_protocol::options::{PacketCount, PacketSize};
use srt_protocol::packet::{
    ControlPacket, ControlTypes, HandshakeControlInfo, HandshakeVsInfo, Packet, SeqNumber,
    ShakeType, SocketId, SocketType, TimeStamp,
};
use tokio::net::UdpSocket;

use super::params::{Defaults, SrtParams};
use super::SrtMode;
use crate::connection::{Probe, ProbeFuture, ProbeOutcome, Target};

/// The SRT caller's [`Probe`]: one induction handshake datagram to the target's
/// address, answered by any SRT listener (libsrt's or srt-tokio's) at once. Made by
/// [`SrtConnector::probe`](super::SrtConnector::probe), with the connector's defaults
/// for targets that set no mode.
///
/// Only caller targets are probed: a listener waits for its peer, and a rendezvous
/// peer answers only its own handshake, so for them the probe returns `None` and the
/// retry layer waits out its delay as without a probe.
#[derive(Clone)]
pub struct SrtProbe {
    defaults: Defaults,
}

impl fmt::Debug for SrtProbe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SrtProbe")
            .field("mode", &self.defaults.mode)
            .field("timeout", &self.defaults.probe_timeout)
            .finish()
    }
}

impl SrtProbe {
    pub(crate) fn new(defaults: Defaults) -> Self {
        Self { defaults }
    }

    /// How long each probe waits for an answer.
    pub fn timeout(&self) -> Duration {
        self.defaults.probe_timeout
    }
}

impl Probe<Target> for SrtProbe {
    fn probe(&self, target: &Target) -> Option<ProbeFuture> {
        let params = SrtParams::from_target(target, &self.defaults).ok()?;
        if params.mode != SrtMode::Caller {
            return None;
        }
        let remote = params.address;
        let timeout = self.defaults.probe_timeout;
        Some(Box::pin(async move {
            let local: SocketAddr = if remote.is_ipv6() {
                (Ipv6Addr::UNSPECIFIED, 0).into()
            } else {
                (Ipv4Addr::UNSPECIFIED, 0).into()
            };
            let Ok(socket) = UdpSocket::bind(local).await else {
                return ProbeOutcome::NoAnswer;
            };
            // Connected, so that a closed port's ICMP error ends the wait at once.
            if socket.connect(remote).await.is_err() {
                return ProbeOutcome::NoAnswer;
            }
            induction(&socket, remote, timeout).await
        }))
    }
}

/// Send one induction handshake from `socket` to `remote` and wait up to `timeout` for
/// a handshake from `remote`: `Answered` if one comes (an induction response, or a
/// rejection: either way an SRT listener is there), else `NoAnswer`.
pub(crate) async fn induction(
    socket: &UdpSocket,
    remote: SocketAddr,
    timeout: Duration,
) -> ProbeOutcome {
    inductions(socket, remote, timeout, 1).await
}

/// As [`induction`], sending `sends` inductions spread evenly over `timeout` (the
/// second one halfway), so that one lost datagram, or a listener a moment late to
/// bind, does not fail an attempt.
pub(crate) async fn inductions(
    socket: &UdpSocket,
    remote: SocketAddr,
    timeout: Duration,
    sends: u32,
) -> ProbeOutcome {
    let local_ip = socket.local_addr().map_or_else(
        |_| unspecified(remote),
        |a| {
            if a.ip().is_unspecified() {
                unspecified(remote)
            } else {
                a.ip()
            }
        },
    );
    let mut out = BytesMut::with_capacity(64);
    induction_packet(local_ip).serialize(&mut out);
    let sends = sends.max(1);
    let every = timeout / sends;
    let sending = async {
        for i in 0..sends {
            if i > 0 {
                tokio::time::sleep(every).await;
            }
            if socket.send_to(&out, remote).await.is_err() {
                break;
            }
        }
        std::future::pending::<()>().await;
    };
    let answer = async {
        let mut buf = [0u8; 1500];
        loop {
            let (len, from) = socket.recv_from(&mut buf).await?;
            if from != remote {
                continue;
            }
            if is_handshake(&buf[..len], remote.is_ipv6()) {
                return Ok::<_, std::io::Error>(());
            }
        }
    };
    let answered = async {
        tokio::select! {
            answer = answer => answer,
            () = sending => unreachable!("sending never ends"),
        }
    };
    match tokio::time::timeout(timeout, answered).await {
        Ok(Ok(())) => ProbeOutcome::Answered,
        // No answer in time, or the port is closed (an ICMP error on a connected socket).
        _ => ProbeOutcome::NoAnswer,
    }
}

fn unspecified(remote: SocketAddr) -> IpAddr {
    if remote.is_ipv6() {
        Ipv6Addr::UNSPECIFIED.into()
    } else {
        Ipv4Addr::UNSPECIFIED.into()
    }
}

/// The first datagram of an SRT caller's handshake (version 4 induction, as libsrt's
/// callers send it): it asks the listener for a cookie, which the listener gives
/// without keeping state.
fn induction_packet(local_ip: IpAddr) -> Packet {
    Packet::Control(ControlPacket {
        timestamp: TimeStamp::from_micros(0),
        dest_sockid: SocketId(0),
        control_type: ControlTypes::Handshake(HandshakeControlInfo {
            init_seq_num: SeqNumber::new_truncate(fastrand::u32(..)),
            max_packet_size: PacketSize(1500),
            max_flow_size: PacketCount(8192),
            shake_type: ShakeType::Induction,
            socket_id: SocketId(fastrand::u32(1..)),
            syn_cookie: 0,
            peer_addr: local_ip,
            info: HandshakeVsInfo::V4(SocketType::Datagram),
        }),
    })
}

/// Whether `datagram` is an SRT handshake (of any kind).
fn is_handshake(datagram: &[u8], ipv6: bool) -> bool {
    let mut buf = datagram;
    matches!(
        Packet::parse(&mut buf, ipv6),
        Ok(Packet::Control(ControlPacket {
            control_type: ControlTypes::Handshake(_),
            ..
        }))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_probe_is_one_small_induction_handshake() {
        let mut out = BytesMut::new();
        induction_packet(Ipv4Addr::LOCALHOST.into()).serialize(&mut out);
        // A control packet header (16 bytes) and a v4 handshake (48 bytes).
        assert_eq!(out.len(), 64);
        assert!(is_handshake(&out, false));
        assert!(!is_handshake(&out[..10], false));
        assert!(!is_handshake(b"not srt at all, just bytes", false));
    }
}
