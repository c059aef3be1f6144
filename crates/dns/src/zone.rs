//! The in-memory Magic DNS zone: devices and custom records per tenant, and tenant-aware
//! authoritative resolution (forward names under the domain, PTR names for the overlay).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::{A, AAAA, CNAME, NS, PTR, SOA, SRV, TXT};
use hickory_proto::rr::{Name, RData, Record as WireRecord, RecordType};
use ipnet::Ipv4Net;

use crate::records::{
    normalize_host_label, normalize_record_name, validate_rrset, DnsError, Record, RecordData,
};

/// TTL of device A and PTR records.
pub const DEVICE_TTL: u32 = 60;
/// TTL of the apex SOA, NS and the name server's address.
pub const APEX_TTL: u32 = 3600;
/// SOA minimum: how long resolvers may cache NXDOMAIN and NODATA.
pub const NEGATIVE_TTL: u32 = 30;
/// How many CNAMEs inside the zone an answer follows.
const MAX_CNAME_CHAIN: usize = 8;

/// The Magic DNS zone. Cheap to clone (one `Arc`); the server keeps one and calls the setters on
/// every device or record change. Lookups take a read lock only long enough to clone an `Arc`
/// snapshot; writers copy the one tenant they change (copy-on-write).
#[derive(Debug, Clone)]
pub struct MagicDns {
    inner: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    /// Lower case, no trailing dot.
    domain: String,
    server_ip: IpAddr,
    overlay: Ipv4Net,
    /// The reverse zone covering the overlay, lower case, no trailing dot.
    reverse_apex: String,
    serial: AtomicU32,
    zone: RwLock<Arc<Zone>>,
}

#[derive(Debug, Clone, Default)]
struct Zone {
    tenants: HashMap<String, Arc<TenantZone>>,
}

#[derive(Debug, Clone, Default)]
struct TenantZone {
    devices: HashMap<String, Ipv4Addr>,
    records: HashMap<String, Vec<Record>>,
    reverse: HashMap<Ipv4Addr, String>,
}

impl TenantZone {
    fn is_empty(&self) -> bool {
        self.devices.is_empty() && self.records.is_empty()
    }

    /// A name exists if it holds data or is an ancestor of a name that does (empty non-terminal).
    /// Device names are single labels, so only custom records (`_http._tcp.api`) can make
    /// empty non-terminals: a miss scans the tenant's record names, never its devices.
    fn name_exists(&self, rel: &str) -> bool {
        if self.devices.contains_key(rel) || self.records.contains_key(rel) {
            return true;
        }
        let suffix = format!(".{rel}");
        self.records.keys().any(|k| k.ends_with(&suffix))
    }
}

/// Where a query name falls relative to the zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// Inside the Magic DNS domain or the overlay's reverse range: this is the answer.
    Authoritative(ZoneAnswer),
    /// Outside: forward it (or refuse).
    OutOfZone,
}

/// An authoritative answer, ready to be put on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneAnswer {
    pub rcode: ResponseCode,
    pub answers: Vec<WireRecord>,
    /// The SOA for NXDOMAIN and NODATA.
    pub authority: Vec<WireRecord>,
    pub additionals: Vec<WireRecord>,
}

impl MagicDns {
    /// `domain` is the Magic DNS suffix (`watchgrid.internal`); `server_ip` is the address of
    /// `ns.<domain>`, the SOA and NS target; `overlay` is the network PTR answers cover.
    pub fn new(domain: &str, server_ip: IpAddr, overlay: Ipv4Net) -> Result<Self, DnsError> {
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        for label in domain.split('.') {
            normalize_host_label(label).map_err(|_| DnsError::InvalidName {
                name: domain.clone(),
                reason: "the domain must be DNS-safe labels",
            })?;
        }
        let octets = overlay.network().octets();
        let whole = usize::from(overlay.prefix_len() / 8);
        let mut reverse_apex: Vec<String> = octets[..whole]
            .iter()
            .rev()
            .map(|o| o.to_string())
            .collect();
        reverse_apex.push("in-addr.arpa".to_owned());
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(1);
        Ok(Self {
            inner: Arc::new(Shared {
                domain,
                server_ip,
                overlay,
                reverse_apex: reverse_apex.join("."),
                // Serial arithmetic wraps; starting at the clock keeps it rising across restarts.
                serial: AtomicU32::new(now as u32),
                zone: RwLock::new(Arc::new(Zone::default())),
            }),
        })
    }

    pub fn domain(&self) -> &str {
        &self.inner.domain
    }

    pub fn overlay(&self) -> Ipv4Net {
        self.inner.overlay
    }

    /// The current SOA serial; it rises by one on every change.
    pub fn serial(&self) -> u32 {
        self.inner.serial.load(Ordering::Relaxed)
    }

    /// Publishes (or moves) `<name>.<tenant_slug>.<domain>` with an A record and its PTR.
    pub fn set_device(
        &self,
        tenant_slug: &str,
        name: &str,
        ipv4: Ipv4Addr,
    ) -> Result<(), DnsError> {
        let tenant = normalize_host_label(tenant_slug)?;
        let name = normalize_host_label(name)?;
        if !self.inner.overlay.contains(&ipv4) {
            return Err(DnsError::OutsideOverlay(ipv4));
        }
        self.update(&tenant, |t| {
            if t.records
                .get(&name)
                .is_some_and(|rs| rs.iter().any(Record::is_cname))
            {
                return Err(DnsError::CnameConflict(name.clone()));
            }
            if let Some(old) = t.devices.insert(name.clone(), ipv4) {
                if t.reverse.get(&old) == Some(&name) {
                    t.reverse.remove(&old);
                }
            }
            t.reverse.insert(ipv4, name.clone());
            Ok(())
        })
    }

    /// Removes a device's A and PTR records. Removing an unknown device is not an error.
    pub fn remove_device(&self, tenant_slug: &str, name: &str) -> Result<(), DnsError> {
        let tenant = normalize_host_label(tenant_slug)?;
        let name = normalize_host_label(name)?;
        self.update(&tenant, |t| {
            if let Some(old) = t.devices.remove(&name) {
                if t.reverse.get(&old) == Some(&name) {
                    t.reverse.remove(&old);
                }
            }
            Ok(())
        })
    }

    /// Replaces all custom records at `<name>.<tenant_slug>.<domain>`; an empty list removes them.
    pub fn set_records(
        &self,
        tenant_slug: &str,
        name: &str,
        records: Vec<Record>,
    ) -> Result<(), DnsError> {
        let tenant = normalize_host_label(tenant_slug)?;
        let name = normalize_record_name(name)?;
        let records = validate_rrset(&name, records)?;
        self.update(&tenant, |t| {
            if records.is_empty() {
                t.records.remove(&name);
                return Ok(());
            }
            if records.iter().any(Record::is_cname) && t.devices.contains_key(&name) {
                return Err(DnsError::CnameConflict(name.clone()));
            }
            t.records.insert(name.clone(), records);
            Ok(())
        })
    }

    /// Replaces every tenant's custom records at once (start-up, and when another replica
    /// changed them), keeping the devices. A record set that fails validation (or a CNAME at a
    /// device's name) is skipped; the errors are returned.
    pub fn replace_records(
        &self,
        sets: impl IntoIterator<Item = (String, String, Vec<Record>)>,
    ) -> Vec<DnsError> {
        let mut errors = Vec::new();
        let keep_devices = |t: &TenantZone| TenantZone {
            devices: t.devices.clone(),
            reverse: t.reverse.clone(),
            ..TenantZone::default()
        };
        self.rebuild(keep_devices, |tenants| {
            for (tenant_slug, name, records) in sets {
                let checked = normalize_host_label(&tenant_slug).and_then(|tenant| {
                    let name = normalize_record_name(&name)?;
                    let records = validate_rrset(&name, records)?;
                    Ok((tenant, name, records))
                });
                let (tenant, name, records) = match checked {
                    Ok(set) => set,
                    Err(err) => {
                        errors.push(err);
                        continue;
                    }
                };
                let t = tenants.entry(tenant).or_default();
                if records.iter().any(Record::is_cname) && t.devices.contains_key(&name) {
                    errors.push(DnsError::CnameConflict(name));
                    continue;
                }
                if !records.is_empty() {
                    t.records.insert(name, records);
                }
            }
        });
        errors
    }

    /// Rebuilds the whole zone in one copy: `keep` says what of each tenant survives, `fill`
    /// adds the new data; then the copy is published and the serial rises.
    fn rebuild(
        &self,
        keep: impl Fn(&TenantZone) -> TenantZone,
        fill: impl FnOnce(&mut HashMap<String, TenantZone>),
    ) {
        let mut guard = self
            .inner
            .zone
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let mut tenants: HashMap<String, TenantZone> = guard
            .tenants
            .iter()
            .map(|(slug, t)| (slug.clone(), keep(t)))
            .filter(|(_, t)| !t.is_empty())
            .collect();
        fill(&mut tenants);
        *guard = Arc::new(Zone {
            tenants: tenants
                .into_iter()
                .filter(|(_, t)| !t.is_empty())
                .map(|(slug, t)| (slug, Arc::new(t)))
                .collect(),
        });
        self.inner.serial.fetch_add(1, Ordering::Relaxed);
    }

    /// Checks what [`MagicDns::set_records`] would check, against the current zone, without
    /// changing anything: callers validate inside their database transaction and apply after
    /// it commits.
    pub fn check_records(
        &self,
        tenant_slug: &str,
        name: &str,
        records: &[Record],
    ) -> Result<(), DnsError> {
        let tenant = normalize_host_label(tenant_slug)?;
        let name = normalize_record_name(name)?;
        let records = validate_rrset(&name, records.to_vec())?;
        let zone = self.snapshot();
        let device_there = zone
            .tenants
            .get(&tenant)
            .is_some_and(|t| t.devices.contains_key(&name));
        if records.iter().any(Record::is_cname) && device_there {
            return Err(DnsError::CnameConflict(name));
        }
        Ok(())
    }

    /// Whether a CNAME holds `<name>.<tenant_slug>`: a device cannot take that name.
    pub fn has_cname(&self, tenant_slug: &str, name: &str) -> bool {
        let (Ok(tenant), Ok(name)) = (
            normalize_host_label(tenant_slug),
            normalize_record_name(name),
        ) else {
            return false;
        };
        self.snapshot().tenants.get(&tenant).is_some_and(|t| {
            t.records
                .get(&name)
                .is_some_and(|rs| rs.iter().any(Record::is_cname))
        })
    }

    /// Removes all custom records at a name. Removing nothing is not an error.
    pub fn remove_records(&self, tenant_slug: &str, name: &str) -> Result<(), DnsError> {
        self.set_records(tenant_slug, name, Vec::new())
    }

    /// Replaces every tenant's devices at once (start-up and device index reloads), keeping
    /// the custom records. One copy of the zone for the whole batch, so loading many devices
    /// costs O(devices), not O(devices²). A device that fails validation (a bad label, an
    /// address outside the overlay, a name held by a CNAME) is skipped; the errors are returned.
    pub fn replace_devices(
        &self,
        devices: impl IntoIterator<Item = (String, String, Ipv4Addr)>,
    ) -> Vec<DnsError> {
        let mut errors = Vec::new();
        let keep_records = |t: &TenantZone| TenantZone {
            records: t.records.clone(),
            ..TenantZone::default()
        };
        self.rebuild(keep_records, |tenants| {
            for (tenant_slug, name, ipv4) in devices {
                let checked = normalize_host_label(&tenant_slug).and_then(|tenant| {
                    let name = normalize_host_label(&name)?;
                    if !self.inner.overlay.contains(&ipv4) {
                        return Err(DnsError::OutsideOverlay(ipv4));
                    }
                    Ok((tenant, name))
                });
                let (tenant, name) = match checked {
                    Ok(pair) => pair,
                    Err(err) => {
                        errors.push(err);
                        continue;
                    }
                };
                let t = tenants.entry(tenant).or_default();
                if t.records
                    .get(&name)
                    .is_some_and(|rs| rs.iter().any(Record::is_cname))
                {
                    errors.push(DnsError::CnameConflict(name));
                    continue;
                }
                if let Some(old) = t.devices.insert(name.clone(), ipv4) {
                    if t.reverse.get(&old) == Some(&name) {
                        t.reverse.remove(&old);
                    }
                }
                t.reverse.insert(ipv4, name);
            }
        });
        errors
    }

    /// Removes everything a tenant published (the tenant was deleted).
    pub fn remove_tenant(&self, tenant_slug: &str) -> Result<(), DnsError> {
        let tenant = normalize_host_label(tenant_slug)?;
        let mut guard = self
            .inner
            .zone
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if Arc::make_mut(&mut guard).tenants.remove(&tenant).is_some() {
            self.inner.serial.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    fn update(
        &self,
        tenant: &str,
        change: impl FnOnce(&mut TenantZone) -> Result<(), DnsError>,
    ) -> Result<(), DnsError> {
        let mut guard = self
            .inner
            .zone
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        // Copy the tenant, change the copy, and only then publish it, so a failed change
        // leaves nothing behind.
        let mut tz = guard
            .tenants
            .get(tenant)
            .map(|t| TenantZone::clone(t))
            .unwrap_or_default();
        change(&mut tz)?;
        let zone = Arc::make_mut(&mut guard);
        if tz.is_empty() {
            zone.tenants.remove(tenant);
        } else {
            zone.tenants.insert(tenant.to_owned(), Arc::new(tz));
        }
        self.inner.serial.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn snapshot(&self) -> Arc<Zone> {
        Arc::clone(
            &self
                .inner
                .zone
                .read()
                .unwrap_or_else(PoisonError::into_inner),
        )
    }

    /// Answers `qname`/`qtype` for a client of tenant `asker`. Other tenants' names are
    /// NXDOMAIN; names outside the domain and the overlay's reverse range are `OutOfZone`.
    pub fn resolve(&self, asker: &str, qname: &Name, qtype: RecordType) -> Resolution {
        // One allocation: the text form, folded and trimmed in place.
        let mut q = qname.to_ascii();
        q.make_ascii_lowercase();
        while q.ends_with('.') {
            q.pop();
        }
        let domain = &self.inner.domain;
        if q == *domain {
            return Resolution::Authoritative(self.apex(qtype));
        }
        if let Some(rel) = q
            .strip_suffix(domain.as_str())
            .and_then(|r| r.strip_suffix('.'))
        {
            return Resolution::Authoritative(self.forward_name(asker, qname, &q, rel, qtype));
        }
        if let Some(ip) = parse_reverse(&q) {
            if self.inner.overlay.contains(&ip) {
                return Resolution::Authoritative(self.reverse(asker, &q, ip, qtype));
            }
        }
        Resolution::OutOfZone
    }

    fn fqdn(&self, rel: &str) -> Name {
        let text = if rel.is_empty() {
            format!("{}.", self.inner.domain)
        } else {
            format!("{rel}.{}.", self.inner.domain)
        };
        // Every name here was validated on the way in.
        Name::from_ascii(&text).unwrap_or_else(|_| Name::root())
    }

    fn soa(&self, owner: Name) -> WireRecord {
        let soa = SOA::new(
            self.fqdn("ns"),
            self.fqdn("hostmaster"),
            self.serial(),
            3600,
            600,
            86_400,
            NEGATIVE_TTL,
        );
        WireRecord::from_rdata(owner, NEGATIVE_TTL, RData::SOA(soa))
    }

    fn apex_soa(&self) -> WireRecord {
        let mut r = self.soa(self.fqdn(""));
        r.set_ttl(APEX_TTL);
        r
    }

    fn ns_address(&self, qtype: RecordType) -> Vec<WireRecord> {
        let owner = self.fqdn("ns");
        match (self.inner.server_ip, qtype) {
            (IpAddr::V4(ip), RecordType::A | RecordType::ANY) => {
                vec![WireRecord::from_rdata(owner, APEX_TTL, RData::A(A(ip)))]
            }
            (IpAddr::V6(ip), RecordType::AAAA | RecordType::ANY) => {
                vec![WireRecord::from_rdata(
                    owner,
                    APEX_TTL,
                    RData::AAAA(AAAA(ip)),
                )]
            }
            _ => Vec::new(),
        }
    }

    fn apex(&self, qtype: RecordType) -> ZoneAnswer {
        let ns = WireRecord::from_rdata(self.fqdn(""), APEX_TTL, RData::NS(NS(self.fqdn("ns"))));
        match qtype {
            RecordType::SOA => self.positive(vec![self.apex_soa()], Vec::new()),
            RecordType::NS => self.positive(vec![ns], self.ns_address(RecordType::ANY)),
            RecordType::ANY => self.positive(vec![self.apex_soa(), ns], Vec::new()),
            _ => self.negative(ResponseCode::NoError, self.fqdn("")),
        }
    }

    fn positive(&self, answers: Vec<WireRecord>, additionals: Vec<WireRecord>) -> ZoneAnswer {
        ZoneAnswer {
            rcode: ResponseCode::NoError,
            answers,
            authority: Vec::new(),
            additionals,
        }
    }

    fn negative(&self, rcode: ResponseCode, soa_owner: Name) -> ZoneAnswer {
        ZoneAnswer {
            rcode,
            answers: Vec::new(),
            authority: vec![self.soa(soa_owner)],
            additionals: Vec::new(),
        }
    }

    fn forward_name(
        &self,
        asker: &str,
        qname: &Name,
        q: &str,
        rel: &str,
        qtype: RecordType,
    ) -> ZoneAnswer {
        if rel == "ns" {
            let answers = self.ns_address(qtype);
            return if answers.is_empty() {
                self.negative(ResponseCode::NoError, self.fqdn(""))
            } else {
                self.positive(answers, Vec::new())
            };
        }
        let zone = self.snapshot();
        let mut answers = Vec::new();
        let mut current = q.to_owned();
        let mut current_rel = rel.to_owned();
        for _ in 0..MAX_CNAME_CHAIN {
            let (name_in_tenant, tenant) = match current_rel.rsplit_once('.') {
                Some((name, tenant)) => (name, tenant),
                None => ("", current_rel.as_str()),
            };
            if tenant != asker {
                return self.chain_end(answers, ResponseCode::NXDomain);
            }
            let Some(tz) = zone.tenants.get(tenant) else {
                // The asker's own tenant apex exists even with nothing published.
                let rcode = if name_in_tenant.is_empty() {
                    ResponseCode::NoError
                } else {
                    ResponseCode::NXDomain
                };
                return self.chain_end(answers, rcode);
            };
            if name_in_tenant.is_empty() {
                return self.chain_end(answers, ResponseCode::NoError);
            }
            // The question's own name needs no parsing, only folding; CNAME targets do.
            let owner = if current == q {
                let mut owner = qname.to_lowercase();
                owner.set_fqdn(true);
                owner
            } else {
                Name::from_ascii(format!("{current}.")).unwrap_or_else(|_| Name::root())
            };
            let mut data: Vec<WireRecord> = Vec::new();
            if let Some(ip) = tz.devices.get(name_in_tenant) {
                data.push(WireRecord::from_rdata(
                    owner.clone(),
                    DEVICE_TTL,
                    RData::A(A(*ip)),
                ));
            }
            let custom = tz
                .records
                .get(name_in_tenant)
                .map(Vec::as_slice)
                .unwrap_or(&[]);
            data.extend(custom.iter().map(|r| to_wire(owner.clone(), r)));
            let cname = custom.iter().find_map(|r| match &r.data {
                RecordData::Cname(target) => Some(target.clone()),
                _ => None,
            });
            if let Some(target) =
                cname.filter(|_| !matches!(qtype, RecordType::CNAME | RecordType::ANY))
            {
                answers.extend(data);
                let target = target.trim_end_matches('.').to_owned();
                match target
                    .strip_suffix(self.inner.domain.as_str())
                    .and_then(|r| r.strip_suffix('.'))
                {
                    Some(next_rel) => {
                        current_rel = next_rel.to_owned();
                        current = target;
                        continue;
                    }
                    // Outside the zone: the client's resolver follows it.
                    None => return self.positive(answers, Vec::new()),
                }
            }
            let matching: Vec<WireRecord> = data
                .into_iter()
                .filter(|r| qtype == RecordType::ANY || r.record_type() == qtype)
                .collect();
            if !matching.is_empty() {
                answers.extend(matching);
                return self.positive(answers, Vec::new());
            }
            let rcode = if tz.name_exists(name_in_tenant) {
                ResponseCode::NoError
            } else {
                ResponseCode::NXDomain
            };
            return self.chain_end(answers, rcode);
        }
        // A CNAME loop or a too-long chain.
        ZoneAnswer {
            rcode: ResponseCode::ServFail,
            answers,
            authority: Vec::new(),
            additionals: Vec::new(),
        }
    }

    /// Finishes an answer whose last name has no data of the asked type: NXDOMAIN, or NODATA
    /// when the name exists. The SOA goes in the authority section; CNAMEs followed so far stay
    /// in the answer, and the rcode is the last target's (RFC 6604).
    fn chain_end(&self, answers: Vec<WireRecord>, rcode: ResponseCode) -> ZoneAnswer {
        let mut negative = self.negative(rcode, self.fqdn(""));
        negative.answers = answers;
        negative
    }

    fn reverse(&self, asker: &str, q: &str, ip: Ipv4Addr, qtype: RecordType) -> ZoneAnswer {
        let soa_owner = Name::from_ascii(format!("{}.", self.inner.reverse_apex))
            .unwrap_or_else(|_| Name::root());
        let zone = self.snapshot();
        let Some(name) = zone.tenants.get(asker).and_then(|t| t.reverse.get(&ip)) else {
            return self.negative(ResponseCode::NXDomain, soa_owner);
        };
        if !matches!(qtype, RecordType::PTR | RecordType::ANY) {
            return self.negative(ResponseCode::NoError, soa_owner);
        }
        let owner = Name::from_ascii(format!("{q}.")).unwrap_or_else(|_| Name::root());
        let target = self.fqdn(&format!("{name}.{asker}"));
        self.positive(
            vec![WireRecord::from_rdata(
                owner,
                DEVICE_TTL,
                RData::PTR(PTR(target)),
            )],
            Vec::new(),
        )
    }
}

fn to_wire(owner: Name, record: &Record) -> WireRecord {
    let name = |s: &str| Name::from_ascii(s).unwrap_or_else(|_| Name::root());
    let rdata = match &record.data {
        RecordData::A(ip) => RData::A(A(*ip)),
        RecordData::Aaaa(ip) => RData::AAAA(AAAA(*ip)),
        RecordData::Cname(target) => RData::CNAME(CNAME(name(target))),
        RecordData::Txt(text) => RData::TXT(TXT::new(split_txt(text))),
        RecordData::Srv {
            priority,
            weight,
            port,
            target,
        } => RData::SRV(SRV::new(*priority, *weight, *port, name(target))),
    };
    WireRecord::from_rdata(owner, record.ttl, rdata)
}

/// Splits text into character strings of at most 255 bytes, on UTF-8 boundaries.
fn split_txt(text: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut current = String::new();
    for ch in text.chars() {
        if current.len() + ch.len_utf8() > 255 {
            parts.push(std::mem::take(&mut current));
        }
        current.push(ch);
    }
    if !current.is_empty() || parts.is_empty() {
        parts.push(current);
    }
    parts
}

/// `d.c.b.a.in-addr.arpa` → `a.b.c.d`; anything else (shorter names, other zones) → `None`.
fn parse_reverse(q: &str) -> Option<Ipv4Addr> {
    let rest = q.strip_suffix(".in-addr.arpa")?;
    let octets: Vec<u8> = rest
        .split('.')
        .map(|o| {
            if o.len() > 1 && o.starts_with('0') {
                None
            } else {
                o.parse().ok()
            }
        })
        .collect::<Option<_>>()?;
    match octets[..] {
        [d, c, b, a] => Some(Ipv4Addr::new(a, b, c, d)),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
