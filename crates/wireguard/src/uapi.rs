//! The WireGuard cross-platform userspace API (UAPI): a line protocol on the Unix socket
//! `/var/run/wireguard/<name>.sock`, spoken by boringtun, wireguard-go and `wg`.
//!
//! A request is `get=1` or `set=1` followed by `key=value` lines and a blank line; the answer is
//! `key=value` lines (for `get`) and `errno=N` and a blank line. Keys are hex.
//!
//! Implementations differ in what `get` reports, and the parser here accepts both forms:
//! - boringtun reports `own_public_key=` instead of `private_key=`;
//! - boringtun reports `last_handshake_time_sec` as seconds *since* the handshake, the kernel and
//!   wireguard-go as a Unix time; [`handshake_time`] tells them apart.

use std::io::{BufRead as _, BufReader, BufWriter, Write as _};
use std::net::SocketAddr;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ipnet::IpNet;

use crate::error::{errno_name, EACCES, EADDRINUSE, EPERM};
use crate::key::{hex_decode, PrivateKey};
use crate::{Error, PeerStats, PublicKey};

/// Where every UAPI implementation puts its sockets (on Linux; not per network namespace).
pub(crate) const SOCKET_DIR: &str = "/var/run/wireguard";

/// Handshake times below this (2001-09-09 as a Unix time, 31 years as an age) are ages.
const UNIX_TIME_FLOOR: u64 = 1_000_000_000;

/// How long a `get` or `set` may wait for the device: a transaction adding 100,000 peers to
/// boringtun takes about 10 s (docs/wireguard.md).
const IO_TIMEOUT: Duration = Duration::from_secs(120);

/// How long a health probe waits: the device answers it at once unless it is stuck.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// The socket path of interface `name`.
pub(crate) fn socket_path(name: &str) -> PathBuf {
    Path::new(SOCKET_DIR).join(format!("{name}.sock"))
}

/// Converts `last_handshake_time_sec`/`_nsec` to a time. Zero is "never". A value far below any
/// plausible Unix time is boringtun's "seconds ago"; anything else is a Unix time.
pub(crate) fn handshake_time(sec: u64, nsec: u32, now: SystemTime) -> Option<SystemTime> {
    if sec == 0 && nsec == 0 {
        return None;
    }
    let value = Duration::new(sec, nsec.min(999_999_999));
    if sec < UNIX_TIME_FLOOR {
        Some(now.checked_sub(value).unwrap_or(UNIX_EPOCH))
    } else {
        UNIX_EPOCH.checked_add(value)
    }
}

/// What `get=1` reported.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct DeviceState {
    /// From `own_public_key` (boringtun) or derived from `private_key` (everyone else).
    pub public_key: Option<PublicKey>,
    pub listen_port: Option<u16>,
    pub peers: Vec<PeerState>,
}

/// One peer from `get=1`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PeerState {
    pub stats: PeerStats,
    pub persistent_keepalive: Option<u16>,
}

/// A streaming parser for the answer to `get=1`: one call per line.
pub(crate) struct GetParser {
    now: SystemTime,
    state: DeviceState,
    current: Option<(PeerState, u64, u32)>,
    line: usize,
}

impl GetParser {
    pub(crate) fn new(now: SystemTime) -> Self {
        GetParser {
            now,
            state: DeviceState::default(),
            current: None,
            line: 0,
        }
    }

    /// Feeds one line (without its newline). Returns the errno once the `errno=` line arrives.
    pub(crate) fn line(&mut self, line: &str) -> Result<Option<i32>, Error> {
        self.line += 1;
        if line.is_empty() {
            return Ok(None);
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(self.bad(line, "no `=`"));
        };
        match key {
            "errno" => {
                self.finish_peer();
                return value
                    .parse()
                    .map(Some)
                    .map_err(|_| self.bad(line, "errno is not a number"));
            }
            "private_key" => {
                let bytes = hex_decode(value)
                    .ok_or_else(|| self.bad("private_key=***", "not 64 hex digits"))?;
                // All zeros is "no key" (the kernel reports it so).
                if bytes != [0; 32] {
                    self.state.public_key = Some(PrivateKey::from_bytes(bytes).public_key());
                }
            }
            "own_public_key" => self.state.public_key = Some(PublicKey::from_hex(value)?),
            "listen_port" => {
                self.state.listen_port =
                    Some(value.parse().map_err(|_| self.bad(line, "not a port"))?)
            }
            "public_key" => {
                self.finish_peer();
                let stats = PeerStats {
                    public_key: PublicKey::from_hex(value)?,
                    endpoint: None,
                    allowed_ips: Vec::new(),
                    last_handshake: None,
                    rx_bytes: 0,
                    tx_bytes: 0,
                };
                self.current = Some((
                    PeerState {
                        stats,
                        persistent_keepalive: None,
                    },
                    0,
                    0,
                ));
            }
            _ => {
                let Some((peer, sec, nsec)) = self.current.as_mut() else {
                    // Interface-level keys this crate does not use (fwmark, ...).
                    return Ok(None);
                };
                let number = || value.parse::<u64>().ok();
                match key {
                    "endpoint" => {
                        peer.stats.endpoint = Some(
                            value
                                .parse::<SocketAddr>()
                                .map_err(|_| bad_line(self.line, line, "not a socket address"))?,
                        )
                    }
                    "allowed_ip" => {
                        let net: IpNet = value
                            .parse()
                            .map_err(|_| bad_line(self.line, line, "not a network"))?;
                        peer.stats.allowed_ips.push(net.trunc());
                    }
                    "last_handshake_time_sec" => {
                        *sec = number().ok_or_else(|| bad_line(self.line, line, "not a number"))?
                    }
                    "last_handshake_time_nsec" => {
                        *nsec = value
                            .parse()
                            .map_err(|_| bad_line(self.line, line, "not a number"))?
                    }
                    "rx_bytes" => {
                        peer.stats.rx_bytes =
                            number().ok_or_else(|| bad_line(self.line, line, "not a number"))?
                    }
                    "tx_bytes" => {
                        peer.stats.tx_bytes =
                            number().ok_or_else(|| bad_line(self.line, line, "not a number"))?
                    }
                    "persistent_keepalive_interval" => {
                        let seconds: u16 = value
                            .parse()
                            .map_err(|_| bad_line(self.line, line, "not a number"))?;
                        peer.persistent_keepalive = Some(seconds).filter(|&s| s != 0);
                    }
                    // preshared_key, protocol_version and keys from later protocol versions.
                    _ => {}
                }
            }
        }
        Ok(None)
    }

    fn finish_peer(&mut self) {
        if let Some((mut peer, sec, nsec)) = self.current.take() {
            peer.stats.last_handshake = handshake_time(sec, nsec, self.now);
            self.state.peers.push(peer);
        }
    }

    pub(crate) fn finish(mut self) -> DeviceState {
        self.finish_peer();
        self.state
    }

    fn bad(&self, line: &str, message: &str) -> Error {
        bad_line(self.line, line, message)
    }
}

fn bad_line(number: usize, line: &str, message: &str) -> Error {
    Error::Uapi(format!(
        "unreadable answer to get, line {number} {line:?}: {message}"
    ))
}

/// Parses a whole answer to `get=1` (used by tests; the client streams).
#[cfg(test)]
pub(crate) fn parse_get(text: &str, now: SystemTime) -> Result<(DeviceState, i32), Error> {
    let mut parser = GetParser::new(now);
    for line in text.lines() {
        if let Some(errno) = parser.line(line)? {
            return Ok((parser.finish(), errno));
        }
    }
    Err(Error::Uapi("answer without errno".into()))
}

/// The error for a non-zero `errno=` from interface `name`.
pub(crate) fn errno_error(name: &str, op: &str, errno: i32, listen_port: Option<u16>) -> Error {
    match errno.abs() {
        EADDRINUSE if listen_port.is_some() => Error::AddressInUse(listen_port.unwrap_or_default()),
        EPERM | EACCES => Error::NoPermission(format!("{op} on interface {name}: errno={errno}")),
        code => Error::Uapi(format!(
            "{op} on interface {name} failed: errno={errno} ({})",
            errno_name(code)
        )),
    }
}

/// A UAPI client for one interface's socket. One connection per request.
#[derive(Debug, Clone)]
pub(crate) struct Client {
    name: String,
    path: PathBuf,
}

impl Client {
    pub(crate) fn new(name: &str) -> Self {
        Client {
            name: name.to_owned(),
            path: socket_path(name),
        }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    fn connect(&self, timeout: Duration) -> Result<UnixStream, Error> {
        let stream = UnixStream::connect(&self.path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
                Error::InterfaceGone(format!(
                    "interface {} is gone: its UAPI socket {} does not answer ({e})",
                    self.name,
                    self.path.display()
                ))
            }
            _ => crate::error::os_error(format!("connecting to {}", self.path.display()), e),
        })?;
        let io = |e| crate::error::io_context(format!("UAPI socket {}", self.path.display()), e);
        stream.set_read_timeout(Some(timeout)).map_err(io)?;
        stream.set_write_timeout(Some(timeout)).map_err(io)?;
        Ok(stream)
    }

    /// `get=1`, parsed while it streams in.
    pub(crate) fn get(&self) -> Result<DeviceState, Error> {
        let stream = self.connect(IO_TIMEOUT)?;
        (&stream)
            .write_all(b"get=1\n\n")
            .map_err(|e| self.io_error("writing get", e))?;
        let mut reader = BufReader::with_capacity(1 << 16, &stream);
        let mut parser = GetParser::new(SystemTime::now());
        let mut line = String::new();
        loop {
            line.clear();
            let n = reader
                .read_line(&mut line)
                .map_err(|e| self.io_error("reading the answer to get", e))?;
            if n == 0 {
                return Err(self.closed("get"));
            }
            if let Some(errno) = parser.line(line.trim_end_matches('\n'))? {
                if errno != 0 {
                    return Err(errno_error(&self.name, "get", errno, None));
                }
                return Ok(parser.finish());
            }
        }
    }

    /// Sends `set=1` with `body` (complete `key=value\n` lines, without the closing blank line)
    /// and waits for its errno. The request text is not kept in errors: it may hold a key.
    pub(crate) fn set(&self, body: &str, listen_port: Option<u16>) -> Result<(), Error> {
        let stream = self.connect(IO_TIMEOUT)?;
        {
            let mut writer = BufWriter::with_capacity(1 << 16, &stream);
            writer
                .write_all(b"set=1\n")
                .and_then(|()| writer.write_all(body.as_bytes()))
                .and_then(|()| writer.write_all(b"\n"))
                .and_then(|()| writer.flush())
                .map_err(|e| self.io_error("writing set", e))?;
        }
        let mut reader = BufReader::new(&stream);
        let mut line = String::new();
        loop {
            line.clear();
            let n = reader
                .read_line(&mut line)
                .map_err(|e| self.io_error("reading the answer to set", e))?;
            if n == 0 {
                return Err(self.closed("set"));
            }
            if let Some(value) = line.trim_end().strip_prefix("errno=") {
                let errno: i32 = value.parse().map_err(|_| {
                    Error::Uapi(format!("unreadable errno {value:?} from {}", self.name))
                })?;
                return if errno == 0 {
                    Ok(())
                } else {
                    Err(errno_error(&self.name, "set", errno, listen_port))
                };
            }
        }
    }

    /// Whether the device's event loop answers, without making it list its peers: sends an
    /// operation other than `get`/`set`, which every implementation answers with `errno=N`
    /// (boringtun: `errno=5`; wireguard-go: an "invalid operation" errno) and nothing else.
    pub(crate) fn probe(&self) -> Result<(), Error> {
        let stream = self.connect(PROBE_TIMEOUT)?;
        let stuck = |e: std::io::Error| match e.kind() {
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
                Error::InterfaceGone(format!(
                    "interface {} is stuck: no answer on its UAPI socket within {}s",
                    self.name,
                    PROBE_TIMEOUT.as_secs()
                ))
            }
            _ => self.io_error("probing", e),
        };
        (&stream)
            .write_all(b"watchgrid_probe=1\n\n")
            .map_err(stuck)?;
        let mut reader = BufReader::new(&stream);
        let mut line = String::new();
        reader.read_line(&mut line).map_err(stuck)?;
        if line.starts_with("errno=") {
            Ok(())
        } else {
            Err(Error::InterfaceGone(format!(
                "interface {} does not answer on its UAPI socket (got {:?})",
                self.name,
                line.trim_end()
            )))
        }
    }

    /// Whether something answers on the socket: true if a connection is accepted.
    pub(crate) fn is_live(path: &Path) -> bool {
        UnixStream::connect(path).is_ok()
    }

    fn io_error(&self, what: &str, e: std::io::Error) -> Error {
        if matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ) {
            return Error::Uapi(format!(
                "{what} on {}: no answer within {}s",
                self.name,
                IO_TIMEOUT.as_secs()
            ));
        }
        crate::error::io_context(format!("{what} on {}", self.path.display()), e)
    }

    fn closed(&self, op: &str) -> Error {
        Error::Uapi(format!(
            "{op}: interface {} closed the UAPI connection without an answer",
            self.name
        ))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly on a bad fixture")]

    use super::*;
    use crate::key::hex_encode;

    const NOW: Duration = Duration::from_secs(1_750_000_000);

    fn now() -> SystemTime {
        UNIX_EPOCH + NOW
    }

    #[test]
    fn handshake_times() {
        let n = now();
        // (sec, nsec, expected seconds before now, or None for never)
        #[rustfmt::skip]
        let cases: &[(u64, u32, Option<Duration>)] = &[
            (0, 0, None),
            (0, 500_000_000, Some(Duration::from_millis(500))),                 // boringtun: just now
            (56, 0, Some(Duration::from_secs(56))),                              // boringtun: 56 s ago
            (86_400 * 365, 0, Some(Duration::from_secs(86_400 * 365))),          // boringtun: a year ago
            (1_749_999_990, 0, Some(Duration::from_secs(10))),                   // kernel: Unix time
            (1_749_999_990, 250_000_000, Some(Duration::from_millis(9_750))),
        ];
        for &(sec, nsec, ago) in cases {
            let got = handshake_time(sec, nsec, n);
            assert_eq!(got, ago.map(|a| n - a), "sec={sec} nsec={nsec}");
        }
    }

    fn hex(byte: u8) -> String {
        hex_encode(&[byte; 32])
    }

    #[test]
    fn parses_boringtun_get() {
        // What boringtun 0.7.1 answers: own_public_key, and handshake ages.
        let text = format!(
            "own_public_key={}\nlisten_port=51820\n\
             public_key={}\npersistent_keepalive_interval=25\nendpoint=192.0.2.1:51820\nallowed_ip=10.0.0.2/32\nallowed_ip=fd00::2/128\n\
             last_handshake_time_sec=3\nlast_handshake_time_nsec=5\nrx_bytes=1234\ntx_bytes=5678\n\
             public_key={}\nallowed_ip=10.0.0.3/32\nrx_bytes=0\ntx_bytes=0\n\
             errno=0\n\n",
            hex(1),
            hex(2),
            hex(3)
        );
        let (state, errno) = parse_get(&text, now()).unwrap();
        assert_eq!(errno, 0);
        assert_eq!(state.public_key, Some(PublicKey::from_bytes([1; 32])));
        assert_eq!(state.listen_port, Some(51820));
        assert_eq!(state.peers.len(), 2);
        let first = &state.peers[0];
        assert_eq!(first.stats.public_key, PublicKey::from_bytes([2; 32]));
        assert_eq!(
            first.stats.endpoint,
            Some("192.0.2.1:51820".parse().unwrap())
        );
        assert_eq!(
            first.stats.allowed_ips,
            vec![
                "10.0.0.2/32".parse().unwrap(),
                "fd00::2/128".parse().unwrap()
            ]
        );
        assert_eq!(
            first.stats.last_handshake,
            Some(now() - Duration::new(3, 5))
        );
        assert_eq!((first.stats.rx_bytes, first.stats.tx_bytes), (1234, 5678));
        assert_eq!(first.persistent_keepalive, Some(25));
        let second = &state.peers[1];
        assert_eq!(second.stats.last_handshake, None);
        assert_eq!(second.stats.endpoint, None);
        assert_eq!(second.persistent_keepalive, None);
    }

    #[test]
    fn parses_kernel_style_get() {
        // What the kernel (through wg) and wireguard-go answer: private_key, Unix times.
        let private = PrivateKey::from_bytes([7; 32]);
        let text = format!(
            "private_key={}\nlisten_port=4000\nfwmark=0\n\
             public_key={}\npreshared_key={}\nprotocol_version=1\nendpoint=[2001:db8::1]:4001\n\
             last_handshake_time_sec={}\nlast_handshake_time_nsec=0\ntx_bytes=10\nrx_bytes=20\n\
             persistent_keepalive_interval=0\nallowed_ip=10.1.0.0/16\n\
             errno=0\n\n",
            private.to_hex(),
            hex(9),
            hex(0),
            NOW.as_secs() - 60
        );
        let (state, _) = parse_get(&text, now()).unwrap();
        assert_eq!(state.public_key, Some(private.public_key()));
        let peer = &state.peers[0];
        assert_eq!(
            peer.stats.endpoint,
            Some("[2001:db8::1]:4001".parse().unwrap())
        );
        assert_eq!(
            peer.stats.last_handshake,
            Some(now() - Duration::from_secs(60))
        );
        assert_eq!((peer.stats.rx_bytes, peer.stats.tx_bytes), (20, 10));
        assert_eq!(peer.persistent_keepalive, None);
    }

    #[test]
    fn zero_private_key_is_no_key_and_host_bits_are_masked() {
        let text = format!(
            "private_key={}\npublic_key={}\nallowed_ip=10.0.0.5/24\nerrno=0\n",
            hex(0),
            hex(1)
        );
        let (state, _) = parse_get(&text, now()).unwrap();
        assert_eq!(state.public_key, None);
        assert_eq!(
            state.peers[0].stats.allowed_ips,
            vec!["10.0.0.0/24".parse().unwrap()]
        );
    }

    #[test]
    fn errors_and_garbage() {
        let (_, errno) = parse_get("errno=-22\n\n", now()).unwrap();
        assert_eq!(errno, -22);
        for bad in [
            "nonsense\nerrno=0\n",
            "own_public_key=zz\nerrno=0\n",
            "public_key=00\nerrno=0\n",
        ] {
            assert!(parse_get(bad, now()).is_err(), "{bad:?}");
        }
        let bad_endpoint = format!("public_key={}\nendpoint=nowhere\nerrno=0\n", hex(1));
        match parse_get(&bad_endpoint, now()) {
            Err(Error::Uapi(message)) => assert!(message.contains("line 2"), "{message}"),
            other => panic!("{other:?}"),
        }
        // A bad private key is not echoed.
        match parse_get("private_key=secretsecret\nerrno=0\n", now()) {
            Err(err) => assert!(!err.to_string().contains("secretsecret"), "{err}"),
            Ok(_) => panic!("accepted a bad private key"),
        }
        assert!(parse_get("listen_port=1\n", now()).is_err());
    }

    #[test]
    fn errno_mapping() {
        assert!(matches!(
            errno_error("wg0", "set", 98, Some(51820)),
            Error::AddressInUse(51820)
        ));
        assert!(matches!(
            errno_error("wg0", "set", -1, None),
            Error::NoPermission(_)
        ));
        match errno_error("wg0", "set", -22, None) {
            Error::Uapi(m) => assert!(m.contains("errno=-22 (EINVAL)") && m.contains("wg0"), "{m}"),
            other => panic!("{other:?}"),
        }
        match errno_error("wg0", "set", 98, None) {
            Error::Uapi(m) => assert!(m.contains("EADDRINUSE"), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn socket_paths() {
        assert_eq!(socket_path("wg0"), Path::new("/var/run/wireguard/wg0.sock"));
    }
}
