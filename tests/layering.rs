//! Checks the module layering of docs/ARCHITECTURE.md: a module may use only modules listed
//! before it. Pure file scan; no database needed.

use std::fs;
use std::path::Path;

const ORDER: &[&str] = &[
    "protocol",
    "config",
    "telemetry",
    "net",
    "shard",
    "router",
    "backend",
    "pool",
    "cluster",
    "replication",
    "recovery",
    "session",
    "admin",
    "server",
];

fn files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in fs::read_dir(dir).expect("readable src dir").flatten() {
        let p = e.path();
        if p.is_dir() {
            files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn modules_only_use_modules_above_them() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut violations = Vec::new();
    for (rank, module) in ORDER.iter().enumerate() {
        let dir = src.join(module);
        if !dir.exists() {
            continue;
        }
        let mut fs_list = Vec::new();
        files(&dir, &mut fs_list);
        for f in fs_list {
            let text = fs::read_to_string(&f).expect("readable source");
            for (other_rank, other) in ORDER.iter().enumerate() {
                if other_rank <= rank {
                    continue;
                }
                if text.contains(&format!("crate::{other}::"))
                    || text.contains(&format!("crate::{other};"))
                {
                    violations.push(format!("{} uses crate::{other}", f.display()));
                }
            }
        }
    }
    assert!(
        violations.is_empty(),
        "layering violations:\n{}",
        violations.join("\n")
    );
}
