//! `tenants list | create | show | rename | delete` (superadmins).

use watchgrid_wire::{CreateTenant, Tenant, UpdateTenant};

use super::Ctx;
use crate::error::CliError;
use crate::output::{self, Table};
use crate::TenantsCommand;

pub async fn run(ctx: &Ctx, command: TenantsCommand) -> Result<(), CliError> {
    let mut client = ctx.client()?;
    match command {
        TenantsCommand::List => {
            let tenants = client.tenants().await?;
            if ctx.json {
                return output::json(&tenants);
            }
            output::print(&table(&tenants))
        }
        TenantsCommand::Create { slug, name } => {
            let tenant = client.create_tenant(&CreateTenant { slug, name }).await?;
            show(ctx, &tenant, "Created tenant")
        }
        TenantsCommand::Show { slug } => {
            let tenant = client
                .tenant(&slug)
                .await
                .map_err(|e| no_tenant(&slug, e))?;
            show(ctx, &tenant, "")
        }
        TenantsCommand::Rename { slug, name } => {
            let tenant = client
                .update_tenant(&slug, &UpdateTenant { name })
                .await
                .map_err(|e| no_tenant(&slug, e))?;
            show(ctx, &tenant, "Renamed tenant")
        }
        TenantsCommand::Delete { slug } => {
            client
                .delete_tenant(&slug)
                .await
                .map_err(|e| no_tenant(&slug, e))?;
            if !ctx.json {
                output::line(&format!("Deleted tenant {slug}"))?;
            }
            Ok(())
        }
    }
}

fn no_tenant(slug: &str, err: CliError) -> CliError {
    err.or_not_found(|| format!("tenant {slug} not found"))
}

fn table(tenants: &[Tenant]) -> String {
    let mut table = Table::new(&["SLUG", "NAME", "ID", "CREATED"]);
    for t in tenants {
        table.row(vec![
            t.slug.clone(),
            t.name.clone(),
            t.id.clone(),
            output::time(&t.created_at),
        ]);
    }
    table.render()
}

/// One tenant as `key  value` lines, after an optional headline.
fn show(ctx: &Ctx, tenant: &Tenant, headline: &str) -> Result<(), CliError> {
    if ctx.json {
        return output::json(tenant);
    }
    if !headline.is_empty() {
        output::line(&output::escape(&format!("{headline} {}", tenant.slug)))?;
    }
    output::print(&output::key_values(&[
        ("slug", tenant.slug.clone()),
        ("name", tenant.name.clone()),
        ("id", tenant.id.clone()),
        ("created", output::time(&tenant.created_at)),
    ]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_has_one_row_per_tenant() {
        let tenants = [Tenant {
            id: "t1".into(),
            slug: "acme".into(),
            name: "Acme Corp".into(),
            created_at: "2025-01-31T09:00:00Z".into(),
        }];
        assert_eq!(
            table(&tenants),
            "SLUG  NAME       ID  CREATED\n\
             acme  Acme Corp  t1  2025-01-31 09:00:00Z\n"
        );
    }
}
