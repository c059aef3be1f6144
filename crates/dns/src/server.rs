//! The DNS front end: a `hickory-server` request handler that maps each query's source address
//! to a tenant, limits each source's query rate, answers from the zone or forwards, counts
//! responses by code, and `serve` to run it on a UDP socket and a TCP listener.

use std::fmt;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use hickory_proto::op::{Edns, Header, Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::{DNSClass, RData, Record as WireRecord, RecordType};
use hickory_proto::xfer::Protocol;
use hickory_proto::ProtoError;
use hickory_server::authority::MessageResponseBuilder;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::ServerFuture;
use tokio::net::{TcpListener, UdpSocket};

use crate::forward::Forwarder;
use crate::zone::{MagicDns, Resolution};

/// How long an idle TCP connection is kept.
const TCP_TIMEOUT: Duration = Duration::from_secs(10);
/// The smallest UDP payload any client gets (RFC 6891: values below 512 are treated as 512).
const MIN_UDP_PAYLOAD: u16 = 512;
/// The largest UDP payload offered in our OPT record.
const MAX_UDP_PAYLOAD: u16 = 4096;
/// How often sources whose bucket has refilled are forgotten (bounded memory under a spray of
/// source addresses).
const FORGET_IDLE_SOURCES: Duration = Duration::from_secs(60);

type TenantOf = dyn Fn(IpAddr) -> Option<String> + Send + Sync;

/// Responses sent, by response code. The server exports these as metrics. Packets hickory
/// rejects before they reach the handler (unparseable headers are dropped; a parseable header
/// with a bad body gets FORMERR) are not counted here.
#[derive(Debug, Default)]
pub struct QueryCounters {
    noerror: AtomicU64,
    nxdomain: AtomicU64,
    refused: AtomicU64,
    servfail: AtomicU64,
    formerr: AtomicU64,
    notimp: AtomicU64,
    other: AtomicU64,
    forwarded: AtomicU64,
    rate_limited: AtomicU64,
}

/// A point-in-time copy of [`QueryCounters`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CounterSnapshot {
    pub noerror: u64,
    pub nxdomain: u64,
    pub refused: u64,
    pub servfail: u64,
    pub formerr: u64,
    pub notimp: u64,
    pub other: u64,
    /// Queries handed to the forwarder (cache or upstream), whatever the outcome; they are
    /// also counted by rcode.
    pub forwarded: u64,
    /// Queries refused because their source went over its rate (see
    /// [`DnsHandler::with_rate_limit`]); also counted as `refused`.
    pub rate_limited: u64,
}

impl QueryCounters {
    fn record(&self, rcode: ResponseCode) {
        let counter = match rcode {
            ResponseCode::NoError => &self.noerror,
            ResponseCode::NXDomain => &self.nxdomain,
            ResponseCode::Refused => &self.refused,
            ResponseCode::ServFail => &self.servfail,
            ResponseCode::FormErr => &self.formerr,
            ResponseCode::NotImp => &self.notimp,
            _ => &self.other,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> CounterSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        CounterSnapshot {
            noerror: get(&self.noerror),
            nxdomain: get(&self.nxdomain),
            refused: get(&self.refused),
            servfail: get(&self.servfail),
            formerr: get(&self.formerr),
            notimp: get(&self.notimp),
            other: get(&self.other),
            forwarded: get(&self.forwarded),
            rate_limited: get(&self.rate_limited),
        }
    }
}

/// Answers DNS queries for Magic DNS. Build it with the zone and the source-to-tenant mapping
/// (the server's device index), then optionally add upstream resolvers.
pub struct DnsHandler {
    zone: MagicDns,
    tenant_of: Arc<TenantOf>,
    forwarder: Option<Forwarder>,
    counters: Arc<QueryCounters>,
    /// Per source address; none when unlimited.
    limiter: Option<DefaultKeyedRateLimiter<IpAddr>>,
}

impl fmt::Debug for DnsHandler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DnsHandler")
            .field("zone", &self.zone.domain())
            .field("forwarder", &self.forwarder)
            .finish_non_exhaustive()
    }
}

impl DnsHandler {
    /// `tenant_of` maps a query's source address (IPv4-mapped IPv6 already unwrapped) to the
    /// tenant slug of the device using it; `None` means an unknown source, which is refused.
    pub fn new(
        zone: MagicDns,
        tenant_of: impl Fn(IpAddr) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        Self {
            zone,
            tenant_of: Arc::new(tenant_of),
            forwarder: None,
            counters: Arc::new(QueryCounters::default()),
            limiter: None,
        }
    }

    /// Answers at most `per_second` queries a second from each device's address, with bursts
    /// of as many; the rest get REFUSED at once (no zone lookup, no forwarding) and count as
    /// `rate_limited`. Only sources that `tenant_of` knows are counted (others are refused
    /// anyway), so the limiter holds at most one bucket per device.
    pub fn with_rate_limit(mut self, per_second: NonZeroU32) -> Self {
        self.limiter = Some(RateLimiter::keyed(
            Quota::per_second(per_second).allow_burst(per_second),
        ));
        self
    }

    /// Forgets sources whose bucket has refilled; the serving loops call it every minute.
    pub fn forget_idle_sources(&self) {
        if let Some(limiter) = &self.limiter {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }

    /// Sources the rate limiter currently tracks.
    pub fn tracked_sources(&self) -> usize {
        self.limiter.as_ref().map_or(0, |l| l.len())
    }

    /// Forwards names outside the zone to these resolvers (in order), for sources inside the
    /// overlay. An empty list means REFUSED for such names, as without this call.
    pub fn with_upstreams(mut self, upstreams: Vec<SocketAddr>) -> Self {
        self.forwarder = (!upstreams.is_empty()).then(|| Forwarder::new(upstreams));
        self
    }

    /// Counts into `counters` (shared with whoever exports them) instead of a fresh set.
    pub fn with_counters(mut self, counters: Arc<QueryCounters>) -> Self {
        self.counters = counters;
        self
    }

    /// The counters this handler updates; keep a clone to export them.
    pub fn counters(&self) -> Arc<QueryCounters> {
        Arc::clone(&self.counters)
    }

    /// Decides the response code and sections for one request.
    async fn answer(&self, request: &Request) -> Answer {
        if request.op_code() != OpCode::Query || request.message_type() != MessageType::Query {
            return Answer::error(ResponseCode::NotImp);
        }
        let Ok(info) = request.request_info() else {
            // Zero or several questions.
            return Answer::error(ResponseCode::FormErr);
        };
        let src = request.src().ip().to_canonical();
        let Some(tenant) = (self.tenant_of)(src).map(|mut t| {
            t.make_ascii_lowercase();
            t
        }) else {
            return Answer::error(ResponseCode::Refused);
        };
        // Only known devices' addresses get a bucket, so a spray of other (or spoofed unknown)
        // sources, already refused above, cannot grow the limiter's table.
        if let Some(limiter) = &self.limiter {
            if limiter.check_key(&src).is_err() {
                self.counters.rate_limited.fetch_add(1, Ordering::Relaxed);
                return Answer::error(ResponseCode::Refused);
            }
        }
        let query = info.query;
        if query.query_class() != DNSClass::IN
            || matches!(query.query_type(), RecordType::AXFR | RecordType::IXFR)
        {
            return Answer::error(ResponseCode::Refused);
        }
        match self
            .zone
            .resolve(&tenant, query.original().name(), query.query_type())
        {
            Resolution::Authoritative(zone_answer) => Answer {
                rcode: zone_answer.rcode,
                authoritative: true,
                recursion_available: self.forwarder.is_some(),
                answers: zone_answer.answers,
                authority: zone_answer.authority,
                additionals: zone_answer.additionals,
            },
            Resolution::OutOfZone => {
                let in_overlay = matches!(src, IpAddr::V4(v4) if self.zone.overlay().contains(&v4));
                let Some(forwarder) = self.forwarder.as_ref().filter(|_| in_overlay) else {
                    // Never an open resolver.
                    return Answer::error(ResponseCode::Refused);
                };
                self.counters.forwarded.fetch_add(1, Ordering::Relaxed);
                match forwarder.forward(query.original()).await {
                    Some(f) => Answer {
                        rcode: f.rcode,
                        authoritative: false,
                        recursion_available: true,
                        answers: f.answers,
                        authority: f.authority,
                        additionals: f.additionals,
                    },
                    None => Answer {
                        recursion_available: true,
                        ..Answer::error(ResponseCode::ServFail)
                    },
                }
            }
        }
    }
}

struct Answer {
    rcode: ResponseCode,
    authoritative: bool,
    recursion_available: bool,
    answers: Vec<WireRecord>,
    authority: Vec<WireRecord>,
    additionals: Vec<WireRecord>,
}

impl Answer {
    fn error(rcode: ResponseCode) -> Self {
        Self {
            rcode,
            authoritative: false,
            recursion_available: false,
            answers: Vec::new(),
            authority: Vec::new(),
            additionals: Vec::new(),
        }
    }
}

#[async_trait::async_trait]
impl RequestHandler for DnsHandler {
    async fn handle_request<R: ResponseHandler>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        let mut answer = self.answer(request).await;
        self.counters.record(answer.rcode);

        let mut header = Header::response_from_request(request.header());
        header.set_response_code(answer.rcode);
        header.set_authoritative(answer.authoritative);
        header.set_recursion_available(answer.recursion_available);

        // hickory bounds a UDP response to the client's EDNS size, but without EDNS it allows
        // 4096 bytes; RFC 1035 allows 512. Over that, send no records and set TC so the client
        // retries over TCP.
        // Encoding the response only to measure it costs as much as sending it; a cheap upper
        // bound settles the common case (a few small records).
        if request.protocol() == Protocol::Udp
            && request.edns().is_none()
            && size_bound(request, &answer).is_none_or(|b| b > usize::from(MIN_UDP_PAYLOAD))
            && wire_size(request, &answer) > usize::from(MIN_UDP_PAYLOAD)
        {
            answer.answers.clear();
            answer.authority.clear();
            answer.additionals.clear();
            header.set_truncated(true);
        }

        let mut builder = MessageResponseBuilder::from_message_request(request);
        // EDNS: answer with OPT when asked with it; the payload size offered by the client bounds
        // the UDP response (hickory sets TC and drops what does not fit).
        if let Some(req_edns) = request.edns() {
            let mut edns = Edns::new();
            edns.set_max_payload(
                req_edns
                    .max_payload()
                    .clamp(MIN_UDP_PAYLOAD, MAX_UDP_PAYLOAD),
            )
            .set_version(0);
            builder.edns(edns);
        }
        let response = builder.build(
            header,
            answer.answers.iter(),
            answer.authority.iter(),
            std::iter::empty(),
            answer.additionals.iter(),
        );
        match response_handle.send_response(response).await {
            Ok(info) => info,
            Err(error) => {
                tracing::warn!(%error, "sending a DNS response failed");
                let mut failed = Header::response_from_request(request.header());
                failed.set_response_code(ResponseCode::ServFail);
                failed.into()
            }
        }
    }
}

/// An upper bound of the encoded size of a response carrying `answer` (without EDNS, without
/// name compression); `None` when a record's type is not sized here (forwarded answers).
fn size_bound(request: &Request, answer: &Answer) -> Option<usize> {
    // A name's wire form is its text length plus one (the root label).
    let name = |n: &hickory_proto::rr::Name| n.len() + 1;
    let mut size = 12;
    for query in request.queries() {
        size += name(query.original().name()) + 4;
    }
    for record in answer
        .answers
        .iter()
        .chain(&answer.authority)
        .chain(&answer.additionals)
    {
        let data = match record.data() {
            RData::A(_) => 4,
            RData::AAAA(_) => 16,
            RData::CNAME(target) => name(&target.0),
            RData::PTR(target) => name(&target.0),
            RData::NS(target) => name(&target.0),
            RData::SOA(soa) => name(soa.mname()) + name(soa.rname()) + 20,
            RData::SRV(srv) => 6 + name(srv.target()),
            RData::TXT(txt) => txt.iter().map(|s| s.len() + 1).sum(),
            _ => return None,
        };
        // Owner, type, class, TTL, data length.
        size += name(record.name()) + 10 + data;
    }
    Some(size)
}

/// The encoded size of a response carrying `answer` (without EDNS).
fn wire_size(request: &Request, answer: &Answer) -> usize {
    let mut message = Message::new();
    message
        .add_queries(request.queries().iter().map(|q| q.original().clone()))
        .add_answers(answer.answers.iter().cloned())
        .add_name_servers(answer.authority.iter().cloned())
        .add_additionals(answer.additionals.iter().cloned());
    // Encoding our own records does not fail; if it did, assume the worst.
    message.to_vec().map_or(usize::MAX, |bytes| bytes.len())
}

/// Serves `handler` on a UDP socket and a TCP listener until an I/O error ends it (or the
/// future is dropped).
pub async fn serve(
    udp: UdpSocket,
    tcp: TcpListener,
    handler: DnsHandler,
) -> Result<(), ProtoError> {
    run(vec![udp], tcp, handler, std::future::pending()).await
}

/// Like [`serve`] with several UDP sockets bound to the same address (`SO_REUSEPORT`): the
/// kernel spreads clients over them and each has its own receive loop.
pub async fn serve_sockets(
    udp: Vec<UdpSocket>,
    tcp: TcpListener,
    handler: DnsHandler,
) -> Result<(), ProtoError> {
    run(udp, tcp, handler, std::future::pending()).await
}

/// Like [`serve`], and stops gracefully (in-flight TCP requests finish) when `shutdown`
/// completes.
pub async fn serve_until(
    udp: UdpSocket,
    tcp: TcpListener,
    handler: DnsHandler,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ProtoError> {
    run(vec![udp], tcp, handler, shutdown).await
}

/// UDP through the fast path (`crate::udp`), TCP through hickory-server.
async fn run(
    udp: Vec<UdpSocket>,
    tcp: TcpListener,
    handler: DnsHandler,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ProtoError> {
    let handler = Arc::new(handler);
    let mut server = ServerFuture::new(Shared(Arc::clone(&handler)));
    server.register_listener(tcp, TCP_TIMEOUT);
    let mut loops = tokio::task::JoinSet::new();
    for socket in udp {
        loops.spawn(crate::udp::serve_udp(
            Arc::new(socket),
            Arc::clone(&handler),
        ));
    }
    // A JoinSet of its own: aborted when `run` returns or is dropped.
    let mut background = tokio::task::JoinSet::new();
    let housekeeping = Arc::clone(&handler);
    background.spawn(async move {
        let mut tick = tokio::time::interval(FORGET_IDLE_SOURCES);
        loop {
            tick.tick().await;
            housekeeping.forget_idle_sources();
        }
    });
    tokio::select! {
        result = server.block_until_done() => result,
        Some(ended) = loops.join_next() => Err(ProtoError::from(format!(
            "the UDP receive loop ended: {ended:?}"
        ))),
        () = shutdown => server.shutdown_gracefully().await,
    }
}

/// The handler shared between hickory-server (TCP) and the UDP loops.
struct Shared(Arc<DnsHandler>);

#[async_trait::async_trait]
impl RequestHandler for Shared {
    async fn handle_request<R: ResponseHandler>(
        &self,
        request: &Request,
        response_handle: R,
    ) -> ResponseInfo {
        self.0.handle_request(request, response_handle).await
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        reason = "a test should fail loudly on any unexpected error"
    )]

    use hickory_proto::op::{Message, Query};
    use hickory_proto::rr::rdata::{A, CNAME, SOA, SRV, TXT};
    use hickory_proto::rr::Name;
    use hickory_proto::serialize::binary::{BinDecodable, BinEncodable};
    use hickory_server::server::Request;

    use super::*;

    /// The bound is never below the real size, for every record type the zone produces.
    #[test]
    fn the_size_bound_is_an_upper_bound() {
        let qname = Name::from_ascii("www.acme.watchgrid.internal.").unwrap();
        let mut query = Message::new();
        query.add_query(Query::query(qname.clone(), RecordType::A));
        let bytes = query.to_bytes().unwrap();
        let request = Request::new(
            hickory_server::authority::MessageRequest::from_bytes(&bytes).unwrap(),
            "127.0.0.1:53".parse().unwrap(),
            Protocol::Udp,
        );
        let name = |s: &str| Name::from_ascii(s).unwrap();
        let records = vec![
            WireRecord::from_rdata(
                qname.clone(),
                60,
                RData::CNAME(CNAME(name("web.acme.watchgrid.internal."))),
            ),
            WireRecord::from_rdata(
                name("web.acme.watchgrid.internal."),
                60,
                RData::A(A::new(100, 64, 0, 2)),
            ),
            WireRecord::from_rdata(
                qname.clone(),
                60,
                RData::TXT(TXT::new(vec!["a".repeat(250), "b".into()])),
            ),
            WireRecord::from_rdata(
                qname.clone(),
                60,
                RData::SRV(SRV::new(1, 2, 3, name("web.acme.watchgrid.internal."))),
            ),
        ];
        let soa = WireRecord::from_rdata(
            name("watchgrid.internal."),
            30,
            RData::SOA(SOA::new(
                name("ns.watchgrid.internal."),
                name("hostmaster.watchgrid.internal."),
                1,
                2,
                3,
                4,
                5,
            )),
        );
        let answer = Answer {
            rcode: ResponseCode::NoError,
            authoritative: true,
            recursion_available: false,
            answers: records,
            authority: vec![soa],
            additionals: Vec::new(),
        };
        let bound = size_bound(&request, &answer).unwrap();
        let exact = wire_size(&request, &answer);
        assert!(bound >= exact, "bound {bound} < exact {exact}");
        // Compression only shrinks; the bound stays close for this set.
        assert!(bound < exact + 200, "bound {bound} far above {exact}");
    }
}
