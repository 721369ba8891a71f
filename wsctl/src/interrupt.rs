//! Ctrl-C, SIGTERM and SIGHUP (a lost SSH session) during a deploy: the first one makes the
//! next step fail, so that the deploy rolls back as for any failure instead of stopping
//! half-switched; a second one ends wsctl at once (exit 130).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result, bail};
use signal_hook::consts::signal::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::flag;

#[derive(Clone, Default)]
pub struct Interrupt(Arc<AtomicBool>);

impl Interrupt {
    /// Catch the signals from now on.
    pub fn install() -> Result<Self> {
        let interrupt = Interrupt::default();
        for signal in [SIGINT, SIGTERM, SIGHUP] {
            // The shutdown first: it acts only once the flag is already set, on a second signal.
            flag::register_conditional_shutdown(signal, 130, Arc::clone(&interrupt.0))
                .and_then(|_| flag::register(signal, Arc::clone(&interrupt.0)))
                .with_context(|| format!("cannot handle signal {signal}"))?;
        }
        Ok(interrupt)
    }

    /// An error once a signal came.
    pub fn check(&self) -> Result<()> {
        if self.0.load(Ordering::SeqCst) {
            bail!("interrupted by a signal");
        }
        Ok(())
    }

    #[cfg(test)]
    pub fn raise(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
}
