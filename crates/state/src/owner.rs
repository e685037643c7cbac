//! Which process owns a run: a lease, not a hostname.
//!
//! A run holds a [`Lease`] on its sync for as long as it is in progress: an
//! exclusive OS file lock (`flock`, through `std::fs::File::try_lock`) on
//! `<state dir>/locks/<sync>.lock`. The kernel releases the lock when the
//! process exits, however it exits (SIGKILL, a panic, the machine's OOM
//! killer), so a rerun right after a crash finds the lock free and proceeds
//! at once, and a `running` row whose lock is free is known to be stale.
//! Nothing depends on host names, pids or clocks.
//!
//! Locks taken through different open files conflict even within one
//! process, so two runs of one sync are refused in the same process too.
//!
//! The owner string (`host:pid:start`) is kept for people: it is recorded
//! with the run and written into the lock file, so an error can say who
//! holds a sync.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long [`Lease::acquire`] keeps trying a lock that is busy: long
/// enough to ride out another process briefly probing it
/// ([`Lease::is_free`]), far too short to wait for a run.
const ACQUIRE_PATIENCE: Duration = Duration::from_millis(250);

/// A run's exclusive hold on its sync; released when dropped, or by the
/// kernel when the process dies.
#[derive(Debug)]
pub struct Lease {
    file: File,
    path: PathBuf,
}

/// What stands in the way of a lease.
#[derive(Debug)]
pub enum LeaseError {
    /// Another run holds it; the text is the owner written in the lock file.
    Held {
        holder: String,
        path: PathBuf,
    },
    Io(io::Error, PathBuf),
}

impl Lease {
    /// Takes the lease on `sync` in the state directory `dir`, or says who
    /// holds it. `owner` is written into the lock file.
    pub fn acquire(dir: &Path, sync: &str, owner: &str) -> Result<Lease, LeaseError> {
        let path = lock_path(dir, sync);
        let mut file = open(&path).map_err(|e| LeaseError::Io(e, path.clone()))?;
        let deadline = Instant::now() + ACQUIRE_PATIENCE;
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(TryLockError::WouldBlock) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(TryLockError::WouldBlock) => {
                    let mut holder = String::new();
                    let _ = file.read_to_string(&mut holder);
                    return Err(LeaseError::Held {
                        holder: holder.trim().to_owned(),
                        path,
                    });
                }
                Err(TryLockError::Error(e)) => return Err(LeaseError::Io(e, path)),
            }
        }
        // Who holds it, for the error another process will show.
        let written = file
            .set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| file.write_all(owner.as_bytes()))
            .and_then(|()| file.flush());
        written.map_err(|e| LeaseError::Io(e, path.clone()))?;
        Ok(Lease { file, path })
    }

    /// Whether no process holds the lease on `sync` (it is taken and let go
    /// at once to find out).
    pub fn is_free(dir: &Path, sync: &str) -> io::Result<bool> {
        let path = lock_path(dir, sync);
        if !path.exists() {
            return Ok(true);
        }
        let file = open(&path)?;
        match file.try_lock() {
            Ok(()) => Ok(true),
            Err(TryLockError::WouldBlock) => Ok(false),
            Err(TryLockError::Error(e)) => Err(e),
        }
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        // Closing the file releases the lock as well; unlocking first makes
        // the release independent of any other handle to the file.
        let _ = self.file.unlock();
    }
}

fn open(path: &Path) -> io::Result<File> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)?;
    }
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
}

/// `<dir>/locks/<sync>.lock`; a name that is not a plain file name (sync
/// names from the project file always are) is hex-encoded.
pub fn lock_path(dir: &Path, sync: &str) -> PathBuf {
    let plain = !sync.is_empty()
        && !sync.starts_with('.')
        && sync
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c));
    let name = if plain {
        sync.to_owned()
    } else {
        format!("x-{}", hex::encode(sync))
    };
    dir.join("locks").join(format!("{name}.lock"))
}

/// The owner string of the current process: `host:pid:start`, for people.
pub fn current_owner() -> String {
    let pid = std::process::id();
    format!("{}:{pid}:{}", host_name(), start_time(pid).unwrap_or(0))
}

fn host_name() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

/// Field 22 of `/proc/PID/stat`: the process start time, which tells a
/// recycled pid from the process that took the lease.
fn start_time(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_excludes_others_until_dropped() {
        let dir = tempfile::tempdir().unwrap();
        assert!(Lease::is_free(dir.path(), "users").unwrap());
        let lease = Lease::acquire(dir.path(), "users", "me:1:2").unwrap();
        assert!(!Lease::is_free(dir.path(), "users").unwrap());
        match Lease::acquire(dir.path(), "users", "you:3:4") {
            Err(LeaseError::Held { holder, .. }) => assert_eq!(holder, "me:1:2"),
            other => panic!("{other:?}"),
        }
        // Another sync is independent.
        let _orders = Lease::acquire(dir.path(), "orders", "me:1:2").unwrap();
        drop(lease);
        assert!(Lease::is_free(dir.path(), "users").unwrap());
        Lease::acquire(dir.path(), "users", "you:3:4").unwrap();
    }

    #[test]
    fn odd_names_stay_inside_the_lock_folder() {
        let dir = Path::new("/state");
        assert_eq!(
            lock_path(dir, "users_1.v2"),
            dir.join("locks/users_1.v2.lock")
        );
        let odd = lock_path(dir, "../x");
        assert_eq!(odd.parent().unwrap(), dir.join("locks"));
        assert!(odd.ends_with("x-2e2e2f78.lock"), "{odd:?}");
    }
}
