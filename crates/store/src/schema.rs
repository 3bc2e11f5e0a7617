//! Which migrations a database has, compared with the ones this build embeds. Shared by both
//! backends: opening without migrating (`--no-migrate`) checks the schema is current, and
//! `carrierhub migrate` reports what it applied.

use crate::{Result, StoreError};
use serde::Serialize;
use sqlx::migrate::Migrator;

/// A migration, by version and description (the file name after the version).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MigrationInfo {
    pub version: i64,
    pub description: String,
}

impl std::fmt::Display for MigrationInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04} {}", self.version, self.description)
    }
}

/// A row of sqlx's bookkeeping table `_sqlx_migrations`.
pub(crate) struct AppliedMigration {
    pub version: i64,
    pub success: bool,
    pub checksum: Vec<u8>,
}

/// Fails, naming the migrations, unless the database has every migration of `migrator`
/// applied, unchanged since, and none this build does not know.
pub(crate) fn check_current(
    migrator: &Migrator,
    applied: &[AppliedMigration],
    target: &str,
) -> Result<()> {
    check_known(migrator, applied, target)?;
    let pending = pending(migrator, applied);
    if pending.is_empty() {
        return Ok(());
    }
    let list = pending
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    Err(StoreError::Schema(format!(
        "{target}: the schema is behind this build; not applied: {list}. \
         Apply them with `carrierhub migrate`"
    )))
}

/// Fails, naming the migration, when the database has one that failed part-way, was changed
/// since it was applied, or that this build does not know; migrations this build has and the
/// database lacks are not an error here.
pub(crate) fn check_known(
    migrator: &Migrator,
    applied: &[AppliedMigration],
    target: &str,
) -> Result<()> {
    for a in applied {
        if !a.success {
            return Err(StoreError::Schema(format!(
                "{target}: migration {} failed part-way and left the schema dirty; repair it by hand",
                a.version
            )));
        }
        match migrator
            .iter()
            .find(|m| m.version == a.version && !m.migration_type.is_down_migration())
        {
            None => {
                return Err(StoreError::Schema(format!(
                    "{target}: the database has migration {}, which this build does not know \
                     (a newer release migrated it)",
                    a.version
                )))
            }
            Some(m) if *m.checksum != *a.checksum => {
                return Err(StoreError::Schema(format!(
                    "{target}: migration {:04} ({}) was changed after it was applied; restore \
                     the file as it was (an applied migration is never edited) and put the \
                     change in a new migration",
                    m.version, m.description
                )))
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// The migrations of `migrator` that `applied` does not have.
pub(crate) fn pending(migrator: &Migrator, applied: &[AppliedMigration]) -> Vec<MigrationInfo> {
    migrator
        .iter()
        .filter(|m| !m.migration_type.is_down_migration())
        .filter(|m| !applied.iter().any(|a| a.version == m.version))
        .map(|m| MigrationInfo {
            version: m.version,
            description: m.description.to_string(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::migrate::{Migration, MigrationType};
    use std::borrow::Cow;

    fn migrator() -> Migrator {
        let migration = |version, description: &'static str, sql: &'static str| {
            Migration::new(
                version,
                Cow::Borrowed(description),
                MigrationType::Simple,
                Cow::Borrowed(sql),
                false,
            )
        };
        Migrator {
            migrations: Cow::Owned(vec![
                migration(1, "canonical model", "CREATE TABLE a (x INT);"),
                migration(2, "more", "CREATE TABLE b (x INT);"),
            ]),
            ..Migrator::DEFAULT
        }
    }

    fn applied(m: &Migrator, versions: &[i64]) -> Vec<AppliedMigration> {
        m.iter()
            .filter(|x| versions.contains(&x.version))
            .map(|x| AppliedMigration {
                version: x.version,
                success: true,
                checksum: x.checksum.to_vec(),
            })
            .collect()
    }

    fn message(r: Result<()>) -> String {
        match r {
            Err(StoreError::Schema(m)) => m,
            other => panic!("expected a schema error, got {other:?}"),
        }
    }

    #[test]
    fn a_current_schema_passes_and_a_behind_one_names_what_is_missing() {
        let m = migrator();
        assert!(check_current(&m, &applied(&m, &[1, 2]), "db").is_ok());
        let behind = message(check_current(&m, &applied(&m, &[1]), "db"));
        assert!(
            behind.contains("0002 more") && !behind.contains("0001"),
            "{behind}"
        );
        assert!(behind.contains("carrierhub migrate"), "{behind}");
        let empty = message(check_current(&m, &[], "db"));
        assert!(empty.contains("0001 canonical model, 0002 more"), "{empty}");
        assert_eq!(pending(&m, &applied(&m, &[1])).len(), 1);
    }

    #[test]
    fn an_edited_an_unknown_or_a_failed_migration_is_refused() {
        let m = migrator();
        let mut edited = applied(&m, &[1, 2]);
        edited[0].checksum = vec![0; 48];
        let e = message(check_current(&m, &edited, "db"));
        assert!(
            e.contains("0001") && e.contains("changed after it was applied"),
            "{e}"
        );
        let mut newer = applied(&m, &[1, 2]);
        newer.push(AppliedMigration {
            version: 3,
            success: true,
            checksum: vec![],
        });
        let e = message(check_current(&m, &newer, "db"));
        assert!(
            e.contains("migration 3") && e.contains("does not know"),
            "{e}"
        );
        let mut dirty = applied(&m, &[1]);
        dirty[0].success = false;
        let e = message(check_current(&m, &dirty, "db"));
        assert!(e.contains("dirty"), "{e}");
    }
}
