//! First start: the superadmin `ADMIN_USERNAME` with `ADMIN_PASSWORD`, and the `default`
//! tenant it owns. Later starts change nothing (a changed password is never overwritten), and
//! replicas that start together create them once.

use serde_json::json;
use watchgrid_store::users::{self, NewUser};
use watchgrid_store::{audit, tenants, StoreError};
use watchgrid_wire::Role;

use crate::audit::AuditContext;
use crate::state::AppState;

pub const DEFAULT_TENANT: &str = "default";

pub async fn ensure_admin(state: &AppState) -> anyhow::Result<()> {
    let username = state.config.admin_username.to_lowercase();
    if users::user_by_name(&state.db, &username).await?.is_some() {
        return Ok(());
    }
    let Some(password) = state.config.admin_password.as_ref() else {
        tracing::warn!("ADMIN_PASSWORD is not set: no bootstrap administrator was created");
        return Ok(());
    };
    let problems = state.password_policy.violations(password.expose());
    let must_change = !problems.is_empty();
    if must_change {
        tracing::warn!(
            username = %username,
            problems = %problems.join("; "),
            "ADMIN_PASSWORD DOES NOT MEET THE PASSWORD POLICY: accepted for the bootstrap \
             administrator so existing deployments keep working, but the account must change \
             its password at first login"
        );
    }
    let hash = state
        .hasher
        .hash(password.expose())
        .await
        .map_err(anyhow::Error::msg)?;
    let mut tx = state.db.begin().await?;
    let result: Result<(), StoreError> = async {
        let tenant = match tenants::tenant_by_slug(&mut tx, DEFAULT_TENANT).await? {
            Some(tenant) => tenant,
            None => tenants::create_tenant(&mut tx, DEFAULT_TENANT, "Default").await?,
        };
        let user = users::create_user(
            &mut tx,
            NewUser {
                username: &username,
                password_hash: &hash,
                is_superadmin: true,
                must_change_password: must_change,
            },
        )
        .await?;
        tenants::set_membership(&mut tx, tenant.id, user.id, Role::Owner).await?;
        let entry = AuditContext::system().entry(
            "user.bootstrap",
            "user",
            Some(user.id.to_string()),
            true,
            json!({"username": username, "tenant": DEFAULT_TENANT, "must_change_password": must_change}),
        );
        audit::record(&mut tx, &entry).await
    }
    .await;
    match result {
        Ok(()) => {
            tx.commit().await?;
            tracing::info!(username = %username, tenant = DEFAULT_TENANT, "created the bootstrap administrator");
            Ok(())
        }
        // Another replica bootstrapped at the same moment.
        Err(StoreError::Conflict(_)) => Ok(()),
        Err(err) => Err(err.into()),
    }
}
