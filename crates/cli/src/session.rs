//! The stored login session: `session.json` in the configuration directory, mode 0600 in a
//! 0700 directory, replaced atomically (a temporary file in the same directory, then rename).

use std::fmt;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use watchgrid_wire::LoginResponse;

use crate::error::{io_text, CliError};

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
    dir: PathBuf,
}

impl SessionStore {
    pub fn new(dir: impl Into<PathBuf>) -> SessionStore {
        SessionStore { dir: dir.into() }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join(SESSION_FILE)
    }

    /// The stored session; `None` when there is no file.
    pub fn load(&self) -> Result<Option<Session>, CliError> {
        let path = self.path();
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(CliError::Failed(format!(
                    "cannot read {}: {}",
                    path.display(),
                    io_text(&e)
                )))
            }
        };
        serde_json::from_str(&text).map(Some).map_err(|e| {
            CliError::Failed(format!(
                "the session file {} is damaged ({e}): delete it and run watchgrid login",
                path.display()
            ))
        })
    }

    /// Write the session: the directory is created 0700 if missing, the file is 0600 from its
    /// first byte and replaces the old one in one rename.
    pub fn save(&self, session: &Session) -> Result<(), CliError> {
        self.create_dir()?;
        let mut text = serde_json::to_string_pretty(session)
            .map_err(|e| CliError::Failed(format!("cannot encode the session: {e}")))?;
        text.push('\n');

        let path = self.path();
        let temp = self.dir.join(format!(
            ".{SESSION_FILE}.{}.{}.tmp",
            std::process::id(),
            Utc::now().timestamp_nanos_opt().unwrap_or_default()
        ));
        let written = write_private(&temp, text.as_bytes()).and_then(|()| fs::rename(&temp, &path));
        if let Err(e) = written {
            let _ = fs::remove_file(&temp);
            return Err(CliError::Failed(format!(
                "cannot write {}: {}",
                path.display(),
                io_text(&e)
            )));
        }
        // Make the rename durable; a failure here loses nothing that matters.
        if let Ok(dir) = fs::File::open(&self.dir) {
            let _ = dir.sync_all();
        }
        Ok(())
    }

    /// Remove the session file; `false` when there was none.
    pub fn delete(&self) -> Result<bool, CliError> {
        match fs::remove_file(self.path()) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(CliError::Failed(format!(
                "cannot delete {}: {}",
                self.path().display(),
                io_text(&e)
            ))),
        }
    }

    fn create_dir(&self) -> Result<(), CliError> {
        if self.dir.is_dir() {
            return Ok(());
        }
        let mut builder = fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            builder.mode(0o700);
        }
        builder
            .create(&self.dir)
            .and_then(|()| set_mode(&self.dir, 0o700))
            .map_err(|e| {
                CliError::Failed(format!(
                    "cannot create {}: {}",
                    self.dir.display(),
                    io_text(&e)
                ))
            })
    }
}

/// Create `path` (which must not exist) readable by its owner only, and write `bytes`.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    // The umask can only remove bits; set the mode exactly anyway.
    set_mode(path, 0o600)?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(unix)]
pub(crate) fn set_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
}

#[cfg(not(unix))]
pub(crate) fn set_mode(_path: &Path, _mode: u32) -> std::io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        reason = "a test should fail loudly on any unexpected error"
    )]

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

    #[test]
    fn no_temporary_file_is_left_behind() {
        let dir = tempfile::tempdir().unwrap();
        let store = SessionStore::new(dir.path());
        store.save(&session()).unwrap();
        store.save(&session()).unwrap();
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, vec![SESSION_FILE.to_string()]);
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
