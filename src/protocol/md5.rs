//! MD5 password hashing (stub; being written).
