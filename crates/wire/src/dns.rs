//! Magic DNS: custom records per tenant, and the split-DNS settings agents receive.

use serde::{Deserialize, Serialize};

/// The record types a tenant can publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "UPPERCASE")]
pub enum DnsRecordType {
    A,
    Aaaa,
    Cname,
    Txt,
    Srv,
}

impl DnsRecordType {
    pub const ALL: [DnsRecordType; 5] = [Self::A, Self::Aaaa, Self::Cname, Self::Txt, Self::Srv];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::A => "A",
            Self::Aaaa => "AAAA",
            Self::Cname => "CNAME",
            Self::Txt => "TXT",
            Self::Srv => "SRV",
        }
    }
}

impl std::fmt::Display for DnsRecordType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for DnsRecordType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| "must be A, AAAA, CNAME, TXT or SRV".to_owned())
    }
}

/// A custom record of the request's tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DnsRecord {
    pub id: String,
    /// Relative to the tenant's zone: `www`, `_http._tcp.api`.
    pub name: String,
    /// The full name: `www.acme.watchgrid.internal.`.
    pub fqdn: String,
    #[serde(rename = "type")]
    pub record_type: DnsRecordType,
    pub ttl: u32,
    /// In zone-file form: `192.0.2.10`, `2001:db8::1`, `web.acme.watchgrid.internal.`, the TXT
    /// text, or `priority weight port target` for SRV.
    pub value: String,
    pub created_by: String,
    pub created_at: String,
    pub updated_at: String,
}

/// `POST /api/dns/records`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreateDnsRecord {
    /// Relative to the tenant's zone: one or more labels of `a-z`, `0-9`, `-`, `_`.
    #[cfg_attr(
        feature = "openapi",
        schema(
            pattern = r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$",
            min_length = 1,
            max_length = 190
        )
    )]
    pub name: String,
    #[serde(rename = "type")]
    pub record_type: DnsRecordType,
    /// Seconds, 1 to 86400; 300 when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 86400))]
    pub ttl: Option<u32>,
    /// See [`DnsRecord::value`]. CNAME and SRV targets may be relative to the tenant's zone
    /// (`web`); absolute targets must lie inside it.
    pub value: String,
}

/// `PATCH /api/dns/records/{id}`: absent fields stay as they are.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UpdateDnsRecord {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// Where a device sends queries for the Watchgrid domain (split DNS).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DnsSettings {
    /// The Magic DNS server's address on the overlay: `100.64.0.1`.
    pub server: String,
    /// The port, 53 unless the server was configured otherwise.
    pub port: u16,
    /// The Magic DNS domain: `watchgrid.internal`.
    pub domain: String,
}
