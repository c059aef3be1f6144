//! Access tokens (HS256 JWTs signed with `JWT_SECRET`), refresh tokens and API tokens.
//!
//! Refresh and API tokens are random 256-bit secrets with a recognisable prefix (`wgr_`,
//! `wgt_`) so that leaked ones are easy to grep for; the database keeps only their SHA-256.

use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// Lifetime of an access token.
pub const ACCESS_TOKEN_TTL: chrono::Duration = chrono::Duration::minutes(15);
/// Lifetime of a session: its refresh token rotates on every use but the session ends then.
pub const SESSION_TTL: chrono::Duration = chrono::Duration::days(30);

pub const REFRESH_PREFIX: &str = "wgr_";
pub const API_TOKEN_PREFIX: &str = "wgt_";
const ISSUER: &str = "watchgrid";

/// What an access token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user id.
    pub sub: Uuid,
    /// The session id: revoking the session invalidates the token at once.
    pub sid: Uuid,
    /// The session's tenant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tid: Option<Uuid>,
    pub iat: i64,
    pub exp: i64,
    pub iss: String,
}

/// Signs and checks access tokens.
#[derive(Clone)]
pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
}

impl std::fmt::Debug for JwtKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JwtKeys(***)")
    }
}

impl JwtKeys {
    pub fn new(secret: &str) -> Self {
        Self {
            encoding: EncodingKey::from_secret(secret.as_bytes()),
            decoding: DecodingKey::from_secret(secret.as_bytes()),
        }
    }

    pub fn issue(
        &self,
        user: Uuid,
        session: Uuid,
        tenant: Option<Uuid>,
        now: DateTime<Utc>,
    ) -> Result<String, String> {
        let claims = Claims {
            sub: user,
            sid: session,
            tid: tenant,
            iat: now.timestamp(),
            exp: (now + ACCESS_TOKEN_TTL).timestamp(),
            iss: ISSUER.to_owned(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| e.to_string())
    }

    /// The claims of a valid, unexpired token signed with our key; `None` otherwise.
    pub fn verify(&self, token: &str) -> Option<Claims> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.leeway = 30;
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation)
            .ok()
            .map(|data| data.claims)
    }
}

/// A new random secret: `prefix` + 64 hex digits.
pub fn random_secret(prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!("{prefix}{}", hex::encode(bytes))
}

/// The stored form of a secret.
pub fn secret_hash(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_reject_tampering() {
        let keys = JwtKeys::new(&"k".repeat(32));
        let (user, session, tenant) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let token = keys.issue(user, session, Some(tenant), Utc::now()).unwrap();
        let claims = keys.verify(&token).expect("valid");
        assert_eq!(
            (claims.sub, claims.sid, claims.tid),
            (user, session, Some(tenant))
        );

        let other = JwtKeys::new(&"x".repeat(32));
        assert!(
            other.verify(&token).is_none(),
            "another key must not verify"
        );
        let expired = keys
            .issue(user, session, None, Utc::now() - chrono::Duration::hours(1))
            .unwrap();
        assert!(keys.verify(&expired).is_none(), "expired");
        assert!(keys.verify("not.a.jwt").is_none());
    }

    #[test]
    fn secrets_are_random_and_hashed() {
        let a = random_secret(API_TOKEN_PREFIX);
        let b = random_secret(API_TOKEN_PREFIX);
        assert_ne!(a, b);
        assert!(a.starts_with("wgt_") && a.len() == 4 + 64);
        assert_eq!(secret_hash(&a), secret_hash(&a));
        assert_ne!(secret_hash(&a), secret_hash(&b));
    }
}
