//! `pgproxy route` and `EXPLAIN ROUTE`: the route of a statement in words, one line per fact
//! (shards with their nodes, merge steps, why). Pure.

use super::{plan, Param, Shards};
use crate::config::Config;
use crate::shard::ShardMap;

/// Lines describing where `sql` goes; bind parameters (`params[n-1]` for `$n`) when given.
pub fn explain(sql: &str, map: &ShardMap, config: &Config, params: &[String]) -> Vec<String> {
    let p = plan(sql, map);
    let get = |n: usize| params.get(n - 1).map(|s| Param::Text(s.as_str()));
    let mut out = Vec::new();
    match p.resolve(map, &get, None) {
        Err(e) => {
            out.push(format!("refused ({}): {e}", e.sqlstate()));
        }
        Ok(r) => {
            let shards: Vec<usize> = match &r.shards {
                Shards::Any => {
                    out.push("shards: any one (the session's current shard)".into());
                    Vec::new()
                }
                Shards::Some(v) => v.clone(),
            };
            for s in shards {
                let nodes: Vec<String> = config
                    .shards
                    .get(s)
                    .map(|sh| {
                        sh.nodes
                            .iter()
                            .map(|n| format!("{}:{}", n.host, n.port))
                            .collect()
                    })
                    .unwrap_or_default();
                let role = if r.write {
                    "write on every node"
                } else {
                    "read on one node"
                };
                out.push(format!(
                    "shard {} ({role}): {}",
                    map.name(s),
                    nodes.join(", ")
                ));
            }
            if let Some(m) = &r.merge {
                out.push(format!("merge: {:?}", m.kind));
                if !m.order.is_empty() {
                    out.push(format!("merge order: {:?}", m.order));
                }
                if m.limit.is_some() || m.offset.is_some() {
                    out.push(format!("limit: {:?} offset: {:?}", m.limit, m.offset));
                }
                out.push(format!("each shard runs: {}", m.sql));
            }
            if let Some(split) = &r.split {
                for p in &split.parts {
                    out.push(format!("shard {} runs: {}", map.name(p.shard), p.sql));
                }
            }
            out.push(format!("why: {}", r.why));
        }
    }
    out
}
