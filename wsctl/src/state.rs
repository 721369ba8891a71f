//! The active colour recorded on disk (`$WSCTL_STATE_DIR/active`, docs/architecture.md): the
//! colour that receives new connections once a switch is complete. It survives reboots and
//! tells `wsctl` which colour to leave on the next deploy.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::atomic::write_atomically;
use crate::colour::Colour;

pub struct ActiveFile {
    path: PathBuf,
}

impl ActiveFile {
    pub fn in_dir(state_dir: &Path) -> Self {
        ActiveFile {
            path: state_dir.join("active"),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The recorded colour; `None` when nothing was recorded yet.
    pub fn read(&self) -> Result<Option<Colour>> {
        match std::fs::read_to_string(&self.path) {
            Ok(text) => text
                .trim()
                .parse()
                .map(Some)
                .with_context(|| format!("{} does not hold a colour", self.path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", self.path.display())),
        }
    }

    pub fn write(&self, colour: &Colour) -> Result<()> {
        write_atomically(&self.path, format!("{colour}\n").as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_starts_empty() {
        let dir = tempfile::tempdir().unwrap();
        let file = ActiveFile::in_dir(dir.path());
        assert_eq!(file.read().unwrap(), None);
        file.write(&"green".parse().unwrap()).unwrap();
        assert_eq!(std::fs::read_to_string(file.path()).unwrap(), "green\n");
        assert_eq!(file.read().unwrap().unwrap().as_str(), "green");
    }

    #[test]
    fn garbage_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = ActiveFile::in_dir(dir.path());
        std::fs::write(file.path(), "Purple!\n").unwrap();
        let err = format!("{:#}", file.read().unwrap_err());
        assert!(err.contains("active") && err.contains("Purple!"), "{err}");
    }
}
