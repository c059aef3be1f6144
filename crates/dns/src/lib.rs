//! Watchgrid's Magic DNS: an in-memory, tenant-aware authoritative zone for device names
//! (`<name>.<tenant>.<domain>`) and their PTR names, custom records, forwarding with a small
//! cache for names outside the zone, and a UDP + TCP server on `hickory-server`.
//!
//! This crate knows nothing of HTTP or SQL: the server crate feeds it device and record changes
//! ([`MagicDns`]), tells it which tenant a source address belongs to, and exports its
//! [`QueryCounters`] as metrics. See `docs/dns.md`.
#![forbid(unsafe_code)]

mod forward;
mod records;
mod server;
mod udp;
mod zone;

pub use forward::{Forwarder, DEFAULT_CACHE_CAPACITY};
pub use records::{
    normalize_host_label, normalize_record_name, DnsError, Record, RecordData, MAX_TTL,
    MAX_TXT_LEN, MIN_TTL,
};
pub use server::{serve, serve_sockets, serve_until, CounterSnapshot, DnsHandler, QueryCounters};
pub use zone::{MagicDns, Resolution, ZoneAnswer, APEX_TTL, DEVICE_TTL, NEGATIVE_TTL};
