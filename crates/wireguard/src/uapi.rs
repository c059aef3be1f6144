//! The WireGuard cross-platform userspace API (UAPI): a line protocol on the Unix socket
//! `/var/run/wireguard/<name>.sock`, spoken by boringtun, wireguard-go and `wg`.
//!
//! A request is `get=1` or `set=1` followed by `key=value` lines and a blank line; the answer is
//! `key=value` lines (for `get`) and `errno=N` and a blank line. Keys are hex.
//!
//! Implementations differ in what `get` reports, and the parser here accepts both forms:
//! - boringtun reports `own_public_key=` instead of `private_key=` (which also tells us which
//!   implementation answers: only the others update a peer in place, see `userspace.rs`);
//! - boringtun reports `last_handshake_time_sec` as seconds *since* the handshake, the kernel and
//!   wireguard-go as a Unix time; [`handshake_time`] tells them apart.

use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::net::SocketAddr;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ipnet::IpNet;

use crate::error::{errno_name, EACCES, EADDRINUSE, EPERM};
use crate::key::{hex_decode, PrivateKey};
use crate::{Error, PeerStats, PublicKey};

/// Where every UAPI implementation puts its sockets (on Linux; not per network namespace).
pub(crate) const SOCKET_DIR: &str = "/var/run/wireguard";

/// Handshake times below this (2001-09-09 as a Unix time, 31 years as an age) are ages.
const UNIX_TIME_FLOOR: u64 = 1_000_000_000;

/// How long each read of a `get` answer may wait: a live device starts answering at once and
/// streams without pause (100,000 peers in 0.25 s), so silence this long means it is stuck.
pub(crate) const GET_TIMEOUT: Duration = Duration::from_secs(5);

/// The part of a `set`'s time limit that does not depend on its size (see [`set_timeout`]).
const SET_TIMEOUT_BASE: Duration = Duration::from_secs(30);

/// How long a health probe waits: the device answers it at once unless it is stuck.
pub(crate) const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// How long `connect` may wait for a place in the listener's backlog.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

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
    /// The device did not report `own_public_key=`, so it is not boringtun (wireguard-go,
    /// say, which reports `private_key=` once it has a key): it updates peers in place and
    /// refuses boringtun's `remove=false` workaround.
    pub updates_in_place: bool,
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
    /// Saw `own_public_key=`, which only boringtun reports.
    boringtun: bool,
}

impl GetParser {
    pub(crate) fn new(now: SystemTime) -> Self {
        GetParser {
            now,
            state: DeviceState::default(),
            current: None,
            line: 0,
            boringtun: false,
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
            "own_public_key" => {
                self.state.public_key = Some(PublicKey::from_hex(value)?);
                self.boringtun = true;
            }
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
        // boringtun without a key reports no `own_public_key`, but it holds no peers then either
        // (the socket this crate serves refuses adding one before the key), so in-place
        // updates, which only ever add peers to it, are safe.
        self.state.updates_in_place = !self.boringtun;
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

/// Why reading or writing a UAPI exchange failed, before it is worded for the caller.
#[derive(Debug)]
pub(crate) enum Failure {
    /// An I/O error; `TimedOut` and `WouldBlock` mean a limit passed.
    Io(std::io::Error),
    /// The other side closed the connection before the answer was complete.
    Closed,
    /// The answer does not follow the protocol.
    Garbled(String),
}

impl Failure {
    pub(crate) fn is_timeout(&self) -> bool {
        matches!(self, Failure::Io(e) if is_timeout(e))
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Self {
        Failure::Io(e)
    }
}

pub(crate) fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

/// Reads one line (without its newline) into `line`; a closed connection is [`Failure::Closed`].
pub(crate) fn read_line<R: BufRead>(reader: &mut R, line: &mut String) -> Result<(), Failure> {
    line.clear();
    let n = reader.read_line(line)?;
    if n == 0 || !line.ends_with('\n') {
        return Err(Failure::Closed);
    }
    line.pop();
    Ok(())
}

/// Reads the `errno=N` line that ends every answer, and (`blank`) the empty line after it.
pub(crate) fn read_errno<R: BufRead>(reader: &mut R, blank: bool) -> Result<i32, Failure> {
    let mut line = String::new();
    read_line(reader, &mut line)?;
    let errno = parse_errno_line(&line)
        .ok_or_else(|| Failure::Garbled(format!("expected errno=N, got {line:?}")))?;
    if blank {
        read_line(reader, &mut line)?;
        if !line.is_empty() {
            return Err(Failure::Garbled(format!(
                "expected an empty line after errno, got {line:?}"
            )));
        }
    }
    Ok(errno)
}

fn parse_errno_line(line: &str) -> Option<i32> {
    line.strip_prefix("errno=")?.parse().ok()
}

/// Reads the answer to `get=1`: every line before `errno=` goes to `on_line`; returns the errno.
pub(crate) fn read_get<R: BufRead>(
    reader: &mut R,
    blank: bool,
    on_line: &mut dyn FnMut(&str),
) -> Result<i32, Failure> {
    let mut line = String::new();
    loop {
        read_line(reader, &mut line)?;
        if let Some(errno) = parse_errno_line(&line) {
            if blank {
                read_line(reader, &mut line)?;
                if !line.is_empty() {
                    return Err(Failure::Garbled(format!(
                        "expected an empty line after errno, got {line:?}"
                    )));
                }
            }
            return Ok(errno);
        }
        if line.starts_with("errno=") {
            return Err(Failure::Garbled(format!("unreadable errno {line:?}")));
        }
        on_line(&line);
    }
}

/// Feeds the lines of a `get=1` answer to a [`GetParser`], keeping the first parse error
/// (the rest of the answer must still be read).
pub(crate) struct GetCollector {
    parser: GetParser,
    error: Option<Error>,
}

impl GetCollector {
    pub(crate) fn new() -> Self {
        GetCollector {
            parser: GetParser::new(SystemTime::now()),
            error: None,
        }
    }

    pub(crate) fn line(&mut self, line: &str) {
        if self.error.is_none() {
            if let Err(e) = self.parser.line(line) {
                self.error = Some(e);
            }
        }
    }

    /// The device state, given the answer's errno.
    pub(crate) fn finish(self, name: &str, errno: i32) -> Result<DeviceState, Error> {
        if let Some(e) = self.error {
            return Err(e);
        }
        if errno != 0 {
            return Err(errno_error(name, "get", errno, None));
        }
        Ok(self.parser.finish())
    }
}

/// The time of the last byte a [`TimedStream`] moved: lets a health check tell a long but
/// progressing transaction from a stuck device.
#[derive(Debug)]
pub(crate) struct Progress {
    base: Instant,
    last_ms: AtomicU64,
}

impl Progress {
    pub(crate) fn new() -> Self {
        Progress {
            base: Instant::now(),
            last_ms: AtomicU64::new(0),
        }
    }

    pub(crate) fn touch(&self) {
        let ms = u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// Time since the last byte moved.
    pub(crate) fn idle(&self) -> Duration {
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        self.base.elapsed().saturating_sub(last)
    }
}

/// A Unix stream whose reads and writes each wait at most `idle`, and never past `deadline`:
/// a peer that stops answering yields a `TimedOut` error instead of a hang.
#[derive(Debug)]
pub(crate) struct TimedStream {
    stream: UnixStream,
    idle: Duration,
    deadline: Option<Instant>,
    progress: Option<Arc<Progress>>,
}

impl TimedStream {
    pub(crate) fn new(stream: UnixStream, progress: Option<Arc<Progress>>) -> Self {
        TimedStream {
            stream,
            idle: GET_TIMEOUT,
            deadline: None,
            progress,
        }
    }

    /// Limits for the next exchange: each read or write waits at most `idle`, and the whole
    /// exchange ends at `total` from now.
    pub(crate) fn limit(&mut self, idle: Duration, total: Option<Duration>) {
        self.idle = idle;
        self.deadline = total.map(|t| Instant::now() + t);
    }

    fn budget(&self) -> std::io::Result<Duration> {
        let mut budget = self.idle;
        if let Some(deadline) = self.deadline {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "time limit reached",
                ));
            }
            budget = budget.min(left);
        }
        Ok(budget.max(Duration::from_millis(1)))
    }

    fn moved(&self, n: usize) {
        if n > 0 {
            if let Some(progress) = &self.progress {
                progress.touch();
            }
        }
    }
}

impl Read for TimedStream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.stream.set_read_timeout(Some(self.budget()?))?;
        let n = (&self.stream).read(buf)?;
        self.moved(n);
        Ok(n)
    }
}

impl Write for TimedStream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.stream.set_write_timeout(Some(self.budget()?))?;
        let n = (&self.stream).write(buf)?;
        self.moved(n);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Connects to a Unix socket, waiting at most `timeout` (a listener whose backlog is full, as
/// that of a process that stopped accepting, would otherwise block `connect` for ever).
pub(crate) fn connect(path: &Path, timeout: Duration) -> std::io::Result<UnixStream> {
    use nix::sys::socket::{self, sockopt, AddressFamily, SockFlag, SockType, UnixAddr};
    use nix::sys::time::TimeVal;
    use std::os::fd::AsRawFd as _;

    let fd = socket::socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    let micros = i64::try_from(timeout.as_micros()).unwrap_or(i64::MAX);
    let limit = TimeVal::new(micros / 1_000_000, (micros % 1_000_000).max(1));
    socket::setsockopt(&fd, sockopt::SendTimeout, &limit)?;
    socket::connect(fd.as_raw_fd(), &UnixAddr::new(path)?)?;
    Ok(UnixStream::from(fd))
}

/// How long a `set` may take in all: 30 s, plus 1 s per MiB of request (a 100,000-peer
/// transaction is about 23 MiB and takes boringtun about 6 s).
pub(crate) fn set_timeout(request_bytes: usize) -> Duration {
    SET_TIMEOUT_BASE + Duration::from_secs((request_bytes >> 20) as u64)
}

/// Words a failed exchange with interface `name` for the caller.
pub(crate) fn failure_error(name: &str, op: &str, limit: Duration, failure: Failure) -> Error {
    match failure {
        f if f.is_timeout() => Error::Timeout(format!(
            "{op} on interface {name}: no answer within {}s",
            limit.as_secs()
        )),
        Failure::Io(e) => crate::error::io_context(format!("{op} on interface {name}"), e),
        Failure::Closed => Error::Uapi(format!(
            "{op}: interface {name} closed the UAPI connection without an answer"
        )),
        Failure::Garbled(message) => Error::Uapi(format!("{op} on interface {name}: {message}")),
    }
}

/// A UAPI client for one interface's socket, any implementation (boringtun behind this crate,
/// wireguard-go, another process): one connection per request, every step under a time limit.
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

    fn connect(&self, limit: Duration) -> Result<TimedStream, Error> {
        let stream = connect(&self.path, CONNECT_TIMEOUT.min(limit)).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
                Error::InterfaceGone(format!(
                    "interface {} is gone: its UAPI socket {} does not answer ({e})",
                    self.name,
                    self.path.display()
                ))
            }
            _ if is_timeout(&e) => Error::Timeout(format!(
                "interface {}: its UAPI socket {} accepts no connection (the process behind it has stopped answering)",
                self.name,
                self.path.display()
            )),
            _ => crate::error::os_error(format!("connecting to {}", self.path.display()), e),
        })?;
        Ok(TimedStream::new(stream, None))
    }

    /// `get=1`, parsed while it streams in; each read waits at most [`GET_TIMEOUT`].
    pub(crate) fn get(&self) -> Result<DeviceState, Error> {
        let mut stream = self.connect(GET_TIMEOUT)?;
        stream.limit(GET_TIMEOUT, None);
        let mut collector = GetCollector::new();
        let errno = stream
            .write_all(b"get=1\n\n")
            .map_err(Failure::from)
            .and_then(|()| {
                let mut reader = BufReader::with_capacity(1 << 16, &mut stream);
                read_get(&mut reader, false, &mut |line| collector.line(line))
            })
            .map_err(|f| failure_error(&self.name, "get", GET_TIMEOUT, f))?;
        collector.finish(&self.name, errno)
    }

    /// Sends `set=1` with `body` (complete `key=value\n` lines, without the closing blank line)
    /// and waits for its errno, for at most [`set_timeout`]. The request text is not kept in
    /// errors: it may hold a key.
    pub(crate) fn set(&self, body: &str, listen_port: Option<u16>) -> Result<(), Error> {
        let limit = set_timeout(body.len());
        let mut stream = self.connect(limit)?;
        stream.limit(limit, Some(limit));
        let errno = (|| {
            {
                let mut writer = BufWriter::with_capacity(1 << 16, &mut stream);
                writer.write_all(b"set=1\n")?;
                writer.write_all(body.as_bytes())?;
                writer.write_all(b"\n")?;
                writer.flush()?;
            }
            read_errno(&mut BufReader::new(&mut stream), false)
        })()
        .map_err(|f| failure_error(&self.name, "set", limit, f))?;
        if errno == 0 {
            Ok(())
        } else {
            Err(errno_error(&self.name, "set", errno, listen_port))
        }
    }

    /// Whether the device's event loop answers, without making it list its peers: sends an
    /// operation other than `get`/`set`. boringtun answers `errno=5`; wireguard-go logs
    /// "invalid UAPI operation" and closes the connection (found by the interop test).
    pub(crate) fn probe(&self) -> Result<(), Error> {
        let mut stream = self.connect(PROBE_TIMEOUT)?;
        stream.limit(PROBE_TIMEOUT, Some(PROBE_TIMEOUT));
        let result = stream
            .write_all(PROBE_REQUEST)
            .map_err(Failure::from)
            .and_then(|()| read_errno(&mut BufReader::new(&mut stream), false));
        match result {
            // boringtun answers an unknown operation with an errno; wireguard-go hangs up
            // without a word. Either way a live process read the request.
            Ok(_) | Err(Failure::Closed) => Ok(()),
            Err(f) if f.is_timeout() => Err(stuck(&self.name)),
            Err(Failure::Garbled(message)) => Err(Error::InterfaceGone(format!(
                "interface {} does not answer on its UAPI socket ({message})",
                self.name
            ))),
            Err(f) => Err(failure_error(&self.name, "probe", PROBE_TIMEOUT, f)),
        }
    }

    /// Whether something answers on the socket: true if a connection is accepted in time.
    pub(crate) fn is_live(path: &Path) -> bool {
        connect(path, CONNECT_TIMEOUT).is_ok()
    }
}

/// The probe request: an operation that is neither `get` nor `set`, on one line.
pub(crate) const PROBE_REQUEST: &[u8] = b"watchgrid_probe=1\n\n";

/// The error for a device that does not answer a probe in time.
pub(crate) fn stuck(name: &str) -> Error {
    Error::InterfaceGone(format!(
        "interface {name} is stuck: no answer on its UAPI socket within {}s",
        PROBE_TIMEOUT.as_secs()
    ))
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
        assert!(!state.updates_in_place, "boringtun");
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
        assert!(state.updates_in_place, "not boringtun");
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
        // wireguard-go before a key is set reports no key line at all: still not boringtun.
        let (keyless, _) = parse_get(
            "listen_port=4000
errno=0
",
            now(),
        )
        .unwrap();
        assert!(keyless.updates_in_place);
        assert_eq!(keyless.public_key, None);
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
