//! pool (being written).
