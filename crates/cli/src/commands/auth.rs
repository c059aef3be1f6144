//! `login`, `logout`, `whoami` and `password`: the session's life.

use serde_json::json;
use watchgrid_wire::{ChangePassword, LoginRequest, Whoami};

use super::Ctx;
use crate::args;
use crate::client::{ApiClient, Auth};
use crate::error::CliError;
use crate::output;
use crate::prompt;
use crate::session::Session;
use crate::{LoginArgs, PasswordArgs};

pub async fn login(ctx: &Ctx, a: LoginArgs) -> Result<(), CliError> {
    let store = ctx.store()?;
    // A damaged old file is about to be replaced; it only matters for its server.
    let previous = store.load().ok().flatten();
    let server = ctx.server_or(previous.as_ref())?;

    let username = match a.username {
        Some(name) => name,
        None if a.password_stdin => {
            return Err(CliError::Usage(
                "'--password-stdin' needs '--username'".to_string(),
            ))
        }
        None => prompt::username()?,
    };
    let password = if a.password_stdin {
        prompt::password_from_stdin("the password")?
    } else {
        prompt::password("Password: ")?
    };

    let client = ApiClient::new(server.clone(), None, Auth::Anonymous { stored_for: None })?;
    let answer = client
        .login(&LoginRequest {
            username,
            password,
            tenant: ctx.tenant.clone(),
        })
        .await
        .map_err(|e| ctx.tenant_not_found(e))?;
    let session = Session::from_login(server.as_str(), &answer, ctx.tenant.clone());
    store.save(&session)?;

    if ctx.json {
        // The answer without its tokens: they are never printed.
        output::json(&json!({
            "server": session.server,
            "user": answer.user,
            "tenant": answer.tenant,
            "access_expires_at": session.access_expires_at,
        }))?;
    } else {
        let tenant = match &session.tenant {
            Some(slug) => format!("tenant {slug}"),
            None => "no tenant".to_string(),
        };
        output::line(&output::escape(&format!(
            "Logged in to {} as {} ({tenant})",
            session.server, session.username
        )))?;
    }
    if answer.user.must_change_password {
        output::note("watchgrid: your password must be changed: run watchgrid password");
    }
    Ok(())
}

pub async fn logout(ctx: &Ctx) -> Result<(), CliError> {
    let store = ctx.store()?;
    let session = match store.load() {
        Ok(Some(session)) => session,
        Ok(None) => {
            if !ctx.json {
                output::line("Not logged in.")?;
            }
            return Ok(());
        }
        Err(_) => {
            store.delete()?;
            if !ctx.json {
                output::line("Deleted a damaged session file.")?;
            }
            return Ok(());
        }
    };
    let server = args::server_url(&session.server).map_err(|why| {
        CliError::Failed(format!("the session file names an invalid server: {why}"))
    });
    let revoked = match server {
        Ok(server) => {
            let mut client = ApiClient::new(
                server,
                None,
                Auth::Session {
                    session: session.clone(),
                    store: store.clone(),
                },
            )?;
            match client.logout().await {
                Ok(()) | Err(CliError::SessionExpired) => Ok(()),
                Err(err) if err.status() == Some(401) => Ok(()),
                Err(err) => Err(err),
            }
        }
        Err(err) => Err(err),
    };
    store.delete()?;
    if let Err(err) = revoked {
        return Err(CliError::Failed(format!(
            "logged out here, but the server did not revoke the session: {}",
            err.one_line()
        )));
    }
    if !ctx.json {
        output::line(&output::escape(&format!(
            "Logged out of {}",
            session.server
        )))?;
    }
    Ok(())
}

pub async fn whoami(ctx: &Ctx) -> Result<(), CliError> {
    let mut client = ctx.client()?;
    let me = client.whoami().await.map_err(|e| ctx.tenant_not_found(e))?;
    if ctx.json {
        return output::json(&me);
    }
    output::print(&whoami_text(client.server().as_str(), &me))?;
    if me.must_change_password {
        output::note("watchgrid: your password must be changed: run watchgrid password");
    }
    Ok(())
}

fn whoami_text(server: &str, me: &Whoami) -> String {
    let tenant = match &me.tenant {
        Some(t) => format!("{} ({})", t.slug, t.name),
        None => "-".to_string(),
    };
    output::key_values(&[
        ("user", me.username.clone()),
        ("via", me.via.clone()),
        ("server", server.to_string()),
        ("tenant", tenant),
        ("role", output::or_dash(me.role.map(|r| r.as_str()))),
        ("superadmin", output::yes_no(me.is_superadmin)),
    ])
}

pub async fn password(ctx: &Ctx, a: PasswordArgs) -> Result<(), CliError> {
    let mut client = ctx.client()?;
    let (current_password, new_password) = if a.password_stdin {
        (
            prompt::password_from_stdin("the current password")?,
            prompt::password_from_stdin("the new password")?,
        )
    } else {
        (
            prompt::password("Current password: ")?,
            prompt::new_password("New password: ")?,
        )
    };
    client
        .change_password(&ChangePassword {
            current_password,
            new_password,
        })
        .await?;
    // The server has revoked every session of the user, this one included.
    if client.session().is_some() {
        ctx.store()?.delete()?;
        if !ctx.json {
            output::line("Password changed.")?;
        }
        output::note("Every session was signed out: run watchgrid login to log in again.");
    } else if !ctx.json {
        output::line("Password changed. Every login session was signed out.")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use watchgrid_wire::{Role, Tenant};

    use super::*;

    #[test]
    fn whoami_lists_the_identity() {
        let me = Whoami {
            username: "alice".into(),
            via: "session".into(),
            is_superadmin: false,
            tenant: Some(Tenant {
                id: "t1".into(),
                slug: "acme".into(),
                name: "Acme Corp".into(),
                created_at: "2025-01-01T00:00:00Z".into(),
            }),
            role: Some(Role::Admin),
            must_change_password: false,
        };
        assert_eq!(
            whoami_text("https://wg", &me),
            "user        alice\n\
             via         session\n\
             server      https://wg\n\
             tenant      acme (Acme Corp)\n\
             role        admin\n\
             superadmin  no\n"
        );
    }
}
