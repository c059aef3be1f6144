//! The stored login session: `session.json` in the configuration directory, mode 0600 in a
//! 0700 directory, replaced atomically (a temporary file in the same directory, then rename;
//! see `watchgrid_clientkit::files`).

use std::fmt;
use std::path::PathBuf;

use chrono::{SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use watchgrid_clientkit::files::PrivateDir;
use watchgrid_wire::LoginResponse;

use crate::error::CliError;

/// The file name inside the configuration directory.
pub const SESSION_FILE: &str = "session.json";

/// What `watchgrid login` stores. Its `Debug` output never shows the tokens.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// The server's base URL, normalised (see `args::ServerUrl`).
    pub server: String,
    pub username: String,
    /// The slug of the tenant the session works in, if the server named one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    pub access_token: String,
    pub refresh_token: String,
    /// When the access token expires (RFC 3339, UTC).
    pub access_expires_at: String,
}

impl Session {
    /// The session a login or refresh answer describes. `fallback_tenant` is kept when the
    /// answer names no tenant.
    pub fn from_login(
        server: &str,
        answer: &LoginResponse,
        fallback_tenant: Option<String>,
    ) -> Session {
        let lifetime = i64::try_from(answer.expires_in)
            .ok()
            .and_then(chrono::TimeDelta::try_seconds)
            .unwrap_or(chrono::TimeDelta::MAX);
        let expires = Utc::now()
            .checked_add_signed(lifetime)
            .unwrap_or(chrono::DateTime::<Utc>::MAX_UTC);
        Session {
            server: server.to_string(),
            username: answer.user.username.clone(),
            tenant: answer
                .tenant
                .as_ref()
                .map(|t| t.slug.clone())
                .or(fallback_tenant),
            access_token: answer.access_token.clone(),
            refresh_token: answer.refresh_token.clone(),
            access_expires_at: expires.to_rfc3339_opts(SecondsFormat::Secs, true),
        }
    }
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("server", &self.server)
            .field("username", &self.username)
            .field("tenant", &self.tenant)
            .field("access_token", &"***")
            .field("refresh_token", &"***")
            .field("access_expires_at", &self.access_expires_at)
            .finish()
    }
}

/// The session file in one directory. The directory is a parameter so tests use a temporary
/// one; the CLI passes `config::config_dir()`.
#[derive(Debug, Clone)]
pub struct SessionStore {
    dir: PrivateDir,
}

impl SessionStore {
    pub fn new(dir: impl Into<PathBuf>) -> SessionStore {
        SessionStore {
            dir: PrivateDir::new(dir),
        }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.file(SESSION_FILE)
    }

    /// The stored session; `None` when there is no file.
    pub fn load(&self) -> Result<Option<Session>, CliError> {
        let Some(text) = self.dir.read(SESSION_FILE)? else {
            return Ok(None);
        };
        serde_json::from_str(&text).map(Some).map_err(|e| {
            CliError::Failed(format!(
                "the session file {} is damaged ({e}): delete it and run watchgrid login",
                self.path().display()
            ))
        })
    }

    /// Write the session: the directory is created 0700 if missing, the file is 0600 from its
    /// first byte and replaces the old one in one rename.
    pub fn save(&self, session: &Session) -> Result<(), CliError> {
        let mut text = serde_json::to_string_pretty(session)
            .map_err(|e| CliError::Failed(format!("cannot encode the session: {e}")))?;
        text.push('\n');
        Ok(self.dir.write(SESSION_FILE, text.as_bytes())?)
    }

    /// Remove the session file; `false` when there was none.
    pub fn delete(&self) -> Result<bool, CliError> {
        Ok(self.dir.remove(SESSION_FILE)?)
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        reason = "a test should fail loudly on any unexpected error"
    )]

    use std::fs;
    use std::path::Path;

    use super::*;

    fn session() -> Session {
        Session {
            server: "https://wg.example".into(),
            username: "alice".into(),
            tenant: Some("acme".into()),
            access_token: "access-secret".into(),
            refresh_token: "refresh-secret".into(),
            access_expires_at: "2030-01-01T00:00:00Z".into(),
        }
    }

    #[test]
    fn round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let store = SessionStore::new(dir.path().join("nested").join("watchgrid"));
        assert_eq!(store.load().unwrap(), None);
        store.save(&session()).unwrap();
        assert_eq!(store.load().unwrap(), Some(session()));

        let mut changed = session();
        changed.refresh_token = "rotated".into();
        store.save(&changed).unwrap();
        assert_eq!(store.load().unwrap(), Some(changed));

        assert!(store.delete().unwrap());
        assert!(!store.delete().unwrap());
        assert_eq!(store.load().unwrap(), None);
    }

    #[cfg(unix)]
    #[test]
    fn file_is_0600_and_new_directory_0700() {
        use std::os::unix::fs::PermissionsExt;

        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("watchgrid");
        let store = SessionStore::new(&config);
        store.save(&session()).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&config), 0o700);
        assert_eq!(mode(&store.path()), 0o600);

        // An old file with a loose mode is replaced by a 0600 one.
        fs::set_permissions(store.path(), fs::Permissions::from_mode(0o644)).unwrap();
        store.save(&session()).unwrap();
        assert_eq!(mode(&store.path()), 0o600);
    }

    #[test]
    fn a_damaged_file_is_reported_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let store = SessionStore::new(dir.path());
        fs::write(store.path(), "{not json").unwrap();
        let err = store.load().unwrap_err().one_line();
        assert!(err.contains("session.json is damaged"), "{err}");
        assert!(err.contains("run watchgrid login"), "{err}");
    }

    #[test]
    fn debug_hides_tokens() {
        let shown = format!("{:?}", session());
        assert!(!shown.contains("secret"), "{shown}");
        assert!(shown.contains("alice"));
    }

    #[test]
    fn from_login_computes_the_expiry_and_keeps_the_tenant() {
        let answer = LoginResponse {
            access_token: "a".into(),
            token_type: "Bearer".into(),
            expires_in: 900,
            refresh_token: "r".into(),
            user: watchgrid_wire::User {
                id: "u1".into(),
                username: "alice".into(),
                is_superadmin: false,
                must_change_password: false,
                disabled: false,
                role: None,
                created_at: "2024-01-01T00:00:00Z".into(),
            },
            tenant: None,
        };
        let s = Session::from_login("https://wg", &answer, Some("acme".into()));
        assert_eq!(s.tenant.as_deref(), Some("acme"));
        let expires = chrono::DateTime::parse_from_rfc3339(&s.access_expires_at).unwrap();
        let left = expires.with_timezone(&Utc) - Utc::now();
        assert!(
            left.num_seconds() > 800 && left.num_seconds() <= 900,
            "{left}"
        );
    }
}
