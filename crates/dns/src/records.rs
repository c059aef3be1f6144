//! Custom record types a tenant can publish, their validation, and the crate's error type.

use std::net::{Ipv4Addr, Ipv6Addr};

use hickory_proto::rr::Name;

/// Lowest TTL a custom record may carry, in seconds.
pub const MIN_TTL: u32 = 1;
/// Highest TTL a custom record may carry, in seconds (one day).
pub const MAX_TTL: u32 = 86_400;
/// Longest TXT text accepted, in bytes; it is split into 255-byte strings on the wire.
pub const MAX_TXT_LEN: usize = 4096;

/// Why a zone change was rejected. Every variant is a caller error (HTTP 422 territory); the
/// zone is left unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DnsError {
    /// A tenant slug, device name or record name is not made of DNS-safe labels.
    #[error("invalid name {name:?}: {reason}")]
    InvalidName { name: String, reason: &'static str },
    /// A TTL outside `MIN_TTL..=MAX_TTL`.
    #[error("TTL {0} is outside 1..=86400")]
    InvalidTtl(u32),
    /// A CNAME would share its name with other data (other records or a device).
    #[error("a CNAME cannot sit beside other data at {0:?}")]
    CnameConflict(String),
    /// A CNAME or SRV target that is not an absolute (dot-terminated) domain name.
    #[error("invalid target {target:?}: {reason}")]
    InvalidTarget {
        target: String,
        reason: &'static str,
    },
    /// A TXT record longer than `MAX_TXT_LEN`.
    #[error("TXT data is {0} bytes, more than 4096")]
    TxtTooLong(usize),
    /// A device address outside the overlay network.
    #[error("address {0} is outside the overlay network")]
    OutsideOverlay(Ipv4Addr),
}

/// One custom record: a TTL and typed data. The owner name is given separately
/// (`MagicDns::set_records(tenant, name, records)`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Seconds, `1..=86400`.
    pub ttl: u32,
    pub data: RecordData,
}

/// The record types a tenant can publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordData {
    A(Ipv4Addr),
    Aaaa(Ipv6Addr),
    /// Absolute target, e.g. `db.acme.watchgrid.internal.`.
    Cname(String),
    /// Free text; split into 255-byte character strings on the wire.
    Txt(String),
    /// Absolute target (or `.` for "no service").
    Srv {
        priority: u16,
        weight: u16,
        port: u16,
        target: String,
    },
}

impl Record {
    pub fn new(ttl: u32, data: RecordData) -> Self {
        Self { ttl, data }
    }

    pub(crate) fn is_cname(&self) -> bool {
        matches!(self.data, RecordData::Cname(_))
    }
}

/// Checks a single label used for tenant slugs and device names: 1..=63 of `[a-z0-9-]`, not
/// starting or ending with `-`. Upper case is folded; the folded label is returned.
pub fn normalize_host_label(label: &str) -> Result<String, DnsError> {
    let lower = label.to_ascii_lowercase();
    check_label(&lower, false).map_err(|reason| DnsError::InvalidName {
        name: label.to_owned(),
        reason,
    })?;
    Ok(lower)
}

/// Checks a relative record name inside a tenant (`api`, `_http._tcp.api`): one or more labels of
/// `[a-z0-9_-]`, each 1..=63 bytes, at most 190 bytes in all (it gets the tenant and the domain
/// appended). Upper case is folded; the folded name is returned.
pub fn normalize_record_name(name: &str) -> Result<String, DnsError> {
    let lower = name.to_ascii_lowercase();
    let invalid = |reason| DnsError::InvalidName {
        name: name.to_owned(),
        reason,
    };
    if lower.is_empty() {
        return Err(invalid("empty name"));
    }
    if lower.len() > 190 {
        return Err(invalid("longer than 190 bytes"));
    }
    for label in lower.split('.') {
        check_label(label, true).map_err(invalid)?;
    }
    Ok(lower)
}

fn check_label(label: &str, allow_underscore: bool) -> Result<(), &'static str> {
    if label.is_empty() {
        return Err("empty label");
    }
    if label.len() > 63 {
        return Err("label longer than 63 bytes");
    }
    let ok = label.bytes().all(|b| {
        b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || (allow_underscore && b == b'_')
    });
    if !ok {
        return Err(if allow_underscore {
            "labels may hold only a-z, 0-9, '-' and '_'"
        } else {
            "labels may hold only a-z, 0-9 and '-'"
        });
    }
    if label.starts_with('-') || label.ends_with('-') {
        return Err("label starts or ends with '-'");
    }
    Ok(())
}

/// Validates one record set (all records at one name) and returns it with targets folded to
/// lower case.
pub(crate) fn validate_rrset(name: &str, records: Vec<Record>) -> Result<Vec<Record>, DnsError> {
    let has_cname = records.iter().any(Record::is_cname);
    if has_cname && records.len() > 1 {
        return Err(DnsError::CnameConflict(name.to_owned()));
    }
    records
        .into_iter()
        .map(|mut record| {
            if !(MIN_TTL..=MAX_TTL).contains(&record.ttl) {
                return Err(DnsError::InvalidTtl(record.ttl));
            }
            match &mut record.data {
                RecordData::A(_) | RecordData::Aaaa(_) => {}
                RecordData::Cname(target) => {
                    *target = check_target(target, false)?;
                }
                RecordData::Srv { target, .. } => {
                    *target = check_target(target, true)?;
                }
                RecordData::Txt(text) => {
                    if text.len() > MAX_TXT_LEN {
                        return Err(DnsError::TxtTooLong(text.len()));
                    }
                }
            }
            Ok(record)
        })
        .collect()
}

fn check_target(target: &str, allow_root: bool) -> Result<String, DnsError> {
    let invalid = |reason| DnsError::InvalidTarget {
        target: target.to_owned(),
        reason,
    };
    if !target.ends_with('.') {
        return Err(invalid("must be absolute (end with '.')"));
    }
    if target == "." {
        return if allow_root {
            Ok(".".to_owned())
        } else {
            Err(invalid("the root is not a valid CNAME target"))
        };
    }
    let lower = target.to_ascii_lowercase();
    let body = &lower[..lower.len() - 1];
    if body.len() > 253 {
        return Err(invalid("longer than 253 bytes"));
    }
    for label in body.split('.') {
        check_label(label, true).map_err(invalid)?;
    }
    Name::from_ascii(&lower).map_err(|_| invalid("not a domain name"))?;
    Ok(lower)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(records: Vec<Record>, expect: Result<(), DnsError>) {
        assert_eq!(validate_rrset("x", records).map(|_| ()), expect);
    }

    #[test]
    fn rrset_validation() {
        let a = Record::new(60, RecordData::A(Ipv4Addr::new(10, 0, 0, 1)));
        let cname = |t: &str| Record::new(60, RecordData::Cname(t.into()));
        check(vec![a.clone()], Ok(()));
        check(vec![cname("db.acme.example.")], Ok(()));
        check(
            vec![cname("db.acme.example."), a.clone()],
            Err(DnsError::CnameConflict("x".into())),
        );
        check(
            vec![cname("db")],
            Err(DnsError::InvalidTarget {
                target: "db".into(),
                reason: "must be absolute (end with '.')",
            }),
        );
        check(
            vec![Record::new(0, a.data.clone())],
            Err(DnsError::InvalidTtl(0)),
        );
        check(
            vec![Record::new(86_401, a.data.clone())],
            Err(DnsError::InvalidTtl(86_401)),
        );
        check(vec![Record::new(86_400, a.data.clone())], Ok(()));
        check(
            vec![Record::new(5, RecordData::Txt("x".repeat(4097)))],
            Err(DnsError::TxtTooLong(4097)),
        );
        let srv = |t: &str| {
            Record::new(
                5,
                RecordData::Srv {
                    priority: 1,
                    weight: 1,
                    port: 80,
                    target: t.into(),
                },
            )
        };
        check(vec![srv("."), srv("web.acme.example.")], Ok(()));
        assert!(validate_rrset("x", vec![srv("we b.example.")]).is_err());
    }

    #[test]
    fn names() {
        assert_eq!(normalize_host_label("Web-1").as_deref(), Ok("web-1"));
        assert!(normalize_host_label("-web").is_err());
        assert!(normalize_host_label("a.b").is_err());
        assert!(normalize_host_label("_x").is_err());
        assert!(normalize_host_label(&"a".repeat(64)).is_err());
        assert_eq!(
            normalize_record_name("_http._TCP.api").as_deref(),
            Ok("_http._tcp.api")
        );
        assert!(normalize_record_name("a..b").is_err());
        assert!(normalize_record_name("").is_err());
        assert!(normalize_record_name("a b").is_err());
    }
}
