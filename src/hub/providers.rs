//! AI provider keys in the reference Hub's store: encrypted at rest like credentials, sent
//! only sealed to a redeeming worker's transport key, for an `ai` token that names the
//! provider.

use crate::creds::{ProviderKey, TransportKey};
use crate::secret::Secret;

use super::store::{Store, StoreError, unique};

/// A provider name: 1-64 of a-z 0-9 - _ (as in the worker's `[ai.providers.<name>]`).
pub(crate) fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

impl Store {
    /// Adds a provider's key, encrypted at rest under `at_rest`.
    pub async fn add_provider(
        &self,
        name: &str,
        api_key: &Secret,
        at_rest: &TransportKey,
        now: i64,
    ) -> Result<(), StoreError> {
        if !valid_name(name) {
            return Err(StoreError::Invalid(
                "a provider name is 1-64 of a-z 0-9 - _".into(),
            ));
        }
        if api_key.expose().trim().is_empty() {
            return Err(StoreError::Invalid("the key is empty".into()));
        }
        let key = ProviderKey {
            provider: name.to_owned(),
            api_key: api_key.clone(),
        };
        let sealed = key
            .seal(at_rest)
            .map_err(|e| StoreError::Invalid(e.to_string()))?;
        sqlx::query("INSERT INTO providers (name, sealed, created_at) VALUES (?, ?, ?)")
            .bind(name)
            .bind(sealed)
            .bind(now)
            .execute(self.pool())
            .await
            .map_err(|e| unique(e, "provider", name))?;
        Ok(())
    }

    /// Which of `names` are not stored providers.
    pub(crate) async fn missing_providers(
        &self,
        names: &[String],
    ) -> Result<Vec<String>, StoreError> {
        self.missing("SELECT name FROM providers WHERE name = ?", names)
            .await
    }

    /// A provider's key, decrypted (plaintext only inside the returned value).
    pub(crate) async fn provider_key(
        &self,
        name: &str,
        at_rest: &TransportKey,
    ) -> Result<ProviderKey, StoreError> {
        let sealed: String = sqlx::query_scalar("SELECT sealed FROM providers WHERE name = ?")
            .bind(name)
            .fetch_optional(self.pool())
            .await?
            .ok_or_else(|| StoreError::Invalid(format!("no provider {name:?}")))?;
        let plain = at_rest
            .open_at_rest(&sealed)
            .map_err(|_| StoreError::Decrypt(name.to_owned()))?;
        serde_json::from_slice(&plain).map_err(|_| StoreError::Decrypt(name.to_owned()))
    }
}
