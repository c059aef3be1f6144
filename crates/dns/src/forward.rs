//! Forwarding for names outside the zone: plain DNS to configured upstream resolvers (UDP,
//! TCP when truncated) with a small TTL-respecting cache of bounded size.

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RData, Record as WireRecord, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// Cache entries kept at most, unless told otherwise.
pub const DEFAULT_CACHE_CAPACITY: usize = 1024;
/// Longest time any answer is cached, whatever its TTL.
const MAX_CACHE_TTL: u32 = 3600;
/// How long one upstream gets to answer before the next is tried.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);
/// The EDNS buffer size offered upstream (the DNS flag day 2020 value).
const UPSTREAM_UDP_SIZE: u16 = 1232;

/// An upstream's answer, as relayed to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forwarded {
    pub rcode: ResponseCode,
    pub answers: Vec<WireRecord>,
    pub authority: Vec<WireRecord>,
    pub additionals: Vec<WireRecord>,
}

type CacheKey = (Name, RecordType, DNSClass);

#[derive(Debug)]
struct CacheEntry {
    stored: Instant,
    expires: Instant,
    answer: Forwarded,
}

/// Forwards queries to upstream resolvers, in order, and caches what they answer.
#[derive(Debug)]
pub struct Forwarder {
    upstreams: Vec<SocketAddr>,
    capacity: usize,
    cache: Mutex<HashMap<CacheKey, CacheEntry>>,
}

impl Forwarder {
    pub fn new(upstreams: Vec<SocketAddr>) -> Self {
        Self::with_capacity(upstreams, DEFAULT_CACHE_CAPACITY)
    }

    pub fn with_capacity(upstreams: Vec<SocketAddr>, capacity: usize) -> Self {
        Self {
            upstreams,
            capacity,
            cache: Mutex::new(HashMap::new()),
        }
    }

    pub fn upstreams(&self) -> &[SocketAddr] {
        &self.upstreams
    }

    /// Number of entries in the cache (expired ones included until they are evicted).
    pub fn cache_len(&self) -> usize {
        self.cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Answers from the cache or the first upstream that answers; `None` when none does.
    pub async fn forward(&self, query: &Query) -> Option<Forwarded> {
        let key = (
            query.name().to_lowercase(),
            query.query_type(),
            query.query_class(),
        );
        if let Some(hit) = self.cached(&key, Instant::now()) {
            return Some(hit);
        }
        let mut last = None;
        for upstream in &self.upstreams {
            match exchange(*upstream, query).await {
                Ok(answer) => {
                    let usable =
                        !matches!(answer.rcode, ResponseCode::ServFail | ResponseCode::Refused);
                    if usable {
                        self.store(key, answer.clone(), Instant::now());
                        return Some(answer);
                    }
                    last = Some(answer);
                }
                Err(error) => {
                    tracing::debug!(%upstream, %error, "upstream did not answer");
                }
            }
        }
        last
    }

    fn cached(&self, key: &CacheKey, now: Instant) -> Option<Forwarded> {
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = cache.get(key)?;
        if entry.expires <= now {
            cache.remove(key);
            return None;
        }
        let elapsed = u32::try_from(now.duration_since(entry.stored).as_secs()).unwrap_or(u32::MAX);
        let mut answer = entry.answer.clone();
        for record in answer
            .answers
            .iter_mut()
            .chain(answer.authority.iter_mut())
            .chain(answer.additionals.iter_mut())
        {
            record.set_ttl(record.ttl().saturating_sub(elapsed));
        }
        Some(answer)
    }

    fn store(&self, key: CacheKey, answer: Forwarded, now: Instant) {
        let Some(ttl) = cache_ttl(&answer) else {
            return;
        };
        if ttl == 0 || self.capacity == 0 {
            return;
        }
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        if cache.len() >= self.capacity && !cache.contains_key(&key) {
            cache.retain(|_, e| e.expires > now);
            if cache.len() >= self.capacity {
                // Full of live entries: drop the one closest to expiry.
                if let Some(victim) = cache
                    .iter()
                    .min_by_key(|(_, e)| e.expires)
                    .map(|(k, _)| k.clone())
                {
                    cache.remove(&victim);
                }
            }
        }
        cache.insert(
            key,
            CacheEntry {
                stored: now,
                expires: now + Duration::from_secs(u64::from(ttl)),
                answer,
            },
        );
    }
}

/// How long an answer may be cached: the smallest TTL among its records; for a negative answer
/// the SOA's TTL capped by its minimum (RFC 2308). Errors other than NXDOMAIN are not cached.
fn cache_ttl(answer: &Forwarded) -> Option<u32> {
    match answer.rcode {
        ResponseCode::NoError | ResponseCode::NXDomain => {}
        _ => return None,
    }
    let records = answer
        .answers
        .iter()
        .chain(answer.authority.iter())
        .chain(answer.additionals.iter());
    let min = if answer.answers.is_empty() {
        answer.authority.iter().find_map(|r| match r.data() {
            RData::SOA(soa) => Some(r.ttl().min(soa.minimum())),
            _ => None,
        })?
    } else {
        records.map(WireRecord::ttl).min()?
    };
    Some(min.min(MAX_CACHE_TTL))
}

#[derive(Debug, thiserror::Error)]
enum ExchangeError {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("timed out")]
    Timeout,
    #[error("bad message: {0}")]
    Proto(#[from] hickory_proto::ProtoError),
    #[error("response does not match the query")]
    Mismatch,
}

async fn exchange(upstream: SocketAddr, query: &Query) -> Result<Forwarded, ExchangeError> {
    let id: u16 = rand::random();
    let mut message = Message::new();
    message
        .set_id(id)
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(true)
        .add_query(query.clone());
    let mut edns = Edns::new();
    edns.set_max_payload(UPSTREAM_UDP_SIZE).set_version(0);
    message.set_edns(edns);
    let bytes = message.to_vec()?;

    let response = tokio::time::timeout(UPSTREAM_TIMEOUT, async {
        let response = udp_exchange(upstream, &bytes, id, query).await?;
        if response.truncated() {
            return tcp_exchange(upstream, &bytes, id, query).await;
        }
        Ok(response)
    })
    .await
    .map_err(|_| ExchangeError::Timeout)??;

    let mut response = response;
    let strip_opt = |records: Vec<WireRecord>| -> Vec<WireRecord> {
        records
            .into_iter()
            .filter(|r| r.record_type() != RecordType::OPT)
            .collect()
    };
    Ok(Forwarded {
        rcode: response.response_code(),
        answers: strip_opt(response.take_answers()),
        authority: strip_opt(response.take_name_servers()),
        additionals: strip_opt(response.take_additionals()),
    })
}

fn matches(response: &Message, id: u16, query: &Query) -> bool {
    response.id() == id
        && response.message_type() == MessageType::Response
        && response.queries().len() == 1
        && response.queries()[0].name().to_lowercase() == query.name().to_lowercase()
        && response.queries()[0].query_type() == query.query_type()
}

async fn udp_exchange(
    upstream: SocketAddr,
    bytes: &[u8],
    id: u16,
    query: &Query,
) -> Result<Message, ExchangeError> {
    let local: SocketAddr = if upstream.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = UdpSocket::bind(local).await?;
    socket.connect(upstream).await?;
    socket.send(bytes).await?;
    let mut buf = vec![0u8; 65_535];
    loop {
        let n = socket.recv(&mut buf).await?;
        // Ignore anything that is not the answer to this query (spoofing, stale packets).
        if let Ok(response) = Message::from_vec(&buf[..n]) {
            if matches(&response, id, query) {
                return Ok(response);
            }
        }
    }
}

async fn tcp_exchange(
    upstream: SocketAddr,
    bytes: &[u8],
    id: u16,
    query: &Query,
) -> Result<Message, ExchangeError> {
    let mut stream = TcpStream::connect(upstream).await?;
    let len = u16::try_from(bytes.len()).map_err(|_| ExchangeError::Mismatch)?;
    let mut framed = Vec::with_capacity(bytes.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(bytes);
    stream.write_all(&framed).await?;
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).await?;
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut buf).await?;
    let response = Message::from_vec(&buf)?;
    if !matches(&response, id, query) {
        return Err(ExchangeError::Mismatch);
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::rr::rdata::{A, SOA};

    fn a(name: &str, ttl: u32) -> WireRecord {
        WireRecord::from_rdata(
            Name::from_ascii(name).expect("name"),
            ttl,
            RData::A(A(Ipv4Addr::new(192, 0, 2, 1))),
        )
    }

    fn key(name: &str) -> CacheKey {
        (
            Name::from_ascii(name).expect("name"),
            RecordType::A,
            DNSClass::IN,
        )
    }

    fn positive(name: &str, ttl: u32) -> Forwarded {
        Forwarded {
            rcode: ResponseCode::NoError,
            answers: vec![a(name, ttl)],
            authority: Vec::new(),
            additionals: Vec::new(),
        }
    }

    #[test]
    fn ttls() {
        assert_eq!(cache_ttl(&positive("a.test.", 90)), Some(90));
        assert_eq!(cache_ttl(&positive("a.test.", 90_000)), Some(MAX_CACHE_TTL));
        let soa = SOA::new(Name::root(), Name::root(), 1, 1, 1, 1, 40);
        let negative = Forwarded {
            rcode: ResponseCode::NXDomain,
            answers: Vec::new(),
            authority: vec![WireRecord::from_rdata(Name::root(), 600, RData::SOA(soa))],
            additionals: Vec::new(),
        };
        assert_eq!(cache_ttl(&negative), Some(40));
        let servfail = Forwarded {
            rcode: ResponseCode::ServFail,
            ..positive("a.test.", 90)
        };
        assert_eq!(cache_ttl(&servfail), None);
        let no_soa = Forwarded {
            authority: Vec::new(),
            ..negative
        };
        assert_eq!(cache_ttl(&no_soa), None);
    }

    #[test]
    fn cache_expires_counts_down_and_is_bounded() {
        let f = Forwarder::with_capacity(Vec::new(), 2);
        let t0 = Instant::now();
        f.store(key("a.test."), positive("a.test.", 10), t0);
        let hit = f
            .cached(&key("a.test."), t0 + Duration::from_secs(4))
            .expect("hit");
        assert_eq!(hit.answers[0].ttl(), 6);
        assert!(f
            .cached(&key("a.test."), t0 + Duration::from_secs(10))
            .is_none());
        assert_eq!(f.cache_len(), 0);

        f.store(key("a.test."), positive("a.test.", 100), t0);
        f.store(key("b.test."), positive("b.test.", 50), t0);
        f.store(key("c.test."), positive("c.test.", 200), t0);
        assert_eq!(f.cache_len(), 2);
        // The entry closest to expiry made room.
        assert!(f.cached(&key("b.test."), t0).is_none());
        assert!(f.cached(&key("a.test."), t0).is_some());
        assert!(f.cached(&key("c.test."), t0).is_some());
    }

    #[tokio::test]
    async fn no_upstream_answers_none() {
        // A closed port on localhost: no answer, no panic.
        let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let addr = socket.local_addr().expect("addr");
        drop(socket);
        let f = Forwarder::new(vec![addr]);
        let q = Query::query(Name::from_ascii("x.test.").expect("name"), RecordType::A);
        assert_eq!(f.forward(&q).await, None);
    }
}
