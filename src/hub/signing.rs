//! The reference Hub's token-signing keys over time. `hubworker keygen` writes the first one
//! (`token-signing.pem`). `hubworker hub rotate-key` makes a new **current** key in the Hub's
//! database (sealed under `CONNECTION_ENCRYPTION_KEY`, like credentials); the key it replaces
//! becomes the **previous** one (tokens signed with it keep verifying, and it stays in the
//! JWKS), and the one before that is dropped. Every Hub process (serve, issue-token, dispatch)
//! takes its keys from the database when it holds a rotation, else from the file; a running
//! `hub serve` notices a rotation at the next heartbeat of any worker (and at once when a
//! token names a kid it does not know yet), and its heartbeat answers carry the new key set
//! to the workers.

use sqlx::Row;

use super::{HubError, HubKeys, Store, StoreError};
use crate::secret::Secret;

/// What a rotation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rotation {
    /// The new current key (tokens are signed with it from now on).
    pub(crate) current: String,
    /// The key it replaced, still verifying.
    pub(crate) previous: String,
    /// The key before that, no longer published (its tokens stop verifying).
    pub(crate) dropped: Option<String>,
}

/// The stored kids, `(current, previous)`, without decrypting anything (cheap enough for every
/// heartbeat).
pub(crate) async fn stored_kids(
    store: &Store,
) -> Result<(Option<String>, Option<String>), StoreError> {
    let rows = sqlx::query("SELECT kid, role FROM signing_keys")
        .fetch_all(store.pool())
        .await?;
    let (mut current, mut previous) = (None, None);
    for row in rows {
        let kid: String = row.try_get("kid")?;
        match row.try_get::<String, _>("role")?.as_str() {
            "current" => current = Some(kid),
            _ => previous = Some(kid),
        }
    }
    Ok((current, previous))
}

/// Whether `keys` are the ones the database selects (`file` when it holds no rotation).
pub(crate) fn matches(keys: &HubKeys, stored: &(Option<String>, Option<String>)) -> bool {
    match stored {
        (None, _) => keys.previous_kid().is_none(),
        (Some(current), previous) => {
            keys.kid == *current && keys.previous_kid() == previous.as_deref()
        }
    }
}

/// The keys in force: the database's rotation if it holds one, else `file` itself (`None`).
pub(crate) async fn resolve(store: &Store, file: &HubKeys) -> Result<Option<HubKeys>, HubError> {
    let rows = sqlx::query("SELECT kid, role, sealed_pem FROM signing_keys")
        .fetch_all(store.pool())
        .await
        .map_err(StoreError::from)?;
    let (mut current, mut previous) = (None, None);
    for row in rows {
        let kid: String = row.try_get("kid").map_err(StoreError::from)?;
        let sealed: String = row.try_get("sealed_pem").map_err(StoreError::from)?;
        let pem = file
            .at_rest
            .open_at_rest(&sealed)
            .map_err(|_| StoreError::Decrypt(format!("signing key {kid}")))?;
        let pem = Secret::new(
            String::from_utf8(pem.to_vec())
                .map_err(|_| StoreError::Decrypt(format!("signing key {kid}")))?,
        );
        match row
            .try_get::<String, _>("role")
            .map_err(StoreError::from)?
            .as_str()
        {
            "current" => current = Some(pem),
            _ => previous = Some(pem),
        }
    }
    let Some(current) = current else {
        return Ok(None);
    };
    file.with_signing(&current, previous.as_ref())
        .map(Some)
        .map_err(|why| HubError::Refused(format!("stored signing key: {why}")))
}

/// Rotates: a new current key, the current one becomes previous, the previous one is dropped.
/// `keys` are the keys in force (as [`resolve`]d), so the first rotation moves the file's key
/// into the database as the previous one. One transaction: concurrent rotations serialize.
pub(crate) async fn rotate(store: &Store, keys: &HubKeys, now: i64) -> Result<Rotation, HubError> {
    let pair = crate::keys::generate_signing_pair().map_err(HubError::Refused)?;
    let seal = |pem: &Secret| keys.at_rest.seal(pem.expose().as_bytes());
    let mut tx = store
        .pool()
        .begin_with("BEGIN IMMEDIATE")
        .await
        .map_err(StoreError::from)?;
    // Under the write lock, the database may hold a rotation newer than `keys`: rotate that.
    let current: Option<(String, String)> =
        sqlx::query_as("SELECT kid, sealed_pem FROM signing_keys WHERE role = 'current'")
            .fetch_optional(&mut *tx)
            .await
            .map_err(StoreError::from)?;
    let dropped: Option<String> =
        sqlx::query_scalar("SELECT kid FROM signing_keys WHERE role = 'previous'")
            .fetch_optional(&mut *tx)
            .await
            .map_err(StoreError::from)?;
    sqlx::query("DELETE FROM signing_keys")
        .execute(&mut *tx)
        .await
        .map_err(StoreError::from)?;
    let (previous, previous_sealed) =
        current.unwrap_or_else(|| (keys.kid.clone(), seal(keys.signing_pem())));
    for (kid, role, sealed) in [
        (&previous, "previous", previous_sealed),
        (&pair.kid, "current", seal(&pair.private_pem)),
    ] {
        sqlx::query(
            "INSERT INTO signing_keys (kid, role, sealed_pem, created_at) VALUES (?, ?, ?, ?)",
        )
        .bind(kid)
        .bind(role)
        .bind(sealed)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::from)?;
    }
    tx.commit().await.map_err(StoreError::from)?;
    Ok(Rotation {
        current: pair.kid,
        previous,
        dropped,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn rotations_keep_one_previous_key_and_every_process_sees_them() {
        let d = tempfile::tempdir().unwrap();
        crate::keys::keygen(d.path()).unwrap();
        let file = super::super::config::load(
            Some(d.path().into()),
            "hub".into(),
            &crate::keys::env_of(&[]),
        )
        .unwrap()
        .keys;
        let store = Store::open(&d.path().join("hub.db")).await.unwrap();
        assert!(resolve(&store, &file).await.unwrap().is_none());
        assert!(matches(&file, &stored_kids(&store).await.unwrap()));
        let k0 = file.kid.clone();

        let first = rotate(&store, &file, 1).await.unwrap();
        assert_eq!(
            (first.previous.as_str(), first.dropped),
            (k0.as_str(), None)
        );
        assert!(!matches(&file, &stored_kids(&store).await.unwrap()));
        let keys = resolve(&store, &file).await.unwrap().unwrap();
        assert_eq!(keys.kid, first.current);
        assert_eq!(keys.previous_kid(), Some(k0.as_str()));
        assert!(matches(&keys, &stored_kids(&store).await.unwrap()));
        // Both keys are published and verify; the current one signs.
        let set = crate::token::KeySet::from_jwks(&keys.jwks).unwrap();
        let mut both = vec![k0.clone(), first.current.clone()];
        both.sort();
        assert_eq!(set.kids(), both);
        assert!(keys.public_key_of(&k0).is_some() && keys.public_key_of(&first.current).is_some());
        let header =
            jsonwebtoken::decode_header(keys.sign(&serde_json::json!({})).unwrap()).unwrap();
        assert_eq!(header.kid.as_deref(), Some(first.current.as_str()));

        // Rotating with stale keys still rotates what the database holds.
        let second = rotate(&store, &file, 2).await.unwrap();
        assert_eq!(second.previous, first.current);
        assert_eq!(second.dropped.as_deref(), Some(k0.as_str()));
        let keys = resolve(&store, &file).await.unwrap().unwrap();
        assert_eq!(keys.kid, second.current);
        assert!(keys.public_key_of(&k0).is_none());
        assert!(!keys.jwks.contains(&k0));
        assert_eq!(
            stored_kids(&store).await.unwrap(),
            (Some(second.current), Some(first.current))
        );
    }
}
