//! The template data directory every [`PgNode`] starts from: initdb, the test settings, the test
//! roles and database `app`, made once and copied per node (`cp -a`, ~0.1 s) instead of per
//! node (initdb and setup take a second or more of CPU; the suite starts hundreds of nodes).
//!
//! Kept in cargo's `target/tmp` under a name that hashes everything it is made of (the
//! PostgreSQL binaries and their version, the user, the settings, pg_hba.conf, the setup SQL), so a change
//! to any of them makes a new one; `cargo clean` removes it. Built in a staging dir and renamed
//! into place, so a concurrent or interrupted build never leaves a half-made template.
//! Read-only once made: nodes copy it, never start on it.

use super::pg::{PG_HBA, SETTINGS, SETUP_APP_DB, SETUP_ROLES};
use super::{pg_bin_dir, pg_tool, PgNode};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use tokio::sync::OnceCell;

static TEMPLATE: OnceCell<PathBuf> = OnceCell::const_new();

/// The template's data directory, made on first use.
pub(super) async fn data_dir() -> &'static Path {
    TEMPLATE.get_or_init(make).await
}

/// `cp -a from to` (`to` must not exist): owners, modes and links kept.
pub(super) fn copy_tree(from: &Path, to: &Path) {
    let out = std::process::Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .output()
        .expect("run cp");
    assert!(
        out.status.success(),
        "cp -a {} {} failed: {}",
        from.display(),
        to.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn make() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let home = root.join(format!("pg-template-{:016x}", key()));
    let data = home.join("data");
    if data.join("PG_VERSION").exists() {
        return data;
    }
    let mut node = PgNode::initdb_and_setup().await;
    node.stop();
    std::fs::create_dir_all(&root).expect("create target/tmp");
    let staging = tempfile::Builder::new()
        .prefix(".pg-template-staging-")
        .tempdir_in(&root)
        .expect("create a staging dir in target/tmp");
    let from = node.data_dir();
    let to = staging.path().join("data");
    tokio::task::spawn_blocking(move || copy_tree(&from, &to))
        .await
        .expect("copy task panicked");
    let staged = staging.keep();
    // Templates made of something else before (another PostgreSQL, other settings) go.
    for old in std::fs::read_dir(&root).into_iter().flatten().flatten() {
        let name = old.file_name();
        if name.to_string_lossy().starts_with("pg-template-") && old.path() != home {
            let _ = std::fs::remove_dir_all(old.path());
        }
    }
    if let Err(e) = std::fs::rename(&staged, &home) {
        // Another test process made it first: use theirs.
        let _ = std::fs::remove_dir_all(&staged);
        assert!(
            data.join("PG_VERSION").exists(),
            "cannot move the template to {}: {e}",
            home.display()
        );
    }
    data
}

/// A hash of everything the template is made of.
fn key() -> u64 {
    let bin = pg_bin_dir();
    let version = std::process::Command::new(pg_tool("postgres"))
        .arg("--version")
        .output()
        .map(|o| o.stdout)
        .unwrap_or_default();
    // The user too: a template made as root belongs to `postgres`, unreadable to others.
    // SAFETY: geteuid has no preconditions and cannot fail.
    let uid = unsafe { libc::geteuid() };
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (
        bin,
        version,
        uid,
        SETTINGS,
        PG_HBA,
        SETUP_ROLES,
        SETUP_APP_DB,
    )
        .hash(&mut h);
    h.finish()
}
