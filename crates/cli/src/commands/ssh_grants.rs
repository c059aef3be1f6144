//! `ssh-grants list | add | remove`: which Unix accounts (SSH principals) a user, or every
//! member with a role, may get certificates for (`GET`/`PUT /api/ssh/principals`). A fresh
//! tenant grants none, so `watchgrid ssh` needs one of these first.

use watchgrid_wire::{PrincipalGrant, Role};

use super::{all_pages, Ctx};
use crate::args::is_uuid;
use crate::client::ApiClient;
use crate::error::CliError;
use crate::output::{self, Table};
use crate::{GrantSubjectArgs, SshGrantsCommand};

pub async fn run(ctx: &Ctx, command: SshGrantsCommand) -> Result<(), CliError> {
    let mut client = ctx.client()?;
    match command {
        SshGrantsCommand::List => {
            let grants = client
                .ssh_grants()
                .await
                .map_err(|e| ctx.tenant_not_found(e))?;
            if ctx.json {
                return output::json(&grants);
            }
            output::print(&table(&grants))
        }
        SshGrantsCommand::Add { subject, accounts } => {
            change(ctx, &mut client, &subject, |current| {
                current.extend(accounts.iter().cloned());
            })
            .await
        }
        SshGrantsCommand::Remove { subject, accounts } => {
            change(ctx, &mut client, &subject, |current| {
                current.retain(|a| !accounts.contains(a));
            })
            .await
        }
    }
}

/// Whose grant a command changes, as the API names it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Subject {
    User { id: String, username: String },
    Role(Role),
}

impl Subject {
    fn describe(&self) -> String {
        match self {
            Subject::User { username, .. } => format!("user {username}"),
            Subject::Role(role) => format!("role {role}"),
        }
    }

    fn holds(&self, grant: &PrincipalGrant) -> bool {
        match self {
            Subject::User { id, .. } => grant.user_id.as_deref() == Some(id.as_str()),
            Subject::Role(role) => grant.role == Some(*role),
        }
    }
}

/// `--user` (an id or a username of the tenant) or `--role`.
async fn subject(
    ctx: &Ctx,
    client: &mut ApiClient,
    args: &GrantSubjectArgs,
) -> Result<Subject, CliError> {
    if let Some(role) = args.role {
        return Ok(Subject::Role(role));
    }
    let wanted = args.user.clone().unwrap_or_default();
    let users = all_pages(async |cursor| client.users(None, cursor.as_deref()).await)
        .await
        .map_err(|e| ctx.tenant_not_found(e))?;
    let by_id = is_uuid(&wanted).then(|| wanted.to_ascii_lowercase());
    users
        .into_iter()
        .find(|u| Some(&u.id) == by_id.as_ref() || u.username == wanted)
        .map(|u| Subject::User {
            id: u.id,
            username: u.username,
        })
        .ok_or_else(|| {
            CliError::Failed(output::escape(&format!(
                "user {wanted} not found {}",
                ctx.in_tenant()
            )))
        })
}

/// Read the subject's grant, apply `edit` to its accounts, and store the result (an empty
/// list removes the grant).
async fn change(
    ctx: &Ctx,
    client: &mut ApiClient,
    args: &GrantSubjectArgs,
    edit: impl FnOnce(&mut Vec<String>),
) -> Result<(), CliError> {
    let subject = subject(ctx, client, args).await?;
    let grants = client
        .ssh_grants()
        .await
        .map_err(|e| ctx.tenant_not_found(e))?;
    let mut accounts: Vec<String> = grants
        .into_iter()
        .find(|g| subject.holds(g))
        .map(|g| g.principals)
        .unwrap_or_default();
    edit(&mut accounts);
    accounts.sort();
    accounts.dedup();
    let (user_id, role) = match &subject {
        Subject::User { id, .. } => (Some(id.clone()), None),
        Subject::Role(role) => (None, Some(*role)),
    };
    let stored = client
        .set_ssh_grant(&PrincipalGrant {
            user_id,
            username: None,
            role,
            principals: accounts,
        })
        .await?;
    if ctx.json {
        return output::json(&stored);
    }
    let line = if stored.principals.is_empty() {
        format!(
            "{} may not log in as any account {} (grant removed)",
            subject.describe(),
            ctx.in_tenant()
        )
    } else {
        format!(
            "{} may log in as {} {}",
            subject.describe(),
            stored.principals.join(", "),
            ctx.in_tenant()
        )
    };
    output::line(&output::escape(&line))
}

fn table(grants: &[PrincipalGrant]) -> String {
    let mut table = Table::new(&["SUBJECT", "ACCOUNTS"]);
    for g in grants {
        let subject = match (&g.role, &g.username, &g.user_id) {
            (Some(role), _, _) => format!("role:{role}"),
            (None, Some(name), _) => format!("user:{name}"),
            (None, None, Some(id)) => format!("user:{id}"),
            (None, None, None) => "-".to_string(),
        };
        table.row(vec![subject, g.principals.join(",")]);
    }
    table.render()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_names_roles_and_users() {
        let grants = [
            PrincipalGrant {
                user_id: None,
                username: None,
                role: Some(Role::Operator),
                principals: vec!["deploy".into(), "root".into()],
            },
            PrincipalGrant {
                user_id: Some("u1".into()),
                username: Some("alice".into()),
                role: None,
                principals: vec!["alice".into()],
            },
        ];
        let text = table(&grants);
        assert!(text.contains("role:operator"), "{text}");
        assert!(text.contains("deploy,root"), "{text}");
        assert!(text.contains("user:alice"), "{text}");
    }
}
