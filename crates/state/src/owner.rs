//! Which process owns a run, and whether that process is still alive.
//!
//! An owner is `host:pid:start`, where `start` is the process start time in
//! clock ticks since boot (from `/proc/PID/stat`), so a recycled pid is not
//! mistaken for the process that started the run. Runs owned by another host
//! are never judged dead here: with the embedded store one machine works on
//! one state directory, and the PostgreSQL store will use heartbeats.

use std::fs;

/// The owner string of the current process.
pub fn current_owner() -> String {
    let pid = std::process::id();
    format!("{}:{pid}:{}", host_name(), start_time(pid).unwrap_or(0))
}

/// Whether the process named by `owner` (from [`current_owner`]) may still
/// be running.
pub fn owner_alive(owner: &str) -> bool {
    let mut parts = owner.rsplitn(3, ':');
    let (Some(start), Some(pid), Some(host)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    if host != host_name() {
        return true;
    }
    let (Ok(pid), Ok(start)) = (pid.parse::<u32>(), start.parse::<u64>()) else {
        return false;
    };
    match start_time(pid) {
        Some(now) => now == start,
        // No such process, or no /proc to ask: the run's process is gone
        // (embedded mode assumes one host per state directory).
        None => false,
    }
}

fn host_name() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

/// Field 22 of `/proc/PID/stat`. The command name (field 2) is in
/// parentheses and may hold spaces, so fields are counted after the last `)`.
fn start_time(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive() {
        assert!(owner_alive(&current_owner()));
    }

    #[test]
    fn a_finished_child_is_dead() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        let owner = format!("{}:{pid}:{}", host_name(), start_time(pid).unwrap_or(1));
        child.wait().unwrap();
        assert!(!owner_alive(&owner));
    }

    #[test]
    fn other_hosts_and_garbage() {
        assert!(owner_alive("some-other-host:1:1"));
        assert!(!owner_alive("garbage"));
        let pid = std::process::id();
        assert!(!owner_alive(&format!("{}:{pid}:12345678901", host_name())));
    }
}
