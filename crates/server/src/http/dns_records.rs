//! `/api/dns/records`: the tenant's custom Magic DNS records. Every change is validated as a
//! whole record set (all records at the name) inside the transaction, audited in it, and
//! published to the in-memory zone right after it commits.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::Utc;
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;
use watchgrid_dns::Record;
use watchgrid_store::dns::{self, DnsRecordRow, RecordFilter};
use watchgrid_store::Tx;
use watchgrid_wire::{
    CreateDnsRecord, DnsRecord, DnsRecordType, ErrorBody, FieldError, Page, UpdateDnsRecord,
};

use super::convert;
use super::error::{ApiError, ApiResult};
use super::extract::{ApiJson, ApiQuery};
use super::users::page_limit;
use crate::audit::{audited, Outcome};
use crate::auth::{ClientAddr, Principal, Scope};
use crate::dns::{field_of, parse_value, record_of_row, DEFAULT_RECORD_TTL};
use crate::state::AppState;

fn wire(row: &DnsRecordRow, tenant_zone: &str) -> DnsRecord {
    DnsRecord {
        id: row.id.to_string(),
        name: row.name.clone(),
        fqdn: format!("{}.{tenant_zone}.", row.name),
        record_type: row.record_type.parse().unwrap_or(DnsRecordType::Txt),
        ttl: u32::try_from(row.ttl).unwrap_or_default(),
        value: row.value.clone(),
        created_by: row.created_by.clone(),
        created_at: convert::time(row.created_at),
        updated_at: convert::time(row.updated_at),
    }
}

fn parse_id(id: &str) -> Result<Uuid, ApiError> {
    id.parse().map_err(|_| ApiError::NotFound)
}

fn check_ttl(problems: &mut Vec<FieldError>, ttl: u32) {
    if !(watchgrid_dns::MIN_TTL..=watchgrid_dns::MAX_TTL).contains(&ttl) {
        problems.push(FieldError::new("ttl", "must be from 1 to 86400 seconds"));
    }
}

/// The record set at `name` as the transaction sees it, checked against the zone's rules (CNAME
/// alone at its name and not beside a device, targets, TXT size). Returns the set to publish
/// after commit.
async fn checked_set(
    state: &AppState,
    tx: &mut Tx,
    scope: &Scope,
    name: &str,
) -> Result<Vec<Record>, ApiError> {
    let zone = state.fleet.dns.tenant_zone(&scope.tenant.slug);
    let rows = dns::records_at(&mut *tx, scope.tenant.id, name).await?;
    refuse_duplicates_and_self_aliases(&rows, name, &zone)?;
    // Against the database, under the tenant's name lock the caller holds: a device renamed
    // onto this name at this moment is either seen here or sees this CNAME.
    if rows
        .iter()
        .any(|row| row.record_type == DnsRecordType::Cname.as_str())
        && dns::device_at(&mut *tx, scope.tenant.id, name).await?
    {
        return Err(ApiError::Conflict(format!(
            "{name:?} is a device's name in Magic DNS; a CNAME must be the only data at its name"
        )));
    }
    let records = rows
        .iter()
        .map(|row| record_of_row(row, &zone))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|(field, reason)| ApiError::invalid(field, reason))?;
    state
        .fleet
        .dns
        .zone
        .check_records(&scope.tenant.slug, name, &records)
        .map_err(|err| {
            let (field, reason) = field_of(&err);
            ApiError::invalid(field, reason)
        })?;
    Ok(records)
}

/// An identical record (same type and canonical value) at the name is a conflict: it would be
/// answered twice. A CNAME to its own name is a loop that no resolver can follow.
fn refuse_duplicates_and_self_aliases(
    rows: &[DnsRecordRow],
    name: &str,
    tenant_zone: &str,
) -> Result<(), ApiError> {
    let own_name = format!("{name}.{tenant_zone}.");
    if rows
        .iter()
        .any(|row| row.record_type == "CNAME" && row.value.eq_ignore_ascii_case(&own_name))
    {
        return Err(ApiError::invalid(
            "value",
            "a CNAME cannot point to its own name",
        ));
    }
    for (index, row) in rows.iter().enumerate() {
        if rows[..index]
            .iter()
            .any(|earlier| earlier.record_type == row.record_type && earlier.value == row.value)
        {
            return Err(ApiError::Conflict(format!(
                "an identical {} record already exists at {name}",
                row.record_type
            )));
        }
    }
    Ok(())
}

/// After commit: Magic DNS answers the new record set from the next query on.
fn publish(state: &AppState, scope: &Scope, name: &str, records: Vec<Record>) {
    state
        .fleet
        .dns
        .apply_records(&scope.tenant.slug, name, records);
}

#[derive(Debug, Deserialize)]
pub struct RecordQuery {
    #[serde(default)]
    pub cursor: Option<String>,
    #[serde(default)]
    pub limit: Option<u32>,
    /// Records at exactly this (relative) name.
    #[serde(default)]
    pub name: Option<String>,
    /// Records of this type.
    #[serde(default, rename = "type")]
    pub record_type: Option<String>,
}

#[utoipa::path(get, path = "/api/dns/records", tag = "dns", security(("bearer" = [])),
    params(("cursor" = Option<String>, Query), ("limit" = Option<u32>, Query), ("name" = Option<String>, Query, description = "Exactly this relative name"), ("type" = Option<String>, Query, description = "A, AAAA, CNAME, TXT or SRV")),
    responses((status = 200, body = Page<DnsRecord>), (status = 422, body = ErrorBody)))]
/// One page of the tenant's custom records, by name.
pub async fn list(
    State(state): State<AppState>,
    scope: Scope,
    ApiQuery(query): ApiQuery<RecordQuery>,
) -> ApiResult<Json<Page<DnsRecord>>> {
    let limit = page_limit(query.limit)?;
    let record_type = query
        .record_type
        .as_deref()
        .map(|t| t.parse::<DnsRecordType>())
        .transpose()
        .map_err(|reason| ApiError::invalid("type", reason))?;
    let after = match query.cursor.as_deref() {
        None => None,
        Some(cursor) => {
            let (name, id) = cursor
                .rsplit_once('/')
                .and_then(|(name, id)| Some((name.to_owned(), id.parse::<Uuid>().ok()?)))
                .ok_or_else(|| {
                    ApiError::invalid("cursor", "is not a cursor from a previous page")
                })?;
            Some((name, id))
        }
    };
    let filter = RecordFilter {
        name: query.name.map(|n| n.to_ascii_lowercase()),
        record_type: record_type.map(|t| t.as_str().to_owned()),
        after,
    };
    let rows = dns::list_records(&state.db, scope.tenant.id, &filter, limit + 1).await?;
    let more = rows.len() > limit as usize;
    let zone = state.fleet.dns.tenant_zone(&scope.tenant.slug);
    let page: Vec<&DnsRecordRow> = rows.iter().take(limit as usize).collect();
    let next_cursor = more
        .then(|| page.last().map(|r| format!("{}/{}", r.name, r.id)))
        .flatten();
    Ok(Json(Page {
        items: page.into_iter().map(|r| wire(r, &zone)).collect(),
        next_cursor,
    }))
}

#[utoipa::path(get, path = "/api/dns/records/{id}", tag = "dns", security(("bearer" = [])), params(("id" = String, Path)),
    responses((status = 200, body = DnsRecord), (status = 404, body = ErrorBody)))]
pub async fn get(
    State(state): State<AppState>,
    scope: Scope,
    Path(id): Path<String>,
) -> ApiResult<Json<DnsRecord>> {
    let row = dns::record(&state.db, scope.tenant.id, parse_id(&id)?)
        .await?
        .ok_or(ApiError::NotFound)?;
    let zone = state.fleet.dns.tenant_zone(&scope.tenant.slug);
    Ok(Json(wire(&row, &zone)))
}

#[utoipa::path(post, path = "/api/dns/records", tag = "dns", security(("bearer" = [])), request_body = CreateDnsRecord,
    responses((status = 201, description = "Created, and answered by Magic DNS at once", body = DnsRecord), (status = 409, description = "A device holds the name of this CNAME", body = ErrorBody), (status = 422, body = ErrorBody)))]
/// Publish a custom record under `<name>.<tenant>.<domain>`.
pub async fn create(
    State(state): State<AppState>,
    principal: Principal,
    scope: Scope,
    client: ClientAddr,
    ApiJson(body): ApiJson<CreateDnsRecord>,
) -> ApiResult<(StatusCode, Json<DnsRecord>)> {
    let ctx = crate::audit::context(&principal, Some(&scope), client);
    let zone = state.fleet.dns.tenant_zone(&scope.tenant.slug);
    let (row, records) = audited(
        &state.db,
        &ctx,
        "dns_record.create",
        "dns_record",
        Some(body.name.clone()),
        async |tx| {
            let mut problems = Vec::new();
            let name = match watchgrid_dns::normalize_record_name(body.name.trim()) {
                Ok(name) => name,
                Err(err) => {
                    problems.push(FieldError::new("name", field_of(&err).1));
                    String::new()
                }
            };
            let ttl = body.ttl.unwrap_or(DEFAULT_RECORD_TTL);
            check_ttl(&mut problems, ttl);
            let value = match parse_value(body.record_type, &body.value, &zone) {
                Ok((_, text)) => text,
                Err((field, reason)) => {
                    problems.push(FieldError::new(field, reason));
                    String::new()
                }
            };
            if !problems.is_empty() {
                return Err(ApiError::Validation(problems));
            }
            let now = Utc::now();
            let row = DnsRecordRow {
                id: Uuid::new_v4(),
                tenant_id: scope.tenant.id,
                name,
                record_type: body.record_type.as_str().to_owned(),
                ttl: i32::try_from(ttl).unwrap_or(i32::MAX),
                value,
                created_by: principal.name.clone(),
                created_at: now,
                updated_at: now,
            };
            dns::lock_tenant_records(&mut *tx, scope.tenant.id).await?;
            dns::insert_record(&mut *tx, &row).await?;
            let records = checked_set(&state, tx, &scope, &row.name).await?;
            let details =
                json!({"name": row.name, "type": row.record_type, "ttl": ttl, "value": row.value});
            let id = row.id;
            Ok(Outcome::new((row, records), id, details))
        },
    )
    .await?;
    publish(&state, &scope, &row.name, records);
    Ok((StatusCode::CREATED, Json(wire(&row, &zone))))
}

#[utoipa::path(patch, path = "/api/dns/records/{id}", tag = "dns", security(("bearer" = [])), params(("id" = String, Path)),
    request_body = UpdateDnsRecord,
    responses((status = 200, body = DnsRecord), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
/// Change a record's TTL or value (its name and type stay).
pub async fn update(
    State(state): State<AppState>,
    principal: Principal,
    scope: Scope,
    client: ClientAddr,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<UpdateDnsRecord>,
) -> ApiResult<Json<DnsRecord>> {
    let ctx = crate::audit::context(&principal, Some(&scope), client);
    let zone = state.fleet.dns.tenant_zone(&scope.tenant.slug);
    let (row, records) = audited(
        &state.db,
        &ctx,
        "dns_record.update",
        "dns_record",
        Some(id.clone()),
        async |tx| {
            let id = parse_id(&id)?;
            let mut row = dns::record(&mut *tx, scope.tenant.id, id)
                .await?
                .ok_or(ApiError::NotFound)?;
            let previous = json!({"ttl": row.ttl, "value": row.value});
            let mut problems = Vec::new();
            if let Some(ttl) = body.ttl {
                check_ttl(&mut problems, ttl);
                row.ttl = i32::try_from(ttl).unwrap_or(i32::MAX);
            }
            if let Some(value) = &body.value {
                let kind: DnsRecordType = row
                    .record_type
                    .parse()
                    .map_err(|e: String| ApiError::Internal(e))?;
                match parse_value(kind, value, &zone) {
                    Ok((_, text)) => row.value = text,
                    Err((field, reason)) => problems.push(FieldError::new(field, reason)),
                }
            }
            if !problems.is_empty() {
                return Err(ApiError::Validation(problems));
            }
            row.updated_at = Utc::now();
            dns::update_record(&mut *tx, scope.tenant.id, id, row.ttl, &row.value, row.updated_at)
                .await?;
            let records = checked_set(&state, tx, &scope, &row.name).await?;
            let details = json!({"name": row.name, "type": row.record_type, "ttl": row.ttl, "value": row.value, "previous": previous});
            Ok(Outcome::new((row, records), id, details))
        },
    )
    .await?;
    publish(&state, &scope, &row.name, records);
    Ok(Json(wire(&row, &zone)))
}

#[utoipa::path(delete, path = "/api/dns/records/{id}", tag = "dns", security(("bearer" = [])), params(("id" = String, Path)),
    responses((status = 204, description = "Deleted: Magic DNS stops answering it at once"), (status = 404, body = ErrorBody)))]
pub async fn delete(
    State(state): State<AppState>,
    principal: Principal,
    scope: Scope,
    client: ClientAddr,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let ctx = crate::audit::context(&principal, Some(&scope), client);
    let (name, records) = audited(
        &state.db,
        &ctx,
        "dns_record.delete",
        "dns_record",
        Some(id.clone()),
        async |tx| {
            let id = parse_id(&id)?;
            let row = dns::record(&mut *tx, scope.tenant.id, id)
                .await?
                .ok_or(ApiError::NotFound)?;
            dns::delete_record(&mut *tx, scope.tenant.id, id).await?;
            let records = checked_set(&state, tx, &scope, &row.name).await?;
            let details = json!({"name": row.name, "type": row.record_type, "value": row.value});
            Ok(Outcome::new((row.name, records), id, details))
        },
    )
    .await?;
    publish(&state, &scope, &name, records);
    Ok(StatusCode::NO_CONTENT)
}
