//! Which colours a command moves between, decided from the recorded active colour and
//! routing.yml, and the refusals when that state is unclear (a switch that did not finish,
//! files that disagree). Pure functions: the commands read the files, these decide.

use anyhow::{Result, bail};

use crate::colour::Colour;
use crate::routing::Weights;

/// What is on disk now.
#[derive(Clone, Debug, Default)]
pub struct OnDisk {
    /// `$WSCTL_STATE_DIR/active`.
    pub recorded: Option<Colour>,
    /// routing.yml.
    pub routing: Option<Weights>,
}

/// The colour a deploy leaves: routing.yml must send it everything, and the active file,
/// if any, must agree.
pub fn deploy_source(disk: &OnDisk, to: &Colour) -> Result<Colour> {
    let Some(routing) = &disk.routing else {
        bail!("there is no routing.yml: write one with `wsctl render-routing --active COLOUR`");
    };
    let Some(serving) = routing.sole_colour() else {
        bail!(
            "routing.yml splits new connections ({routing}): a gradual switch did not finish; \
             `wsctl rollback --to COLOUR` puts everything on one colour first"
        );
    };
    if let Some(recorded) = &disk.recorded
        && recorded != serving
    {
        bail!(
            "routing.yml sends everything to {serving} but the active file says {recorded}; \
             `wsctl rollback --to {serving}` records {serving}"
        );
    }
    if serving == to {
        bail!("{to} is already the active colour");
    }
    Ok(serving.clone())
}

/// `(from, to)` of a rollback. Without `--to`: the other colour after a finished switch,
/// the recorded colour after an unfinished one (the active file changes only once a switch
/// is complete). `others` gives the one other colour of a colour.
pub fn rollback_colours(
    disk: &OnDisk,
    to: Option<&Colour>,
    others: impl Fn(&Colour) -> Result<Colour>,
) -> Result<(Colour, Colour)> {
    let serving = disk.routing.as_ref().and_then(Weights::sole_colour);
    let to = match (to, serving, &disk.recorded) {
        (Some(to), _, _) => to.clone(),
        (None, Some(serving), _) => others(serving)?,
        (None, None, Some(recorded)) => recorded.clone(),
        (None, None, None) => {
            bail!("no routing.yml and no recorded colour: name the colour with --to")
        }
    };
    if serving == Some(&to) && disk.recorded.as_ref() == Some(&to) {
        bail!("{to} is already active and receives every new connection");
    }
    let from = match serving {
        Some(serving) if *serving != to => serving.clone(),
        _ => others(&to)?,
    };
    Ok((from, to))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(name: &str) -> Colour {
        name.parse().unwrap()
    }

    fn disk(recorded: Option<&str>, routing: Option<&str>) -> OnDisk {
        OnDisk {
            recorded: recorded.map(c),
            routing: routing.map(|spec| Weights::parse_spec(spec).unwrap()),
        }
    }

    fn other(colour: &Colour) -> Result<Colour> {
        Ok(c(if colour.as_str() == "blue" {
            "green"
        } else {
            "blue"
        }))
    }

    #[test]
    fn a_deploy_leaves_the_colour_that_serves_everything() {
        assert_eq!(
            deploy_source(&disk(Some("blue"), Some("blue=1")), &c("green")).unwrap(),
            c("blue")
        );
        // A fresh host: the module seeded routing.yml, nothing recorded yet.
        assert_eq!(
            deploy_source(&disk(None, Some("blue=1")), &c("green")).unwrap(),
            c("blue")
        );
    }

    #[test]
    fn a_deploy_refuses_an_unclear_state() {
        let cases = [
            (disk(Some("blue"), None), "no routing.yml"),
            (disk(Some("blue"), Some("blue=1,green=1")), "splits"),
            (
                disk(Some("green"), Some("blue=1")),
                "active file says green",
            ),
            (
                disk(Some("green"), Some("green=1")),
                "already the active colour",
            ),
        ];
        for (state, expected) in cases {
            let err = deploy_source(&state, &c("green")).unwrap_err().to_string();
            assert!(err.contains(expected), "{state:?}: {err}");
        }
    }

    #[test]
    fn a_rollback_after_a_finished_switch_goes_to_the_other_colour() {
        let (from, to) =
            rollback_colours(&disk(Some("green"), Some("green=1")), None, other).unwrap();
        assert_eq!((from, to), (c("green"), c("blue")));
    }

    #[test]
    fn a_rollback_after_an_unfinished_switch_goes_to_the_recorded_colour() {
        let (from, to) =
            rollback_colours(&disk(Some("blue"), Some("blue=1,green=2")), None, other).unwrap();
        assert_eq!((from, to), (c("green"), c("blue")));
    }

    #[test]
    fn a_rollback_can_repair_a_disagreeing_active_file() {
        let state = disk(Some("green"), Some("blue=1"));
        let (from, to) = rollback_colours(&state, Some(&c("blue")), other).unwrap();
        assert_eq!((from, to), (c("green"), c("blue")));
    }

    #[test]
    fn a_rollback_to_the_colour_already_active_is_refused() {
        let err = rollback_colours(&disk(Some("blue"), Some("blue=1")), Some(&c("blue")), other)
            .unwrap_err();
        assert!(err.to_string().contains("already active"), "{err}");
        assert!(rollback_colours(&disk(None, None), None, other).is_err());
    }
}
