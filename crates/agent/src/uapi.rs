//! A read-only client of the WireGuard UAPI socket (`/var/run/wireguard/<iface>.sock`, the
//! cross-platform userspace protocol that boringtun and wireguard-go speak): `get=1` and the
//! peers it lists. `status` uses it to look at the interface a running `run` owns, without
//! taking it over.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use watchgrid_clientkit::text::io_text;

/// Where userspace WireGuard implementations put their sockets (one per interface, shared by
/// every network namespace on the host).
pub const SOCKET_DIR: &str = "/var/run/wireguard";

/// How long `status` waits for the socket to answer.
pub const STATUS_TIMEOUT: Duration = Duration::from_secs(3);

/// The largest answer read (an agent's interface has one peer; this is generous).
const MAX_ANSWER: u64 = 1 << 20;

/// One peer of a `get=1` answer, as the socket says it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UapiPeer {
    /// The peer's public key in lowercase hex, as on the socket.
    pub public_key_hex: String,
    pub endpoint: Option<String>,
    pub last_handshake_time_sec: u64,
    pub last_handshake_time_nsec: u64,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
}

/// The socket path of `interface`.
pub fn socket_path(interface: &str) -> PathBuf {
    Path::new(SOCKET_DIR).join(format!("{interface}.sock"))
}

/// Why the socket could not be asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UapiError {
    /// No socket file: no userspace interface of that name.
    NoSocket,
    /// A socket file nobody listens on: the interface's process or device threads are gone.
    Refused(PathBuf),
    PermissionDenied(PathBuf),
    Timeout(PathBuf),
    /// Another I/O failure, or an answer that is not the protocol.
    Other(String),
}

impl UapiError {
    /// The interface is certainly not running (as opposed to: could not be asked).
    pub fn is_gone(&self) -> bool {
        matches!(self, UapiError::NoSocket | UapiError::Refused(_))
    }
}

impl fmt::Display for UapiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UapiError::NoSocket => f.write_str("no UAPI socket: the interface is not up"),
            UapiError::Refused(path) => write!(
                f,
                "nothing answers on {}: the interface is not up",
                path.display()
            ),
            UapiError::PermissionDenied(path) => write!(
                f,
                "cannot open {}: permission denied (run as root)",
                path.display()
            ),
            UapiError::Timeout(path) => write!(f, "{} did not answer", path.display()),
            UapiError::Other(text) => f.write_str(text),
        }
    }
}

/// Ask the interface's socket for its peers, waiting at most `timeout` for the answer.
pub async fn get(socket: &Path, timeout: Duration) -> Result<Vec<UapiPeer>, UapiError> {
    let exchange = async {
        let mut stream = UnixStream::connect(socket).await?;
        stream.write_all(b"get=1\n\n").await?;
        let mut answer = String::new();
        // The answer ends with an empty line after `errno=N`; implementations differ in
        // whether they then close the connection, so stop at the blank line.
        let mut buf = [0_u8; 4096];
        let mut limited = (&mut stream).take(MAX_ANSWER);
        loop {
            let n = limited.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            answer.push_str(&String::from_utf8_lossy(&buf[..n]));
            if answer.contains("errno=") && answer.ends_with("\n\n") {
                break;
            }
        }
        Ok::<String, std::io::Error>(answer)
    };
    let answer = tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| UapiError::Timeout(socket.to_path_buf()))?
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => UapiError::NoSocket,
            std::io::ErrorKind::ConnectionRefused => UapiError::Refused(socket.to_path_buf()),
            std::io::ErrorKind::PermissionDenied => {
                UapiError::PermissionDenied(socket.to_path_buf())
            }
            _ => UapiError::Other(format!(
                "cannot talk to {}: {}",
                socket.display(),
                io_text(&e)
            )),
        })?;
    parse_get(&answer).map_err(UapiError::Other)
}

/// Parse a `get=1` answer: interface keys first, then one `public_key=` line per peer followed
/// by that peer's keys, then `errno=N`.
pub fn parse_get(text: &str) -> Result<Vec<UapiPeer>, String> {
    let mut peers: Vec<UapiPeer> = Vec::new();
    let mut errno = None;
    for line in text.lines() {
        if line.is_empty() {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(format!("unreadable UAPI line {line:?}"));
        };
        let number = || {
            value
                .parse::<u64>()
                .map_err(|_| format!("unreadable UAPI value {line:?}"))
        };
        match (key, peers.last_mut()) {
            ("errno", _) => {
                errno = Some(
                    value
                        .parse::<i64>()
                        .map_err(|_| format!("unreadable UAPI value {line:?}"))?,
                );
            }
            ("public_key", _) => peers.push(UapiPeer {
                public_key_hex: value.to_ascii_lowercase(),
                ..UapiPeer::default()
            }),
            ("endpoint", Some(peer)) => peer.endpoint = Some(value.to_string()),
            ("last_handshake_time_sec", Some(peer)) => peer.last_handshake_time_sec = number()?,
            ("last_handshake_time_nsec", Some(peer)) => peer.last_handshake_time_nsec = number()?,
            ("rx_bytes", Some(peer)) => peer.rx_bytes = number()?,
            ("tx_bytes", Some(peer)) => peer.tx_bytes = number()?,
            // Interface keys (private_key, own_public_key, listen_port, fwmark) and other peer
            // keys (allowed_ip, persistent_keepalive_interval, protocol_version, ...).
            _ => {}
        }
    }
    match errno {
        Some(0) => Ok(peers),
        Some(code) => Err(format!("the UAPI socket answered errno={code}")),
        None => Err("the UAPI answer ended early".to_string()),
    }
}

/// The latest handshake as Unix seconds, or `None` before the first. boringtun reports the
/// seconds *since* the handshake where the kernel and wireguard-go report a Unix time; a value
/// before 2001-09-09 (10^9 s) can only be an age.
pub fn handshake_unix_secs(reported: u64, now_unix: u64) -> Option<u64> {
    const UNIX_TIME_FLOOR: u64 = 1_000_000_000;
    match reported {
        0 => None,
        t if t >= UNIX_TIME_FLOOR => Some(t),
        age => Some(now_unix.saturating_sub(age)),
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        reason = "a test should fail loudly on any unexpected error"
    )]

    use super::*;

    const BORINGTUN: &str = "own_public_key=4e...\nlisten_port=45123\n\
        public_key=7e5b8d0a0f6d4c1d2e3f405162738495a6b7c8d9e0f1021324354657687980ab\n\
        endpoint=192.0.2.1:51820\nallowed_ip=100.64.0.0/10\nlast_handshake_time_sec=12\n\
        last_handshake_time_nsec=500\nrx_bytes=1536\ntx_bytes=92\n\
        persistent_keepalive_interval=25\nerrno=0\n\n";

    #[test]
    fn a_boringtun_answer() {
        let peers = parse_get(BORINGTUN).unwrap();
        assert_eq!(
            peers,
            vec![UapiPeer {
                public_key_hex: "7e5b8d0a0f6d4c1d2e3f405162738495a6b7c8d9e0f1021324354657687980ab"
                    .into(),
                endpoint: Some("192.0.2.1:51820".into()),
                last_handshake_time_sec: 12,
                last_handshake_time_nsec: 500,
                rx_bytes: 1536,
                tx_bytes: 92,
            }]
        );
    }

    #[test]
    fn interface_only_errors_and_garbage() {
        assert_eq!(
            parse_get("private_key=ab\nlisten_port=1\nerrno=0\n\n"),
            Ok(vec![])
        );
        assert_eq!(
            parse_get("errno=-22\n\n"),
            Err("the UAPI socket answered errno=-22".to_string())
        );
        assert!(parse_get("listen_port=1\n").is_err());
        assert!(parse_get("garbage\nerrno=0\n").is_err());
        assert!(parse_get("public_key=ab\nrx_bytes=x\nerrno=0\n").is_err());
    }

    #[test]
    fn handshake_times() {
        let now = 1_700_000_000;
        for (reported, expected) in [
            (0, None),
            (12, Some(now - 12)),
            (1_699_999_990, Some(1_699_999_990)),
        ] {
            assert_eq!(handshake_unix_secs(reported, now), expected, "{reported}");
        }
    }

    #[tokio::test]
    async fn missing_and_stale_sockets_say_the_interface_is_down() {
        let dir = tempfile::tempdir().unwrap();
        let err = get(&dir.path().join("none.sock"), STATUS_TIMEOUT)
            .await
            .unwrap_err();
        assert_eq!(err, UapiError::NoSocket);
        assert!(err.is_gone());
        assert_eq!(err.to_string(), "no UAPI socket: the interface is not up");

        // A socket file whose listener is gone, as after boringtun's device threads stopped.
        let path = dir.path().join("stale.sock");
        drop(tokio::net::UnixListener::bind(&path).unwrap());
        let err = get(&path, STATUS_TIMEOUT).await.unwrap_err();
        assert_eq!(err, UapiError::Refused(path.clone()));
        assert!(err.is_gone());

        // A listener that never accepts, as boringtun's after its device threads stopped on
        // a signal: connecting works, no answer comes.
        let path = dir.path().join("mute.sock");
        let _mute = tokio::net::UnixListener::bind(&path).unwrap();
        let err = get(&path, Duration::from_millis(200)).await.unwrap_err();
        assert_eq!(err, UapiError::Timeout(path.clone()));
        assert!(!err.is_gone());
    }

    #[tokio::test]
    async fn a_socket_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wgtest.sock");
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        let server = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut request = vec![0_u8; 7];
            stream.read_exact(&mut request).await.unwrap();
            assert_eq!(&request, b"get=1\n\n");
            stream.write_all(BORINGTUN.as_bytes()).await.unwrap();
            // Keep the connection open, as boringtun does: the reader must stop on its own.
            tokio::time::sleep(Duration::from_secs(5)).await;
        });
        let peers = get(&path, STATUS_TIMEOUT).await.unwrap();
        assert_eq!(peers.len(), 1);
        assert_eq!(peers[0].rx_bytes, 1536);
        server.abort();
    }
}
