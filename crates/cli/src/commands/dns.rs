//! `dns records list | add | rm`: the current tenant's custom Magic DNS records.

use watchgrid_wire::{CreateDnsRecord, DnsRecord};

use super::{all_pages, Ctx};
use crate::args::MAX_PAGE;
use crate::client::DnsRecordQuery;
use crate::error::CliError;
use crate::output::{self, Table};
use crate::{DnsCommand, DnsRecordsCommand};

pub async fn run(ctx: &Ctx, command: DnsCommand) -> Result<(), CliError> {
    let DnsCommand::Records(command) = command;
    let mut client = ctx.client()?;
    match command {
        DnsRecordsCommand::List { name, record_type } => {
            let query = DnsRecordQuery {
                limit: Some(MAX_PAGE),
                cursor: None,
                name,
                record_type,
            };
            let records = all_pages(async |cursor| {
                let page = DnsRecordQuery {
                    cursor,
                    ..query.clone()
                };
                client.dns_records(&page).await
            })
            .await
            .map_err(|e| ctx.tenant_not_found(e))?;
            if ctx.json {
                return output::json(&records);
            }
            output::print(&table(&records))
        }
        DnsRecordsCommand::Add {
            name,
            record_type,
            value,
            ttl,
        } => {
            let created = client
                .create_dns_record(&CreateDnsRecord {
                    name,
                    record_type,
                    ttl,
                    value,
                })
                .await
                .map_err(|e| ctx.tenant_not_found(e))?;
            if ctx.json {
                return output::json(&created);
            }
            output::line(&output::escape(&format!(
                "Added {} {} {} (TTL {}, id {})",
                created.fqdn, created.record_type, created.value, created.ttl, created.id
            )))
        }
        DnsRecordsCommand::Rm { id } => {
            client.delete_dns_record(&id).await.map_err(|e| {
                e.or_not_found(|| format!("DNS record {id} not found {}", ctx.in_tenant()))
            })?;
            if !ctx.json {
                output::line(&output::escape(&format!("Deleted DNS record {id}")))?;
            }
            Ok(())
        }
    }
}

fn table(records: &[DnsRecord]) -> String {
    let mut table = Table::new(&["ID", "NAME", "TYPE", "TTL", "VALUE", "FQDN"]);
    for r in records {
        table.row(vec![
            r.id.clone(),
            r.name.clone(),
            r.record_type.to_string(),
            r.ttl.to_string(),
            r.value.clone(),
            r.fqdn.clone(),
        ]);
    }
    table.render()
}

#[cfg(test)]
mod tests {
    use watchgrid_wire::DnsRecordType;

    use super::*;

    #[test]
    fn the_table_lists_every_field() {
        let records = [DnsRecord {
            id: "r1".into(),
            name: "www".into(),
            fqdn: "www.acme.watchgrid.internal.".into(),
            record_type: DnsRecordType::Cname,
            ttl: 300,
            value: "web.acme.watchgrid.internal.".into(),
            created_by: "alice".into(),
            created_at: "2025-01-31T09:00:00Z".into(),
            updated_at: "2025-01-31T09:00:00Z".into(),
        }];
        assert_eq!(
            table(&records),
            "ID  NAME  TYPE   TTL  VALUE                         FQDN\n\
             r1  www   CNAME  300  web.acme.watchgrid.internal.  www.acme.watchgrid.internal.\n"
        );
    }
}
