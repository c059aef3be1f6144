//! `tokens list | create | revoke`: API tokens of the current tenant. `create` prints the
//! token's secret, once. `tokens onboarding ...` is in `onboarding.rs`.

use watchgrid_wire::{ApiToken, CreateApiToken};

use super::{onboarding, Ctx};
use crate::error::CliError;
use crate::output::{self, Table};
use crate::TokensCommand;

pub async fn run(ctx: &Ctx, command: TokensCommand) -> Result<(), CliError> {
    let mut client = ctx.client()?;
    match command {
        TokensCommand::List => {
            let tokens = client.tokens().await.map_err(|e| ctx.tenant_not_found(e))?;
            if ctx.json {
                return output::json(&tokens);
            }
            output::print(&table(&tokens))
        }
        TokensCommand::Create {
            name,
            role,
            expires_in_days,
        } => {
            let created = client
                .create_token(&CreateApiToken {
                    name,
                    role,
                    expires_in_days,
                })
                .await
                .map_err(|e| ctx.tenant_not_found(e))?;
            if ctx.json {
                output::json(&created)?;
            } else {
                // The description and warning go to stderr, so that stdout is the secret alone
                // (`watchgrid tokens create ci --role operator > ci.token`).
                let t = &created.token;
                output::note(&output::escape(&format!(
                    "Created API token {} (id {}, role {}, tenant {}, expires {}).",
                    t.name,
                    t.id,
                    t.role,
                    t.tenant,
                    t.expires_at
                        .as_deref()
                        .map_or_else(|| "never".to_string(), output::time),
                )));
                output::note(
                    "This is the only time the secret is shown: store it now. \
                     Use it as WATCHGRID_TOKEN or in 'Authorization: Bearer <secret>'.",
                );
                output::line(&output::escape(&created.secret))?;
            }
            Ok(())
        }
        TokensCommand::Onboarding(command) => onboarding::run(ctx, &mut client, command).await,
        TokensCommand::Revoke { id } => {
            client.revoke_token(&id).await.map_err(|e| {
                e.or_not_found(|| format!("API token {id} not found {}", ctx.in_tenant()))
            })?;
            if !ctx.json {
                output::line(&output::escape(&format!("Revoked token {id}")))?;
            }
            Ok(())
        }
    }
}

fn table(tokens: &[ApiToken]) -> String {
    let mut table = Table::new(&[
        "ID",
        "NAME",
        "ROLE",
        "CREATED BY",
        "CREATED",
        "EXPIRES",
        "LAST USED",
        "STATE",
    ]);
    for t in tokens {
        let state = if t.revoked { "revoked" } else { "active" };
        table.row(vec![
            t.id.clone(),
            t.name.clone(),
            t.role.to_string(),
            t.created_by.clone(),
            output::time(&t.created_at),
            t.expires_at
                .as_deref()
                .map_or_else(|| "never".to_string(), output::time),
            t.last_used_at
                .as_deref()
                .map_or_else(|| "never".to_string(), output::time),
            state.to_string(),
        ]);
    }
    table.render()
}

#[cfg(test)]
mod tests {
    use watchgrid_wire::Role;

    use super::*;

    #[test]
    fn the_table_shows_no_secret_and_fills_absent_times() {
        let tokens = [ApiToken {
            id: "k1".into(),
            name: "ci".into(),
            role: Role::Operator,
            tenant: "acme".into(),
            created_by: "alice".into(),
            created_at: "2025-01-31T09:00:00Z".into(),
            expires_at: None,
            last_used_at: Some("2025-02-01T10:00:00Z".into()),
            revoked: false,
        }];
        assert_eq!(
            table(&tokens),
            "ID  NAME  ROLE      CREATED BY  CREATED               EXPIRES  LAST USED             STATE\n\
             k1  ci    operator  alice       2025-01-31 09:00:00Z  never    2025-02-01 10:00:00Z  active\n"
        );
    }
}
