//! SIGHUP: what a new configuration changes at once, and what needs a restart.

use std::sync::Arc;

use super::Worker;
use crate::config::Config;

impl Worker {
    /// Applies a new configuration (SIGHUP). `[limits]` and the `[cache]` TTLs take effect
    /// for the next run; sections that shape the process (worker identity, capacity, listen
    /// address, hub, TLS, secrets, token policy, sandbox, metrics) need a restart: they are
    /// kept, and the returned notes name them. The key set is reloaded separately.
    pub(crate) fn reload(&self, new: Config) -> Vec<String> {
        let old = self.config();
        let mut notes = Vec::new();
        let mut applied = (*old).clone();
        applied.limits = new.limits.clone();
        applied.cache.ttl_secs = new.cache.ttl_secs;
        applied.cache.connection_ttl_secs = new.cache.connection_ttl_secs.clone();
        let differs =
            |a: &dyn std::fmt::Debug, b: &dyn std::fmt::Debug| format!("{a:?}") != format!("{b:?}");
        for (name, changed) in [
            ("[worker]", differs(&old.worker, &new.worker)),
            ("[hub]", differs(&old.hub, &new.hub)),
            ("[secrets]", differs(&old.secrets, &new.secrets)),
            ("[tokens]", differs(&old.tokens, &new.tokens)),
            ("[tls]", differs(&old.tls, &new.tls)),
            ("[sandbox]", differs(&old.sandbox, &new.sandbox)),
            ("[metrics]", differs(&old.metrics, &new.metrics)),
            ("[ai]", differs(&old.ai, &new.ai)),
            ("[audit]", differs(&old.audit, &new.audit)),
            (
                "cache.max_bytes",
                old.cache.max_bytes != new.cache.max_bytes,
            ),
            (
                "cache.max_entry_bytes",
                old.cache.entry_bytes() != new.cache.entry_bytes(),
            ),
        ] {
            if changed {
                notes.push(format!("{name} changed: restart the worker to apply it"));
            }
        }
        if let Ok(mut c) = self.config.write() {
            *c = Arc::new(applied);
        }
        notes
    }
}
