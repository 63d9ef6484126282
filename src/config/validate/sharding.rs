//! Semantic checks of `[sharding]`: the rules must name existing shards, keys must fit the key
//! type, ranges must not overlap, and a config with several shards must say which tables are
//! sharded. Pure.

use super::check::Issue;
use super::locate::Seg::{self, Index as I, Key as K};
use crate::config::{Config, KeyLiteral, KeyTypeName, ShardFunction};
use std::collections::HashMap;

fn issue(issues: &mut Vec<Issue>, path: &[Seg], message: String) {
    issues.push(Issue {
        path: path.to_vec(),
        message,
    });
}

/// A key literal in a comparable normal form, or why it does not fit the key type.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Norm {
    Int(i64),
    Text(String),
}

fn normalize(ty: KeyTypeName, key: &KeyLiteral) -> Result<Norm, String> {
    let range = match ty {
        KeyTypeName::Smallint => Some((i16::MIN as i64, i16::MAX as i64)),
        KeyTypeName::Integer => Some((i32::MIN as i64, i32::MAX as i64)),
        KeyTypeName::Bigint => Some((i64::MIN, i64::MAX)),
        KeyTypeName::Text | KeyTypeName::Uuid => None,
    };
    match (range, key) {
        (Some((lo, hi)), KeyLiteral::Int(i)) if (lo..=hi).contains(i) => Ok(Norm::Int(*i)),
        (Some(_), KeyLiteral::Int(i)) => Err(format!("{i} is out of range for the key type")),
        (Some(_), KeyLiteral::Text(s)) => Err(format!(
            "{s:?} is a string but the key type is an integer type: write it without quotes"
        )),
        (None, KeyLiteral::Int(i)) if ty == KeyTypeName::Text => Err(format!(
            "{i} is an integer but key_type = \"text\": write it as a string"
        )),
        (None, KeyLiteral::Int(_)) => Err("a uuid key must be a string".into()),
        (None, KeyLiteral::Text(s)) if ty == KeyTypeName::Uuid => {
            let hex: String = s
                .trim_matches(|c| c == '{' || c == '}')
                .chars()
                .filter(|c| *c != '-')
                .collect();
            if hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                Ok(Norm::Text(hex.to_ascii_lowercase()))
            } else {
                Err(format!("{s:?} is not a uuid"))
            }
        }
        (None, KeyLiteral::Text(s)) => Ok(Norm::Text(s.clone())),
    }
}

/// Runs the `[sharding]` checks.
pub(super) fn check_sharding(config: &Config, issues: &mut Vec<Issue>) {
    let sh = &config.sharding;
    let names: HashMap<&str, usize> = config
        .shards
        .iter()
        .enumerate()
        .map(|(i, s)| (s.name.as_str(), i))
        .collect();
    if config.shards.len() > 1 && sh.tables.is_empty() {
        issue(
            issues,
            &[K("shards")],
            format!(
                "{} shards but no [[sharding.tables]]: list the sharded tables and their key column, or use one shard",
                config.shards.len()
            ),
        );
    }
    check_tables(config, issues);
    let ty = sh.key_type;
    let shard_known = |issues: &mut Vec<Issue>, path: &[Seg], name: &str| {
        if !names.contains_key(name) {
            let known: Vec<&str> = config.shards.iter().map(|s| s.name.as_str()).collect();
            issue(
                issues,
                path,
                format!("no shard named {name:?} (shards: {})", known.join(", ")),
            );
        }
    };
    match sh.function {
        ShardFunction::Hash => {}
        ShardFunction::Range if sh.ranges.is_empty() => issue(
            issues,
            &[K("sharding"), K("function")],
            "function = \"range\" needs [[sharding.ranges]] entries".into(),
        ),
        ShardFunction::List if sh.lists.is_empty() => issue(
            issues,
            &[K("sharding"), K("function")],
            "function = \"list\" needs [[sharding.lists]] entries".into(),
        ),
        _ => {}
    }
    if sh.function != ShardFunction::Range && !sh.ranges.is_empty() {
        issue(
            issues,
            &[K("sharding"), K("ranges")],
            "[[sharding.ranges]] only apply with function = \"range\"".into(),
        );
    }
    if sh.function != ShardFunction::List && !sh.lists.is_empty() {
        issue(
            issues,
            &[K("sharding"), K("lists")],
            "[[sharding.lists]] only apply with function = \"list\"".into(),
        );
    }
    check_ranges(config, ty, issues, &shard_known);
    let mut seen: HashMap<Norm, usize> = HashMap::new();
    for (i, list) in sh.lists.iter().enumerate() {
        shard_known(
            issues,
            &[K("sharding"), K("lists"), I(i), K("shard")],
            &list.shard,
        );
        for v in &list.values {
            let at = [K("sharding"), K("lists"), I(i), K("values")];
            match normalize(ty, v) {
                Err(why) => issue(issues, &at, format!("sharding.lists[{i}]: {why}")),
                Ok(n) => {
                    if let Some(j) = seen.insert(n, i) {
                        let msg = format!(
                            "sharding.lists[{i}]: key {} is already listed in sharding.lists[{j}]",
                            v.text()
                        );
                        issue(issues, &at, msg);
                    }
                }
            }
        }
    }
    let mut seen: HashMap<Norm, usize> = HashMap::new();
    for (i, o) in sh.overrides.iter().enumerate() {
        let at = |k| [K("sharding"), K("overrides"), I(i), K(k)];
        shard_known(issues, &at("shard"), &o.shard);
        match normalize(ty, &o.key) {
            Err(why) => issue(
                issues,
                &at("key"),
                format!("sharding.overrides[{i}]: {why}"),
            ),
            Ok(n) => {
                if let Some(j) = seen.insert(n, i) {
                    let msg = format!(
                        "sharding.overrides[{i}]: key {} is already pinned by sharding.overrides[{j}]",
                        o.key.text()
                    );
                    issue(issues, &at("key"), msg);
                }
            }
        }
    }
}

fn check_tables(config: &Config, issues: &mut Vec<Issue>) {
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (i, t) in config.sharding.tables.iter().enumerate() {
        let at = |k| [K("sharding"), K("tables"), I(i), K(k)];
        let parts: Vec<&str> = t.name.split('.').collect();
        if t.name.trim().is_empty() || parts.len() > 2 || parts.iter().any(|p| p.is_empty()) {
            let msg = format!(
                "sharding.tables[{i}].name = {:?}: expected table or schema.table",
                t.name
            );
            issue(issues, &at("name"), msg);
        }
        if t.column.trim().is_empty() {
            issue(
                issues,
                &at("column"),
                format!("sharding.tables[{i}]: column must not be empty"),
            );
        }
        let key = t.name.to_lowercase();
        if let Some(j) = seen.insert(key, i) {
            let msg = format!(
                "table {:?} is listed twice (first as sharding.tables[{j}])",
                t.name
            );
            issue(issues, &at("name"), msg);
        }
    }
}

/// Reports a shard name that names no shard.
type ShardCheck<'a> = dyn Fn(&mut Vec<Issue>, &[Seg], &str) + 'a;

fn check_ranges(
    config: &Config,
    ty: KeyTypeName,
    issues: &mut Vec<Issue>,
    shard_known: &ShardCheck<'_>,
) {
    let mut bounds: Vec<(usize, Option<Norm>, Option<Norm>)> = Vec::new();
    for (i, r) in config.sharding.ranges.iter().enumerate() {
        let at = |k| [K("sharding"), K("ranges"), I(i), K(k)];
        shard_known(issues, &at("shard"), &r.shard);
        let mut norm = |k: &'static str, v: &Option<KeyLiteral>| match v {
            None => Some(None),
            Some(v) => match normalize(ty, v) {
                Ok(n) => Some(Some(n)),
                Err(why) => {
                    issue(issues, &at(k), format!("sharding.ranges[{i}].{k}: {why}"));
                    None
                }
            },
        };
        let (Some(from), Some(to)) = (norm("from", &r.from), norm("to", &r.to)) else {
            continue;
        };
        if let (Some(f), Some(t)) = (&from, &to) {
            if f >= t {
                let msg = format!("sharding.ranges[{i}]: from must be below to (to is exclusive)");
                issue(issues, &at("to"), msg);
                continue;
            }
        }
        bounds.push((i, from, to));
    }
    for (a, (i, f1, t1)) in bounds.iter().enumerate() {
        for (j, f2, t2) in &bounds[a + 1..] {
            // [f1, t1) and [f2, t2) overlap unless one ends at or before the other starts.
            let ends_before = |t: &Option<Norm>, f: &Option<Norm>| match (t, f) {
                (Some(t), Some(f)) => t <= f,
                _ => false,
            };
            if !(ends_before(t1, f2) || ends_before(t2, f1)) {
                let msg = format!("sharding.ranges[{j}] overlaps sharding.ranges[{i}]");
                issue(issues, &[K("sharding"), K("ranges"), I(*j)], msg);
            }
        }
    }
}
