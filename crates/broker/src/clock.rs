//! Wall-clock time for the I/O layer.
//!
//! Owns: the one place the broker reads the system clock. The pure crates (meta, chain) take
//! time as an input; the broker passes this in.

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
