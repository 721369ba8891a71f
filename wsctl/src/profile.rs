//! Which build each colour runs. `ws@.service` starts
//! `/var/lib/concurrent-socket/profiles/COLOUR/bin/concurrent-socket`: the colour's profile is
//! a symlink to a package directory (a Nix store path, or a build directory made by
//! systemd/install.sh). A deploy points the new colour's profile at the candidate package
//! before it starts the colour, and a rolled-back deploy points it back, so that a colour
//! that systemd starts again (a crash, a reboot, the operator) runs the build it was deployed
//! with, never merely the newest one installed: rolling back keeps the old code.
//!
//! The candidate of a colour is its entry in `packages` of the configuration (the NixOS
//! module writes each instance's package there), else the `candidate` symlink of the state
//! directory (systemd/install.sh moves it to each build it installs).

use std::collections::BTreeMap;
use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, ensure};

use crate::colour::Colour;
use crate::config::Config;

/// The server binary inside a package.
const SERVER_BINARY: &str = "bin/concurrent-socket";

/// The profile symlinks, one per colour, in `STATE_DIR/profiles`.
pub struct Profiles {
    dir: PathBuf,
}

impl Profiles {
    pub fn in_state_dir(state_dir: &Path) -> Self {
        Profiles {
            dir: state_dir.join("profiles"),
        }
    }

    pub fn path(&self, colour: &Colour) -> PathBuf {
        self.dir.join(colour.as_str())
    }

    /// The package the colour's profile points at; `None` when it has no profile.
    pub fn pinned(&self, colour: &Colour) -> Result<Option<PathBuf>> {
        let path = self.path(colour);
        match fs::read_link(&path) {
            Ok(target) => Ok(Some(target)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("cannot read the profile {}", path.display())),
        }
    }

    /// Point the colour's profile at `package`, atomically (a new symlink renamed over the
    /// old one): systemd sees the old build or the new one, never no profile.
    fn pin(&self, colour: &Colour, package: &Path) -> Result<()> {
        fs::create_dir_all(&self.dir)
            .with_context(|| format!("cannot create {}", self.dir.display()))?;
        let path = self.path(colour);
        let tmp = self
            .dir
            .join(format!(".{colour}.tmp-{}", std::process::id()));
        let _ = fs::remove_file(&tmp);
        symlink(package, &tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
        fs::rename(&tmp, &path).with_context(|| {
            let _ = fs::remove_file(&tmp);
            format!("cannot replace the profile {}", path.display())
        })?;
        fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .with_context(|| format!("cannot fsync {}", self.dir.display()))
    }
}

/// A package: a directory holding an executable `bin/concurrent-socket`. Returned as the real
/// directory (symlinks resolved), so that a profile keeps this build when the link moves on.
pub fn resolve_package(path: &Path) -> Result<PathBuf> {
    let real = fs::canonicalize(path)
        .with_context(|| format!("package {} does not exist", path.display()))?;
    let binary = real.join(SERVER_BINARY);
    let mode = fs::metadata(&binary)
        .with_context(|| format!("package {} has no {SERVER_BINARY}", real.display()))?
        .permissions()
        .mode();
    ensure!(mode & 0o111 != 0, "{} is not executable", binary.display());
    Ok(real)
}

/// A deploy's change to one colour's profile: from `previous` to `package`.
struct Repin {
    colour: Colour,
    profile: PathBuf,
    package: PathBuf,
    previous: Option<PathBuf>,
}

impl Repin {
    fn describe(&self) -> String {
        let (profile, package) = (self.profile.display(), self.package.display());
        match &self.previous {
            Some(old) if *old == self.package => format!("{profile} -> {package} (unchanged)"),
            Some(old) => format!("{profile} -> {package} (was {})", old.display()),
            None => format!("{profile} -> {package} (new)"),
        }
    }

    /// What the rollback does: point it back; nothing when it had no profile before (the
    /// rollback leaves it rather than remove it).
    fn describe_restore(&self) -> Option<String> {
        let previous = self.previous.as_ref()?;
        Some(format!(
            "{} -> {} again",
            self.profile.display(),
            previous.display()
        ))
    }
}

/// The deploy's handling of the new colour's profile: pinned to the candidate before the
/// start, put back by the rollback. `--dry-run` (dry_run.rs) rehearses the same two steps,
/// reading what the real ones would change and changing nothing.
pub struct Pinning {
    profiles: Profiles,
    packages: BTreeMap<Colour, PathBuf>,
    candidate_link: PathBuf,
    repinned: Option<Repin>,
}

impl Pinning {
    pub fn new(config: &Config) -> Self {
        Pinning {
            profiles: Profiles::in_state_dir(&config.state_dir),
            packages: config.packages.clone(),
            candidate_link: config.candidate.clone(),
            repinned: None,
        }
    }

    /// Where the colour's candidate comes from (not resolved).
    fn candidate_source(&self, colour: &Colour) -> &Path {
        self.packages.get(colour).unwrap_or(&self.candidate_link)
    }

    /// The change `pin_candidate` makes, read from the candidate and the profile as they are.
    fn plan(&self, colour: &Colour) -> Result<Repin> {
        let source = self.candidate_source(colour);
        let package = resolve_package(source)
            .with_context(|| format!("{colour}'s candidate package {}", source.display()))?;
        Ok(Repin {
            colour: colour.clone(),
            profile: self.profiles.path(colour),
            previous: self.profiles.pinned(colour)?,
            package,
        })
    }

    /// Point the colour's profile at its candidate package; remembered for `restore`.
    pub fn pin_candidate(&mut self, colour: &Colour) -> Result<String> {
        let repin = self.plan(colour)?;
        self.profiles.pin(colour, &repin.package)?;
        Ok(self.remember(repin))
    }

    /// `pin_candidate` without the pin: what it would do, remembered for `rehearse_restore`.
    pub fn rehearse_pin(&mut self, colour: &Colour) -> Result<String> {
        let repin = self.plan(colour)?;
        Ok(self.remember(repin))
    }

    fn remember(&mut self, repin: Repin) -> String {
        let line = repin.describe();
        self.repinned = Some(repin);
        line
    }

    /// Put back the profile `pin_candidate` replaced; `None` when it changed nothing there.
    pub fn restore(&mut self, colour: &Colour) -> Result<Option<String>> {
        let Some(repin) = self.take_repin(colour) else {
            return Ok(None);
        };
        if let Some(previous) = &repin.previous {
            self.profiles.pin(colour, previous)?;
        }
        Ok(repin.describe_restore())
    }

    /// `restore` without the pin: what it would do after `rehearse_pin`.
    pub fn rehearse_restore(&mut self, colour: &Colour) -> Option<String> {
        self.take_repin(colour)?.describe_restore()
    }

    fn take_repin(&mut self, colour: &Colour) -> Option<Repin> {
        self.repinned.take_if(|r| &r.colour == colour)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Overrides;

    fn package(root: &Path, name: &str) -> PathBuf {
        let dir = root.join(name);
        fs::create_dir_all(dir.join("bin")).unwrap();
        let binary = dir.join(SERVER_BINARY);
        fs::write(&binary, "#!/bin/sh\n").unwrap();
        fs::set_permissions(&binary, fs::Permissions::from_mode(0o755)).unwrap();
        dir
    }

    fn pinning(state: &Path) -> Pinning {
        let config = Config::load(Overrides {
            config: Some(state.join("wsctl.json")),
            state_dir: Some(state.to_owned()),
            ..Overrides::default()
        })
        .unwrap();
        Pinning::new(&config)
    }

    #[test]
    fn a_deploy_pins_the_candidate_and_its_rollback_puts_the_old_build_back() {
        let dir = tempfile::tempdir().unwrap();
        let (old, new) = (package(dir.path(), "old"), package(dir.path(), "new"));
        fs::write(dir.path().join("wsctl.json"), "{}").unwrap();
        let green: Colour = "green".parse().unwrap();
        let mut pins = pinning(dir.path());
        pins.profiles.pin(&green, &old).unwrap();
        symlink(&new, dir.path().join("candidate")).unwrap();

        let line = pins.pin_candidate(&green).unwrap();
        assert!(line.contains("(was "), "{line}");
        assert_eq!(pins.profiles.pinned(&green).unwrap(), Some(new.clone()));
        // The profile names the build itself: moving the candidate link on changes nothing.
        fs::remove_file(dir.path().join("candidate")).unwrap();
        assert!(
            fs::canonicalize(pins.profiles.path(&green))
                .unwrap()
                .ends_with("new")
        );

        assert_eq!(pins.restore(&"blue".parse().unwrap()).unwrap(), None);
        assert!(pins.restore(&green).unwrap().is_some());
        assert_eq!(pins.profiles.pinned(&green).unwrap(), Some(old));
        assert_eq!(pins.restore(&green).unwrap(), None, "restored once only");
    }

    #[test]
    fn a_configured_package_wins_over_the_candidate_link() {
        let dir = tempfile::tempdir().unwrap();
        let store = package(dir.path(), "store-green");
        fs::write(
            dir.path().join("wsctl.json"),
            format!(r#"{{"packages":{{"green":"{}"}}}}"#, store.display()),
        )
        .unwrap();
        let mut pins = pinning(dir.path());
        let green: Colour = "green".parse().unwrap();
        assert!(pins.pin_candidate(&green).unwrap().ends_with("(new)"));
        assert_eq!(pins.profiles.pinned(&green).unwrap(), Some(store));
        // Nothing was pinned before: the rollback leaves the profile rather than remove it.
        assert_eq!(pins.restore(&green).unwrap(), None);
    }

    #[test]
    fn a_candidate_that_is_not_a_package_is_refused_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("wsctl.json"), "{}").unwrap();
        let mut pins = pinning(dir.path());
        let green: Colour = "green".parse().unwrap();
        let err = format!("{:#}", pins.pin_candidate(&green).unwrap_err());
        assert!(
            err.contains("candidate") && err.contains("does not exist"),
            "{err}"
        );

        let empty = dir.path().join("empty");
        fs::create_dir(&empty).unwrap();
        symlink(&empty, dir.path().join("candidate")).unwrap();
        let err = format!("{:#}", pins.pin_candidate(&green).unwrap_err());
        assert!(err.contains("no bin/concurrent-socket"), "{err}");
        assert_eq!(
            pins.profiles.pinned(&green).unwrap(),
            None,
            "nothing pinned"
        );
    }
}
