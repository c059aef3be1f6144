//! The storage layer's error type.

/// What can go wrong talking to the database.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// `DATABASE_URL` cannot be used; the message says why.
    #[error("invalid database URL: {0}")]
    InvalidUrl(String),
    /// The database could not be reached or the connection broke.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// A migration failed; the schema was left as it was before that migration.
    #[error("migration failed: {0}")]
    Migration(String),
    /// A row that must exist does not.
    #[error("not found")]
    NotFound,
    /// A uniqueness or foreign-key constraint refused the write; which one, so that the
    /// caller can answer in words (a taken name is not a taken address).
    #[error("conflict: {0}")]
    Conflict(Constraint),
    /// A concurrent change held the lock past the busy timeout, or made this transaction's
    /// view stale (SQLite busy or locked; PostgreSQL serialization failure, deadlock or lock
    /// timeout). Nothing was written; the same request may succeed when retried.
    #[error("contended: {0}")]
    Contended(String),
    /// Any other database error; the detail is for logs, not for clients.
    #[error("database error: {0}")]
    Other(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        match &err {
            sqlx::Error::RowNotFound => StoreError::NotFound,
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_) => StoreError::Unavailable(err.to_string()),
            sqlx::Error::Database(db) => {
                if db.is_foreign_key_violation() {
                    StoreError::Conflict(Constraint::MissingReference(db.message().to_owned()))
                } else if db.is_unique_violation() {
                    StoreError::Conflict(Constraint::identify(db.constraint(), db.message()))
                } else if db.code().as_deref().is_some_and(is_contention_code) {
                    StoreError::Contended(db.message().to_owned())
                } else {
                    StoreError::Other(err.to_string())
                }
            }
            _ => StoreError::Other(err.to_string()),
        }
    }
}

/// The constraint that refused a write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Constraint {
    /// `tenants.slug`
    TenantSlug,
    /// `users.username`
    Username,
    /// `memberships (tenant_id, user_id)`
    Membership,
    /// `devices (tenant_id, name)`
    DeviceName,
    /// `devices.overlay_ip`
    DeviceAddress,
    /// `devices.wg_public_key`
    DeviceKey,
    /// `ssh_cas (tenant_id, kind, generation)`
    SshCaGeneration,
    /// `ssh_certificates (tenant_id, serial)`
    SshCertificateSerial,
    /// `ssh_principal_grants (tenant_id, user_id)` or `(tenant_id, role)`
    PrincipalGrant,
    /// A secret's hash (`token_hash`, `refresh_hash`): a collision of 256 random bits.
    SecretHash,
    /// A foreign key: the row referred to is gone (the database's message, for logs).
    MissingReference(String),
    /// A uniqueness constraint not named above (its name or the database's message, for logs).
    Other(String),
}

impl Constraint {
    /// Which constraint a uniqueness violation names: PostgreSQL gives the constraint's name
    /// (`devices_tenant_id_name_key`), SQLite the columns in its message
    /// (`UNIQUE constraint failed: devices.tenant_id, devices.name`).
    pub fn identify(postgres_name: Option<&str>, message: &str) -> Self {
        let key = match postgres_name {
            Some(name) => name.to_owned(),
            None => message
                .strip_prefix("UNIQUE constraint failed: ")
                .unwrap_or(message)
                .replace(' ', ""),
        };
        match key.as_str() {
            "tenants_slug_key" | "tenants.slug" => Constraint::TenantSlug,
            "users_username_key" | "users.username" => Constraint::Username,
            "memberships_pkey" | "memberships.tenant_id,memberships.user_id" => {
                Constraint::Membership
            }
            "devices_tenant_id_name_key" | "devices.tenant_id,devices.name" => {
                Constraint::DeviceName
            }
            "devices_overlay_ip_key" | "devices.overlay_ip" => Constraint::DeviceAddress,
            "devices_wg_public_key_key" | "devices.wg_public_key" => Constraint::DeviceKey,
            "ssh_cas_pkey" | "ssh_cas.tenant_id,ssh_cas.kind,ssh_cas.generation" => {
                Constraint::SshCaGeneration
            }
            "ssh_certificates_pkey" | "ssh_certificates.tenant_id,ssh_certificates.serial" => {
                Constraint::SshCertificateSerial
            }
            "ssh_principal_grants_tenant_id_user_id_key"
            | "ssh_principal_grants_tenant_id_role_key"
            | "ssh_principal_grants.tenant_id,ssh_principal_grants.user_id"
            | "ssh_principal_grants.tenant_id,ssh_principal_grants.role" => {
                Constraint::PrincipalGrant
            }
            "onboarding_tokens_token_hash_key"
            | "onboarding_tokens.token_hash"
            | "api_tokens_token_hash_key"
            | "api_tokens.token_hash"
            | "sessions_refresh_hash_key"
            | "sessions.refresh_hash"
            | "retired_refresh_tokens_pkey"
            | "retired_refresh_tokens.refresh_hash" => Constraint::SecretHash,
            _ => Constraint::Other(key),
        }
    }
}

impl std::fmt::Display for Constraint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Constraint::TenantSlug => f.write_str("tenant slug taken"),
            Constraint::Username => f.write_str("username taken"),
            Constraint::Membership => f.write_str("already a member"),
            Constraint::DeviceName => f.write_str("device name taken in the tenant"),
            Constraint::DeviceAddress => f.write_str("overlay address taken"),
            Constraint::DeviceKey => f.write_str("WireGuard public key already enrolled"),
            Constraint::SshCaGeneration => f.write_str("CA generation already recorded"),
            Constraint::SshCertificateSerial => f.write_str("certificate serial already used"),
            Constraint::PrincipalGrant => f.write_str("principal grant already exists"),
            Constraint::SecretHash => f.write_str("secret hash collision"),
            Constraint::MissingReference(detail) => write!(f, "missing reference: {detail}"),
            Constraint::Other(detail) => write!(f, "{detail}"),
        }
    }
}

/// SQLite result codes (extended codes carry the primary one in their low byte) and PostgreSQL
/// SQLSTATEs that mean "another transaction is in the way", not "this request is wrong".
fn is_contention_code(code: &str) -> bool {
    const SQLITE_BUSY: i64 = 5;
    const SQLITE_LOCKED: i64 = 6;
    // A SQLSTATE is always five characters (and may be all digits, as 40001 is); SQLite's
    // extended result codes have at most four digits.
    if code.len() == 5 {
        // serialization_failure, deadlock_detected, lock_not_available
        return matches!(code, "40001" | "40P01" | "55P03");
    }
    code.parse::<i64>()
        .is_ok_and(|sqlite| matches!(sqlite & 0xff, SQLITE_BUSY | SQLITE_LOCKED))
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(err: sqlx::migrate::MigrateError) -> Self {
        match err {
            sqlx::migrate::MigrateError::Execute(inner) => match StoreError::from(inner) {
                StoreError::Unavailable(msg) => StoreError::Unavailable(msg),
                other => StoreError::Migration(other.to_string()),
            },
            other => StoreError::Migration(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{is_contention_code, Constraint};

    #[test]
    fn constraints_are_identified_alike_on_both_backends() {
        let cases = [
            (
                "devices_tenant_id_name_key",
                "devices.tenant_id, devices.name",
                Constraint::DeviceName,
            ),
            (
                "devices_overlay_ip_key",
                "devices.overlay_ip",
                Constraint::DeviceAddress,
            ),
            (
                "devices_wg_public_key_key",
                "devices.wg_public_key",
                Constraint::DeviceKey,
            ),
            ("tenants_slug_key", "tenants.slug", Constraint::TenantSlug),
            ("users_username_key", "users.username", Constraint::Username),
            (
                "ssh_cas_pkey",
                "ssh_cas.tenant_id, ssh_cas.kind, ssh_cas.generation",
                Constraint::SshCaGeneration,
            ),
        ];
        for (postgres, sqlite, expected) in cases {
            assert_eq!(
                Constraint::identify(Some(postgres), "duplicate key value"),
                expected
            );
            let message = format!("UNIQUE constraint failed: {sqlite}");
            assert_eq!(Constraint::identify(None, &message), expected, "{message}");
        }
        assert_eq!(
            Constraint::identify(Some("widgets_colour_key"), "duplicate"),
            Constraint::Other("widgets_colour_key".into())
        );
    }

    #[test]
    fn busy_locked_and_serialization_failures_are_contention() {
        // SQLITE_BUSY, SQLITE_LOCKED, SQLITE_BUSY_SNAPSHOT (517), SQLITE_LOCKED_SHAREDCACHE (262)
        for code in ["5", "6", "517", "262", "40001", "40P01", "55P03"] {
            assert!(is_contention_code(code), "{code}");
        }
        // SQLITE_CONSTRAINT_UNIQUE (2067), SQLITE_ERROR, unique_violation, syntax error
        for code in ["2067", "1", "23505", "42601"] {
            assert!(!is_contention_code(code), "{code}");
        }
    }
}
