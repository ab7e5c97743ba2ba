//! Components: stored once per digest with the workflow name they were
//! first stored with; listed, and deleted when no run refers to them.

use std::sync::Arc;

use super::rows::insert_component;
use super::{Store, StoreError};
use crate::StoredComponent;
use crate::sql::args;

impl Store {
    /// The bytes of the component with this digest.
    pub async fn component(&self, digest: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let digest = digest.to_string();
        self.writer()
            .transact(move |tx| {
                tx.opt(
                    "reading a component",
                    "SELECT bytes FROM components WHERE digest = ?1",
                    args![digest],
                    |r| r.get(0),
                )
            })
            .await
    }

    /// Stores a component's bytes under its digest (once per digest), so
    /// that runs can be started from it later by digest alone. It keeps
    /// the first workflow `name` it is given (runs started by its digest
    /// are named by it); returns the name it has.
    ///
    /// # Errors
    /// [`StoreError`] when the write fails.
    pub async fn put_component(
        &self,
        digest: &str,
        bytes: Arc<Vec<u8>>,
        name: Option<&str>,
    ) -> Result<Option<String>, StoreError> {
        let digest = digest.to_string();
        let name = name.map(str::to_string);
        self.writer()
            .transact(move |tx| insert_component(tx, &digest, &bytes, name.as_deref(), tx.now_ms()))
            .await
    }

    /// The names the components with these digests were stored with
    /// (`None`: stored without one); digests not stored are left out.
    ///
    /// # Errors
    /// [`StoreError`] when the read fails.
    pub async fn component_names(
        &self,
        digests: &[String],
    ) -> Result<Vec<(String, Option<String>)>, StoreError> {
        let digests = digests.to_vec();
        self.read(move |tx| {
            let mut found = Vec::new();
            for d in &digests {
                if let Some(name) = tx.opt(
                    "reading a component's name",
                    "SELECT name FROM components WHERE digest = ?1",
                    args![d],
                    |r| r.get::<Option<String>>(0),
                )? {
                    found.push((d.clone(), name));
                }
            }
            Ok(found)
        })
        .await
    }

    /// The stored components, newest first, with how many runs use each.
    ///
    /// # Errors
    /// [`StoreError`] when the read fails.
    pub async fn components(&self) -> Result<Vec<StoredComponent>, StoreError> {
        self.read(|tx| {
            tx.all(
                "listing the components",
                "SELECT c.digest, c.name, octet_length(c.bytes), c.added_at_ms,
                        (SELECT count(*) FROM runs r WHERE r.component_digest = c.digest),
                        (SELECT count(*) FROM runs r WHERE r.component_digest = c.digest
                                                        AND r.status IN ('queued', 'running', 'waiting'))
                 FROM components c ORDER BY c.added_at_ms DESC, c.digest",
                args![],
                |r| {
                    Ok(StoredComponent {
                        digest: r.get(0)?,
                        name: r.get(1)?,
                        bytes: r.get::<i64>(2)?.max(0) as u64,
                        added_at_ms: r.get(3)?,
                        runs: r.get::<i64>(4)?.max(0) as u64,
                        open_runs: r.get::<i64>(5)?.max(0) as u64,
                    })
                },
            )
        })
        .await
    }

    /// Deletes every component no run refers to; returns their digests.
    /// A start that stored one of them a moment ago on another host finds
    /// it gone and stores it again (see `starts.rs`).
    ///
    /// # Errors
    /// [`StoreError`] when the transaction fails.
    pub async fn prune_components(&self) -> Result<Vec<String>, StoreError> {
        let unused = self
            .writer()
            .transact(|tx| {
                let unused: Vec<String> = tx.all(
                    "choosing unused components",
                    "SELECT c.digest FROM components c
                     WHERE NOT EXISTS (SELECT 1 FROM runs r WHERE r.component_digest = c.digest)",
                    args![],
                    |r| r.get(0),
                )?;
                for digest in &unused {
                    tx.exec(
                        "deleting an unused component",
                        "DELETE FROM components WHERE digest = ?1
                         AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.component_digest = ?1)",
                        args![digest],
                    )?;
                }
                Ok(unused)
            })
            .await?;
        for digest in &unused {
            self.named_components.forget(digest);
        }
        Ok(unused)
    }

    /// Deletes a component no run refers to.
    ///
    /// # Errors
    /// [`StoreError::ComponentNotFound`], [`StoreError::ComponentInUse`].
    pub async fn delete_component(&self, digest: &str) -> Result<(), StoreError> {
        let digest = digest.to_string();
        let key = digest.clone();
        self.writer()
            .transact(move |tx| {
                let runs: i64 = tx.one(
                    "counting the component's runs",
                    "SELECT count(*) FROM runs WHERE component_digest = ?1",
                    args![digest],
                    |r| r.get(0),
                )?;
                if runs > 0 {
                    return Err(StoreError::ComponentInUse {
                        digest: digest.clone(),
                        runs: runs as u64,
                    });
                }
                // A run created meanwhile by another host makes the
                // foreign key refuse this delete: the error says so.
                let deleted = tx
                    .exec(
                        "deleting the component",
                        "DELETE FROM components WHERE digest = ?1",
                        args![digest],
                    )
                    .map_err(|e| match e.is_foreign_key_violation() {
                        true => StoreError::ComponentInUse {
                            digest: digest.clone(),
                            runs: 1,
                        },
                        false => e,
                    })?;
                if deleted == 0 {
                    return Err(StoreError::ComponentNotFound(digest.clone()));
                }
                Ok(())
            })
            .await?;
        self.named_components.forget(&key);
        Ok(())
    }
}
