//! The UAPI channel to boringtun: our end of the socketpair whose other end boringtun got as
//! `DeviceConfig::uapi_fd`.
//!
//! boringtun 0.7.1 serves that descriptor with one event handler that, each time the socket is
//! readable, wraps it in a *new* `BufReader`, reads one command line, handles it and writes
//! `errno=N` and an empty line. Whatever that reader buffered beyond the request is dropped with
//! it. So on this one stream:
//! - only one request may be in flight, and the next is sent only after the whole answer has
//!   been read ([`Channel::lock`] serialises them);
//! - a request must carry nothing after its end: `get=1` and the probe are sent as one line
//!   (no empty line after them, which would be read as a second, empty command), and a `set=1`
//!   ends with the empty line that ends its body;
//! - a `set` that fails part-way leaves the rest of its body to be read as commands, each
//!   answered with `errno=5`. Requests are therefore validated and split before they get here
//!   (see `request.rs`) so that a transaction can only fail on its last line; if one fails
//!   part-way anyway, or any exchange times out, the stream can no longer be trusted and the
//!   channel is marked broken: every later call fails at once, and the interface must be
//!   recreated.
//!
//! When the stream reaches end of file (our end is shut down or closed), boringtun's event loop
//! sees `EPOLLHUP` on the descriptor and stops every device thread. That is how the interface is
//! shut down.

use std::io::{BufReader, Write as _};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use crate::uapi::{
    self, read_errno, read_get, DeviceState, Failure, GetCollector, Progress, TimedStream,
};
use crate::Error;

use super::request::SetRequest;

/// The probe sent on the channel: an unknown operation, which boringtun answers with `errno=5`.
/// One line only: an empty line after it would be read as a second command.
const PROBE: &[u8] = b"watchgrid_probe=1\n";

/// The longest a request waits for the one before it to finish. Every holder of the channel is
/// itself bounded (a `set` by its size-scaled limit), so this is a last resort.
pub(crate) const LOCK_WAIT: Duration = Duration::from_secs(300);

/// One interface's UAPI channel to boringtun.
#[derive(Debug)]
pub(crate) struct Channel {
    name: String,
    /// Whether a request holds the channel, and since when.
    gate: Mutex<Gate>,
    released: Condvar,
    conn: Mutex<Conn>,
    /// Another handle on our end, to shut it down while a request holds `conn`.
    shutdown: UnixStream,
    /// Set by [`Channel::close`]: failures after it are "shut down", not "stopped".
    closed: AtomicBool,
    progress: Arc<Progress>,
}

#[derive(Debug, Default)]
struct Gate {
    busy: bool,
}

#[derive(Debug)]
struct Conn {
    reader: BufReader<TimedStream>,
    /// Why the stream can no longer be used, once it cannot.
    broken: Option<String>,
}

/// Exclusive use of the channel for one exchange (or a few, as a proxied `set` that reads the
/// device first); released on drop.
pub(crate) struct Session<'a> {
    channel: &'a Channel,
    conn: Option<MutexGuard<'a, Conn>>,
}

impl Channel {
    pub(crate) fn new(name: &str, stream: UnixStream) -> std::io::Result<Self> {
        let shutdown = stream.try_clone()?;
        let progress = Arc::new(Progress::new());
        Ok(Channel {
            name: name.to_owned(),
            gate: Mutex::new(Gate::default()),
            released: Condvar::new(),
            conn: Mutex::new(Conn {
                reader: BufReader::with_capacity(
                    1 << 16,
                    TimedStream::new(stream, Some(Arc::clone(&progress))),
                ),
                broken: None,
            }),
            shutdown,
            closed: AtomicBool::new(false),
            progress,
        })
    }

    /// Waits up to `wait` for the channel to be free and takes it.
    pub(crate) fn lock(&self, wait: Duration) -> Result<Session<'_>, Error> {
        let gate = self.gate.lock().unwrap_or_else(PoisonError::into_inner);
        let (mut gate, _) = self
            .released
            .wait_timeout_while(gate, wait, |g| g.busy)
            .unwrap_or_else(PoisonError::into_inner);
        if gate.busy {
            return Err(Error::Timeout(format!(
                "interface {}: another UAPI request has held the device for more than {}s",
                self.name,
                wait.as_secs()
            )));
        }
        gate.busy = true;
        drop(gate);
        let conn = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(Session {
            channel: self,
            conn: Some(conn),
        })
    }

    /// `get=1` on the device, parsed.
    pub(crate) fn get(&self) -> Result<DeviceState, Error> {
        self.lock(LOCK_WAIT)?.get_state()
    }

    /// A `set` transaction (see [`SetRequest`]); returns the device's errno.
    pub(crate) fn set(&self, request: &SetRequest<'_>) -> Result<i32, Error> {
        self.lock(LOCK_WAIT)?.set(request)
    }

    /// Health: the channel is usable and the device's event loop answers within `limit`. A
    /// request that holds the channel and still moves bytes counts as alive.
    pub(crate) fn health(&self, limit: Duration) -> Result<(), Error> {
        match self.lock(limit) {
            Ok(mut session) => session.probe(limit).map(drop),
            Err(Error::Timeout(_)) if self.progress.idle() < limit => Ok(()),
            Err(Error::Timeout(_)) => Err(Error::InterfaceGone(format!(
                "interface {} is stuck: a UAPI request has moved no data for {}s",
                self.name,
                self.progress.idle().as_secs()
            ))),
            Err(e) => Err(e),
        }
    }

    /// Shuts our end down: a request in flight fails at once, later ones fail with "shut
    /// down", and boringtun sees end of file and stops its device threads.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        let _ = self.shutdown.shutdown(Shutdown::Both);
    }
}

impl Session<'_> {
    fn conn(&mut self) -> &mut Conn {
        self.conn
            .as_mut()
            .expect("a session holds the connection until it drops")
    }

    fn name(&self) -> &str {
        &self.channel.name
    }

    /// Fails if an earlier exchange left the stream unusable.
    fn usable(&mut self) -> Result<(), Error> {
        if self.channel.closed.load(Ordering::SeqCst) {
            return Err(Error::InterfaceGone(format!(
                "interface {} has been shut down",
                self.name()
            )));
        }
        match &self.conn().broken {
            None => Ok(()),
            Some(reason) => Err(Error::InterfaceGone(reason.clone())),
        }
    }

    /// Marks the stream unusable after `failure` in `op`, and returns the error for the caller.
    fn fail(&mut self, op: &str, limit: Duration, failure: Failure) -> Error {
        let name = self.channel.name.clone();
        if self.channel.closed.load(Ordering::SeqCst) {
            return Error::InterfaceGone(format!("interface {name} has been shut down"));
        }
        let stopped = || format!("interface {name} has stopped: boringtun closed its UAPI channel");
        let (error, reason) = match failure {
            Failure::Closed => (Error::InterfaceGone(stopped()), stopped()),
            Failure::Io(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
                ) =>
            {
                (Error::InterfaceGone(stopped()), stopped())
            }
            f if f.is_timeout() => (
                Error::Timeout(format!(
                    "{op} on interface {name}: boringtun did not answer within {}s; the interface is stuck and must be recreated",
                    limit.as_secs()
                )),
                format!(
                    "interface {name} is stuck: a {op} got no answer from boringtun within {}s",
                    limit.as_secs()
                ),
            ),
            f => {
                let error = uapi::failure_error(&name, op, limit, f);
                let reason = format!("interface {name}: its UAPI channel failed: {error}");
                (error, reason)
            }
        };
        tracing::warn!(interface = %name, error = %error, "UAPI channel to boringtun unusable");
        self.conn().broken = Some(reason);
        error
    }

    /// `get=1`; every line of the answer before `errno=` goes to `on_line`. Each read waits at
    /// most [`uapi::GET_TIMEOUT`]. Returns the errno.
    pub(crate) fn get(&mut self, on_line: &mut dyn FnMut(&str)) -> Result<i32, Error> {
        self.usable()?;
        let limit = uapi::GET_TIMEOUT;
        let reader = &mut self.conn().reader;
        reader.get_mut().limit(limit, None);
        let result = reader
            .get_mut()
            .write_all(b"get=1\n")
            .map_err(Failure::from)
            .and_then(|()| read_get(reader, true, on_line));
        result.map_err(|f| self.fail("get", limit, f))
    }

    /// `get=1`, parsed.
    pub(crate) fn get_state(&mut self) -> Result<DeviceState, Error> {
        let mut collector = GetCollector::new();
        let errno = self.get(&mut |line| collector.line(line))?;
        collector.finish(self.name(), errno)
    }

    /// Sends the request's transactions in order, each within the request's time limit, and
    /// stops at the first that fails. Returns the device's errno (0 if all succeeded).
    pub(crate) fn set(&mut self, request: &SetRequest<'_>) -> Result<i32, Error> {
        self.set_within(request, uapi::set_timeout(request.len()))
    }

    /// [`set`](Self::set) with the time limit given.
    pub(crate) fn set_within(
        &mut self,
        request: &SetRequest<'_>,
        limit: Duration,
    ) -> Result<i32, Error> {
        self.usable()?;
        self.conn().reader.get_mut().limit(limit, Some(limit));
        for tx in request.transactions() {
            let reader = &mut self.conn().reader;
            let result = (|| {
                let stream = reader.get_mut();
                if tx.single {
                    // A transaction that may fail goes in one write, so boringtun reads all of
                    // it at once and drops nothing of it on the floor when it fails.
                    stream.write_all(tx.text().as_bytes())?;
                } else {
                    stream.write_all(b"set=1\n")?;
                    stream.write_all(tx.body.as_bytes())?;
                    stream.write_all(b"\n")?;
                }
                read_errno(reader, true)
            })();
            let errno = result.map_err(|f| self.fail("set", limit, f))?;
            if errno != 0 {
                if !tx.single {
                    let error = Error::Uapi(format!(
                        "set on interface {}: boringtun failed a transaction part-way (errno={errno}); its UAPI channel can no longer be trusted",
                        self.name()
                    ));
                    tracing::warn!(interface = %self.name(), error = %error, "UAPI channel to boringtun unusable");
                    self.conn().broken = Some(error.to_string());
                }
                return Ok(errno);
            }
        }
        Ok(0)
    }

    /// Sends the probe; returns the device's errno for it (boringtun: 5).
    pub(crate) fn probe(&mut self, limit: Duration) -> Result<i32, Error> {
        self.usable()?;
        let reader = &mut self.conn().reader;
        reader.get_mut().limit(limit, Some(limit));
        let result = reader
            .get_mut()
            .write_all(PROBE)
            .map_err(Failure::from)
            .and_then(|()| read_errno(reader, true));
        match result {
            Ok(errno) => Ok(errno),
            Err(f) if f.is_timeout() => {
                let _ = self.fail("probe", limit, f);
                Err(Error::InterfaceGone(format!(
                    "interface {} is stuck: no answer on its UAPI channel within {}s",
                    self.name(),
                    limit.as_secs()
                )))
            }
            Err(f) => Err(self.fail("probe", limit, f)),
        }
    }
}

impl Drop for Session<'_> {
    fn drop(&mut self) {
        drop(self.conn.take());
        let mut gate = self
            .channel
            .gate
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        gate.busy = false;
        drop(gate);
        self.channel.released.notify_one();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly on a bad fixture")]

    use std::io::{BufRead as _, Write as _};
    use std::thread;
    use std::time::Instant;

    use super::*;

    /// A stand-in for boringtun's end: answers `get=1` with one peer, `set=1` (read to its empty
    /// line) with `errno=98` for a lone `listen_port=1`, `errno=22` for one naming 10.9.9.9,
    /// else 0, and anything else with 5; goes silent on `hang=1`.
    fn fake_device(stream: UnixStream) -> thread::JoinHandle<Vec<String>> {
        thread::spawn(move || {
            let mut seen = Vec::new();
            let mut reader = BufReader::new(&stream);
            let mut out = &stream;
            let mut line = String::new();
            loop {
                line.clear();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    return seen; // end of file: our end was shut down
                }
                let command = line.trim_end().to_owned();
                seen.push(command.clone());
                let errno = match command.as_str() {
                    "get=1" => {
                        let key = "01".repeat(32);
                        let _ = write!(out, "listen_port=7\npublic_key={key}\n");
                        0
                    }
                    "set=1" => {
                        let mut body = String::new();
                        loop {
                            line.clear();
                            reader.read_line(&mut line).unwrap();
                            if line == "\n" {
                                break;
                            }
                            body.push_str(&line);
                        }
                        seen.push(body.clone());
                        if body == "listen_port=1\n" {
                            98
                        } else if body.contains("10.9.9.9") {
                            22
                        } else {
                            0
                        }
                    }
                    "hang=1" => {
                        thread::park();
                        return seen;
                    }
                    _ => 5,
                };
                let _ = write!(out, "errno={errno}\n\n");
            }
        })
    }

    fn channel() -> (Channel, thread::JoinHandle<Vec<String>>) {
        let (ours, theirs) = UnixStream::pair().unwrap();
        (Channel::new("wgt", ours).unwrap(), fake_device(theirs))
    }

    #[test]
    fn requests_in_step_and_set_split_at_fallible_lines() {
        let (channel, device) = channel();
        let state = channel.get().unwrap();
        assert_eq!((state.listen_port, state.peers.len()), (Some(7), 1));
        let body = "private_key=00\nlisten_port=1\nreplace_peers=true\n".replace(
            "private_key=00",
            &format!("private_key={}", "02".repeat(32)),
        );
        let request = SetRequest::parse(&body).unwrap();
        // The lone `listen_port` transaction fails; the channel stays usable.
        assert_eq!(channel.set(&request).unwrap(), 98);
        assert_eq!(
            channel.lock(LOCK_WAIT).unwrap().probe(LOCK_WAIT).unwrap(),
            5
        );
        channel.health(Duration::from_secs(1)).unwrap();
        let ok = SetRequest::parse("replace_peers=true\n").unwrap();
        assert_eq!(channel.set(&ok).unwrap(), 0);
        channel.close();
        let seen = device.join().unwrap();
        let key_line = format!("private_key={}\n", "02".repeat(32));
        assert_eq!(
            seen,
            vec![
                "get=1",
                "set=1",
                key_line.as_str(),
                "set=1",
                "listen_port=1\n",
                "watchgrid_probe=1",
                "watchgrid_probe=1",
                "set=1",
                "replace_peers=true\n",
            ]
        );
        match channel.get() {
            Err(Error::InterfaceGone(m)) => assert!(m.contains("shut down"), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_transaction_failing_part_way_breaks_the_channel() {
        let (channel, _device) = channel();
        let good = format!("public_key={}\nallowed_ip=10.0.0.1/32\n", "03".repeat(32));
        assert_eq!(channel.set(&SetRequest::parse(&good).unwrap()).unwrap(), 0);
        // The fake device fails this one, as boringtun could only for a reason unknown here.
        let failing = format!("public_key={}\nallowed_ip=10.9.9.9/32\n", "03".repeat(32));
        assert_eq!(
            channel.set(&SetRequest::parse(&failing).unwrap()).unwrap(),
            22
        );
        match channel.get() {
            Err(Error::InterfaceGone(m)) => assert!(m.contains("part-way"), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_silent_device_times_out_once_then_fails_at_once() {
        let (channel, device) = channel();
        {
            let mut session = channel.lock(LOCK_WAIT).unwrap();
            let stream = session.conn().reader.get_mut();
            stream.write_all(b"hang=1\n").unwrap();
        }
        let started = Instant::now();
        match channel
            .lock(LOCK_WAIT)
            .unwrap()
            .probe(Duration::from_millis(200))
        {
            Err(Error::InterfaceGone(m)) => assert!(m.contains("stuck"), "{m}"),
            other => panic!("{other:?}"),
        }
        assert!(started.elapsed() < Duration::from_secs(2));
        let started = Instant::now();
        match channel.get() {
            Err(Error::InterfaceGone(m)) => assert!(m.contains("stuck"), "{m}"),
            other => panic!("{other:?}"),
        }
        assert!(started.elapsed() < Duration::from_millis(100));
        device.thread().unpark();
    }

    #[test]
    fn a_device_that_closes_has_stopped() {
        let (ours, theirs) = UnixStream::pair().unwrap();
        let channel = Channel::new("wgt", ours).unwrap();
        drop(theirs);
        match channel.get() {
            Err(Error::InterfaceGone(m)) => assert!(m.contains("has stopped"), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn health_tells_a_busy_channel_from_a_stuck_one() {
        let (channel, _device) = channel();
        let channel = &channel;
        thread::scope(|scope| {
            let session = channel.lock(LOCK_WAIT).unwrap();
            let limit = Duration::from_millis(300);
            // Data keeps moving (as during a long `set`): busy, alive.
            let mover = scope.spawn(|| {
                for _ in 0..20 {
                    channel.progress.touch();
                    thread::sleep(Duration::from_millis(20));
                }
            });
            let busy = scope.spawn(move || channel.health(limit));
            assert!(busy.join().unwrap().is_ok());
            mover.join().unwrap();
            // Nothing moves while it is held: stuck.
            thread::sleep(limit);
            match scope.spawn(move || channel.health(limit)).join().unwrap() {
                Err(Error::InterfaceGone(m)) => assert!(m.contains("moved no data"), "{m}"),
                other => panic!("{other:?}"),
            }
            drop(session);
        });
        channel.health(Duration::from_secs(1)).unwrap();
    }
}
