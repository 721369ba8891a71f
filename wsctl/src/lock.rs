//! The lock against concurrent deploys: an exclusive `flock` on `$WSCTL_STATE_DIR/deploy.lock`,
//! held for the whole command. The kernel releases it when the process ends, however it
//! ends, so a killed deploy never leaves a stale lock. The holder writes who it is into the
//! file, so that a refused operator learns which deploy is running.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use thiserror::Error;

/// Held while alive; dropping it (or exiting) releases the lock.
#[derive(Debug)]
pub struct DeployLock {
    _file: File,
}

#[derive(Debug, Error)]
pub enum LockError {
    #[error("another deploy holds {path} ({holder}); wait for it to finish")]
    Held { path: PathBuf, holder: String },
    #[error(transparent)]
    Io(#[from] anyhow::Error),
}

impl DeployLock {
    /// Take the lock without waiting; `what` (for example `deploy --to green`) is recorded
    /// for whoever is refused.
    pub fn acquire(state_dir: &Path, what: &str) -> Result<Self, LockError> {
        let path = state_dir.join("deploy.lock");
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = match holder.trim() {
                    "" => "holder unknown".to_owned(),
                    h => h.to_owned(),
                };
                return Err(LockError::Held { path, holder });
            }
            Err(TryLockError::Error(e)) => {
                return Err(anyhow::Error::from(e)
                    .context(format!("cannot lock {}", path.display()))
                    .into());
            }
        }
        let record = format!(
            "pid {} running `wsctl {what}` since {}",
            std::process::id(),
            now_rfc3339()
        );
        file.set_len(0)
            .and_then(|()| file.seek(SeekFrom::Start(0)))
            .and_then(|_| file.write_all(record.as_bytes()))
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(DeployLock { _file: file })
    }
}

fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_with_the_first_ones_identity() {
        let dir = tempfile::tempdir().unwrap();
        let first = DeployLock::acquire(dir.path(), "deploy --to green").unwrap();
        // flock locks belong to the open file description: a second open in the same
        // process conflicts exactly as a second process would.
        match DeployLock::acquire(dir.path(), "deploy --to blue") {
            Err(LockError::Held { holder, .. }) => {
                assert!(holder.contains("deploy --to green"), "{holder}");
                assert!(holder.contains(&std::process::id().to_string()), "{holder}");
            }
            other => panic!("second lock not refused: {other:?}"),
        }
        drop(first);
        DeployLock::acquire(dir.path(), "deploy --to blue").unwrap();
    }

    #[test]
    fn a_missing_state_directory_is_an_io_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = DeployLock::acquire(&dir.path().join("absent"), "status").unwrap_err();
        assert!(matches!(err, LockError::Io(_)), "{err:?}");
    }
}
