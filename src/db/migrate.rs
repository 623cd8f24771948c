//! Schema migrations: the versioned SQL files in `sql/`, embedded in the binary and applied in
//! order, each in its own transaction. Instances starting together serialize on an advisory lock;
//! editing a file after it was applied is an error, never silently ignored.

use std::collections::BTreeMap;

use anyhow::{Context, bail};
use sha2::{Digest, Sha256};
use tokio_postgres::Client;

/// One embedded `sql/NNNN_name.sql` file.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// The `NNNN` prefix of the file name.
    pub version: i32,
    /// The file name, e.g. `0001_users.sql`.
    pub name: &'static str,
    pub sql: &'static str,
}

macro_rules! migration {
    ($version:literal, $file:literal) => {
        Migration { version: $version, name: $file, sql: include_str!(concat!("../../sql/", $file)) }
    };
}

/// Every migration, in order. A test checks this list against the `sql/` directory.
pub const MIGRATIONS: &[Migration] =
    &[migration!(1, "0001_users.sql"), migration!(2, "0002_api_tokens.sql"), migration!(3, "0003_sync.sql")];

/// Key of the session-level advisory lock held while migrating ("SPECMIGR").
const MIGRATION_LOCK: i64 = 0x5350_4543_4d49_4752;

/// SHA-256 of a file's text, lowercase hex.
pub fn checksum(sql: &str) -> String {
    hex::encode(Sha256::digest(sql.as_bytes()))
}

/// Applies every pending migration and returns the names of those it applied (empty when the
/// schema was current). Safe to call from several instances at once: the advisory lock makes
/// them take turns, and the later ones find nothing left to do.
pub async fn migrate(client: &mut Client) -> anyhow::Result<Vec<&'static str>> {
    client.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK]).await.context("taking the migration lock")?;
    let result = apply_pending(client, MIGRATIONS).await;
    // Unlocked on failure too: the client may be a pooled connection that lives on.
    let unlocked = client.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK]).await;
    let applied = result?;
    unlocked.context("releasing the migration lock")?;
    Ok(applied)
}

async fn apply_pending(client: &mut Client, migrations: &[Migration]) -> anyhow::Result<Vec<&'static str>> {
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                 version    integer     PRIMARY KEY,
                 name       text        NOT NULL,
                 checksum   text        NOT NULL,
                 applied_at timestamptz NOT NULL DEFAULT now()
             )",
        )
        .await
        .context("creating schema_migrations")?;
    let recorded: BTreeMap<i32, (String, String)> = client
        .query("SELECT version, name, checksum FROM schema_migrations", &[])
        .await
        .context("reading schema_migrations")?
        .iter()
        .map(|row| Ok((row.try_get(0)?, (row.try_get(1)?, row.try_get(2)?))))
        .collect::<Result<_, tokio_postgres::Error>>()
        .context("reading schema_migrations")?;

    let mut applied = Vec::new();
    for migration in migrations {
        let sum = checksum(migration.sql);
        if let Some((name, recorded_sum)) = recorded.get(&migration.version) {
            if *recorded_sum != sum {
                bail!(
                    "migration {} was changed after it was applied (applied as {name} with \
                     checksum {recorded_sum}, the file now has {sum}); add a new migration \
                     instead of editing an applied one",
                    migration.name
                );
            }
            continue;
        }
        let tx = client
            .transaction()
            .await
            .with_context(|| format!("starting the transaction for migration {}", migration.name))?;
        tx.batch_execute(migration.sql).await.with_context(|| format!("applying migration {}", migration.name))?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
            &[&migration.version, &migration.name, &sum],
        )
        .await
        .with_context(|| format!("recording migration {}", migration.name))?;
        tx.commit().await.with_context(|| format!("committing migration {}", migration.name))?;
        tracing::info!(migration = migration.name, "applied migration");
        applied.push(migration.name);
    }

    // A newer binary applied these; we keep running (rolling deploys), but say so.
    for (version, (name, _)) in recorded.range(migrations.last().map_or(i32::MIN, |m| m.version.saturating_add(1))..) {
        tracing::warn!(version, name, "database has a migration this binary does not know");
    }
    Ok(applied)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use crate::devsvc::test_empty_database;

    #[test]
    fn the_list_matches_the_sql_directory() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/sql");
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|name| name.ends_with(".sql"))
            .collect();
        files.sort();
        let listed: Vec<&str> = MIGRATIONS.iter().map(|m| m.name).collect();
        assert_eq!(files, listed, "every sql/ file must be listed in MIGRATIONS, in order");
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version, i32::try_from(i + 1).unwrap(), "{}: versions are 1, 2, …", m.name);
            assert_eq!(&m.name[..5], format!("{:04}_", m.version), "{}: NNNN_ prefix", m.name);
        }
    }

    #[test]
    fn no_foreign_keys() {
        for m in MIGRATIONS {
            assert!(!m.sql.to_uppercase().contains("REFERENCES"), "{} has a foreign key", m.name);
        }
    }

    #[tokio::test]
    async fn applies_once_then_is_a_no_op() {
        let db = test_empty_database().await.unwrap();
        let mut client = db.connect().await.unwrap();
        let first = migrate(&mut client).await.unwrap();
        assert_eq!(first, vec!["0001_users.sql", "0002_api_tokens.sql", "0003_sync.sql"]);
        let second = migrate(&mut client).await.unwrap();
        assert!(second.is_empty());
        let rows = client.query("SELECT name, checksum FROM schema_migrations ORDER BY version", &[]).await.unwrap();
        assert_eq!(rows.len(), MIGRATIONS.len());
        assert_eq!(rows[0].get::<_, String>(1), checksum(MIGRATIONS[0].sql));
        // The schema is really there.
        client.execute("SELECT id, username FROM users", &[]).await.unwrap();
        client.execute("SELECT id, token_hash FROM api_tokens", &[]).await.unwrap();
        client.execute("SELECT task_id, rows FROM sync_runs", &[]).await.unwrap();
        client.execute("SELECT sync_type, external_id FROM sync_records", &[]).await.unwrap();
    }

    #[tokio::test]
    async fn a_changed_file_is_an_error_naming_it() {
        let db = test_empty_database().await.unwrap();
        let mut client = db.connect().await.unwrap();
        migrate(&mut client).await.unwrap();
        // As if 0002 had been edited after being applied.
        client.execute("UPDATE schema_migrations SET checksum = 'abc' WHERE version = 2", &[]).await.unwrap();
        let err = migrate(&mut client).await.unwrap_err();
        let message = format!("{err:#}");
        assert!(message.contains("0002_api_tokens.sql"), "{message}");
        assert!(message.contains("changed"), "{message}");
        // The lock was released: another session can still take it at once.
        let other = db.connect().await.unwrap();
        let got: bool = other.query_one("SELECT pg_try_advisory_lock($1)", &[&MIGRATION_LOCK]).await.unwrap().get(0);
        assert!(got);
    }

    #[tokio::test]
    async fn a_failing_migration_rolls_back_and_names_the_file() {
        let db = test_empty_database().await.unwrap();
        let mut client = db.connect().await.unwrap();
        let broken = [
            MIGRATIONS[0],
            Migration {
                version: 2,
                name: "0002_broken.sql",
                sql: "CREATE TABLE half_done (id int); SELECT no_such_function();",
            },
        ];
        let err = apply_pending(&mut client, &broken).await.unwrap_err();
        assert!(format!("{err:#}").contains("0002_broken.sql"), "{err:#}");
        let half_done = client.query_opt("SELECT 1 FROM pg_tables WHERE tablename = 'half_done'", &[]).await.unwrap();
        assert!(half_done.is_none(), "the failed file's transaction was rolled back");
        let versions: Vec<i32> = client
            .query("SELECT version FROM schema_migrations", &[])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(versions, vec![1], "the file before it stays applied");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_migrations_apply_each_file_once() {
        let db = test_empty_database().await.unwrap();
        let mut a = db.connect().await.unwrap();
        let mut b = db.connect().await.unwrap();
        let (ra, rb) = tokio::join!(
            tokio::spawn(async move { migrate(&mut a).await }),
            tokio::spawn(async move { migrate(&mut b).await })
        );
        let (ra, rb) = (ra.unwrap().unwrap(), rb.unwrap().unwrap());
        let mut all: Vec<&str> = ra.into_iter().chain(rb).collect();
        all.sort();
        assert_eq!(all, vec!["0001_users.sql", "0002_api_tokens.sql", "0003_sync.sql"]);
        let client = db.connect().await.unwrap();
        let count: i64 = client.query_one("SELECT count(*) FROM schema_migrations", &[]).await.unwrap().get(0);
        assert_eq!(count, 3);
    }
}
