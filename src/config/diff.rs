//! Differences between two configurations that matter to a live reload.
//!
//! Pure: compares two validated `Config`s. The server decides what to do with the answer
//! (on SIGHUP it keeps the old value of each option named here and logs a warning).

use super::Config;

/// Names of options that differ between `old` and `new` but only take effect after a
/// restart: `general.listen`, `general.worker_threads` and `shards` (the node list; topology
/// changes come with the replication work). Empty when a reload can apply everything.
pub fn restart_required(old: &Config, new: &Config) -> Vec<String> {
    let mut changed = Vec::new();
    if old.general.listen != new.general.listen {
        changed.push("general.listen".to_string());
    }
    if old.general.worker_threads != new.general.worker_threads {
        changed.push("general.worker_threads".to_string());
    }
    if old.shards != new.shards {
        changed.push("shards".to_string());
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Node, Shard};

    fn base() -> Config {
        Config {
            general: Default::default(),
            users: vec![],
            databases: vec![],
            replication: Default::default(),
            health: Default::default(),
            sharding: Default::default(),
            shards: vec![Shard {
                name: "s0".into(),
                nodes: vec![Node {
                    host: "127.0.0.1".into(),
                    port: 5432,
                    weight: 1,
                }],
            }],
        }
    }

    #[test]
    fn names_only_options_that_need_a_restart() {
        type Edit = fn(&mut Config);
        let cases: &[(&str, Edit, &[&str])] = &[
            ("nothing", |_| {}, &[]),
            (
                "listen",
                |c| c.general.listen = "0.0.0.0:6432".into(),
                &["general.listen"],
            ),
            (
                "workers",
                |c| c.general.worker_threads = 4,
                &["general.worker_threads"],
            ),
            (
                "node port",
                |c| c.shards[0].nodes[0].port = 5433,
                &["shards"],
            ),
            (
                "node weight",
                |c| c.shards[0].nodes[0].weight = 2,
                &["shards"],
            ),
            (
                "new shard",
                |c| c.shards.push(c.shards[0].clone()),
                &["shards"],
            ),
            (
                "pool size is live",
                |c| c.general.default_pool_size = 5,
                &[],
            ),
            ("users are live", |c| c.users.clear(), &[]),
            (
                "several",
                |c| {
                    c.general.listen = "[::1]:1".into();
                    c.shards.clear();
                },
                &["general.listen", "shards"],
            ),
        ];
        for (name, edit, want) in cases {
            let mut new = base();
            edit(&mut new);
            assert_eq!(restart_required(&base(), &new), *want, "{name}");
        }
    }
}
