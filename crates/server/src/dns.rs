//! Magic DNS inside the server: the zone (crate `watchgrid-dns`) kept in step with the device
//! index, the tenants and the custom records; custom-record parsing for the API; and the UDP +
//! TCP listeners on the overlay address. No DNS query touches the database.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{PoisonError, RwLock};
use std::time::Duration;

use tokio::net::{TcpListener, UdpSocket};
use uuid::Uuid;
use watchgrid_dns::{DnsError, DnsHandler, MagicDns, Record, RecordData};
use watchgrid_store::dns::DnsRecordRow;
use watchgrid_store::tenants::TenantRow;
use watchgrid_wire::{DnsRecordType, DnsSettings};

use crate::config::{DnsConfig, FleetConfig, WgBackendChoice};
use crate::fleet::index::{DeviceEntry, IndexObserver};

/// How often binding the listeners is retried while the overlay address does not exist.
const BIND_RETRY: Duration = Duration::from_secs(2);

/// TTL of a custom record created without one.
pub const DEFAULT_RECORD_TTL: u32 = 300;

pub use watchgrid_core::validate::RESERVED_TENANT_SLUGS;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Status {
    /// `WATCHGRID_DNS_LISTEN=off`.
    Off,
    /// The fleet has not started yet (migrations, device index).
    NotStarted,
    /// Binding failed; retried.
    Waiting(String),
    Listening(SocketAddr),
}

/// The server's Magic DNS state; one per process, in [`crate::fleet::Fleet`].
#[derive(Debug)]
pub struct MagicDnsService {
    pub zone: MagicDns,
    pub config: DnsConfig,
    /// Whether a failure to listen is a health problem (see [`MagicDnsService::checked`]).
    checked: bool,
    /// The server's overlay address: what agents are told when the listener is a wildcard.
    server_ip: Ipv4Addr,
    tenants: RwLock<HashMap<Uuid, String>>,
    status: RwLock<Status>,
}

impl MagicDnsService {
    pub fn new(config: &DnsConfig, fleet: &FleetConfig) -> anyhow::Result<Self> {
        let zone = MagicDns::new(&config.domain, IpAddr::V4(fleet.server_ip()), fleet.overlay)
            .map_err(|e| anyhow::anyhow!("WATCHGRID_DNS_DOMAIN: {e}"))?;
        let status = if config.listen.is_some() {
            Status::NotStarted
        } else {
            Status::Off
        };
        Ok(Self {
            zone,
            config: config.clone(),
            checked: config.listen.is_some()
                && (config.listen_explicit || fleet.backend != WgBackendChoice::None),
            server_ip: fleet.server_ip(),
            tenants: RwLock::new(HashMap::new()),
            status: RwLock::new(status),
        })
    }

    /// Whether `/healthz` has a `dns` check: DNS is on, and either the server drives its own
    /// WireGuard interface (so the overlay address will exist) or the listener was configured
    /// explicitly. A development server without an interface logs a warning instead.
    pub fn checked(&self) -> bool {
        self.checked
    }

    /// The `dns` health check.
    pub fn check(&self) -> Result<(), String> {
        match &*self.status.read().unwrap_or_else(PoisonError::into_inner) {
            Status::Listening(_) | Status::Off => Ok(()),
            Status::NotStarted => Err("not started yet (waiting for the database)".into()),
            Status::Waiting(reason) => Err(reason.clone()),
        }
    }

    fn set_status(&self, status: Status) {
        *self.status.write().unwrap_or_else(PoisonError::into_inner) = status;
    }

    /// What agents are told for split DNS; `None` when DNS is off. A wildcard listener
    /// (`0.0.0.0:53`) is announced as the server's overlay address, which it includes.
    pub fn settings(&self) -> Option<DnsSettings> {
        let listen = self.config.listen?;
        let server = if listen.ip().is_unspecified() {
            IpAddr::V4(self.server_ip)
        } else {
            listen.ip()
        };
        Some(DnsSettings {
            server: server.to_string(),
            port: listen.port(),
            domain: self.config.domain.clone(),
        })
    }

    /// `<tenant_slug>.<domain>`: the tenant's part of the zone.
    pub fn tenant_zone(&self, tenant_slug: &str) -> String {
        format!("{tenant_slug}.{}", self.config.domain)
    }

    /// Replace the tenant map (start-up, before the device index is loaded; and when another
    /// replica created or deleted a tenant). Tenants that are gone leave the zone.
    pub fn load_tenants(&self, rows: &[TenantRow]) {
        let mut tenants = self.tenants.write().unwrap_or_else(PoisonError::into_inner);
        let fresh: HashMap<Uuid, String> = rows.iter().map(|t| (t.id, t.slug.clone())).collect();
        for (id, slug) in tenants.iter() {
            if !fresh.contains_key(id) {
                if let Err(err) = self.zone.remove_tenant(slug) {
                    tracing::warn!(tenant = %slug, error = %err, "removing a tenant from Magic DNS failed");
                }
            }
        }
        *tenants = fresh;
        for row in rows {
            if RESERVED_TENANT_SLUGS.contains(&row.slug.as_str()) {
                tracing::warn!(tenant = %row.slug, "this tenant's slug collides with a name of the Magic DNS zone itself; its names are not answered");
            }
        }
    }

    pub fn tenant_added(&self, id: Uuid, slug: &str) {
        self.tenants
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, slug.to_owned());
    }

    pub fn tenant_removed(&self, id: Uuid) {
        let slug = self
            .tenants
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&id);
        if let Some(slug) = slug {
            if let Err(err) = self.zone.remove_tenant(&slug) {
                tracing::warn!(tenant = %slug, error = %err, "removing a tenant from Magic DNS failed");
            }
        }
    }

    pub fn slug_of(&self, tenant: Uuid) -> Option<String> {
        self.tenants
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&tenant)
            .cloned()
    }

    /// Replace every custom record (start-up, after the devices; and when another replica
    /// changed records). Records the rules now reject are skipped with a warning naming them.
    pub fn load_records(&self, rows: &[DnsRecordRow]) {
        let mut sets: HashMap<(Uuid, &str), Vec<&DnsRecordRow>> = HashMap::new();
        for row in rows {
            sets.entry((row.tenant_id, &row.name))
                .or_default()
                .push(row);
        }
        let mut zone_sets = Vec::with_capacity(sets.len());
        for ((tenant, name), rows) in sets {
            let Some(slug) = self.slug_of(tenant) else {
                continue;
            };
            let records: Vec<Record> = rows
                .iter()
                .filter_map(|row| match record_of_row(row, &self.tenant_zone(&slug)) {
                    Ok(record) => Some(record),
                    Err((_, reason)) => {
                        tracing::warn!(record = %row.id, tenant = %slug, %name, %reason, "stored DNS record skipped");
                        None
                    }
                })
                .collect();
            zone_sets.push((slug, name.to_owned(), records));
        }
        for err in self.zone.replace_records(zone_sets) {
            tracing::warn!(error = %err, "DNS records not published");
        }
    }

    /// Publish the record set at `<name>.<slug>` (after the change committed).
    pub fn apply_records(&self, slug: &str, name: &str, records: Vec<Record>) {
        if let Err(err) = self.zone.set_records(slug, name, records) {
            tracing::warn!(tenant = %slug, %name, error = %err, "DNS records not published");
        }
    }

    fn publish_device(&self, entry: &DeviceEntry) {
        let Some(slug) = self.slug_of(entry.tenant_id) else {
            tracing::warn!(device = %entry.id, "device of an unknown tenant has no Magic DNS name");
            return;
        };
        if let Err(err) = self.zone.set_device(&slug, &entry.name, entry.overlay_ip) {
            tracing::warn!(device = %entry.id, tenant = %slug, name = %entry.name, error = %err, "device has no Magic DNS name");
        }
    }

    fn unpublish_device(&self, entry: &DeviceEntry) {
        if let Some(slug) = self.slug_of(entry.tenant_id) {
            if let Err(err) = self.zone.remove_device(&slug, &entry.name) {
                tracing::warn!(device = %entry.id, error = %err, "removing a Magic DNS name failed");
            }
        }
    }
}

impl IndexObserver for MagicDnsService {
    fn upserted(&self, old: Option<&DeviceEntry>, new: &DeviceEntry) {
        if let Some(old) = old {
            if old.name != new.name || old.tenant_id != new.tenant_id {
                self.unpublish_device(old);
            }
        }
        self.publish_device(new);
    }

    fn removed(&self, old: &DeviceEntry) {
        self.unpublish_device(old);
    }

    fn loaded(&self, all: &mut dyn Iterator<Item = &DeviceEntry>) {
        let devices: Vec<(String, String, Ipv4Addr)> = all
            .filter_map(|e| Some((self.slug_of(e.tenant_id)?, e.name.clone(), e.overlay_ip)))
            .collect();
        for err in self.zone.replace_devices(devices) {
            tracing::warn!(error = %err, "device has no Magic DNS name");
        }
    }
}

/// A record's field problem: the request field and the reason.
pub type FieldProblem = (&'static str, String);

/// Parse an API value of `kind` into zone data and its canonical text. CNAME and SRV targets
/// may be relative to `tenant_zone` (`web` means `web.<tenant_zone>.`); absolute targets must
/// lie inside it (SRV may use `.`, "no service").
pub fn parse_value(
    kind: DnsRecordType,
    value: &str,
    tenant_zone: &str,
) -> Result<(RecordData, String), FieldProblem> {
    let bad = |reason: &str| ("value", reason.to_owned());
    let value = if kind == DnsRecordType::Txt {
        value
    } else {
        value.trim()
    };
    match kind {
        DnsRecordType::A => {
            let ip: Ipv4Addr = value
                .parse()
                .map_err(|_| bad("must be an IPv4 address such as 192.0.2.10"))?;
            Ok((RecordData::A(ip), ip.to_string()))
        }
        DnsRecordType::Aaaa => {
            let ip: Ipv6Addr = value
                .parse()
                .map_err(|_| bad("must be an IPv6 address such as 2001:db8::10"))?;
            Ok((RecordData::Aaaa(ip), ip.to_string()))
        }
        DnsRecordType::Cname => {
            let target = target(value, tenant_zone, false)?;
            Ok((RecordData::Cname(target.clone()), target))
        }
        DnsRecordType::Txt => {
            if value.chars().any(|c| c.is_control() && c != '\t') {
                return Err(bad("must not contain control characters"));
            }
            Ok((RecordData::Txt(value.to_owned()), value.to_owned()))
        }
        DnsRecordType::Srv => {
            let parts: Vec<&str> = value.split_whitespace().collect();
            let [priority, weight, port, host] = parts[..] else {
                return Err(bad(
                    "must be `priority weight port target`, e.g. `10 5 8080 web`",
                ));
            };
            let number = |text: &str, what: &str| {
                text.parse::<u16>()
                    .map_err(|_| bad(&format!("the {what} must be a number from 0 to 65535")))
            };
            let (priority, weight, port) = (
                number(priority, "priority")?,
                number(weight, "weight")?,
                number(port, "port")?,
            );
            let host = target(host, tenant_zone, true)?;
            let text = format!("{priority} {weight} {port} {host}");
            Ok((
                RecordData::Srv {
                    priority,
                    weight,
                    port,
                    target: host,
                },
                text,
            ))
        }
    }
}

/// An absolute, lower-case target inside `tenant_zone`.
fn target(value: &str, tenant_zone: &str, allow_root: bool) -> Result<String, FieldProblem> {
    if value.is_empty() {
        return Err(("value", "must name a target".into()));
    }
    if value == "." {
        return if allow_root {
            Ok(".".into())
        } else {
            Err(("value", "the root is not a valid CNAME target".into()))
        };
    }
    let lower = value.to_ascii_lowercase();
    let absolute = if lower.ends_with('.') {
        lower
    } else {
        format!("{lower}.{tenant_zone}.")
    };
    let inside = absolute
        .strip_suffix(&format!(".{tenant_zone}."))
        .is_some_and(|rel| !rel.is_empty());
    if !inside {
        return Err((
            "value",
            format!(
                "target {absolute} is outside this tenant's zone {tenant_zone}: targets must be \
                 names under it (or relative names such as `web`)"
            ),
        ));
    }
    Ok(absolute)
}

/// The zone's record for a stored row.
pub fn record_of_row(row: &DnsRecordRow, tenant_zone: &str) -> Result<Record, FieldProblem> {
    let kind: DnsRecordType = row.record_type.parse().map_err(|e| ("type", e))?;
    let (data, _) = parse_value(kind, &row.value, tenant_zone)?;
    let ttl = u32::try_from(row.ttl).map_err(|_| ("ttl", "must be from 1 to 86400".to_owned()))?;
    Ok(Record::new(ttl, data))
}

/// The request field a zone rule violation is about, and a reason an operator can act on.
pub fn field_of(err: &DnsError) -> FieldProblem {
    match err {
        DnsError::InvalidName { .. } => ("name", err.to_string()),
        DnsError::InvalidTtl(_) => ("ttl", "must be from 1 to 86400 seconds".into()),
        DnsError::CnameConflict(name) => (
            "type",
            format!(
                "a CNAME must be the only data at its name: {name:?} already holds other records \
                 or a device, or a CNAME"
            ),
        ),
        DnsError::InvalidTarget { .. } | DnsError::TxtTooLong(_) => ("value", err.to_string()),
        DnsError::OutsideOverlay(_) => ("value", err.to_string()),
    }
}

/// The tenants the zone knows, by id.
impl MagicDnsService {
    pub fn known_tenants(&self) -> std::collections::HashSet<Uuid> {
        self.tenants
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .keys()
            .copied()
            .collect()
    }
}

/// Serve Magic DNS on `WATCHGRID_DNS_LISTEN` (UDP and TCP) until the process ends. The address is
/// normally the server's overlay address, which exists only once the WireGuard interface is up,
/// so binding is retried; meanwhile the `dns` health check (or, without one, a warning) says why.
/// `tenant_of` maps a query's source address to its device's tenant (the device index);
/// `counters` count the answers.
pub async fn serve(
    service: std::sync::Arc<MagicDnsService>,
    tenant_of: impl Fn(Ipv4Addr) -> Option<Uuid> + Send + Sync + 'static,
    counters: std::sync::Arc<watchgrid_dns::QueryCounters>,
) {
    let Some(address) = service.config.listen else {
        tracing::info!("Magic DNS is off (WATCHGRID_DNS_LISTEN=off)");
        return;
    };
    let mut warned = false;
    let (udp, tcp) = loop {
        match bind(address).await {
            Ok(sockets) => break sockets,
            Err(err) => {
                let reason = format!("cannot listen on {address} (WATCHGRID_DNS_LISTEN): {err}");
                if !warned {
                    if service.checked() {
                        tracing::warn!(
                            "Magic DNS {reason}; retrying every {}s",
                            BIND_RETRY.as_secs()
                        );
                    } else {
                        tracing::warn!(
                            "Magic DNS {reason}; this server drives no WireGuard interface \
                             (WATCHGRID_WG_BACKEND=none), retrying every {}s",
                            BIND_RETRY.as_secs()
                        );
                    }
                    warned = true;
                }
                service.set_status(Status::Waiting(reason));
                tokio::time::sleep(BIND_RETRY).await;
            }
        }
    };
    let tenants = service.clone();
    let handler = DnsHandler::new(service.zone.clone(), move |ip| {
        let IpAddr::V4(ip) = ip else { return None };
        tenants.slug_of(tenant_of(ip)?)
    })
    .with_upstreams(service.config.upstreams.clone())
    .with_counters(counters);
    let handler = match service.config.rate_limit {
        Some(per_second) => handler.with_rate_limit(per_second),
        None => handler,
    };
    service.set_status(Status::Listening(address));
    tracing::info!(%address, domain = %service.config.domain, upstreams = service.config.upstreams.len(), "Magic DNS listening (UDP and TCP)");
    if let Err(err) = watchgrid_dns::serve_sockets(udp, tcp, handler).await {
        let reason = format!("Magic DNS on {address} stopped: {err}");
        tracing::error!("{reason}");
        service.set_status(Status::Waiting(reason));
    }
}

/// One UDP socket per core (`SO_REUSEPORT`, each with its own receive loop) and the TCP
/// listener.
async fn bind(address: SocketAddr) -> std::io::Result<(Vec<UdpSocket>, TcpListener)> {
    let sockets = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut udp = Vec::with_capacity(sockets);
    for _ in 0..sockets {
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(address),
            socket2::Type::DGRAM,
            Some(socket2::Protocol::UDP),
        )?;
        socket.set_reuse_port(true)?;
        socket.set_nonblocking(true)?;
        socket.bind(&address.into())?;
        udp.push(UdpSocket::from_std(socket.into())?);
    }
    let tcp = TcpListener::bind(address).await?;
    Ok((udp, tcp))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agents_are_told_a_reachable_address() {
        let settings = |listen: &str| {
            let source = crate::config::MapSource::new([("WATCHGRID_DNS_LISTEN", listen)]);
            let config =
                crate::config::Config::load(&source, crate::config::SecretGeneration::ReadOnly)
                    .unwrap();
            MagicDnsService::new(&config.dns, &config.fleet)
                .unwrap()
                .settings()
        };
        let told = settings("0.0.0.0:5353").unwrap();
        assert_eq!((told.server.as_str(), told.port), ("100.64.0.1", 5353));
        let told = settings("100.64.0.1:53").unwrap();
        assert_eq!(
            (told.server.as_str(), told.port, told.domain.as_str()),
            ("100.64.0.1", 53, "watchgrid.internal")
        );
        assert!(settings("off").is_none());
    }

    #[test]
    fn values_are_parsed_and_targets_kept_in_the_tenant_zone() {
        let zone = "acme.watchgrid.internal";
        let ok = |kind, value: &str| parse_value(kind, value, zone).map(|(_, text)| text);
        assert_eq!(ok(DnsRecordType::A, " 192.0.2.1 ").unwrap(), "192.0.2.1");
        assert_eq!(
            ok(DnsRecordType::Aaaa, "2001:DB8::1").unwrap(),
            "2001:db8::1"
        );
        assert_eq!(
            ok(DnsRecordType::Cname, "Web").unwrap(),
            "web.acme.watchgrid.internal."
        );
        assert_eq!(
            ok(DnsRecordType::Cname, "db.acme.watchgrid.internal.").unwrap(),
            "db.acme.watchgrid.internal."
        );
        assert_eq!(
            ok(DnsRecordType::Srv, "10 5 8080 web").unwrap(),
            "10 5 8080 web.acme.watchgrid.internal."
        );
        assert_eq!(ok(DnsRecordType::Srv, "0 0 0 .").unwrap(), "0 0 0 .");
        assert_eq!(ok(DnsRecordType::Txt, " v=1 ").unwrap(), " v=1 ");
        for (kind, value) in [
            (DnsRecordType::A, "2001:db8::1"),
            (DnsRecordType::Aaaa, "192.0.2.1"),
            (DnsRecordType::Cname, "example.com."),
            (DnsRecordType::Cname, "web.globex.watchgrid.internal."),
            (DnsRecordType::Cname, "acme.watchgrid.internal."),
            (DnsRecordType::Cname, "."),
            (DnsRecordType::Srv, "10 5 web"),
            (DnsRecordType::Srv, "10 5 70000 web"),
            (DnsRecordType::Txt, "a\nb"),
        ] {
            let err = parse_value(kind, value, zone).unwrap_err();
            assert_eq!(err.0, "value", "{kind} {value:?}");
        }
        let (_, reason) = parse_value(DnsRecordType::Cname, "example.com.", zone).unwrap_err();
        assert!(reason.contains("outside this tenant's zone"), "{reason}");
    }
}
