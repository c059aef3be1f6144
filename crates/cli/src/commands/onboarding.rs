//! `tokens onboarding list | create | revoke`: the onboarding tokens of the current tenant,
//! the secrets (`wgo_...`) with which `watchgrid-agent enroll` registers a device. `create`
//! prints the secret once.

use chrono::{DateTime, Utc};
use watchgrid_wire::{CreateOnboardingToken, OnboardingToken};

use super::Ctx;
use crate::args;
use crate::client::ApiClient;
use crate::error::CliError;
use crate::output::{self, Table};
use crate::OnboardingCommand;

pub async fn run(
    ctx: &Ctx,
    client: &mut ApiClient,
    command: OnboardingCommand,
) -> Result<(), CliError> {
    match command {
        OnboardingCommand::List => {
            let tokens = client
                .onboarding_tokens()
                .await
                .map_err(|e| ctx.tenant_not_found(e))?;
            if ctx.json {
                return output::json(&tokens);
            }
            output::print(&table(&tokens, Utc::now()))
        }
        OnboardingCommand::Create {
            description,
            max_uses,
            expires_in_hours,
            tags,
        } => {
            args::check_tag_count(&tags)
                .map_err(|why| CliError::Usage(format!("invalid value for '--tag': {why}")))?;
            let created = client
                .create_onboarding_token(&CreateOnboardingToken {
                    description: description.unwrap_or_default(),
                    max_uses,
                    expires_in_hours,
                    tags,
                })
                .await
                .map_err(|e| ctx.tenant_not_found(e))?;
            if ctx.json {
                return output::json(&created);
            }
            // Everything but the secret goes to stderr, so that stdout is the secret alone
            // (`watchgrid tokens onboarding create > enroll.token`).
            let t = &created.token;
            let tags = if t.tags.is_empty() {
                String::new()
            } else {
                format!(", tags {}", t.tags.join(","))
            };
            output::note(&output::escape(&format!(
                "Created onboarding token {} ({}, expires {}{tags}).",
                t.id,
                uses_text(t.max_uses),
                t.expires_at
                    .as_deref()
                    .map_or_else(|| "never".to_string(), output::time),
            )));
            output::note(
                "This is the only time the secret is shown (on standard output): store it now. \
                 Enroll a device with:",
            );
            // Standard error ends up in terminals' scrollback and CI logs: name the secret
            // by its first characters only.
            output::note(&output::escape(&format!(
                "  watchgrid-agent enroll --server {} --token {}",
                client.server(),
                masked(&created.secret)
            )));
            output::line(&output::escape(&created.secret))
        }
        OnboardingCommand::Revoke { id } => {
            client.revoke_onboarding_token(&id).await.map_err(|e| {
                e.or_not_found(|| format!("onboarding token {id} not found {}", ctx.in_tenant()))
            })?;
            if !ctx.json {
                output::line(&output::escape(&format!("Revoked onboarding token {id}")))?;
            }
            Ok(())
        }
    }
}

/// `wgo_1a2b…`: enough to tell secrets apart, too little to use one.
fn masked(secret: &str) -> String {
    let shown: String = secret.chars().take("wgo_".len() + 4).collect();
    format!("{shown}…")
}

/// `for 1 device`, `for up to 50 devices`.
fn uses_text(max_uses: u32) -> String {
    if max_uses == 1 {
        "for 1 device".to_string()
    } else {
        format!("for up to {max_uses} devices")
    }
}

/// `revoked`, `expired`, `used-up` or `active`, at `now`.
fn state(token: &OnboardingToken, now: DateTime<Utc>) -> &'static str {
    let expired = token
        .expires_at
        .as_deref()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .is_some_and(|t| t <= now);
    if token.revoked {
        "revoked"
    } else if expired {
        "expired"
    } else if token.uses >= token.max_uses {
        "used-up"
    } else {
        "active"
    }
}

fn table(tokens: &[OnboardingToken], now: DateTime<Utc>) -> String {
    let mut table = Table::new(&[
        "ID",
        "DESCRIPTION",
        "USES",
        "TAGS",
        "CREATED BY",
        "CREATED",
        "EXPIRES",
        "STATE",
    ]);
    for t in tokens {
        table.row(vec![
            t.id.clone(),
            output::or_dash(Some(t.description.as_str()).filter(|d| !d.is_empty())),
            format!("{}/{}", t.uses, t.max_uses),
            if t.tags.is_empty() {
                "-".to_string()
            } else {
                t.tags.join(",")
            },
            t.created_by.clone(),
            output::time(&t.created_at),
            t.expires_at
                .as_deref()
                .map_or_else(|| "never".to_string(), output::time),
            state(t, now).to_string(),
        ]);
    }
    table.render()
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        reason = "a test should fail loudly on any unexpected error"
    )]

    use super::*;

    fn token(id: &str) -> OnboardingToken {
        OnboardingToken {
            id: id.into(),
            description: String::new(),
            max_uses: 1,
            uses: 0,
            tags: vec![],
            expires_at: Some("2025-02-01T09:00:00Z".into()),
            revoked: false,
            created_by: "alice".into(),
            created_at: "2025-01-31T09:00:00Z".into(),
        }
    }

    #[test]
    fn the_table_shows_uses_tags_and_state() {
        let now = DateTime::parse_from_rfc3339("2025-01-31T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let mut lab = token("o2");
        lab.description = "lab machines".into();
        lab.max_uses = 50;
        lab.uses = 3;
        lab.tags = vec!["lab".into(), "site:fra".into()];
        lab.expires_at = Some("2025-01-31T11:00:00Z".into());
        let mut used = token("o3");
        used.uses = 1;
        let mut revoked = token("o4");
        revoked.revoked = true;
        assert_eq!(
            table(&[token("o1"), lab, used, revoked], now),
            "ID  DESCRIPTION   USES  TAGS          CREATED BY  CREATED               EXPIRES               STATE\n\
             o1  -             0/1   -             alice       2025-01-31 09:00:00Z  2025-02-01 09:00:00Z  active\n\
             o2  lab machines  3/50  lab,site:fra  alice       2025-01-31 09:00:00Z  2025-01-31 11:00:00Z  expired\n\
             o3  -             1/1   -             alice       2025-01-31 09:00:00Z  2025-02-01 09:00:00Z  used-up\n\
             o4  -             0/1   -             alice       2025-01-31 09:00:00Z  2025-02-01 09:00:00Z  revoked\n"
        );
    }

    #[test]
    fn uses_are_worded_for_one_and_many() {
        assert_eq!(uses_text(1), "for 1 device");
        assert_eq!(uses_text(50), "for up to 50 devices");
    }
}
