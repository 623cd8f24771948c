//! Schema migrations: the versioned SQL files in `sql/`, embedded in the binary and applied in
//! order, each in its own transaction. Instances starting together serialize on an advisory lock
//! (a waiting instance says so in the log, and waits as long as it takes); editing a file after
//! it was applied is an error, never silently ignored. Migrations run without a statement
//! timeout, on a connection of their own ([`migrate_database`]), not a pooled request one.

use std::{collections::BTreeMap, time::Duration};

use anyhow::{Context, bail};
use sha2::{Digest, Sha256};
use tokio_postgres::{Client, NoTls};

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
pub const MIGRATIONS: &[Migration] = &[
    migration!(1, "0001_users.sql"),
    migration!(2, "0002_api_tokens.sql"),
    migration!(3, "0003_sync.sql"),
    migration!(4, "0004_users_version.sql"),
    migration!(5, "0005_token_scopes.sql"),
];

/// Key of the session-level advisory lock held while migrating ("SPECMIGR").
const MIGRATION_LOCK: i64 = 0x5350_4543_4d49_4752;

/// SHA-256 of a file's text, lowercase hex.
pub fn checksum(sql: &str) -> String {
    hex::encode(Sha256::digest(sql.as_bytes()))
}

/// While waiting for another instance's migrations, say so this often.
const WAIT_REPORT_EVERY: Duration = Duration::from_secs(10);

/// Opens a connection of its own to `url` and applies every pending migration (see
/// [`migrate`]). Not a pooled connection: those carry the request `statement_timeout`, and a
/// migration (or the wait for another instance's) may take far longer than any request.
pub async fn migrate_database(url: &str, connect_timeout: Duration) -> anyhow::Result<Vec<&'static str>> {
    migrate_database_with(url, connect_timeout, MIGRATIONS).await
}

async fn migrate_database_with(
    url: &str,
    connect_timeout: Duration,
    migrations: &[Migration],
) -> anyhow::Result<Vec<&'static str>> {
    let mut config: tokio_postgres::Config = url.parse().context("parsing the PostgreSQL URL")?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(connect_timeout);
    }
    config.application_name("spec-server migrate");
    let (mut client, connection) = config.connect(NoTls).await.context("connecting to PostgreSQL to migrate")?;
    let connection = tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(error = %e, "the migration connection failed");
        }
    });
    let result = run(&mut client, migrations).await;
    drop(client);
    // The connection ends once the client is gone; a join error only means it panicked.
    let _ = connection.await;
    result
}

/// Applies every pending migration and returns the names of those it applied (empty when the
/// schema was current). Safe to call from several instances at once: the advisory lock makes
/// them take turns, and the later ones find nothing left to do.
///
/// The session's `statement_timeout` is lifted for the duration and reset afterwards, so this is
/// also safe on a pooled connection; [`migrate_database`] is the one to use in production.
pub async fn migrate(client: &mut Client) -> anyhow::Result<Vec<&'static str>> {
    run(client, MIGRATIONS).await
}

async fn run(client: &mut Client, migrations: &[Migration]) -> anyhow::Result<Vec<&'static str>> {
    client.batch_execute("SET statement_timeout = 0").await.context("lifting the statement timeout to migrate")?;
    let result = locked(client, migrations).await;
    // RESET goes back to the session's start-up value: a pooled connection gets its request
    // timeout back.
    let reset = client.batch_execute("RESET statement_timeout").await;
    let applied = result?;
    reset.context("resetting the statement timeout after migrating")?;
    Ok(applied)
}

async fn locked(client: &mut Client, migrations: &[Migration]) -> anyhow::Result<Vec<&'static str>> {
    lock(client).await?;
    let result = apply_pending(client, migrations).await;
    // Unlocked on failure too: the client may be a pooled connection that lives on.
    let unlocked = client.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK]).await;
    let applied = result?;
    unlocked.context("releasing the migration lock")?;
    Ok(applied)
}

/// Takes the migration lock, waiting for as long as another instance holds it (its migrations
/// may take minutes: failing instead would crash-loop this instance), and saying so meanwhile.
async fn lock(client: &Client) -> anyhow::Result<()> {
    let got: bool = client
        .query_one("SELECT pg_try_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await
        .and_then(|row| row.try_get(0))
        .context("taking the migration lock")?;
    if got {
        return Ok(());
    }
    // Best effort: who holds it helps an operator find a stuck migration, but is not needed.
    let holder = client
        .query_opt(
            "SELECT a.pid, coalesce(a.application_name, ''), coalesce(host(a.client_addr), 'local'),
                    coalesce(a.backend_start::text, '')
             FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
             WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
               AND l.classid = ($1::bigint >> 32)::oid AND l.objid = ($1::bigint & 4294967295)::oid
             LIMIT 1",
            &[&MIGRATION_LOCK],
        )
        .await
        .ok()
        .flatten()
        .and_then(|row| {
            let (pid, app, addr, since): (i32, String, String, String) =
                (row.try_get(0).ok()?, row.try_get(1).ok()?, row.try_get(2).ok()?, row.try_get(3).ok()?);
            let app = if app.is_empty() { String::new() } else { format!(" ({app})") };
            Some(format!("pid {pid}{app} from {addr}, connected since {since}"))
        })
        .unwrap_or_else(|| "unknown".to_owned());
    tracing::warn!(%holder, "another instance is applying migrations (it holds the migration lock); waiting for it to finish");
    let wait = client.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK]);
    tokio::pin!(wait);
    let started = tokio::time::Instant::now();
    let mut report = tokio::time::interval_at(started + WAIT_REPORT_EVERY, WAIT_REPORT_EVERY);
    loop {
        tokio::select! {
            taken = &mut wait => {
                taken.context("waiting for the migration lock")?;
                break;
            }
            _ = report.tick() => {
                tracing::warn!(%holder, waited_secs = started.elapsed().as_secs(), "still waiting for another instance's migrations");
            }
        }
    }
    tracing::info!(
        waited_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        "got the migration lock"
    );
    Ok(())
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

    /// Every embedded migration's name, in order.
    fn all_names() -> Vec<&'static str> {
        MIGRATIONS.iter().map(|m| m.name).collect()
    }
    use crate::devsvc::{LogCapture, test_empty_database};

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
        assert_eq!(first, all_names());
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
        assert_eq!(all, all_names());
        let client = db.connect().await.unwrap();
        let count: i64 = client.query_one("SELECT count(*) FROM schema_migrations", &[]).await.unwrap().get(0);
        assert_eq!(count, i64::try_from(MIGRATIONS.len()).unwrap());
    }

    /// `url` with a session `statement_timeout` of `ms`, as a request connection would have.
    fn with_statement_timeout(url: &str, ms: u64) -> String {
        let separator = if url.contains('?') { '&' } else { '?' };
        format!("{url}{separator}options=-c%20statement_timeout%3D{ms}")
    }

    async fn wait_until(what: &str, mut done: impl AsyncFnMut() -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !done().await {
            assert!(std::time::Instant::now() < deadline, "timed out waiting until {what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn waits_for_another_instance_saying_so_then_proceeds() {
        use tracing::instrument::WithSubscriber;
        let db = test_empty_database().await.unwrap();
        let other = db.connect().await.unwrap();
        other.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK]).await.unwrap();

        let logs = LogCapture::default();
        // A tiny statement timeout on the session: the wait must not be cut short by it.
        let url = with_statement_timeout(db.url(), 50);
        let migrating = tokio::spawn(
            async move { migrate_database(&url, Duration::from_secs(5)).await }.with_subscriber(logs.subscriber()),
        );
        wait_until("it reports the wait", async || logs.text().contains("another instance is applying migrations"))
            .await;
        wait_until("it waits on the lock", async || {
            let waiting: i64 = other
                .query_one("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted", &[])
                .await
                .unwrap()
                .get(0);
            waiting == 1
        })
        .await;
        // Longer than the statement timeout, which must not apply to the wait.
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!migrating.is_finished(), "gave up waiting: {:?}", migrating.await);
        let text = logs.text();
        assert!(text.contains("holder=pid "), "the holder is named: {text}");

        other.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK]).await.unwrap();
        let applied = migrating.await.unwrap().unwrap();
        assert_eq!(applied, all_names());
        assert!(logs.text().contains("got the migration lock"), "{}", logs.text());
    }

    /// The real migrations, then one that takes longer than the statement timeouts below.
    fn with_a_slow_migration() -> Vec<Migration> {
        let mut migrations = MIGRATIONS.to_vec();
        migrations.push(Migration { version: 9999, name: "9999_slow.sql", sql: "SELECT pg_sleep(0.3);" });
        migrations
    }

    #[tokio::test]
    async fn a_migration_may_run_longer_than_the_statement_timeout() {
        let migrations = with_a_slow_migration();
        // Its own connection, even when the URL itself asks for a short timeout.
        let db = test_empty_database().await.unwrap();
        let url = with_statement_timeout(db.url(), 50);
        let applied = migrate_database_with(&url, Duration::from_secs(5), &migrations).await.unwrap();
        assert_eq!(applied.last(), Some(&"9999_slow.sql"));

        // A pooled request connection: the timeout is lifted while migrating, then restored.
        let db = test_empty_database().await.unwrap();
        let pool = crate::db::pool(db.url(), 1, Duration::from_secs(5), Duration::from_millis(50)).unwrap();
        let mut client = pool.get().await.unwrap();
        let applied = run(&mut client, &migrations).await.unwrap();
        assert_eq!(applied.len(), MIGRATIONS.len() + 1);
        let timeout: String = client.query_one("SHOW statement_timeout", &[]).await.unwrap().get(0);
        assert_eq!(timeout, "50ms");
    }
}
