//! Integration tests: the server on 127.0.0.1 random ports, queried with `dig` over UDP and
//! TCP; forwarding to a real `dnsmasq`. `tenant_of` maps 127.0.0.1 to the tenant `test`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::num::NonZeroU32;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};
use tokio::net::{TcpListener, UdpSocket};
use tokio::task::JoinHandle;
use watchgrid_dns::{serve, DnsHandler, MagicDns, QueryCounters, Record, RecordData};

const DOMAIN: &str = "wg.internal";
const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// Another device of tenant `test`, for per-source checks.
const SECOND_DEVICE: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3));

/// A running server; aborted on drop.
struct TestServer {
    port: u16,
    zone: MagicDns,
    counters: Arc<QueryCounters>,
    task: JoinHandle<()>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Binds a UDP socket and a TCP listener on the same random port of `ip`.
async fn bind_pair(ip: IpAddr) -> (UdpSocket, TcpListener) {
    for _ in 0..50 {
        let udp = UdpSocket::bind((ip, 0)).await.expect("bind udp");
        let port = udp.local_addr().expect("addr").port();
        if let Ok(tcp) = TcpListener::bind((ip, port)).await {
            return (udp, tcp);
        }
    }
    panic!("no free UDP+TCP port pair");
}

struct Options {
    overlay: &'static str,
    upstreams: Vec<SocketAddr>,
    /// Whether 127.0.0.1 (and 127.0.0.3) are known devices (of tenant `test`).
    known: bool,
    /// Queries a second per source; none for no limit.
    rate_limit: Option<NonZeroU32>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            overlay: "127.0.0.0/8",
            upstreams: Vec::new(),
            known: true,
            rate_limit: None,
        }
    }
}

async fn start(options: Options) -> TestServer {
    let zone = MagicDns::new(
        DOMAIN,
        IpAddr::V4(Ipv4Addr::new(127, 0, 0, 53)),
        options.overlay.parse().expect("overlay"),
    )
    .expect("zone");
    if options.overlay == "127.0.0.0/8" {
        zone.set_device("test", "web", Ipv4Addr::new(127, 0, 0, 10))
            .expect("device");
        zone.set_device("other", "web", Ipv4Addr::new(127, 0, 0, 20))
            .expect("device");
        zone.set_device("other", "secret", Ipv4Addr::new(127, 0, 0, 21))
            .expect("device");
    }
    let known = options.known;
    let handler = DnsHandler::new(zone.clone(), move |ip| {
        (known && (ip == LOCALHOST || ip == SECOND_DEVICE)).then(|| "test".to_owned())
    })
    .with_upstreams(options.upstreams);
    let handler = match options.rate_limit {
        Some(per_second) => handler.with_rate_limit(per_second),
        None => handler,
    };
    let counters = handler.counters();
    let (udp, tcp) = bind_pair(LOCALHOST).await;
    let port = udp.local_addr().expect("addr").port();
    let task = tokio::spawn(async move {
        if let Err(error) = serve(udp, tcp, handler).await {
            panic!("server ended: {error}");
        }
    });
    TestServer {
        port,
        zone,
        counters,
        task,
    }
}

/// What `dig` printed, parsed.
#[derive(Debug)]
struct Dig {
    raw: String,
    status: String,
    flags: Vec<String>,
    /// `name TYPE data` (TTL and class dropped).
    answers: Vec<String>,
    /// Record types in the authority section.
    authority: Vec<String>,
}

impl Dig {
    fn has_flag(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f == flag)
    }
}

async fn dig_at(server: SocketAddr, args: &[&str]) -> Dig {
    let output = tokio::process::Command::new("dig")
        .arg(format!("@{}", server.ip()))
        .args(["-p", &server.port().to_string()])
        .args(["+time=3", "+tries=1", "+nocmd", "+nostats", "+norecurse"])
        .args(args)
        .output()
        .await
        .expect("dig runs (apt-get install bind9-dnsutils)");
    let raw = String::from_utf8_lossy(&output.stdout).into_owned();
    let status = raw
        .split("status: ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .unwrap_or("")
        .to_owned();
    let flags = raw
        .split(";; flags: ")
        .nth(1)
        .and_then(|s| s.split(';').next())
        .unwrap_or("")
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    let section = |title: &str| -> Vec<Vec<String>> {
        let Some(rest) = raw.split(title).nth(1) else {
            return Vec::new();
        };
        rest.lines()
            .skip(1)
            .take_while(|l| !l.trim().is_empty())
            .map(|l| l.split_whitespace().map(str::to_owned).collect())
            .collect()
    };
    let answers = section(";; ANSWER SECTION:")
        .into_iter()
        .map(|f| format!("{} {} {}", f[0], f[3], f[4..].join(" ")))
        .collect();
    let authority = section(";; AUTHORITY SECTION:")
        .into_iter()
        .map(|f| f[3].clone())
        .collect();
    Dig {
        raw,
        status,
        flags,
        answers,
        authority,
    }
}

async fn dig(server: &TestServer, args: &[&str]) -> Dig {
    dig_at(SocketAddr::new(LOCALHOST, server.port), args).await
}

/// Runs the same checks over UDP and TCP.
async fn check_both(
    server: &TestServer,
    args: &[&str],
    status: &str,
    answers: &[&str],
    authority: &[&str],
) {
    for transport in ["+notcp", "+tcp"] {
        let mut all = args.to_vec();
        all.push(transport);
        let got = dig(server, &all).await;
        assert_eq!(got.status, status, "{all:?}\n{}", got.raw);
        assert_eq!(got.answers, answers, "{all:?}\n{}", got.raw);
        assert_eq!(got.authority, authority, "{all:?}\n{}", got.raw);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authoritative_answers_over_udp_and_tcp() {
    let s = start(Options::default()).await;
    check_both(
        &s,
        &["web.test.wg.internal", "A"],
        "NOERROR",
        &["web.test.wg.internal. A 127.0.0.10"],
        &[],
    )
    .await;
    // Another tenant's names do not exist for this client.
    check_both(
        &s,
        &["web.other.wg.internal", "A"],
        "NXDOMAIN",
        &[],
        &["SOA"],
    )
    .await;
    check_both(
        &s,
        &["secret.other.wg.internal", "A"],
        "NXDOMAIN",
        &[],
        &["SOA"],
    )
    .await;
    check_both(
        &s,
        &["nope.test.wg.internal", "A"],
        "NXDOMAIN",
        &[],
        &["SOA"],
    )
    .await;
    // NODATA.
    check_both(
        &s,
        &["web.test.wg.internal", "AAAA"],
        "NOERROR",
        &[],
        &["SOA"],
    )
    .await;
    // The apex.
    let soa = dig(&s, &["wg.internal", "SOA"]).await;
    assert_eq!(soa.status, "NOERROR");
    assert_eq!(soa.answers.len(), 1, "{}", soa.raw);
    assert!(
        soa.answers[0].starts_with("wg.internal. SOA ns.wg.internal. hostmaster.wg.internal."),
        "{}",
        soa.raw
    );
    assert!(soa.has_flag("aa"), "{}", soa.raw);
    check_both(
        &s,
        &["wg.internal", "NS"],
        "NOERROR",
        &["wg.internal. NS ns.wg.internal."],
        &[],
    )
    .await;
    check_both(
        &s,
        &["ns.wg.internal", "A"],
        "NOERROR",
        &["ns.wg.internal. A 127.0.0.53"],
        &[],
    )
    .await;
    // PTR for the asker's own devices only.
    check_both(
        &s,
        &["-x", "127.0.0.10"],
        "NOERROR",
        &["10.0.0.127.in-addr.arpa. PTR web.test.wg.internal."],
        &[],
    )
    .await;
    check_both(&s, &["-x", "127.0.0.20"], "NXDOMAIN", &[], &["SOA"]).await;
    // Names outside the zone with no upstream: REFUSED, never an open resolver.
    check_both(&s, &["example.com", "A"], "REFUSED", &[], &[]).await;

    // EDNS: answered with OPT and the client's size; without EDNS, no OPT.
    let edns = dig(&s, &["+bufsize=1400", "web.test.wg.internal", "A"]).await;
    assert!(
        edns.raw.contains("; EDNS: version: 0, flags:; udp: 1400"),
        "{}",
        edns.raw
    );
    let plain = dig(&s, &["+noedns", "web.test.wg.internal", "A"]).await;
    assert!(!plain.raw.contains("OPT PSEUDOSECTION"), "{}", plain.raw);
    assert_eq!(plain.answers, ["web.test.wg.internal. A 127.0.0.10"]);

    let counters = s.counters.snapshot();
    assert!(counters.noerror >= 10, "{counters:?}");
    assert!(counters.nxdomain >= 8, "{counters:?}");
    assert!(counters.refused >= 2, "{counters:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_records_appear_and_disappear() {
    let s = start(Options::default()).await;
    check_both(
        &s,
        &["api.test.wg.internal", "A"],
        "NXDOMAIN",
        &[],
        &["SOA"],
    )
    .await;
    s.zone
        .set_records(
            "test",
            "api",
            vec![
                Record::new(120, RecordData::A(Ipv4Addr::new(127, 0, 0, 30))),
                Record::new(120, RecordData::Aaaa("fd00::30".parse().expect("v6"))),
                Record::new(120, RecordData::Txt("hello world".into())),
            ],
        )
        .expect("set");
    s.zone
        .set_records(
            "test",
            "www",
            vec![Record::new(
                60,
                RecordData::Cname("web.test.wg.internal.".into()),
            )],
        )
        .expect("cname");
    s.zone
        .set_records(
            "test",
            "_https._tcp.api",
            vec![Record::new(
                60,
                RecordData::Srv {
                    priority: 10,
                    weight: 20,
                    port: 8443,
                    target: "api.test.wg.internal.".into(),
                },
            )],
        )
        .expect("srv");
    check_both(
        &s,
        &["api.test.wg.internal", "A"],
        "NOERROR",
        &["api.test.wg.internal. A 127.0.0.30"],
        &[],
    )
    .await;
    check_both(
        &s,
        &["api.test.wg.internal", "AAAA"],
        "NOERROR",
        &["api.test.wg.internal. AAAA fd00::30"],
        &[],
    )
    .await;
    check_both(
        &s,
        &["api.test.wg.internal", "TXT"],
        "NOERROR",
        &["api.test.wg.internal. TXT \"hello world\""],
        &[],
    )
    .await;
    check_both(
        &s,
        &["www.test.wg.internal", "A"],
        "NOERROR",
        &[
            "www.test.wg.internal. CNAME web.test.wg.internal.",
            "web.test.wg.internal. A 127.0.0.10",
        ],
        &[],
    )
    .await;
    check_both(
        &s,
        &["_https._tcp.api.test.wg.internal", "SRV"],
        "NOERROR",
        &["_https._tcp.api.test.wg.internal. SRV 10 20 8443 api.test.wg.internal."],
        &[],
    )
    .await;
    // The other tenant cannot publish into this one's view.
    s.zone
        .set_records(
            "other",
            "api",
            vec![Record::new(60, RecordData::A(Ipv4Addr::new(127, 0, 0, 99)))],
        )
        .expect("other");
    check_both(
        &s,
        &["api.other.wg.internal", "A"],
        "NXDOMAIN",
        &[],
        &["SOA"],
    )
    .await;

    s.zone.remove_records("test", "api").expect("remove");
    // `api` still has the SRV record below it: an empty non-terminal, so NODATA.
    check_both(&s, &["api.test.wg.internal", "A"], "NOERROR", &[], &["SOA"]).await;
    check_both(
        &s,
        &["_tcp.api.test.wg.internal", "A"],
        "NOERROR",
        &[],
        &["SOA"],
    )
    .await;
    s.zone
        .remove_records("test", "_https._tcp.api")
        .expect("remove");
    check_both(
        &s,
        &["api.test.wg.internal", "A"],
        "NXDOMAIN",
        &[],
        &["SOA"],
    )
    .await;
    check_both(
        &s,
        &["_https._tcp.api.test.wg.internal", "SRV"],
        "NXDOMAIN",
        &[],
        &["SOA"],
    )
    .await;
    s.zone.remove_device("test", "web").expect("remove device");
    check_both(
        &s,
        &["web.test.wg.internal", "A"],
        "NXDOMAIN",
        &[],
        &["SOA"],
    )
    .await;
    check_both(&s, &["-x", "127.0.0.10"], "NXDOMAIN", &[], &["SOA"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_answers_truncate_over_udp_and_complete_over_tcp() {
    let s = start(Options::default()).await;
    let text: String = (0..3000)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    s.zone
        .set_records(
            "test",
            "big",
            vec![Record::new(60, RecordData::Txt(text.clone()))],
        )
        .expect("txt");
    // UDP without retry: TC set, the answer dropped.
    let udp = dig(&s, &["+ignore", "big.test.wg.internal", "TXT"]).await;
    assert!(udp.has_flag("tc"), "{}", udp.raw);
    assert!(udp.answers.is_empty(), "{}", udp.raw);
    let udp512 = dig(&s, &["+ignore", "+noedns", "big.test.wg.internal", "TXT"]).await;
    assert!(udp512.has_flag("tc"), "{}", udp512.raw);
    // dig's default: sees TC and retries over TCP.
    let retried = dig(&s, &["big.test.wg.internal", "TXT"]).await;
    assert!(
        retried.raw.contains("Truncated, retrying in TCP mode"),
        "{}",
        retried.raw
    );
    assert_eq!(retried.answers.len(), 1, "{}", retried.raw);
    // TCP directly: the whole text, in 255-byte strings.
    let tcp = dig(&s, &["+tcp", "big.test.wg.internal", "TXT"]).await;
    assert!(!tcp.has_flag("tc"), "{}", tcp.raw);
    assert_eq!(tcp.answers.len(), 1, "{}", tcp.raw);
    let joined: String = tcp.answers[0]
        .split_whitespace()
        .skip(2)
        .map(|s| s.trim_matches('"'))
        .collect();
    assert_eq!(joined, text);
    // A large client buffer fits it over UDP.
    let big_buf = dig(
        &s,
        &["+ignore", "+bufsize=4096", "big.test.wg.internal", "TXT"],
    )
    .await;
    assert!(!big_buf.has_flag("tc"), "{}", big_buf.raw);
    assert_eq!(big_buf.answers.len(), 1, "{}", big_buf.raw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_sources_and_sources_outside_the_overlay_are_refused() {
    let unknown = start(Options {
        known: false,
        ..Options::default()
    })
    .await;
    let r = dig(&unknown, &["web.test.wg.internal", "A"]).await;
    assert_eq!(r.status, "REFUSED", "{}", r.raw);
    assert!(r.answers.is_empty());

    // A known tenant, but the source is outside the overlay: its own zone is answered,
    // forwarding is not, even with an upstream configured.
    let outside = start(Options {
        overlay: "100.64.0.0/10",
        upstreams: vec![SocketAddr::new(LOCALHOST, 9)],
        known: true,
        rate_limit: None,
    })
    .await;
    let r = dig(&outside, &["example.com", "A"]).await;
    assert_eq!(r.status, "REFUSED", "{}", r.raw);
    let r = dig(&outside, &["test.wg.internal", "A"]).await;
    assert_eq!(r.status, "NOERROR", "{}", r.raw);
    assert_eq!(outside.counters.snapshot().forwarded, 0);
}

/// An A query for `web.test.wg.internal` with this id, encoded.
fn web_query(id: u16) -> Vec<u8> {
    let mut query = Message::new();
    query.set_id(id).add_query(Query::query(
        Name::from_ascii("web.test.wg.internal.").expect("name"),
        RecordType::A,
    ));
    query.to_vec().expect("encode")
}

/// Sends `count` A queries for `web.test.wg.internal` back to back from `socket`, then reads
/// the answers: their response codes, in any order.
async fn ask_many(socket: &UdpSocket, server: SocketAddr, count: u16) -> Vec<ResponseCode> {
    for id in 0..count {
        socket.send_to(&web_query(id), server).await.expect("send");
    }
    let mut codes = Vec::new();
    let mut buf = vec![0u8; 4096];
    for _ in 0..count {
        let (len, _) = tokio::time::timeout(Duration::from_secs(3), socket.recv_from(&mut buf))
            .await
            .expect("every query is answered")
            .expect("recv");
        codes.push(
            Message::from_vec(&buf[..len])
                .expect("a DNS response")
                .response_code(),
        );
    }
    codes
}

/// One A query for `web.test.wg.internal` over TCP from 127.0.0.1: its response code.
async fn ask_tcp(server: SocketAddr) -> ResponseCode {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let bytes = web_query(7);
    let mut stream = tokio::net::TcpStream::connect(server)
        .await
        .expect("connect");
    let length = u16::try_from(bytes.len()).expect("small").to_be_bytes();
    stream.write_all(&length).await.expect("send");
    stream.write_all(&bytes).await.expect("send");
    let mut length = [0u8; 2];
    stream.read_exact(&mut length).await.expect("answer length");
    let mut answer = vec![0u8; usize::from(u16::from_be_bytes(length))];
    stream.read_exact(&mut answer).await.expect("answer");
    Message::from_vec(&answer)
        .expect("a DNS response")
        .response_code()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_source_is_held_to_its_own_rate() {
    // 2 a second (also the burst): a token every 500 ms, slow enough for the timing below.
    let s = start(Options {
        rate_limit: NonZeroU32::new(2),
        ..Options::default()
    })
    .await;
    let target = SocketAddr::new(LOCALHOST, s.port);
    let flooder = UdpSocket::bind((LOCALHOST, 0)).await.expect("bind");
    let codes = ask_many(&flooder, target, 40).await;
    // TCP shares the source's budget: still spent (asked in-process, at once).
    assert_eq!(ask_tcp(target).await, ResponseCode::Refused);

    let answered = codes
        .iter()
        .filter(|c| **c == ResponseCode::NoError)
        .count();
    let refused = codes
        .iter()
        .filter(|c| **c == ResponseCode::Refused)
        .count();
    assert_eq!(answered + refused, 40, "{codes:?}");
    // The burst of 2, plus at most one token refilled while the packets went back and forth.
    assert!(
        (2..=3).contains(&answered),
        "answered {answered}: {codes:?}"
    );
    let counted = s.counters.snapshot();
    assert_eq!(
        counted.rate_limited,
        refused as u64 + 1,
        "the TCP query too"
    );
    assert_eq!(
        counted.refused, counted.rate_limited,
        "refusals are also counted by rcode"
    );

    // Another device is not held back by the first one's flood.
    let other = UdpSocket::bind((SECOND_DEVICE, 0)).await.expect("bind");
    assert_eq!(
        ask_many(&other, target, 2).await,
        [ResponseCode::NoError; 2]
    );
    // A second later the flooder has its budget back.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        ask_many(&flooder, target, 2).await,
        [ResponseCode::NoError; 2]
    );
    assert_eq!(s.counters.snapshot().rate_limited, counted.rate_limited);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_packets_do_not_stop_the_server() {
    let s = start(Options::default()).await;
    let target = SocketAddr::new(LOCALHOST, s.port);
    let sock = UdpSocket::bind((LOCALHOST, 0)).await.expect("bind");
    let mut seed: u32 = 0x1234_5678;
    let mut next = move || {
        seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        (seed >> 24) as u8
    };
    let mut packets: Vec<Vec<u8>> = vec![
        Vec::new(),
        vec![0],
        vec![0; 11],
        // A header promising one question and no body.
        vec![0x12, 0x34, 0x01, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0],
        // A header promising many questions with a truncated name.
        vec![
            0x12, 0x34, 0x01, 0x00, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0x3f, b'a',
        ],
        // A name made of a compression pointer to itself.
        vec![
            0x12, 0x34, 0x01, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0, 0xc0, 0x0c, 0, 1, 0, 1,
        ],
        // A response (QR set): must not be answered (reflection).
        vec![0x12, 0x34, 0x81, 0x80, 0, 0, 0, 0, 0, 0, 0, 0],
        vec![0xff; 4000],
    ];
    for len in [12usize, 13, 20, 40, 100, 300, 512, 1500] {
        for _ in 0..40 {
            packets.push((0..len).map(|_| next()).collect());
        }
    }
    for p in &packets {
        sock.send_to(p, target).await.expect("send");
    }
    // Garbage over TCP, too.
    {
        use tokio::io::AsyncWriteExt;
        let mut tcp = tokio::net::TcpStream::connect(target)
            .await
            .expect("connect");
        let _ = tcp
            .write_all(&[0x00, 0x05, 1, 2, 3, 4, 5, 0xff, 0xff, 9])
            .await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    check_both(
        &s,
        &["web.test.wg.internal", "A"],
        "NOERROR",
        &["web.test.wg.internal. A 127.0.0.10"],
        &[],
    )
    .await;
}

/// `dnsmasq` in the foreground on 127.0.0.2, answering `outside.test`; killed on drop.
struct Dnsmasq {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

async fn start_dnsmasq() -> Dnsmasq {
    let ip = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
    let (udp, tcp) = bind_pair(ip).await;
    let port = udp.local_addr().expect("addr").port();
    drop((udp, tcp));
    let mut cmd = Command::new("dnsmasq");
    cmd.args([
        "--keep-in-foreground",
        "--no-resolv",
        "--no-hosts",
        "--conf-file=/dev/null",
        "--pid-file",
        "--bind-interfaces",
        "--listen-address=127.0.0.2",
        &format!("--port={port}"),
        "--address=/outside.test/192.0.2.7",
        // `--address` answers carry TTL 0 (not cacheable) unless told otherwise.
        "--local-ttl=300",
    ])
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    if is_root() {
        cmd.arg("--user=root");
    }
    let child = cmd.spawn().expect("dnsmasq runs (apt-get install dnsmasq)");
    let server = Dnsmasq {
        child,
        addr: SocketAddr::new(ip, port),
    };
    for _ in 0..50 {
        let probe = dig_at(server.addr, &["+time=1", "outside.test", "A"]).await;
        if probe.status == "NOERROR" {
            return server;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("dnsmasq did not come up on {}", server.addr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwards_outside_names_to_upstream_and_caches() {
    let dnsmasq = start_dnsmasq().await;
    let s = start(Options {
        upstreams: vec![dnsmasq.addr],
        ..Options::default()
    })
    .await;
    for transport in ["+notcp", "+tcp"] {
        let r = dig(&s, &["+recurse", transport, "outside.test", "A"]).await;
        assert_eq!(r.status, "NOERROR", "{}", r.raw);
        assert_eq!(r.answers, ["outside.test. A 192.0.2.7"], "{}", r.raw);
        assert!(r.has_flag("ra"), "{}", r.raw);
        assert!(!r.has_flag("aa"), "{}", r.raw);
    }
    // Our own zone is still ours, not the upstream's.
    let own = dig(&s, &["web.test.wg.internal", "A"]).await;
    assert_eq!(own.answers, ["web.test.wg.internal. A 127.0.0.10"]);

    // With the upstream gone, the cached answer is still served; new names fail.
    drop(dnsmasq);
    let cached = dig(&s, &["outside.test", "A"]).await;
    assert_eq!(
        cached.answers,
        ["outside.test. A 192.0.2.7"],
        "{}",
        cached.raw
    );
    let uncached = dig(&s, &["+time=5", "elsewhere.test", "A"]).await;
    assert_eq!(uncached.status, "SERVFAIL", "{}", uncached.raw);
    let counters = s.counters.snapshot();
    assert!(counters.forwarded >= 4, "{counters:?}");
    assert!(counters.servfail >= 1, "{counters:?}");
}
