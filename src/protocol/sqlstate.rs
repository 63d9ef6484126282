//! SQLSTATE codes pgproxy itself raises.
//! <https://www.postgresql.org/docs/current/errcodes-appendix.html>

/// 08000 connection_exception.
pub const CONNECTION_EXCEPTION: &str = "08000";
/// 08006 connection_failure: a backend could not be reached or died.
pub const CONNECTION_FAILURE: &str = "08006";
/// 08P01 protocol_violation.
pub const PROTOCOL_VIOLATION: &str = "08P01";
/// 0A000 feature_not_supported.
pub const FEATURE_NOT_SUPPORTED: &str = "0A000";
/// 28000 invalid_authorization_specification (unknown user, auth method not allowed).
pub const INVALID_AUTHORIZATION: &str = "28000";
/// 28P01 invalid_password.
pub const INVALID_PASSWORD: &str = "28P01";
/// 3D000 invalid_catalog_name (unknown database).
pub const INVALID_CATALOG_NAME: &str = "3D000";
/// 53300 too_many_connections.
pub const TOO_MANY_CONNECTIONS: &str = "53300";
/// 54000 program_limit_exceeded (message too large).
pub const PROGRAM_LIMIT_EXCEEDED: &str = "54000";
/// 57014 query_canceled.
pub const QUERY_CANCELED: &str = "57014";
/// 57P01 admin_shutdown.
pub const ADMIN_SHUTDOWN: &str = "57P01";
/// 57P03 cannot_connect_now.
pub const CANNOT_CONNECT_NOW: &str = "57P03";
/// 58000 system_error.
pub const SYSTEM_ERROR: &str = "58000";
/// XX000 internal_error.
pub const INTERNAL_ERROR: &str = "XX000";
/// 25P02 in_failed_sql_transaction.
pub const IN_FAILED_TRANSACTION: &str = "25P02";
/// 40001 serialization_failure (retryable).
pub const SERIALIZATION_FAILURE: &str = "40001";

/// invalid_parameter_value.
pub const INVALID_PARAMETER_VALUE: &str = "22023";
/// undefined_object (e.g. an unrecognized configuration parameter).
pub const UNDEFINED_OBJECT: &str = "42704";
/// cant_change_runtime_param.
pub const CANT_CHANGE_RUNTIME_PARAM: &str = "55P02";
/// insufficient_privilege.
pub const INSUFFICIENT_PRIVILEGE: &str = "42501";
/// bad_copy_file_format.
pub const BAD_COPY_FILE_FORMAT: &str = "22P04";
/// not_null_violation.
pub const NOT_NULL_VIOLATION: &str = "23502";
/// undefined_column.
pub const UNDEFINED_COLUMN: &str = "42703";

/// `code` as one of the constants above when it is one of those a node gives for a bad
/// setting; invalid_parameter_value otherwise.
pub fn setting_error(code: &str) -> &'static str {
    [
        UNDEFINED_OBJECT,
        CANT_CHANGE_RUNTIME_PARAM,
        INSUFFICIENT_PRIVILEGE,
    ]
    .into_iter()
    .find(|c| *c == code)
    .unwrap_or(INVALID_PARAMETER_VALUE)
}
