//! The installation's identity (table `instance`).

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::{Database, StoreError};

impl Database {
    /// The installation id, created by the first caller on a fresh database.
    pub async fn installation_id(&self) -> Result<Uuid, StoreError> {
        let now: DateTime<Utc> = Utc::now();
        let candidate = Uuid::new_v4();
        let id = with_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO instance (singleton, installation_id, created_at) VALUES (TRUE, $1, $2) \
                 ON CONFLICT (singleton) DO NOTHING",
            )
            .bind(candidate)
            .bind(now)
            .execute(pool)
            .await?;
            sqlx::query_scalar::<_, Uuid>("SELECT installation_id FROM instance")
                .fetch_one(pool)
                .await?
        });
        Ok(id)
    }
}
