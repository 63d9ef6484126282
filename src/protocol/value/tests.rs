//! Table-driven tests for `value`. Every expected result comes from a real PostgreSQL 15.18
//! (Debian 15.18-0+deb12u1; DateStyle ISO, extra_float_digits 1, TimeZone UTC, lc_collate C); the
//! SQL that produced it is in the comment above its row or table.

use super::*;
use std::cmp::Ordering::{Equal, Greater, Less};

/// `compare(oid, a, b)`; each expected value is the result of
/// `select case when 'a'::T < 'b'::T then 'Less' when 'a'::T = 'b'::T then 'Equal' else 'Greater' end`
/// (with E'a\t' for the tab).
#[rustfmt::skip]
const COMPARE: &[(u32, &str, &str, Ordering)] = &[
    (oid::BOOL, "f", "t", Less),
    (oid::BOOL, "t", "t", Equal),
    (oid::INT2, "-32768", "32767", Less),
    (oid::INT2, "5", "5", Equal),
    (oid::INT4, "10", "9", Greater),
    (oid::INT4, "2147483647", "-2147483648", Greater),
    (oid::INT4, "-1", "1", Less),
    (oid::INT8, "-9223372036854775808", "9223372036854775807", Less),
    (oid::INT8, "100", "99", Greater),
    (oid::OID, "4294967295", "1", Greater),
    (oid::OID, "2147483648", "2147483647", Greater),
    (oid::OID, "0", "0", Equal),
    (oid::TEXT, "abc", "abd", Less),
    (oid::TEXT, "B", "a", Less),
    (oid::TEXT, "a", "a ", Less),
    (oid::TEXT, "é", "z", Greater),
    (oid::TEXT, "", "a", Less),
    (oid::TEXT, "abc", "abc", Equal),
    (oid::VARCHAR, "Z", "a", Less),
    (oid::VARCHAR, "ab", "abc", Less),
    (oid::NAME, "pg_class", "pg_Class", Greater),
    (oid::NAME, "t1", "t10", Less),
    (oid::BPCHAR, "ab ", "ab", Equal),
    (oid::BPCHAR, "a b", "a", Greater),
    (oid::BPCHAR, "A", "a", Less),
    (oid::BPCHAR, "", "   ", Equal),
    (oid::BPCHAR, "a\t", "a", Greater),
    (oid::FLOAT4, "NaN", "Infinity", Greater),
    (oid::FLOAT4, "-0", "0", Equal),
    (oid::FLOAT4, "1e-45", "0", Greater),
    (oid::FLOAT4, "3.4028235e+38", "Infinity", Less),
    (oid::FLOAT4, "0.1", "0.10000001", Less),
    (oid::FLOAT4, "0.1", "0.100000001", Equal),
    (oid::FLOAT4, "NaN", "NaN", Equal),
    (oid::FLOAT4, "-Infinity", "-3.4028235e+38", Less),
    (oid::FLOAT8, "NaN", "NaN", Equal),
    (oid::FLOAT8, "NaN", "1e+308", Greater),
    (oid::FLOAT8, "-Infinity", "-1.7976931348623157e+308", Less),
    (oid::FLOAT8, "-0", "0", Equal),
    (oid::FLOAT8, "0.30000000000000004", "0.3", Greater),
    (oid::FLOAT8, "1e+20", "99999999999999990000", Greater),
    (oid::FLOAT8, "5e-324", "0", Greater),
    (oid::FLOAT8, "-1", "-2", Greater),
    (oid::NUMERIC, "NaN", "Infinity", Greater),
    (oid::NUMERIC, "NaN", "NaN", Equal),
    (oid::NUMERIC, "Infinity", "Infinity", Equal),
    (oid::NUMERIC, "-Infinity", "-99999999999999999999", Less),
    (oid::NUMERIC, "1.0", "1.00", Equal),
    (oid::NUMERIC, "-0.001", "0", Less),
    (oid::NUMERIC, "10", "9.99999", Greater),
    (oid::NUMERIC, "-10", "-9.5", Less),
    (oid::NUMERIC, "123456789012345678901234567890.5", "123456789012345678901234567890.49", Greater),
    (oid::NUMERIC, "0.00", "0", Equal),
    (oid::NUMERIC, "-Infinity", "NaN", Less),
    (oid::DATE, "2024-03-01", "2024-02-29", Greater),
    (oid::DATE, "0044-03-15 BC", "0044-03-15", Less),
    (oid::DATE, "0001-01-01 BC", "0001-01-01", Less),
    (oid::DATE, "0002-01-01 BC", "0001-01-01 BC", Less),
    (oid::DATE, "0044-03-15 BC", "0043-03-15 BC", Less),
    (oid::DATE, "infinity", "5874897-12-31", Greater),
    (oid::DATE, "-infinity", "4714-11-24 BC", Less),
    (oid::DATE, "10000-01-01", "9999-12-31", Greater),
    (oid::DATE, "0001-12-31 BC", "0001-01-01", Less),
    (oid::TIMESTAMP, "2024-03-01 10:00:00", "2024-03-01 10:00:00.000001", Less),
    (oid::TIMESTAMP, "2024-03-01 10:00:00.5", "2024-03-01 10:00:00.25", Greater),
    (oid::TIMESTAMP, "0044-03-15 10:00:00 BC", "0043-03-15 10:00:00 BC", Less),
    (oid::TIMESTAMP, "10000-01-01 00:00:00", "9999-12-31 23:59:59.999999", Greater),
    (oid::TIMESTAMP, "infinity", "-infinity", Greater),
    (oid::TIMESTAMP, "294276-12-31 23:59:59.999999", "infinity", Less),
    (oid::TIMESTAMP, "1999-12-31 23:59:59.9", "2000-01-01 00:00:00", Less),
    (oid::TIMESTAMPTZ, "2024-03-01 10:00:00.5+01", "2024-03-01 09:00:00.5+00", Equal),
    (oid::TIMESTAMPTZ, "2024-03-01 14:30:00+05:30", "2024-03-01 09:00:00+00", Equal),
    (oid::TIMESTAMPTZ, "2024-03-01 06:30:00-03:30", "2024-03-01 10:00:00+00", Equal),
    (oid::TIMESTAMPTZ, "1900-01-01 00:19:32+00:19:32", "1900-01-01 00:00:00+00", Equal),
    (oid::TIMESTAMPTZ, "2024-03-01 10:00:00+01", "2024-03-01 10:00:00+00", Less),
    (oid::TIMESTAMPTZ, "2024-03-01 00:30:00+01", "2024-02-29 23:45:00+00", Less),
    (oid::TIMESTAMPTZ, "0044-03-15 10:00:00+00 BC", "0044-03-15 10:19:32+00:19:32 BC", Equal),
    (oid::TIMESTAMPTZ, "infinity", "294276-12-31 23:59:59.999999+00", Greater),
    (oid::TIMESTAMPTZ, "2024-03-01 10:00:00-12", "2024-03-02 09:00:00+11", Equal),
    (oid::TIMESTAMPTZ, "1900-03-01 06:29:08-03:30:52", "1900-03-01 10:00:00+00", Equal),
    (oid::TIMESTAMPTZ, "-infinity", "4714-11-24 00:00:00+00 BC", Less),
    (oid::TIMESTAMPTZ, "2024-03-01 10:00:00.000001+00", "2024-03-01 11:00:00+01", Greater),
    (oid::UUID, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11", Equal),
    (oid::UUID, "{a0eebc99-9c0b4ef8-bb6d6bb9-bd380a11}", "a0eebc999c0b4ef8bb6d6bb9bd380a11", Equal),
    (oid::UUID, "00000000-0000-0000-0000-000000000000", "ffffffff-ffff-ffff-ffff-ffffffffffff", Less),
    (oid::UUID, "80000000-0000-0000-0000-000000000000", "7fffffff-ffff-ffff-ffff-ffffffffffff", Greater),
    (oid::BOOL, "yes", "t", Equal),
    (oid::BOOL, "off", "f", Equal),
    (oid::BOOL, "0", "true", Less),
    (oid::OID, "-1", "4294967295", Equal),
    (oid::FLOAT8, " inf ", "Infinity", Equal),
    (oid::NUMERIC, " 1.5 ", "1.50", Equal),
    (oid::NUMERIC, "1.5e2", "150", Equal),
    (oid::INT8, " +42 ", "42", Equal),
    (oid::FLOAT4, "-INF", "-Infinity", Equal),
    (oid::NUMERIC, "-inf", "-Infinity", Equal),
];

/// `add(oid, a, b)`; the SQL above each row gave the expected text or error.
#[rustfmt::skip]
const ADD: &[(u32, &str, &str, Result<&str, ValueError>)] = &[
    // select '32767'::int2 + '1'::int2
    (oid::INT2, "32767", "1", Err(ValueError::Overflow("smallint"))),
    // select '-100'::int2 + '50'::int2
    (oid::INT2, "-100", "50", Ok("-50")),
    // select '-32768'::int2 + '-1'::int2
    (oid::INT2, "-32768", "-1", Err(ValueError::Overflow("smallint"))),
    // select '2147483647'::int4 + '1'::int4
    (oid::INT4, "2147483647", "1", Err(ValueError::Overflow("integer"))),
    // select '2147483647'::int4 + '-2147483648'::int4
    (oid::INT4, "2147483647", "-2147483648", Ok("-1")),
    // select '-2147483648'::int4 + '-1'::int4
    (oid::INT4, "-2147483648", "-1", Err(ValueError::Overflow("integer"))),
    // select '9223372036854775807'::int8 + '1'::int8
    (oid::INT8, "9223372036854775807", "1", Err(ValueError::Overflow("bigint"))),
    // select '-9223372036854775808'::int8 + '-1'::int8
    (oid::INT8, "-9223372036854775808", "-1", Err(ValueError::Overflow("bigint"))),
    // select '4611686018427387904'::int8 + '4611686018427387903'::int8
    (oid::INT8, "4611686018427387904", "4611686018427387903", Ok("9223372036854775807")),
    // select '0'::int8 + '0'::int8
    (oid::INT8, "0", "0", Ok("0")),
    // select '-5'::int8 + '3'::int8
    (oid::INT8, "-5", "3", Ok("-2")),
    // select '1.50'::numeric + '-2.125'::numeric
    (oid::NUMERIC, "1.50", "-2.125", Ok("-0.625")),
    // select 'NaN'::numeric + 'Infinity'::numeric
    (oid::NUMERIC, "NaN", "Infinity", Ok("NaN")),
    // select 'Infinity'::numeric + '-Infinity'::numeric
    (oid::NUMERIC, "Infinity", "-Infinity", Ok("NaN")),
    // select 'Infinity'::numeric + '1'::numeric
    (oid::NUMERIC, "Infinity", "1", Ok("Infinity")),
    // select '-Infinity'::numeric + '-Infinity'::numeric
    (oid::NUMERIC, "-Infinity", "-Infinity", Ok("-Infinity")),
    // select 'NaN'::numeric + '1.5'::numeric
    (oid::NUMERIC, "NaN", "1.5", Ok("NaN")),
    // select '-Infinity'::numeric + '99'::numeric
    (oid::NUMERIC, "-Infinity", "99", Ok("-Infinity")),
    // select '0.1'::numeric + '0.2'::numeric
    (oid::NUMERIC, "0.1", "0.2", Ok("0.3")),
    // select '1.50'::numeric + '-1.50'::numeric
    (oid::NUMERIC, "1.50", "-1.50", Ok("0.00")),
    // select '99999999999999999999.99'::numeric + '0.01'::numeric
    (oid::NUMERIC, "99999999999999999999.99", "0.01", Ok("100000000000000000000.00")),
    // select '-0.0001'::numeric + '0.00001'::numeric
    (oid::NUMERIC, "-0.0001", "0.00001", Ok("-0.00009")),
    // select '123'::numeric + '0.000'::numeric
    (oid::NUMERIC, "123", "0.000", Ok("123.000")),
    // select '-5'::numeric + '3'::numeric
    (oid::NUMERIC, "-5", "3", Ok("-2")),
    // select '12345678901234567890123456789012345678901234567890'::numeric + '1'::numeric
    (oid::NUMERIC, "12345678901234567890123456789012345678901234567890", "1", Ok("12345678901234567890123456789012345678901234567891")),
    // select '-0.5'::numeric + '0.5'::numeric
    (oid::NUMERIC, "-0.5", "0.5", Ok("0.0")),
    // select '1e3'::numeric + '2.5'::numeric
    (oid::NUMERIC, "1e3", "2.5", Ok("1002.5")),
    // select '-99.999'::numeric + '-0.001'::numeric
    (oid::NUMERIC, "-99.999", "-0.001", Ok("-100.000")),
    // select '0'::numeric + '-0.00'::numeric
    (oid::NUMERIC, "0", "-0.00", Ok("0.00")),
    // select '0.1'::float8 + '0.2'::float8
    (oid::FLOAT8, "0.1", "0.2", Ok("0.30000000000000004")),
    // select '1e+20'::float8 + '1e+20'::float8
    (oid::FLOAT8, "1e+20", "1e+20", Ok("2e+20")),
    // select '1.5e-05'::float8 + '0'::float8
    (oid::FLOAT8, "1.5e-05", "0", Ok("1.5e-05")),
    // select '0.0001'::float8 + '0'::float8
    (oid::FLOAT8, "0.0001", "0", Ok("0.0001")),
    // select '100000000000000'::float8 + '0'::float8
    (oid::FLOAT8, "100000000000000", "0", Ok("100000000000000")),
    // select '500000000000000'::float8 + '500000000000000'::float8
    (oid::FLOAT8, "500000000000000", "500000000000000", Ok("1e+15")),
    // select '123456789012345.6'::float8 + '0'::float8
    (oid::FLOAT8, "123456789012345.6", "0", Ok("123456789012345.6")),
    // select '-0'::float8 + '-0'::float8
    (oid::FLOAT8, "-0", "-0", Ok("-0")),
    // select '-0'::float8 + '0'::float8
    (oid::FLOAT8, "-0", "0", Ok("0")),
    // select 'Infinity'::float8 + '-Infinity'::float8
    (oid::FLOAT8, "Infinity", "-Infinity", Ok("NaN")),
    // select 'Infinity'::float8 + '1'::float8
    (oid::FLOAT8, "Infinity", "1", Ok("Infinity")),
    // select 'NaN'::float8 + '1'::float8
    (oid::FLOAT8, "NaN", "1", Ok("NaN")),
    // select '-Infinity'::float8 + '-1e+308'::float8
    (oid::FLOAT8, "-Infinity", "-1e+308", Ok("-Infinity")),
    // select '1.7976931348623157e+308'::float8 + '1.7976931348623157e+308'::float8
    (oid::FLOAT8, "1.7976931348623157e+308", "1.7976931348623157e+308", Err(ValueError::Overflow("value"))),
    // select '-1e+308'::float8 + '-1e+308'::float8
    (oid::FLOAT8, "-1e+308", "-1e+308", Err(ValueError::Overflow("value"))),
    // select '5e-324'::float8 + '5e-324'::float8
    (oid::FLOAT8, "5e-324", "5e-324", Ok("1e-323")),
    // select '2.9529916222377037e+17'::float8 + '0'::float8
    (oid::FLOAT8, "2.9529916222377037e+17", "0", Ok("2.9529916222377037e+17")),
    // select '-1439635918699115.25'::float8 + '0'::float8
    (oid::FLOAT8, "-1439635918699115.25", "0", Ok("-1.4396359186991152e+15")),
    // select '1e+15'::float8 + '1'::float8
    (oid::FLOAT8, "1e+15", "1", Ok("1.000000000000001e+15")),
    // select '0.1'::float8 + '-0.1'::float8
    (oid::FLOAT8, "0.1", "-0.1", Ok("0")),
    // select '-4.5e-05'::float8 + '0'::float8
    (oid::FLOAT8, "-4.5e-05", "0", Ok("-4.5e-05")),
    // select '2.2250738585072014e-308'::float8 + '0'::float8
    (oid::FLOAT8, "2.2250738585072014e-308", "0", Ok("2.2250738585072014e-308")),
    // select '9007199254740993'::float8 + '0'::float8
    (oid::FLOAT8, "9007199254740993", "0", Ok("9.007199254740992e+15")),
    // select '1e+22'::float8 + '1e+22'::float8
    (oid::FLOAT8, "1e+22", "1e+22", Ok("2e+22")),
    // select '1'::float8 + '2'::float8
    (oid::FLOAT8, "1", "2", Ok("3")),
    // select '0.3'::float8 + '-0.1'::float8
    (oid::FLOAT8, "0.3", "-0.1", Ok("0.19999999999999998")),
    // select '0.1'::float4 + '0.2'::float4
    (oid::FLOAT4, "0.1", "0.2", Ok("0.3")),
    // select '3e+38'::float4 + '3e+38'::float4
    (oid::FLOAT4, "3e+38", "3e+38", Err(ValueError::Overflow("value"))),
    // select '1e-45'::float4 + '1e-45'::float4
    (oid::FLOAT4, "1e-45", "1e-45", Ok("3e-45")),
    // select '123456'::float4 + '1'::float4
    (oid::FLOAT4, "123456", "1", Ok("123457")),
    // select '999999'::float4 + '1'::float4
    (oid::FLOAT4, "999999", "1", Ok("1e+06")),
    // select '1.5'::float4 + '1.5'::float4
    (oid::FLOAT4, "1.5", "1.5", Ok("3")),
    // select '16777216'::float4 + '1'::float4
    (oid::FLOAT4, "16777216", "1", Ok("1.6777216e+07")),
    // select '0.0001'::float4 + '0'::float4
    (oid::FLOAT4, "0.0001", "0", Ok("0.0001")),
    // select '1e-05'::float4 + '0'::float4
    (oid::FLOAT4, "1e-05", "0", Ok("1e-05")),
    // select '-0'::float4 + '-0'::float4
    (oid::FLOAT4, "-0", "-0", Ok("-0")),
    // select 'NaN'::float4 + 'Infinity'::float4
    (oid::FLOAT4, "NaN", "Infinity", Ok("NaN")),
    // select '3.4028235e+38'::float4 + '0'::float4
    (oid::FLOAT4, "3.4028235e+38", "0", Ok("3.4028235e+38")),
    // select '1.17549435e-38'::float4 + '0'::float4
    (oid::FLOAT4, "1.17549435e-38", "0", Ok("1.1754944e-38")),
    // select '0.7'::float4 + '0.1'::float4
    (oid::FLOAT4, "0.7", "0.1", Ok("0.8")),
    // select '100000'::float4 + '-1e-05'::float4
    (oid::FLOAT4, "100000", "-1e-05", Ok("100000")),
];

/// `avg(sum_oid, sum, count)`: a real avg() over `count` rows holding `sum` once and zeros
/// otherwise where that is cheap, else the division numeric_avg / int8_avg / float8_avg end with.
#[rustfmt::skip]
const AVG: &[(u32, &str, i64, Option<&str>)] = &[
    // select avg(x) from (select 1::int8 x where false) t  -- NULL: avg over no rows
    (oid::INT8, "0", 0, None),
    // select avg(x) from (select 1::numeric x where false) t
    (oid::NUMERIC, "0", 0, None),
    // select avg(x) from (select 1::float8 x where false) t
    (oid::FLOAT8, "0", 0, None),
    // select avg(x) from (select case when i = 1 then '3'::int8 else 0 end x from generate_series(1, 2) i) t
    (oid::INT8, "3", 2, Some("1.5000000000000000")),
    // select avg(x) from (select case when i = 1 then '5'::int8 else 0 end x from generate_series(1, 3) i) t
    (oid::INT8, "5", 3, Some("1.6666666666666667")),
    // select avg(x) from (select case when i = 1 then '10'::int8 else 0 end x from generate_series(1, 1) i) t
    (oid::INT8, "10", 1, Some("10.0000000000000000")),
    // select avg(x) from (select case when i = 1 then '0'::int8 else 0 end x from generate_series(1, 5) i) t
    (oid::INT8, "0", 5, Some("0.00000000000000000000")),
    // select avg(x) from (select case when i = 1 then '-7'::int8 else 0 end x from generate_series(1, 2) i) t
    (oid::INT8, "-7", 2, Some("-3.5000000000000000")),
    // select avg(x) from (select case when i = 1 then '-5'::int8 else 0 end x from generate_series(1, 3) i) t
    (oid::INT8, "-5", 3, Some("-1.6666666666666667")),
    // select avg(x) from (select case when i = 1 then '4294967294'::int8 else 0 end x from generate_series(1, 2) i) t
    (oid::INT8, "4294967294", 2, Some("2147483647.00000000")),
    // select avg(x) from (select case when i = 1 then '1'::int8 else 0 end x from generate_series(1, 3) i) t
    (oid::INT8, "1", 3, Some("0.33333333333333333333")),
    // select avg(x) from (select case when i = 1 then '2'::int8 else 0 end x from generate_series(1, 3) i) t
    (oid::INT8, "2", 3, Some("0.66666666666666666667")),
    // select avg(x) from (select case when i = 1 then '1'::int8 else 0 end x from generate_series(1, 10000) i) t
    (oid::INT8, "1", 10000, Some("0.000100000000000000000000")),
    // select avg(x) from (select case when i = 1 then '1'::int8 else 0 end x from generate_series(1, 9999) i) t
    (oid::INT8, "1", 9999, Some("0.00010001000100010001")),
    // select '99999999'::numeric / 100000000::int8::numeric
    (oid::INT8, "99999999", 100000000, Some("0.99999999000000000000")),
    // select avg(x) from (select case when i = 1 then '123456789'::int8 else 0 end x from generate_series(1, 10000) i) t
    (oid::INT8, "123456789", 10000, Some("12345.6789000000000000")),
    // select avg(x) from (select case when i = 1 then '9223372036854775807'::int8 else 0 end x from generate_series(1, 1) i) t
    (oid::INT8, "9223372036854775807", 1, Some("9223372036854775807")),
    // select '9223372036854775807'::numeric / 9223372036854775807::int8::numeric
    (oid::INT8, "9223372036854775807", 9223372036854775807, Some("1.00000000000000000000")),
    // select avg(x) from (select case when i = 1 then '-9223372036854775808'::int8 else 0 end x from generate_series(1, 3) i) t
    (oid::INT8, "-9223372036854775808", 3, Some("-3074457345618258603")),
    // select '1'::numeric / 9223372036854775807::int8::numeric
    (oid::INT8, "1", 9223372036854775807, Some("0.000000000000000000108420217248550443")),
    // select avg(x) from (select case when i = 1 then '5'::int8 else 0 end x from generate_series(1, 2) i) t
    (oid::INT8, "5", 2, Some("2.5000000000000000")),
    // select avg(x) from (select case when i = 1 then '-1'::int8 else 0 end x from generate_series(1, 7) i) t
    (oid::INT8, "-1", 7, Some("-0.14285714285714285714")),
    // select avg(x) from (select case when i = 1 then '100'::int8 else 0 end x from generate_series(1, 3) i) t
    (oid::INT8, "100", 3, Some("33.3333333333333333")),
    // select '123456789012'::numeric / 1000000007::int8::numeric
    (oid::INT8, "123456789012", 1000000007, Some("123.4567881478024830")),
    // select avg(x) from (select case when i = 1 then '9999'::int8 else 0 end x from generate_series(1, 1) i) t
    (oid::INT8, "9999", 1, Some("9999.0000000000000000")),
    // select avg(x) from (select case when i = 1 then '10000'::int8 else 0 end x from generate_series(1, 1) i) t
    (oid::INT8, "10000", 1, Some("10000.0000000000000000")),
    // select avg(x) from (select case when i = 1 then '-10001'::int8 else 0 end x from generate_series(1, 10000) i) t
    (oid::INT8, "-10001", 10000, Some("-1.00010000000000000000")),
    // select avg(x) from (select case when i = 1 then '1.50'::numeric else 0 end x from generate_series(1, 2) i) t
    (oid::NUMERIC, "1.50", 2, Some("0.75000000000000000000")),
    // select avg(x) from (select case when i = 1 then '-2.125'::numeric else 0 end x from generate_series(1, 4) i) t
    (oid::NUMERIC, "-2.125", 4, Some("-0.53125000000000000000")),
    // select avg(x) from (select case when i = 1 then 'NaN'::numeric else 0 end x from generate_series(1, 5) i) t
    (oid::NUMERIC, "NaN", 5, Some("NaN")),
    // select avg(x) from (select case when i = 1 then 'Infinity'::numeric else 0 end x from generate_series(1, 3) i) t
    (oid::NUMERIC, "Infinity", 3, Some("Infinity")),
    // select avg(x) from (select case when i = 1 then '-Infinity'::numeric else 0 end x from generate_series(1, 1) i) t
    (oid::NUMERIC, "-Infinity", 1, Some("-Infinity")),
    // select avg(x) from (select case when i = 1 then '0.000'::numeric else 0 end x from generate_series(1, 3) i) t
    (oid::NUMERIC, "0.000", 3, Some("0.00000000000000000000")),
    // select avg(x) from (select case when i = 1 then '12345678901234567890.5'::numeric else 0 end x from generate_series(1, 2) i) t
    (oid::NUMERIC, "12345678901234567890.5", 2, Some("6172839450617283945.3")),
    // select avg(x) from (select case when i = 1 then '-12345678901234567890.5'::numeric else 0 end x from generate_series(1, 2) i) t
    (oid::NUMERIC, "-12345678901234567890.5", 2, Some("-6172839450617283945.3")),
    // select avg(x) from (select case when i = 1 then '99999999999999999999999999999999999999'::numeric else 0 end x from generate_series(1, 7) i) t
    (oid::NUMERIC, "99999999999999999999999999999999999999", 7, Some("14285714285714285714285714285714285714")),
    // select avg(x) from (select case when i = 1 then '1'::numeric else 0 end x from generate_series(1, 3) i) t
    (oid::NUMERIC, "1", 3, Some("0.33333333333333333333")),
    // select avg(x) from (select case when i = 1 then '0.0000000001'::numeric else 0 end x from generate_series(1, 3) i) t
    (oid::NUMERIC, "0.0000000001", 3, Some("0.0000000000333333333333333333")),
    // select avg(x) from (select case when i = 1 then '184467440737095516150'::numeric else 0 end x from generate_series(1, 20) i) t
    (oid::NUMERIC, "184467440737095516150", 20, Some("9223372036854775808")),
    // select '123.456'::numeric / 1000000000000::int8::numeric
    (oid::NUMERIC, "123.456", 1000000000000, Some("0.0000000001234560000000000000")),
    // select avg(x) from (select case when i = 1 then '-0.00000000000000000001'::numeric else 0 end x from generate_series(1, 3) i) t
    (oid::NUMERIC, "-0.00000000000000000001", 3, Some("-0.0000000000000000000033333333333333333333")),
    // select '170141183460469231731687303715884105727'::numeric / 9223372036854775807::int8::numeric
    (oid::NUMERIC, "170141183460469231731687303715884105727", 9223372036854775807, Some("18446744073709551618")),
    // select avg(x) from (select case when i = 1 then '2.5'::numeric else 0 end x from generate_series(1, 1) i) t
    (oid::NUMERIC, "2.5", 1, Some("2.5000000000000000")),
    // select avg(x) from (select case when i = 1 then '0.05'::numeric else 0 end x from generate_series(1, 1) i) t
    (oid::NUMERIC, "0.05", 1, Some("0.05000000000000000000")),
    // select avg(x) from (select case when i = 1 then '-1.999999999999999999999999999999'::numeric else 0 end x from generate_series(1, 3) i) t
    (oid::NUMERIC, "-1.999999999999999999999999999999", 3, Some("-0.666666666666666666666666666666")),
    // select avg(x) from (select case when i = 1 then '3'::float8 else 0 end x from generate_series(1, 2) i) t
    (oid::FLOAT8, "3", 2, Some("1.5")),
    // select avg(x) from (select case when i = 1 then '1'::float8 else 0 end x from generate_series(1, 3) i) t
    (oid::FLOAT8, "1", 3, Some("0.3333333333333333")),
    // select avg(x) from (select case when i = 1 then '-0'::float8 else 0 end x from generate_series(1, 1) i) t
    (oid::FLOAT8, "-0", 1, Some("0")),
    // select avg(x) from (select case when i = 1 then '-0'::float8 else 0 end x from generate_series(1, 4) i) t
    (oid::FLOAT8, "-0", 4, Some("0")),
    // select avg(x) from (select case when i = 1 then 'Infinity'::float8 else 0 end x from generate_series(1, 2) i) t
    (oid::FLOAT8, "Infinity", 2, Some("Infinity")),
    // select avg(x) from (select case when i = 1 then 'NaN'::float8 else 0 end x from generate_series(1, 1) i) t
    (oid::FLOAT8, "NaN", 1, Some("NaN")),
    // select avg(x) from (select case when i = 1 then '-Infinity'::float8 else 0 end x from generate_series(1, 3) i) t
    (oid::FLOAT8, "-Infinity", 3, Some("-Infinity")),
    // select avg(x) from (select case when i = 1 then '1e+150'::float8 else 0 end x from generate_series(1, 2) i) t
    (oid::FLOAT8, "1e+150", 2, Some("5e+149")),
    // select avg(x) from (select case when i = 1 then '0.30000000000000004'::float8 else 0 end x from generate_series(1, 3) i) t
    (oid::FLOAT8, "0.30000000000000004", 3, Some("0.10000000000000002")),
    // select avg(x) from (select case when i = 1 then '-3.3111626130079652e+16'::float8 else 0 end x from generate_series(1, 23) i) t
    (oid::FLOAT8, "-3.3111626130079652e+16", 23, Some("-1.4396359186991152e+15")),
    // select avg(x) from (select case when i = 1 then '1.1811966488950815e+18'::float8 else 0 end x from generate_series(1, 4) i) t
    (oid::FLOAT8, "1.1811966488950815e+18", 4, Some("2.9529916222377037e+17")),
    // select avg(x) from (select case when i = 1 then '10'::float8 else 0 end x from generate_series(1, 4) i) t
    (oid::FLOAT8, "10", 4, Some("2.5")),
    // select avg(x) from (select case when i = 1 then '1e-300'::float8 else 0 end x from generate_series(1, 1000000) i) t
    (oid::FLOAT8, "1e-300", 1000000, Some("1e-306")),
    // select '123456.789'::float8 / 1000000000000::float8
    (oid::FLOAT8, "123456.789", 1000000000000, Some("1.23456789e-07")),
    // select avg(x) from (select case when i = 1 then '5e-324'::float8 else 0 end x from generate_series(1, 2) i) t
    (oid::FLOAT8, "5e-324", 2, Some("0")),
];

#[test]
fn compare_matches_postgres() {
    for &(type_oid, a, b, want) in COMPARE {
        let got = compare(type_oid, a.as_bytes(), b.as_bytes());
        assert_eq!(got, Some(want), "compare({type_oid}, {a:?}, {b:?})");
        let back = compare(type_oid, b.as_bytes(), a.as_bytes());
        assert_eq!(
            back,
            Some(want.reverse()),
            "compare({type_oid}, {b:?}, {a:?})"
        );
    }
}

#[test]
fn add_matches_postgres() {
    for (type_oid, a, b, want) in ADD {
        let want = want.as_ref().map(|s| s.as_bytes());
        let got = add(*type_oid, a.as_bytes(), b.as_bytes());
        assert_eq!(got.as_deref(), want, "add({type_oid}, {a:?}, {b:?})");
        let swapped = add(*type_oid, b.as_bytes(), a.as_bytes());
        assert_eq!(swapped.as_deref(), want, "add({type_oid}, {b:?}, {a:?})");
    }
}

#[test]
fn avg_matches_postgres() {
    for &(sum_oid, sum, count, want) in AVG {
        let got = avg(sum_oid, sum.as_bytes(), count);
        let want = want.map(|s| s.as_bytes().to_vec());
        assert_eq!(got, Ok(want), "avg({sum_oid}, {sum:?}, {count})");
    }
}

/// Partial results from two shards merged the way pgproxy does it, against one server's answer.
#[test]
fn merged_partials_match_one_server() {
    let text = |r: Result<Vec<u8>, ValueError>| String::from_utf8(r.expect("merge")).expect("utf8");
    // select avg(x), sum(x), count(x) from (values (1),(2),(2)) t(x)  -> 1.6666666666666667 | 5 | 3
    // shard 1 holds (1), shard 2 holds (2),(2)
    let sum = text(add(oid::INT8, b"1", b"4"));
    let count: i64 = text(add(oid::INT8, b"1", b"2")).parse().expect("count");
    assert_eq!((sum.as_str(), count), ("5", 3));
    let avg8 = avg(oid::INT8, sum.as_bytes(), count).expect("avg");
    assert_eq!(avg8.as_deref(), Some(&b"1.6666666666666667"[..]));
    // select avg(x), sum(x) from (values (1.5),(-2.25),(3.125)) t(x)  -> 0.79166666666666666667 | 2.375
    let sum = text(add(oid::NUMERIC, b"1.5", b"0.875"));
    assert_eq!(sum, "2.375");
    let avgn = avg(oid::NUMERIC, sum.as_bytes(), 3).expect("avg");
    assert_eq!(avgn.as_deref(), Some(&b"0.79166666666666666667"[..]));
    // select avg(x), sum(x) from (values (0.1::float8),(0.2::float8),(0.3::float8)) t(x)
    //   -> 0.20000000000000004 | 0.6000000000000001
    let sum = text(add(oid::FLOAT8, b"0.30000000000000004", b"0.3"));
    assert_eq!(sum, "0.6000000000000001");
    let avgf = avg(oid::FLOAT8, sum.as_bytes(), 3).expect("avg");
    assert_eq!(avgf.as_deref(), Some(&b"0.20000000000000004"[..]));
    // select avg(x), sum(x) from (values (9223372036854775807::int8),
    //   (9223372036854775807::int8),(1::int8)) t(x)  -> 6148914691236517205 | 18446744073709551615
    // (sum(int8) is numeric)
    let sum = text(add(oid::NUMERIC, b"18446744073709551614", b"1"));
    assert_eq!(sum, "18446744073709551615");
    let avgi = avg(oid::NUMERIC, sum.as_bytes(), 3).expect("avg");
    assert_eq!(avgi.as_deref(), Some(&b"6148914691236517205"[..]));
}

#[test]
fn numeric_overflow_at_the_storage_limit() {
    // select repeat('9',131072)::numeric + 0   -> ok (131072 digits)
    // select repeat('9',131072)::numeric + 1   -> ERROR 22003 value overflows numeric format
    let nines = "9".repeat(131_072);
    let same = add(oid::NUMERIC, nines.as_bytes(), b"0").expect("fits");
    assert_eq!(same, nines.as_bytes());
    let err = add(oid::NUMERIC, nines.as_bytes(), b"1").expect_err("overflows");
    assert_eq!(err, ValueError::Overflow("numeric"));
    assert_eq!(err.sqlstate(), "22003");
}

/// Text PostgreSQL refuses (the SQL in the comment fails with 22008 / 22003 / 22P02), layouts
/// other than the ISO output pgproxy relies on, and types this module does not know: no order.
#[test]
fn compare_refuses_what_it_cannot_order() {
    let cases: &[(u32, &str)] = &[
        // select '2023-02-29'::date
        (oid::DATE, "2023-02-29"),
        // select '0000-01-01'::date
        (oid::DATE, "0000-01-01"),
        // DateStyle SQL / German / Postgres output
        (oid::DATE, "03/01/2024"),
        (oid::TIMESTAMP, "2024-03-01T10:00:00"),
        // timestamptz output always carries the offset
        (oid::TIMESTAMPTZ, "2024-03-01 10:00:00"),
        (oid::TIMESTAMPTZ, "Fri Mar 01 10:00:00 2024 UTC"),
        // select '1e400'::float8, '1e-400'::float8, '1e39'::float4, '1e-50'::float4
        (oid::FLOAT8, "1e400"),
        (oid::FLOAT8, "1e-400"),
        (oid::FLOAT4, "1e39"),
        (oid::FLOAT4, "1e-50"),
        // select 'maybe'::bool
        (oid::BOOL, "maybe"),
        // select 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1'::uuid
        (oid::UUID, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1"),
        (oid::UUID, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11-"),
        // select '1.2.3'::numeric, 'abc'::int4, '99999'::int2
        (oid::NUMERIC, "1.2.3"),
        (oid::INT4, "abc"),
        (oid::INT2, "99999"),
        // select '4294967296'::oid, '-2147483649'::oid
        (oid::OID, "4294967296"),
        (oid::OID, "-2147483649"),
    ];
    for &(type_oid, bad) in cases {
        assert_eq!(
            compare(type_oid, bad.as_bytes(), b"0"),
            None,
            "{type_oid} {bad:?}"
        );
        assert_eq!(
            compare(type_oid, b"0", bad.as_bytes()),
            None,
            "{type_oid} {bad:?}"
        );
    }
    // bytea, json, interval, jsonb
    for unknown in [17, 114, 1186, 3802] {
        assert!(!is_orderable(unknown));
        assert_eq!(compare(unknown, b"a", b"b"), None);
    }
}

#[test]
fn every_listed_type_is_orderable() {
    use oid::*;
    let all = [
        BOOL,
        INT8,
        INT2,
        INT4,
        TEXT,
        OID,
        FLOAT4,
        FLOAT8,
        BPCHAR,
        VARCHAR,
        NAME,
        DATE,
        TIMESTAMP,
        TIMESTAMPTZ,
        NUMERIC,
        UUID,
    ];
    for type_oid in all {
        assert!(is_orderable(type_oid), "{type_oid}");
    }
}

#[test]
fn add_and_avg_refuse_what_they_cannot_merge() {
    let unsupported = ValueError::Unsupported;
    assert_eq!(add(oid::TEXT, b"a", b"b"), Err(unsupported(oid::TEXT)));
    assert_eq!(
        add(oid::DATE, b"2024-01-01", b"2024-01-01"),
        Err(unsupported(oid::DATE))
    );
    assert_eq!(
        add(oid::INT4, b"x", b"1"),
        Err(ValueError::Invalid(oid::INT4))
    );
    assert_eq!(
        add(oid::INT8, b"1", b"1.5"),
        Err(ValueError::Invalid(oid::INT8))
    );
    assert_eq!(
        add(oid::NUMERIC, b"1", b"1.2.3"),
        Err(ValueError::Invalid(oid::NUMERIC))
    );
    assert_eq!(
        add(oid::FLOAT8, b"1e400", b"1"),
        Err(ValueError::Invalid(oid::FLOAT8))
    );
    // avg(real) accumulates in float8: a float4 sum has already lost precision.
    assert_eq!(avg(oid::FLOAT4, b"1", 1), Err(unsupported(oid::FLOAT4)));
    assert_eq!(avg(oid::TEXT, b"1", 1), Err(unsupported(oid::TEXT)));
    assert_eq!(
        avg(oid::INT8, b"1", -1),
        Err(ValueError::Invalid(oid::INT8))
    );
    assert_eq!(
        avg(oid::NUMERIC, b"abc", 1),
        Err(ValueError::Invalid(oid::NUMERIC))
    );
    assert_eq!(
        avg(oid::INT8, b"1.5", 1),
        Err(ValueError::Invalid(oid::INT8))
    );
}

#[test]
fn errors_carry_sqlstate_and_text() {
    let cases = [
        (
            ValueError::Overflow("bigint"),
            "22003",
            "bigint out of range",
        ),
        (
            ValueError::Unsupported(1186),
            "0A000",
            "cannot merge values of type 1186",
        ),
        (
            ValueError::Invalid(23),
            "22P02",
            "invalid value for type 23",
        ),
    ];
    for (err, state, text) in cases {
        assert_eq!(err.sqlstate(), state);
        assert_eq!(crate::protocol::ClientError::sqlstate(&err), state);
        assert_eq!(err.to_string(), text);
    }
}
