//! What calling a function does, for replication: built-ins known to change nothing (a read may
//! run them on one node), built-ins known to change state, and everything else (unknown, so a
//! write: user functions may modify data).

/// The effect of calling one function, weakest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Effect {
    /// Changes nothing outside the statement.
    Read,
    /// Must run where listeners are: the main node (`pg_notify`).
    MainOnly,
    /// Changes state (sequences, locks, settings, large objects) or is unknown.
    Write,
}

/// Built-ins that change nothing: aggregates, window functions, string, math, date/time,
/// array, JSON, catalog and session-information functions. Volatile but side-effect free
/// functions (random, clock_timestamp, gen_random_uuid) are here too: in a read their value
/// goes to the client only. Sorted (checked by a test) for binary search.
#[rustfmt::skip]
pub(crate) const READ_ONLY: &[&str] = &[
    "abs", "acos", "age", "array_agg", "array_append", "array_cat", "array_dims",
    "array_fill", "array_length", "array_lower", "array_ndims", "array_position",
    "array_positions", "array_prepend", "array_remove", "array_replace", "array_to_json",
    "array_to_string", "array_upper", "ascii", "asin", "atan", "atan2", "avg", "bit_and",
    "bit_length", "bit_or", "bool", "bool_and", "bool_or", "btrim", "cardinality", "cbrt",
    "ceil", "ceiling", "char_length", "character_length", "chr", "clock_timestamp",
    "coalesce", "col_description", "concat", "concat_ws", "corr", "cos", "count",
    "covar_pop", "covar_samp", "cume_dist", "current_catalog", "current_database",
    "current_date", "current_query", "current_role", "current_schema", "current_schemas",
    "current_setting", "current_time", "current_timestamp", "current_user", "date",
    "date_bin", "date_part", "date_trunc", "decode", "degrees", "dense_rank", "div",
    "encode", "every", "exp", "extract", "first_value", "float4", "float8", "floor",
    "format", "format_type", "gcd", "gen_random_uuid", "generate_series",
    "generate_subscripts", "greatest", "has_column_privilege", "has_database_privilege",
    "has_function_privilege", "has_schema_privilege", "has_sequence_privilege",
    "has_table_privilege", "hashtext", "inet_client_addr", "inet_server_addr", "initcap",
    "int2", "int4", "int8", "isfinite", "json_agg", "json_array_elements",
    "json_array_elements_text", "json_array_length", "json_build_array",
    "json_build_object", "json_each", "json_each_text", "json_extract_path",
    "json_extract_path_text", "json_object", "json_object_agg", "json_object_keys",
    "json_populate_record", "json_populate_recordset", "json_strip_nulls",
    "json_to_record", "json_to_recordset", "json_typeof", "jsonb_agg",
    "jsonb_array_elements", "jsonb_array_elements_text", "jsonb_array_length",
    "jsonb_build_array", "jsonb_build_object", "jsonb_concat", "jsonb_each",
    "jsonb_each_text", "jsonb_exists", "jsonb_extract_path", "jsonb_extract_path_text",
    "jsonb_insert", "jsonb_object", "jsonb_object_agg", "jsonb_object_keys",
    "jsonb_path_exists", "jsonb_path_match", "jsonb_path_query", "jsonb_path_query_array",
    "jsonb_path_query_first", "jsonb_populate_record", "jsonb_populate_recordset",
    "jsonb_pretty", "jsonb_set", "jsonb_set_lax", "jsonb_strip_nulls", "jsonb_to_record",
    "jsonb_to_recordset", "jsonb_typeof", "justify_days", "justify_hours",
    "justify_interval", "lag", "last_value", "lcm", "lead", "least", "left", "length",
    "ln", "localtime", "localtimestamp", "log", "log10", "lower", "lpad", "ltrim",
    "make_date", "make_interval", "make_time", "make_timestamp", "make_timestamptz", "max",
    "md5", "min", "mod", "mode", "now", "nth_value", "ntile", "nullif", "num_nonnulls",
    "num_nulls", "numeric", "obj_description", "octet_length", "overlay", "percent_rank",
    "percentile_cont", "percentile_disc", "pg_backend_pid", "pg_column_size",
    "pg_database_size", "pg_encoding_to_char", "pg_get_constraintdef", "pg_get_expr",
    "pg_get_functiondef", "pg_get_indexdef", "pg_get_serial_sequence", "pg_get_userbyid",
    "pg_get_viewdef", "pg_has_role", "pg_indexes_size", "pg_is_in_recovery",
    "pg_postmaster_start_time", "pg_relation_size", "pg_size_pretty", "pg_sleep",
    "pg_table_is_visible", "pg_table_size", "pg_total_relation_size", "pg_typeof", "pi",
    "position", "pow", "power", "quote_ident", "quote_literal", "quote_nullable",
    "radians", "random", "rank", "regexp_count", "regexp_instr", "regexp_like",
    "regexp_match", "regexp_matches", "regexp_replace", "regexp_split_to_array",
    "regexp_split_to_table", "regexp_substr", "repeat", "replace", "reverse", "right",
    "round", "row_number", "row_to_json", "rpad", "rtrim", "scale", "session_user",
    "sha224", "sha256", "sha384", "sha512", "sign", "sin", "split_part", "sqrt",
    "starts_with", "statement_timestamp", "stddev", "stddev_pop", "stddev_samp",
    "string_agg", "string_to_array", "string_to_table", "strpos", "substr", "substring",
    "sum", "tan", "text", "timeofday", "timezone", "to_char", "to_date", "to_hex",
    "to_json", "to_jsonb", "to_number", "to_regclass", "to_regproc", "to_regtype",
    "to_timestamp", "transaction_timestamp", "translate", "trim", "trunc", "unnest",
    "upper", "user", "uuid_generate_v4", "var_pop", "var_samp", "variance", "version",
    "width_bucket",
];

/// Read-only built-ins that may return several rows.
const SET_RETURNING: &[&str] = &[
    "generate_series",
    "generate_subscripts",
    "json_array_elements",
    "json_array_elements_text",
    "json_each",
    "json_each_text",
    "json_object_keys",
    "json_populate_recordset",
    "json_to_recordset",
    "jsonb_array_elements",
    "jsonb_array_elements_text",
    "jsonb_each",
    "jsonb_each_text",
    "jsonb_object_keys",
    "jsonb_path_query",
    "jsonb_populate_recordset",
    "jsonb_to_recordset",
    "regexp_matches",
    "regexp_split_to_table",
    "string_to_table",
    "unnest",
];

/// A read-only built-in that returns one value per call (not a set-returning function).
pub(crate) fn is_scalar_builtin(base: &str) -> bool {
    let known = READ_ONLY.binary_search(&base).is_ok()
        || KNOWN_WRITE.contains(&base)
        || WRITE_PREFIXES.iter().any(|p| base.starts_with(p));
    known && !SET_RETURNING.contains(&base)
}

/// Built-ins known to change state; calling one makes a statement a write. Families matched
/// by prefix are in `WRITE_PREFIXES`.
const KNOWN_WRITE: &[&str] = &[
    "currval",
    "lastval",
    "nextval",
    "pg_current_xact_id",
    "set_config",
    "setseed",
    "setval",
    "txid_current",
];

/// Prefixes of built-in families that change state: advisory locks, large objects.
const WRITE_PREFIXES: &[&str] = &["pg_advisory", "pg_try_advisory", "lo_"];

/// The effect of calling `name` (lowercased, schema-qualified as written) and whether it is a
/// function this module does not know. `read_only` lists extra functions the operator declared
/// safe to run on one node.
pub(crate) fn effect(name: &str, read_only: &[String]) -> (Effect, bool) {
    if read_only.iter().any(|r| r.eq_ignore_ascii_case(name)) {
        return (Effect::Read, false);
    }
    let base = match name.strip_prefix("pg_catalog.") {
        Some(b) => b,
        None if name.contains('.') || name.contains('"') => return (Effect::Write, true),
        None => name,
    };
    if READ_ONLY.binary_search(&base).is_ok() {
        (Effect::Read, false)
    } else if base == "pg_notify" {
        (Effect::MainOnly, false)
    } else if KNOWN_WRITE.contains(&base) || WRITE_PREFIXES.iter().any(|p| base.starts_with(p)) {
        (Effect::Write, false)
    } else {
        (Effect::Write, true)
    }
}

/// A PostgreSQL built-in function (`name` as `object_key` gives it: unqualified, or qualified
/// with `pg_catalog` or, for its helpers, `information_schema`): one that reads and writes no
/// user table, so a call of it says nothing about which shard a statement belongs to. Anything
/// else is a user or extension function, whose body pgproxy cannot see.
pub(crate) fn is_builtin(name: &str) -> bool {
    use super::builtins::{BUILTINS, INFORMATION_SCHEMA, SYNTAX};
    let (schema, base) = match name.rsplit_once('.') {
        Some((s, b)) => (Some(s), b),
        None => (None, name),
    };
    match schema {
        None => {
            BUILTINS.binary_search(&base).is_ok() || SYNTAX.contains(&base) || !effect(base, &[]).1
        }
        Some("pg_catalog") => BUILTINS.binary_search(&base).is_ok() || !effect(base, &[]).1,
        Some("information_schema") => INFORMATION_SCHEMA.contains(&base),
        Some(_) => false,
    }
}
