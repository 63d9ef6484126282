//! Server-side SCRAM-SHA-256 (stub; being written).
