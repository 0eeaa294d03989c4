//! The wall clock: the one place the process reads the time of day. The state machine never
//! calls it while applying (time comes from the log entry); the leader stamps proposals with it
//! and readers hide keys past their deadline by it.

/// Wall-clock time in ms since the epoch.
pub fn wall_clock_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
