use std::collections::BTreeMap;
use std::net::SocketAddr;

use super::{ConnectionState, Protocol, Secret};

/// What a connector needs to (re)connect, seen by the layers that do not know the
/// protocol.
///
/// [`StateRestoreLayer`](crate::restore::StateRestoreLayer) keys saved state by
/// [`stream_id`](StreamTarget::stream_id) and hands it to
/// [`apply_state`](StreamTarget::apply_state) before each connect.
pub trait StreamTarget: Clone + Send + Sync + 'static {
    /// The stream's identity.
    fn stream_id(&self) -> &str;

    /// Take what a saved state says about the stream (codec, parameters).
    fn apply_state(&mut self, state: &ConnectionState);

    /// Whether a second connection to this target can be dialled while one is open
    /// (make-before-break): true for a caller, false for what binds a port (a
    /// listener, an RTP or UDP receiver). The default says false.
    fn dials(&self) -> bool {
        false
    }
}

/// The ready-made target: address, stream id, codec, parameters and an optional secret.
///
/// Configured values win over saved ones: [`apply_state`](StreamTarget::apply_state)
/// fills in the codec when none is configured and the parameters that are not set,
/// so a saved state resumes a stream without overriding what an operator changed. It
/// fills in only the parameters the protocol reads
/// ([`Protocol::parameter_names`]): anything else in a stored document (another
/// program's keys, saved statistics, a tampered file) is left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The stream's identity (SRT stream id, or a name for RTP/UDP).
    pub stream_id: String,
    /// The transport protocol.
    pub protocol: Protocol,
    /// The address to call, or to bind when listening.
    pub address: Option<SocketAddr>,
    /// The media codec, when known.
    pub codec: Option<String>,
    /// Protocol parameters (`mode`, `latency`, …), by name.
    pub parameters: BTreeMap<String, String>,
    /// The SRT passphrase, when the stream is encrypted. Never saved or printed.
    pub passphrase: Option<Secret>,
}

impl Target {
    /// A target for `stream_id` over `protocol`, with nothing else set.
    pub fn new(stream_id: impl Into<String>, protocol: Protocol) -> Self {
        Self {
            stream_id: stream_id.into(),
            protocol,
            address: None,
            codec: None,
            parameters: BTreeMap::new(),
            passphrase: None,
        }
    }

    /// Set the address.
    #[must_use]
    pub fn address(mut self, address: SocketAddr) -> Self {
        self.address = Some(address);
        self
    }

    /// Set the codec.
    #[must_use]
    pub fn codec(mut self, codec: impl Into<String>) -> Self {
        self.codec = Some(codec.into());
        self
    }

    /// Set one parameter.
    #[must_use]
    pub fn parameter(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.parameters.insert(name.into(), value.into());
        self
    }

    /// Set the passphrase.
    #[must_use]
    pub fn passphrase(mut self, passphrase: Secret) -> Self {
        self.passphrase = Some(passphrase);
        self
    }
}

impl StreamTarget for Target {
    fn stream_id(&self) -> &str {
        &self.stream_id
    }

    /// SRT callers and rendezvous (not listeners) and in-process targets dial; RTP
    /// and UDP bind.
    fn dials(&self) -> bool {
        match self.protocol {
            Protocol::Srt => self.parameters.get("mode").map(String::as_str) != Some("listener"),
            Protocol::InProcess => true,
            Protocol::Rtp | Protocol::Udp => false,
        }
    }

    fn apply_state(&mut self, state: &ConnectionState) {
        if self.codec.is_none() {
            self.codec.clone_from(&state.codec);
        }
        let own = self.protocol.parameter_names();
        for (name, value) in &state.parameters {
            if own.is_some_and(|own| !own.contains(&name.as_str())) {
                continue;
            }
            self.parameters
                .entry(name.clone())
                .or_insert_with(|| value.clone());
        }
    }
}
