//! The commands: dispatch, and the context they share (global options, the session file, how
//! to pick the server and the credentials).

mod audit;
mod auth;
mod devices;
mod dns;
mod onboarding;
mod ssh;
mod ssh_grants;
mod tenants;
mod tokens;
mod users;
mod version;

use std::path::PathBuf;

use watchgrid_wire::Page;

use crate::args::{self, ServerUrl};
use crate::client::{ApiClient, Auth};
use crate::error::CliError;
use crate::session::{Session, SessionStore};
use crate::{config, Cli, Command};

/// The message when no server is known.
pub const NO_SERVER: &str = "no server: pass --server URL or log in first";

/// What every command may need besides its own arguments.
#[derive(Debug)]
pub struct Ctx {
    /// `--server` / `WATCHGRID_SERVER`.
    pub server: Option<ServerUrl>,
    /// `--tenant`.
    pub tenant: Option<String>,
    pub json: bool,
    /// `--token` / `WATCHGRID_TOKEN`.
    pub token: Option<String>,
    /// The directory of the session file, or why there is none.
    pub config_dir: Result<PathBuf, String>,
}

pub async fn run(cli: Cli) -> Result<(), CliError> {
    let ctx = Ctx {
        server: cli.server,
        tenant: cli.tenant,
        json: cli.json,
        token: cli.token,
        config_dir: config::config_dir(),
    };
    match cli.command {
        Command::Login(a) => auth::login(&ctx, a).await,
        Command::Logout => auth::logout(&ctx).await,
        Command::Whoami => auth::whoami(&ctx).await,
        Command::Password(a) => auth::password(&ctx, a).await,
        Command::Tenants(c) => tenants::run(&ctx, c).await,
        Command::Users(c) => users::run(&ctx, c).await,
        Command::Tokens(c) => tokens::run(&ctx, c).await,
        Command::Devices(c) => devices::run(&ctx, c).await,
        Command::Dns(c) => dns::run(&ctx, c).await,
        Command::Audit(a) => audit::run(&ctx, a).await,
        Command::Ssh(a) => ssh::ssh(&ctx, a).await,
        Command::SshProxy(a) => ssh::ssh_proxy(&ctx, a).await,
        Command::SshCert(a) => ssh::ssh_cert(&ctx, a).await,
        Command::SshConfig(a) => ssh::ssh_config(&ctx, a).await,
        Command::SshGrants(c) => ssh_grants::run(&ctx, c).await,
        Command::Version => version::run(&ctx).await,
    }
}

impl Ctx {
    /// The session file's store; an error only when no directory could be determined.
    pub fn store(&self) -> Result<SessionStore, CliError> {
        match &self.config_dir {
            Ok(dir) => Ok(SessionStore::new(dir)),
            Err(why) => Err(CliError::Failed(why.clone())),
        }
    }

    /// The stored session, if any (none when there is no configuration directory).
    pub fn stored_session(&self) -> Result<Option<Session>, CliError> {
        match &self.config_dir {
            Ok(dir) => SessionStore::new(dir).load(),
            Err(_) => Ok(None),
        }
    }

    /// `--server`, else the stored session's server.
    pub fn server_or(&self, session: Option<&Session>) -> Result<ServerUrl, CliError> {
        if let Some(server) = &self.server {
            return Ok(server.clone());
        }
        match session {
            Some(session) => args::server_url(&session.server).map_err(|why| {
                CliError::Failed(format!(
                    "the session file names an invalid server {:?} ({why}): run watchgrid login",
                    session.server
                ))
            }),
            None => Err(CliError::Usage(NO_SERVER.to_string())),
        }
    }

    /// A client for a request that needs no credentials.
    pub fn anonymous_client(&self) -> Result<ApiClient, CliError> {
        let session = self.stored_session()?;
        let server = self.server_or(session.as_ref())?;
        ApiClient::new(server, None, Auth::Anonymous { stored_for: None })
    }

    /// A client with the caller's credentials: `--token`, else the stored session if it is
    /// for this server (a session's tokens are never sent to another server), else none (the
    /// server's 401 then becomes "not logged in").
    pub fn client(&self) -> Result<ApiClient, CliError> {
        if let Some(token) = &self.token {
            check_token(token)?;
            let server = match &self.server {
                Some(server) => server.clone(),
                None => self.server_or(self.stored_session()?.as_ref())?,
            };
            return ApiClient::new(server, self.tenant.clone(), Auth::Token(token.clone()));
        }
        let session = self.stored_session()?;
        let server = self.server_or(session.as_ref())?;
        let auth = match session {
            Some(session) if session.server == server.as_str() => Auth::Session {
                session,
                store: self.store()?,
            },
            other => Auth::Anonymous {
                stored_for: other.map(|s| s.server),
            },
        };
        ApiClient::new(server, self.tenant.clone(), auth)
    }
}

impl Ctx {
    /// `in tenant acme` with `--tenant`, else `in the current tenant`: for messages.
    pub fn in_tenant(&self) -> String {
        match &self.tenant {
            Some(slug) => format!("in tenant {slug}"),
            None => "in the current tenant".to_string(),
        }
    }

    /// For a 404 on a tenant's list: with `--tenant`, that tenant is the missing thing.
    pub fn tenant_not_found(&self, err: CliError) -> CliError {
        match &self.tenant {
            Some(slug) => err
                .or_not_found(|| format!("tenant {slug} not found, or you are not a member of it")),
            None => err,
        }
    }
}

/// A token must fit in an HTTP header; the message never repeats it.
fn check_token(token: &str) -> Result<(), CliError> {
    if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(CliError::Usage(
            "invalid value for '--token' (WATCHGRID_TOKEN): expected an API token such as \
             wgt_..., without spaces"
                .to_string(),
        ));
    }
    Ok(())
}

/// Follow `next_cursor` until the last page. A cursor that comes back twice ends the walk
/// with an error rather than looping forever.
pub async fn all_pages<T>(
    mut fetch: impl AsyncFnMut(Option<String>) -> Result<Page<T>, CliError>,
) -> Result<Vec<T>, CliError> {
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    let mut seen = std::collections::HashSet::new();
    loop {
        let page = fetch(cursor.take()).await?;
        items.extend(page.items);
        match page.next_cursor {
            None => return Ok(items),
            Some(next) => {
                if !seen.insert(next.clone()) {
                    return Err(CliError::Failed(
                        "the server returned the same page cursor twice".to_string(),
                    ));
                }
                cursor = Some(next);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        reason = "a test should fail loudly on any unexpected error"
    )]

    use super::*;

    #[test]
    fn tokens_are_checked_without_being_echoed() {
        assert!(check_token("wgt_abc123").is_ok());
        let err = check_token("wgt_secret value").unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(!err.one_line().contains("secret"));
        assert!(check_token("").is_err());
    }

    #[test]
    fn the_stored_session_is_not_sent_to_another_server() {
        let dir = tempfile::tempdir().unwrap();
        let store = SessionStore::new(dir.path());
        store
            .save(&Session {
                server: "https://a.example".into(),
                username: "alice".into(),
                tenant: None,
                access_token: "t".into(),
                refresh_token: "r".into(),
                access_expires_at: "2030-01-01T00:00:00Z".into(),
            })
            .unwrap();
        let ctx = |server: Option<&str>| Ctx {
            server: server.map(|s| args::server_url(s).unwrap()),
            tenant: None,
            json: false,
            token: None,
            config_dir: Ok(dir.path().to_path_buf()),
        };
        let same = ctx(None).client().unwrap();
        assert!(same.session().is_some());
        assert_eq!(same.server().as_str(), "https://a.example");
        let other = ctx(Some("https://b.example")).client().unwrap();
        assert!(other.session().is_none());
        assert!(format!("{other:?}").contains("stored_for: Some(\"https://a.example\")"));
    }

    #[test]
    fn without_a_server_the_error_is_a_usage_error() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = Ctx {
            server: None,
            tenant: None,
            json: false,
            token: None,
            config_dir: Ok(dir.path().to_path_buf()),
        };
        let err = ctx.client().unwrap_err();
        assert_eq!(err.one_line(), NO_SERVER);
        assert_eq!(err.exit_code(), 2);
    }
}
