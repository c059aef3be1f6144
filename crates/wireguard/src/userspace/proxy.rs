//! The UAPI socket `/var/run/wireguard/<name>.sock` of an interface this process runs, served
//! by this crate and forwarded to boringtun over its [`Channel`], so that `wg show`, `wg set`
//! and other processes' [`UserspaceInterface::attach`](crate::UserspaceInterface::attach) work
//! as with any userspace WireGuard.
//!
//! One supervisor thread per interface accepts connections (waking also when the interface is
//! dropped) and starts a short-lived thread per connection (at most [`MAX_CLIENTS`] at a time).
//! A connection carries one request, read in full (each read waiting at most
//! [`CLIENT_TIMEOUT`]) before the device is involved; the answer is written back under the
//! same limit. `set` requests are checked and split first (`request.rs`), and their errno is
//! answered negated, as wireguard-go does, which is what `wg` expects. `get` answers have
//! boringtun's handshake ages turned into Unix times, as the kernel and wireguard-go report
//! them, so `wg show` prints "3 seconds ago" instead of "56 years ago". Any other operation is
//! answered by probing the device.
//!
//! When the interface is dropped, the supervisor shuts the channel (boringtun then stops its
//! device threads), the connections and itself down, and waits for the device threads; if they
//! do not stop (a device hung by a panic), it deletes the link so that the name is free again.

use std::io::{BufRead, BufReader, BufWriter, Read as _, Write};
use std::net::Shutdown;
use std::os::fd::AsFd as _;
use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, PermissionsExt as _};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use boringtun::device::DeviceHandle;

use super::channel::{Channel, LOCK_WAIT};
use super::request::SetRequest;
use crate::error::{EADDRINUSE, EIO, ENODEV, ENOMEM, EPROTO, ETIMEDOUT};
use crate::uapi::{self, handshake_time};
use crate::{ip, Error};

/// Connections served at once; more are closed at once.
pub(crate) const MAX_CLIENTS: usize = 16;
/// How long each read of a request and each write of an answer may wait for the client.
pub(crate) const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest request accepted (a `wg setconf` with a million peers is about 150 MiB).
const MAX_REQUEST: u64 = 512 << 20;
/// How long the supervisor waits for connection threads when the interface is dropped.
const CLIENTS_STOP: Duration = Duration::from_secs(1);
/// How long it waits for boringtun's device threads (they stop within milliseconds).
const DEVICE_STOP: Duration = Duration::from_secs(2);
/// Handshake times below this are boringtun's ages (see `uapi::handshake_time`).
const UNIX_TIME_FLOOR: u64 = 1_000_000_000;

/// The socket file this process bound, identified by device and inode so that it is never
/// mistaken for (or removed instead of) another process's socket of the same path.
#[derive(Debug, Clone)]
pub(crate) struct SocketFile {
    path: PathBuf,
    id: (u64, u64),
}

impl SocketFile {
    /// Binds `path` (creating its directory with mode 0700 if needed, replacing a stale socket
    /// file: the caller has checked that nothing answers on it) and gives the socket mode 0600.
    pub(crate) fn bind(path: &Path) -> Result<(UnixListener, SocketFile), Error> {
        let dir = path.parent().unwrap_or(Path::new(uapi::SOCKET_DIR));
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| crate::error::os_error(format!("creating {}", dir.display()), e))?;
        match std::fs::remove_file(path) {
            Ok(()) => tracing::info!(socket = %path.display(), "replaced a stale UAPI socket"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(crate::error::os_error(
                    format!("removing stale socket {}", path.display()),
                    e,
                ))
            }
        }
        let listener = UnixListener::bind(path)
            .map_err(|e| crate::error::os_error(format!("binding {}", path.display()), e))?;
        let socket = (|| {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
            let meta = std::fs::symlink_metadata(path)?;
            Ok(SocketFile {
                path: path.to_owned(),
                id: (meta.dev(), meta.ino()),
            })
        })()
        .map_err(|e| {
            let _ = std::fs::remove_file(path);
            crate::error::os_error(format!("setting up {}", path.display()), e)
        })?;
        Ok((listener, socket))
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the path still holds the socket this process bound.
    pub(crate) fn is_ours(&self) -> bool {
        std::fs::symlink_metadata(&self.path).is_ok_and(|m| (m.dev(), m.ino()) == self.id)
    }

    /// Removes the socket file if it is still ours.
    pub(crate) fn remove(&self) {
        if self.is_ours() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// The supervisor thread of one interface; [`stop`](Supervisor::stop) tears it all down.
#[derive(Debug)]
pub(crate) struct Supervisor {
    name: String,
    socket: SocketFile,
    /// Dropping it wakes the thread to shut down.
    wake: Option<UnixStream>,
    /// Mutex only to make the handle `Sync`: used from `stop`, which has `&mut self`.
    done: Mutex<mpsc::Receiver<()>>,
    thread: Option<JoinHandle<()>>,
}

/// What connection threads share.
#[derive(Debug)]
struct Shared {
    name: String,
    channel: Arc<Channel>,
}

/// Starts the supervisor of interface `name`: it serves `listener` and owns `device`. It runs
/// in the network namespace of the calling thread, and so do its connection threads.
pub(crate) fn start(
    name: &str,
    listener: UnixListener,
    socket: SocketFile,
    channel: Arc<Channel>,
    device: DeviceHandle,
) -> Result<Supervisor, Error> {
    let spawn_error = |e| crate::error::io_context("starting the UAPI service thread", e);
    let (wake, wake_rx) = UnixStream::pair().map_err(spawn_error)?;
    listener.set_nonblocking(true).map_err(spawn_error)?;
    let (done_tx, done) = mpsc::channel();
    let shared = Arc::new(Shared {
        name: name.to_owned(),
        channel,
    });
    let socket_copy = socket.clone();
    // If the thread cannot start, the device is dropped with the closure (which tells its
    // threads to exit) and the caller closes the channel.
    let thread = thread::Builder::new()
        .name(format!("wg-uapi-{name}"))
        .spawn(move || {
            serve(&shared, &listener, &wake_rx);
            drop(listener);
            teardown(&shared, &socket_copy, device);
            let _ = done_tx.send(());
        })
        .map_err(spawn_error)?;
    Ok(Supervisor {
        name: name.to_owned(),
        socket,
        wake: Some(wake),
        done: Mutex::new(done),
        thread: Some(thread),
    })
}

impl Supervisor {
    /// Whether the thread still serves the socket.
    pub(crate) fn is_running(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }

    /// Removes the socket, wakes the thread and waits up to `timeout` for the teardown.
    pub(crate) fn stop(&mut self, timeout: Duration) {
        self.socket.remove();
        drop(self.wake.take());
        let Some(thread) = self.thread.take() else {
            return;
        };
        let done = self.done.get_mut().unwrap_or_else(PoisonError::into_inner);
        match done.recv_timeout(timeout) {
            Ok(()) => {
                let _ = thread.join();
            }
            Err(mpsc::RecvTimeoutError::Timeout) => tracing::warn!(
                interface = %self.name,
                "the UAPI service thread did not stop within {}s; leaving it",
                timeout.as_secs()
            ),
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                if thread.join().is_err() {
                    tracing::warn!(interface = %self.name, "the UAPI service thread panicked");
                }
            }
        }
    }
}

/// A connection being served.
#[derive(Debug)]
struct Connection {
    stream: UnixStream,
    thread: JoinHandle<()>,
}

/// Accepts and serves connections until `wake` becomes readable or closed.
fn serve(shared: &Arc<Shared>, listener: &UnixListener, wake: &UnixStream) {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

    let mut connections: Vec<Connection> = Vec::new();
    loop {
        let (incoming, woken) = {
            let mut fds = [
                PollFd::new(listener.as_fd(), PollFlags::POLLIN),
                PollFd::new(wake.as_fd(), PollFlags::POLLIN),
            ];
            match poll(&mut fds, PollTimeout::from(1000u16)) {
                Ok(_) => (fds[0].any().unwrap_or(false), fds[1].any().unwrap_or(false)),
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => {
                    tracing::warn!(interface = %shared.name, error = %e, "poll on the UAPI socket failed");
                    thread::sleep(Duration::from_millis(100));
                    (false, false)
                }
            }
        };
        if woken {
            break;
        }
        reap(&mut connections);
        if !incoming {
            continue;
        }
        loop {
            match listener.accept() {
                Ok((stream, _)) => {
                    if connections.len() >= MAX_CLIENTS {
                        tracing::warn!(interface = %shared.name, "{MAX_CLIENTS} UAPI connections are being served; closing another");
                        continue;
                    }
                    if let Some(connection) = spawn_connection(shared, stream) {
                        connections.push(connection);
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    tracing::warn!(interface = %shared.name, error = %e, "accepting a UAPI connection failed");
                    break;
                }
            }
        }
    }
    // Stop the connections: their reads and writes fail at once.
    for connection in &connections {
        let _ = connection.stream.shutdown(Shutdown::Both);
    }
    shared.channel.close();
    let deadline = Instant::now() + CLIENTS_STOP;
    for connection in connections {
        while !connection.thread.is_finished() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(5));
        }
        if connection.thread.is_finished() {
            let _ = connection.thread.join();
        } else {
            tracing::warn!(interface = %shared.name, "a UAPI connection thread did not stop; leaving it");
        }
    }
}

fn reap(connections: &mut Vec<Connection>) {
    let mut i = 0;
    while i < connections.len() {
        if connections[i].thread.is_finished() {
            let _ = connections.swap_remove(i).thread.join();
        } else {
            i += 1;
        }
    }
}

fn spawn_connection(shared: &Arc<Shared>, stream: UnixStream) -> Option<Connection> {
    let handle = stream.try_clone().ok()?;
    let for_thread = Arc::clone(shared);
    let thread = thread::Builder::new()
        .name(format!("wg-uapi-{}", shared.name))
        .spawn(move || serve_connection(&for_thread, stream));
    match thread {
        Ok(thread) => Some(Connection {
            stream: handle,
            thread,
        }),
        Err(e) => {
            tracing::warn!(interface = %shared.name, error = %e, "cannot start a UAPI connection thread");
            None
        }
    }
}

/// Shuts the device down after [`serve`] returned: the channel is closed, so boringtun's event
/// loop sees end of file and stops. Runs in the interface's network namespace.
fn teardown(shared: &Shared, socket: &SocketFile, device: DeviceHandle) {
    let name = shared.name.as_str();
    socket.remove();
    shared.channel.close();
    let (stopped_tx, stopped) = mpsc::channel::<()>();
    let joiner = thread::Builder::new()
        .name(format!("wg-stop-{name}"))
        .spawn(move || {
            let mut device = device;
            device.wait();
            drop(device);
            let _ = stopped_tx.send(());
        });
    let outcome = match joiner {
        Ok(_) => stopped.recv_timeout(DEVICE_STOP),
        Err(_) => Err(mpsc::RecvTimeoutError::Disconnected),
    };
    match outcome {
        Ok(()) => tracing::info!(interface = name, "userspace WireGuard interface closed"),
        Err(_) => {
            tracing::warn!(
                interface = name,
                "boringtun's device threads did not stop within {}s (a hung or crashed device); deleting the link and leaving them",
                DEVICE_STOP.as_secs()
            );
            if matches!(ip::link_state(name), Ok(Some(_))) {
                if let Err(e) = ip::delete_link(name) {
                    tracing::warn!(interface = name, error = %e, "cannot delete the link");
                }
            }
        }
    }
}

/// One request from a client.
#[derive(Debug)]
enum Request {
    Get,
    Set(String),
    /// Any other operation: answered by probing the device.
    Other,
}

/// Why no request could be read.
#[derive(Debug)]
enum BadRequest {
    /// The client went away or said nothing in time: nothing to answer.
    Gone,
    /// A request that cannot be served: answer with this errno.
    Refused(i32, &'static str),
}

fn serve_connection(shared: &Shared, stream: UnixStream) {
    let _ = stream.set_read_timeout(Some(CLIENT_TIMEOUT));
    let _ = stream.set_write_timeout(Some(CLIENT_TIMEOUT));
    let request = read_request(&mut BufReader::new(&stream));
    let mut out = BufWriter::with_capacity(1 << 16, &stream);
    let errno = match request {
        Err(BadRequest::Gone) => {
            let _ = stream.shutdown(Shutdown::Both);
            return;
        }
        Err(BadRequest::Refused(errno, why)) => {
            tracing::info!(interface = %shared.name, "refused a UAPI request: {why}");
            errno
        }
        Ok(Request::Get) => proxy_get(shared, &mut out),
        // Negated, as wireguard-go answers a `set`: `wg` reports `strerror(-errno)` for one.
        Ok(Request::Set(body)) => -proxy_set(shared, &body).abs(),
        Ok(Request::Other) => match shared.channel.lock(uapi::PROBE_TIMEOUT) {
            Ok(mut session) => session
                .probe(uapi::PROBE_TIMEOUT)
                .unwrap_or_else(|e| errno_for(&e)),
            Err(e) => errno_for(&e),
        },
    };
    let _ = write!(out, "errno={errno}\n\n").and_then(|()| out.flush());
    drop(out);
    // The supervisor holds another handle on the stream: end it here so the client sees EOF.
    let _ = stream.shutdown(Shutdown::Both);
}

/// Reads one request: its first line, and the lines up to the empty line that ends it (or the
/// end of the stream).
fn read_request(reader: &mut impl BufRead) -> Result<Request, BadRequest> {
    let mut left = MAX_REQUEST;
    let mut line = String::new();
    let mut next = |line: &mut String| -> Result<bool, BadRequest> {
        line.clear();
        let n = reader
            .by_ref()
            .take(left)
            .read_line(line)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::InvalidData => {
                    BadRequest::Refused(EPROTO, "a line that is not UTF-8")
                }
                _ => BadRequest::Gone,
            })?;
        left -= n as u64;
        if n > 0 && !line.ends_with('\n') {
            if left == 0 {
                return Err(BadRequest::Refused(ENOMEM, "a request over 512 MiB"));
            }
            line.push('\n'); // the last line before end of stream
        }
        Ok(n > 0)
    };
    if !next(&mut line)? {
        return Err(BadRequest::Gone);
    }
    let op = line.trim_end_matches('\n').to_owned();
    let mut body = String::new();
    while next(&mut line)? && line != "\n" {
        if op == "set=1" {
            body.push_str(&line);
        }
    }
    Ok(match op.as_str() {
        "get=1" => Request::Get,
        "set=1" => Request::Set(body),
        _ => Request::Other,
    })
}

/// The errno a client gets for a failure on the channel.
fn errno_for(error: &Error) -> i32 {
    match error {
        Error::Timeout(_) => ETIMEDOUT,
        Error::InterfaceGone(_) => ENODEV,
        _ => EIO,
    }
}

/// Forwards `get=1`, streaming the answer to the client; returns the errno to end it with.
fn proxy_get(shared: &Shared, out: &mut impl Write) -> i32 {
    let mut session = match shared.channel.lock(LOCK_WAIT) {
        Ok(session) => session,
        Err(e) => return errno_for(&e),
    };
    let mut rewrite = HandshakeRewriter::new(SystemTime::now());
    let mut client_gone = false;
    let result = session.get(&mut |line| {
        if client_gone {
            return; // keep reading the device's answer: the channel must stay in step
        }
        rewrite.line(line, &mut |text| {
            if !client_gone && writeln!(out, "{text}").is_err() {
                client_gone = true;
            }
        });
    });
    drop(session);
    rewrite.finish(&mut |text| {
        let _ = writeln!(out, "{text}");
    });
    result.unwrap_or_else(|e| errno_for(&e))
}

/// Checks and forwards `set=1`; returns the errno to answer.
fn proxy_set(shared: &Shared, body: &str) -> i32 {
    let request = match SetRequest::parse(body) {
        Ok(request) => request,
        Err(rejection) => {
            tracing::info!(interface = %shared.name, reason = %rejection.reason, "refused a UAPI set");
            return rejection.errno;
        }
    };
    if request.is_empty() {
        return 0;
    }
    let mut session = match shared.channel.lock(LOCK_WAIT) {
        Ok(session) => session,
        Err(e) => return errno_for(&e),
    };
    if request.needs_state() {
        let state = match session.get_state() {
            Ok(state) => state,
            Err(e) => return errno_for(&e),
        };
        if let Err(rejection) = request.check_against(&state) {
            tracing::warn!(interface = %shared.name, reason = %rejection.reason, "refused a UAPI set");
            return rejection.errno;
        }
        // boringtun binds with SO_REUSEADDR and would share a taken port silently.
        if let Some(port) = request
            .listen_port
            .filter(|&p| p != 0 && Some(p) != state.listen_port)
        {
            if super::ensure_port_free(port).is_err() {
                tracing::info!(interface = %shared.name, port, "refused a UAPI set: the listen port is taken");
                return EADDRINUSE;
            }
        }
    }
    session.set(&request).unwrap_or_else(|e| errno_for(&e))
}

/// Turns boringtun's handshake ages in a `get` answer into Unix times, as the kernel and
/// wireguard-go report them. boringtun writes `last_handshake_time_sec` and then `_nsec`.
struct HandshakeRewriter {
    now: SystemTime,
    pending_sec: Option<String>,
}

impl HandshakeRewriter {
    fn new(now: SystemTime) -> Self {
        HandshakeRewriter {
            now,
            pending_sec: None,
        }
    }

    fn line(&mut self, line: &str, emit: &mut dyn FnMut(&str)) {
        if line.starts_with("last_handshake_time_sec=") {
            self.finish(emit);
            self.pending_sec = Some(line.to_owned());
            return;
        }
        if let Some(nsec) = line.strip_prefix("last_handshake_time_nsec=") {
            let Some(sec_line) = self.pending_sec.take() else {
                emit(line);
                return;
            };
            let sec = sec_line
                .strip_prefix("last_handshake_time_sec=")
                .and_then(|s| s.parse::<u64>().ok());
            if let (Some(sec), Ok(nsec)) = (sec, nsec.parse::<u32>()) {
                if let Some((sec, nsec)) = unix_handshake(sec, nsec, self.now) {
                    emit(&format!("last_handshake_time_sec={sec}"));
                    emit(&format!("last_handshake_time_nsec={nsec}"));
                    return;
                }
            }
            emit(&sec_line);
            emit(line);
            return;
        }
        self.finish(emit);
        emit(line);
    }

    fn finish(&mut self, emit: &mut dyn FnMut(&str)) {
        if let Some(pending) = self.pending_sec.take() {
            emit(&pending);
        }
    }
}

/// A handshake age from boringtun as a Unix time; `None` if it is not an age.
fn unix_handshake(sec: u64, nsec: u32, now: SystemTime) -> Option<(u64, u32)> {
    if sec >= UNIX_TIME_FLOOR {
        return None;
    }
    let at = handshake_time(sec, nsec, now)?;
    let since_epoch = at.duration_since(UNIX_EPOCH).ok()?;
    Some((since_epoch.as_secs(), since_epoch.subsec_nanos()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly on a bad fixture")]

    use super::*;

    fn rewritten(lines: &[&str], now: SystemTime) -> Vec<String> {
        let mut out = Vec::new();
        let mut rewrite = HandshakeRewriter::new(now);
        for line in lines {
            rewrite.line(line, &mut |l| out.push(l.to_owned()));
        }
        rewrite.finish(&mut |l| out.push(l.to_owned()));
        out
    }

    #[test]
    fn handshake_ages_become_unix_times() {
        let now = UNIX_EPOCH + Duration::new(1_750_000_000, 500_000_000);
        let out = rewritten(
            &[
                "public_key=00",
                "last_handshake_time_sec=3",
                "last_handshake_time_nsec=250000000",
                "rx_bytes=1",
            ],
            now,
        );
        assert_eq!(
            out,
            vec![
                "public_key=00",
                "last_handshake_time_sec=1749999997",
                "last_handshake_time_nsec=250000000",
                "rx_bytes=1",
            ]
        );
        // Unix times (and anything unexpected) pass through unchanged.
        let unix = [
            "last_handshake_time_sec=1749999990",
            "last_handshake_time_nsec=0",
        ];
        assert_eq!(rewritten(&unix, now), unix);
        let lone = ["last_handshake_time_sec=5", "rx_bytes=1"];
        assert_eq!(rewritten(&lone, now), lone);
        let last = ["last_handshake_time_sec=5"];
        assert_eq!(rewritten(&last, now), last);
    }

    #[test]
    fn requests_are_read_to_their_empty_line() {
        let read = |text: &str| read_request(&mut text.as_bytes());
        assert!(matches!(read("get=1\n\n"), Ok(Request::Get)));
        assert!(matches!(read("get=1\n"), Ok(Request::Get)));
        match read("set=1\nlisten_port=1\nfwmark=2\n\nget=1\n\n") {
            Ok(Request::Set(body)) => assert_eq!(body, "listen_port=1\nfwmark=2\n"),
            other => panic!("{other:?}"),
        }
        match read("set=1\nlisten_port=1") {
            Ok(Request::Set(body)) => assert_eq!(body, "listen_port=1\n"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(read("watchgrid_probe=1\n\n"), Ok(Request::Other)));
        assert!(matches!(read(""), Err(BadRequest::Gone)));
        assert!(matches!(
            read_request(&mut &b"set=1\nlisten_port=\xff\n\n"[..]),
            Err(BadRequest::Refused(EPROTO, _))
        ));
    }
}
