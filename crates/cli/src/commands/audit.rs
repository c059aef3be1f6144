//! `audit`: the audit log, filtered, one page or (`--follow-pages`) all of them.

use watchgrid_wire::AuditEntry;

use super::Ctx;
use crate::client::AuditQuery;
use crate::error::CliError;
use crate::output::{self, Table};
use crate::AuditArgs;

pub async fn run(ctx: &Ctx, a: AuditArgs) -> Result<(), CliError> {
    if let (Some(since), Some(until)) = (&a.since, &a.until) {
        // Both are normalised RFC 3339 UTC; compare them as times.
        let parse = |t: &str| chrono::DateTime::parse_from_rfc3339(t).ok();
        if let (Some(s), Some(u)) = (parse(since), parse(until)) {
            if u <= s {
                return Err(CliError::Usage(format!(
                    "invalid value for '--until': {until} is not after '--since' {since}"
                )));
            }
        }
    }
    let mut query = AuditQuery {
        limit: a.limit,
        cursor: a.cursor,
        user: a.user,
        action: a.action,
        resource_type: a.resource_type,
        success: a.success,
        since: a.since,
        until: a.until,
        all_tenants: a.all,
    };
    let mut client = ctx.client()?;

    let mut entries = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let next = loop {
        let page = client
            .audit(&query)
            .await
            .map_err(|e| ctx.tenant_not_found(e))?;
        entries.extend(page.items);
        match page.next_cursor {
            Some(cursor) if a.follow_pages => {
                if !seen.insert(cursor.clone()) {
                    return Err(CliError::Failed(
                        "the server returned the same page cursor twice".to_string(),
                    ));
                }
                query.cursor = Some(cursor);
            }
            other => break other,
        }
    };

    if ctx.json {
        output::json(&entries)?;
    } else {
        output::print(&table(&entries))?;
    }
    if let Some(cursor) = next {
        output::note(&output::escape(&format!(
            "More entries: add '--cursor {cursor}' for the next page, or '--follow-pages' for all."
        )));
    }
    Ok(())
}

fn table(entries: &[AuditEntry]) -> String {
    let mut table = Table::new(&[
        "TIME", "USER", "ACTION", "RESOURCE", "TENANT", "RESULT", "ADDRESS",
    ]);
    for e in entries {
        let resource = match &e.resource_id {
            Some(id) => format!("{}:{id}", e.resource_type),
            None => e.resource_type.clone(),
        };
        table.row(vec![
            output::time(&e.timestamp),
            e.admin_user.clone(),
            e.action.clone(),
            resource,
            output::or_dash(e.tenant.as_deref()),
            if e.success { "ok" } else { "FAILED" }.to_string(),
            output::or_dash(e.client_addr.as_deref()),
        ]);
    }
    table.render()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_shows_one_line_per_entry() {
        let entries = [
            AuditEntry {
                id: 2,
                timestamp: "2025-01-31T09:00:05Z".into(),
                admin_user: "alice".into(),
                action: "user.create".into(),
                resource_type: "user".into(),
                resource_id: Some("u2".into()),
                tenant: Some("acme".into()),
                client_addr: Some("10.0.0.1".into()),
                success: true,
                details: serde_json::json!({"role": "viewer"}),
            },
            AuditEntry {
                id: 1,
                timestamp: "2025-01-31T09:00:00Z".into(),
                admin_user: "mallory\u{1b}[2J".into(),
                action: "auth.login".into(),
                resource_type: "session".into(),
                resource_id: None,
                tenant: None,
                client_addr: None,
                success: false,
                details: serde_json::Value::Null,
            },
        ];
        assert_eq!(
            table(&entries),
            "TIME                  USER              ACTION       RESOURCE  TENANT  RESULT  ADDRESS\n\
             2025-01-31 09:00:05Z  alice             user.create  user:u2   acme    ok      10.0.0.1\n\
             2025-01-31 09:00:00Z  mallory\\u{1b}[2J  auth.login   session   -       FAILED  -\n"
        );
    }
}
