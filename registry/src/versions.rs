//! Model versions: registration (a version's digest never changes), verification results, and reads.

use serde_json::{Value, json};
use sqlx::PgConnection;

use crate::events::append_locked;
use crate::owners::claim_or_check;
use crate::records::{
    EventKind, NewEvent, NewVersion, ServingVerification, Verification, VerifiedFile, VersionRecord, VersionStatus,
};
use crate::{Registry, RegistryError, Result, ensure_and_lock_model, lock_model, now, validate_name};

/// Checks and normalises a model digest: `sha256:` followed by 64 hex digits (stored lower-case).
pub(crate) fn normalise_digest(digest: &str) -> Result<String> {
    let lower = digest.trim().to_ascii_lowercase();
    let valid =
        lower.strip_prefix("sha256:").is_some_and(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()));
    if valid {
        Ok(lower)
    } else {
        Err(RegistryError::InvalidInput {
            field: "digest",
            problem: format!("`{digest}` is not `sha256:` followed by 64 hex digits"),
        })
    }
}

/// Reads versions of a model: all of them, or the one named.
pub(crate) async fn fetch_versions(
    conn: &mut PgConnection,
    model: &str,
    version: Option<&str>,
) -> Result<Vec<VersionRecord>> {
    let rows = sqlx::query!(
        r#"SELECT v.id, v.version, v.uri, v.digest, v.size_bytes, v.format, v.tensor_contract, v.signature_bundle,
                  v.signer_key_id, v.verified_at, v.status, v.status_reason, v.created_at
           FROM model_versions v JOIN models m ON m.id = v.model_id
           WHERE m.name = $1 AND ($2::text IS NULL OR v.version = $2)
           ORDER BY v.created_at, v.id"#,
        model,
        version
    )
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|row| VersionRecord {
            model: model.to_string(),
            version: row.version,
            uri: row.uri,
            digest: row.digest,
            size_bytes: row.size_bytes,
            format: row.format,
            tensor_contract: row.tensor_contract,
            signature_bundle: row.signature_bundle,
            signer_key_id: row.signer_key_id,
            verified_at: row.verified_at,
            status: VersionStatus::parse(&row.status),
            status_reason: row.status_reason,
            created_at: row.created_at,
        })
        .collect())
}

pub(crate) async fn fetch_version(conn: &mut PgConnection, model: &str, version: &str) -> Result<VersionRecord> {
    fetch_versions(conn, model, Some(version))
        .await?
        .pop()
        .ok_or_else(|| RegistryError::VersionNotFound { model: model.to_string(), version: version.to_string() })
}

impl Registry {
    /// Registers a version (creating the model on first use). Registering the same version with the same digest again
    /// returns the stored record; a different digest is refused with [`RegistryError::DigestConflict`].
    pub async fn register_version(&self, new: &NewVersion) -> Result<VersionRecord> {
        self.register_version_inner(new, None).await
    }

    /// Registers a version on behalf of a rollout in `namespace`: as [`Registry::register_version`], but the model
    /// must belong to `namespace` (the first namespace to register a model owns it), else
    /// [`RegistryError::ModelOwned`].
    pub async fn register_version_for(&self, namespace: &str, new: &NewVersion) -> Result<VersionRecord> {
        self.register_version_inner(new, Some(namespace)).await
    }

    async fn register_version_inner(&self, new: &NewVersion, namespace: Option<&str>) -> Result<VersionRecord> {
        validate_name("version", &new.version)?;
        let digest = normalise_digest(&new.digest)?;
        if new.size_bytes.is_some_and(|size| size < 0) {
            return Err(RegistryError::InvalidInput { field: "size_bytes", problem: "must not be negative".into() });
        }
        let mut tx = self.pool.begin().await?;
        let mut model = ensure_and_lock_model(&mut tx, &new.model).await?;
        if let Some(namespace) = namespace.filter(|_| self.owned_models) {
            claim_or_check(&mut tx, &mut model, namespace).await?;
        }
        if let Some(existing) = fetch_versions(&mut tx, &new.model, Some(&new.version)).await?.pop() {
            if existing.digest != digest {
                return Err(RegistryError::DigestConflict {
                    model: new.model.clone(),
                    version: new.version.clone(),
                    registered: existing.digest,
                    offered: digest,
                });
            }
            // Commits a claim of the model made above (a namespace re-registering a version it rolls out).
            tx.commit().await?;
            return Ok(existing);
        }
        sqlx::query!(
            "INSERT INTO model_versions (model_id, version, uri, digest, size_bytes, format, tensor_contract,
                                         signature_bundle)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            model.id,
            new.version,
            new.uri,
            digest,
            new.size_bytes,
            new.format,
            new.tensor_contract.as_ref() as Option<&Value>,
            new.signature_bundle
        )
        .execute(&mut *tx)
        .await?;
        let event = NewEvent {
            kind: EventKind::VersionRegistered,
            rollout_uid: None,
            payload: json!({
                "version": new.version, "uri": new.uri, "digest": digest,
                "size_bytes": new.size_bytes, "format": new.format,
                "signed": new.signature_bundle.is_some(),
            }),
            idempotency_key: Some(format!("version/{}/registered", new.version)),
        };
        append_locked(&mut tx, &mut model, &[event]).await?;
        let record = fetch_version(&mut tx, &new.model, &new.version).await?;
        tx.commit().await?;
        Ok(record)
    }

    /// Records a successful signature verification. The verified digest must be the registered one.
    pub async fn mark_verified(
        &self,
        model: &str,
        version: &str,
        verification: &Verification,
    ) -> Result<VersionRecord> {
        self.mark_verified_inner(model, version, verification, None).await
    }

    /// Records a verification on behalf of a rollout in `namespace`, which must own the model.
    pub async fn mark_verified_for(
        &self,
        namespace: &str,
        model: &str,
        version: &str,
        verification: &Verification,
    ) -> Result<VersionRecord> {
        self.mark_verified_inner(model, version, verification, Some(namespace)).await
    }

    async fn mark_verified_inner(
        &self,
        model: &str,
        version: &str,
        verification: &Verification,
        namespace: Option<&str>,
    ) -> Result<VersionRecord> {
        let digest = normalise_digest(&verification.digest)?;
        let mut tx = self.pool.begin().await?;
        let mut locked = lock_model(&mut tx, model).await?;
        if let Some(namespace) = namespace.filter(|_| self.owned_models) {
            claim_or_check(&mut tx, &mut locked, namespace).await?;
        }
        let existing = fetch_version(&mut tx, model, version).await?;
        if existing.digest != digest {
            return Err(RegistryError::DigestConflict {
                model: model.to_string(),
                version: version.to_string(),
                registered: existing.digest,
                offered: digest,
            });
        }
        for file in &verification.files {
            validate_file(file)?;
        }
        // The files (and the serving mode) are recorded even when the version was verified before by the same key:
        // a later fetch may add object version ids.
        record_files(&mut tx, model, version, verification).await?;
        if existing.status == VersionStatus::Verified
            && existing.signer_key_id.as_deref() == Some(verification.signer_key_id.as_str())
        {
            tx.commit().await?;
            return Ok(existing);
        }
        let verified_at = now();
        sqlx::query!(
            "UPDATE model_versions
             SET status = 'verified', status_reason = NULL, verified_at = $3, signer_key_id = $4,
                 signature_bundle = COALESCE($5, signature_bundle)
             WHERE model_id = $1 AND version = $2",
            locked.id,
            version,
            verified_at,
            verification.signer_key_id,
            verification.signature_bundle
        )
        .execute(&mut *tx)
        .await?;
        let event = NewEvent {
            kind: EventKind::VersionVerified,
            rollout_uid: None,
            payload: json!({
                "version": version,
                "digest": digest,
                "signer_key_id": verification.signer_key_id,
                "files": verification.files.len(),
                "serving": verification.serving.map(|s| s.as_str()),
            }),
            idempotency_key: None,
        };
        append_locked(&mut tx, &mut locked, &[event]).await?;
        let record = fetch_version(&mut tx, model, version).await?;
        tx.commit().await?;
        Ok(record)
    }

    /// Records that a version failed verification (it can no longer be aliased until verified again).
    pub async fn mark_rejected(&self, model: &str, version: &str, reason: &str) -> Result<VersionRecord> {
        let mut tx = self.pool.begin().await?;
        let mut locked = lock_model(&mut tx, model).await?;
        fetch_version(&mut tx, model, version).await?;
        sqlx::query!(
            "UPDATE model_versions SET status = 'rejected', status_reason = $3, verified_at = NULL
             WHERE model_id = $1 AND version = $2",
            locked.id,
            version,
            reason
        )
        .execute(&mut *tx)
        .await?;
        let event = NewEvent {
            kind: EventKind::VersionRejected,
            rollout_uid: None,
            payload: json!({"version": version, "reason": reason}),
            idempotency_key: None,
        };
        append_locked(&mut tx, &mut locked, &[event]).await?;
        let record = fetch_version(&mut tx, model, version).await?;
        tx.commit().await?;
        Ok(record)
    }

    /// The files recorded for a verified version (by path), and how its serving pods load them (None when not
    /// recorded, e.g. a version verified from its bundle only).
    pub async fn version_files(
        &self,
        model: &str,
        version: &str,
    ) -> Result<(Vec<VerifiedFile>, Option<ServingVerification>)> {
        let mut conn = self.pool.acquire().await?;
        fetch_version(&mut conn, model, version).await?;
        let rows: Vec<(String, String, Option<i64>, Option<String>)> = sqlx::query_as(
            "SELECT f.path, f.sha256, f.size_bytes, f.object_version
             FROM version_files f
             JOIN model_versions v ON v.id = f.version_id
             JOIN models m ON m.id = v.model_id
             WHERE m.name = $1 AND v.version = $2
             ORDER BY f.path",
        )
        .bind(model)
        .bind(version)
        .fetch_all(&mut *conn)
        .await?;
        let serving: Option<String> = sqlx::query_scalar(
            "SELECT v.serving_verification FROM model_versions v JOIN models m ON m.id = v.model_id
             WHERE m.name = $1 AND v.version = $2",
        )
        .bind(model)
        .bind(version)
        .fetch_one(&mut *conn)
        .await?;
        let files = rows
            .into_iter()
            .map(|(path, sha256, size_bytes, object_version)| VerifiedFile { path, sha256, size_bytes, object_version })
            .collect();
        Ok((files, serving.as_deref().and_then(ServingVerification::parse)))
    }

    /// One version.
    pub async fn version(&self, model: &str, version: &str) -> Result<VersionRecord> {
        let mut conn = self.pool.acquire().await?;
        fetch_version(&mut conn, model, version).await
    }

    /// All versions of a model, oldest first.
    pub async fn versions(&self, model: &str) -> Result<Vec<VersionRecord>> {
        self.model_id(model).await?;
        let mut conn = self.pool.acquire().await?;
        fetch_versions(&mut conn, model, None).await
    }
}

fn validate_file(file: &VerifiedFile) -> Result<()> {
    let problem = if file.path.is_empty() || file.path.len() > 4096 {
        Some("path must be 1 to 4096 bytes")
    } else if file.sha256.len() != 64 || !file.sha256.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        Some("sha256 must be 64 lowercase hex digits")
    } else if file.size_bytes.is_some_and(|size| size < 0) {
        Some("size must not be negative")
    } else {
        None
    };
    match problem {
        Some(problem) => {
            Err(RegistryError::InvalidInput { field: "files", problem: format!("{}: {problem}", file.path) })
        }
        None => Ok(()),
    }
}

/// Writes a verification's files and serving mode onto the version (inside the caller's transaction).
async fn record_files(conn: &mut PgConnection, model: &str, version: &str, verification: &Verification) -> Result<()> {
    let version_id: i64 = sqlx::query_scalar(
        "SELECT v.id FROM model_versions v JOIN models m ON m.id = v.model_id WHERE m.name = $1 AND v.version = $2",
    )
    .bind(model)
    .bind(version)
    .fetch_one(&mut *conn)
    .await?;
    for file in &verification.files {
        sqlx::query(
            "INSERT INTO version_files (version_id, path, sha256, size_bytes, object_version)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (version_id, path) DO UPDATE
             SET sha256 = EXCLUDED.sha256,
                 size_bytes = COALESCE(EXCLUDED.size_bytes, version_files.size_bytes),
                 object_version = COALESCE(EXCLUDED.object_version, version_files.object_version)",
        )
        .bind(version_id)
        .bind(&file.path)
        .bind(&file.sha256)
        .bind(file.size_bytes)
        .bind(&file.object_version)
        .execute(&mut *conn)
        .await?;
    }
    if let Some(serving) = verification.serving {
        sqlx::query("UPDATE model_versions SET serving_verification = $2 WHERE id = $1")
            .bind(version_id)
            .bind(serving.as_str())
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}
