//! `users list | add | show | set-role | disable | enable | reset-password | remove`: the users
//! of the current tenant.

use watchgrid_wire::{CreateUser, UpdateUser, User};

use super::{all_pages, Ctx};
use crate::client::ApiClient;
use crate::error::CliError;
use crate::output::{self, Table};
use crate::prompt;
use crate::UsersCommand;

pub async fn run(ctx: &Ctx, command: UsersCommand) -> Result<(), CliError> {
    let mut client = ctx.client()?;
    match command {
        UsersCommand::List => {
            let users = all_pages(async |cursor| client.users(None, cursor.as_deref()).await)
                .await
                .map_err(|e| ctx.tenant_not_found(e))?;
            if ctx.json {
                return output::json(&users);
            }
            output::print(&table(&users))
        }
        UsersCommand::Add {
            username,
            role,
            password_stdin,
            existing,
        } => {
            let password = if existing {
                None
            } else if password_stdin {
                Some(prompt::password_from_stdin("the new user's password")?)
            } else {
                Some(prompt::new_password(&format!(
                    "Password for {}: ",
                    output::escape(&username)
                ))?)
            };
            let user = client
                .create_user(&CreateUser {
                    username,
                    password,
                    role,
                })
                .await
                .map_err(|e| ctx.tenant_not_found(e))?;
            show(ctx, &user, &format!("Added {} as {role}", user.username))
        }
        UsersCommand::Show { id } => {
            let user = client.user(&id).await.map_err(|e| no_user(ctx, &id, e))?;
            show(ctx, &user, "")
        }
        UsersCommand::SetRole { id, role } => {
            let update = UpdateUser {
                role: Some(role),
                ..UpdateUser::default()
            };
            let user = client
                .update_user(&id, &update)
                .await
                .map_err(|e| no_user(ctx, &id, e))?;
            show(ctx, &user, &format!("{} is now {role}", user.username))
        }
        UsersCommand::Disable { id } => {
            let user = set_disabled(&mut client, &id, true)
                .await
                .map_err(|e| no_user(ctx, &id, e))?;
            show(ctx, &user, &format!("Disabled {}", user.username))
        }
        UsersCommand::Enable { id } => {
            let user = set_disabled(&mut client, &id, false)
                .await
                .map_err(|e| no_user(ctx, &id, e))?;
            show(ctx, &user, &format!("Enabled {}", user.username))
        }
        UsersCommand::ResetPassword { id, password_stdin } => {
            let password = if password_stdin {
                prompt::password_from_stdin("the new password")?
            } else {
                prompt::new_password("New password: ")?
            };
            let update = UpdateUser {
                password: Some(password),
                ..UpdateUser::default()
            };
            let user = client
                .update_user(&id, &update)
                .await
                .map_err(|e| no_user(ctx, &id, e))?;
            show(
                ctx,
                &user,
                &format!(
                    "Reset the password of {}; they must change it at the next login",
                    user.username
                ),
            )
        }
        UsersCommand::Remove { id } => {
            client
                .remove_user(&id)
                .await
                .map_err(|e| no_user(ctx, &id, e))?;
            if !ctx.json {
                output::line(&output::escape(&format!(
                    "Removed user {id} from the tenant"
                )))?;
            }
            Ok(())
        }
    }
}

/// A 404 for a user id: no such user in the tenant (or no such tenant).
fn no_user(ctx: &Ctx, id: &str, err: CliError) -> CliError {
    err.or_not_found(|| format!("user {id} not found {}", ctx.in_tenant()))
}

async fn set_disabled(client: &mut ApiClient, id: &str, disabled: bool) -> Result<User, CliError> {
    let update = UpdateUser {
        disabled: Some(disabled),
        ..UpdateUser::default()
    };
    client.update_user(id, &update).await
}

/// `superadmin`, `disabled`, `must-change-password`, or `-`.
fn flags(user: &User) -> String {
    let flags: Vec<&str> = [
        (user.is_superadmin, "superadmin"),
        (user.disabled, "disabled"),
        (user.must_change_password, "must-change-password"),
    ]
    .into_iter()
    .filter_map(|(on, name)| on.then_some(name))
    .collect();
    if flags.is_empty() {
        "-".to_string()
    } else {
        flags.join(",")
    }
}

fn table(users: &[User]) -> String {
    let mut table = Table::new(&["ID", "USERNAME", "ROLE", "FLAGS", "CREATED"]);
    for u in users {
        table.row(vec![
            u.id.clone(),
            u.username.clone(),
            output::or_dash(u.role.map(|r| r.as_str())),
            flags(u),
            output::time(&u.created_at),
        ]);
    }
    table.render()
}

/// One user as `key  value` lines, after an optional headline.
fn show(ctx: &Ctx, user: &User, headline: &str) -> Result<(), CliError> {
    if ctx.json {
        return output::json(user);
    }
    if !headline.is_empty() {
        output::line(&output::escape(headline))?;
    }
    output::print(&output::key_values(&[
        ("id", user.id.clone()),
        ("username", user.username.clone()),
        ("role", output::or_dash(user.role.map(|r| r.as_str()))),
        ("disabled", output::yes_no(user.disabled)),
        (
            "must change password",
            output::yes_no(user.must_change_password),
        ),
        ("superadmin", output::yes_no(user.is_superadmin)),
        ("created", output::time(&user.created_at)),
    ]))
}

#[cfg(test)]
mod tests {
    use watchgrid_wire::Role;

    use super::*;

    #[test]
    fn the_table_shows_role_and_flags() {
        let users = [
            User {
                id: "u1".into(),
                username: "alice".into(),
                is_superadmin: true,
                must_change_password: false,
                disabled: false,
                role: Some(Role::Owner),
                created_at: "2025-01-31T09:00:00Z".into(),
            },
            User {
                id: "u2".into(),
                username: "bob".into(),
                is_superadmin: false,
                must_change_password: true,
                disabled: true,
                role: None,
                created_at: "2025-02-01T09:00:00Z".into(),
            },
        ];
        assert_eq!(
            table(&users),
            "ID  USERNAME  ROLE   FLAGS                          CREATED\n\
             u1  alice     owner  superadmin                     2025-01-31 09:00:00Z\n\
             u2  bob       -      disabled,must-change-password  2025-02-01 09:00:00Z\n"
        );
    }
}
