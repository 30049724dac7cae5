//! Registering with the Hub at start. A Hub that cannot be reached (or that fails, or asks the
//! worker to back off) does not end the worker: it tries again after a wait whose ceiling
//! doubles from `[hub] register_backoff_initial_ms` (500 ms) up to `register_backoff_max_ms`
//! (30 s), the wait itself drawn at random below that ceiling ("full jitter": a fleet that
//! lost its Hub does not come back in step). Every failed attempt is logged with the Hub's URL
//! and the cause, and reported to the caller (the daemon turns it into systemd's `STATUS=`).
//! A refusal that only a change of configuration or secrets fixes (a wrong registration
//! secret, a worker id held by another transport key, a bad URL) ends the wait at once.

use std::future::Future;
use std::time::Duration;

use crate::hub_client::{HubCallError, HubClient, Registration};

/// Waits between attempts: capped exponential, full jitter.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    initial: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    /// Ceilings `initial`, `2 x initial`, ... up to `max`.
    pub(crate) fn new(initial: Duration, max: Duration) -> Backoff {
        Backoff {
            initial,
            max: max.max(initial),
            attempt: 0,
        }
    }

    /// The ceiling of the next wait.
    fn ceiling(&self) -> Duration {
        let factor = 1u32.checked_shl(self.attempt).unwrap_or(u32::MAX);
        self.initial.saturating_mul(factor).min(self.max)
    }

    /// The next wait: uniform in `[0, ceiling]`; the ceiling doubles for the one after.
    pub(crate) fn next_wait(&mut self) -> Duration {
        use rand::RngCore;
        let ceiling = u64::try_from(self.ceiling().as_millis()).unwrap_or(u64::MAX);
        self.attempt = self.attempt.saturating_add(1);
        let drawn = rand::rngs::OsRng.next_u64() % ceiling.saturating_add(1);
        Duration::from_millis(drawn)
    }
}

/// One failed attempt, as reported while waiting.
#[derive(Debug)]
pub(crate) struct Waiting<'a> {
    /// Attempts so far (1 after the first failure).
    pub(crate) attempt: u32,
    /// Why the last attempt failed (its message names the Hub's URL and the cause).
    pub(crate) error: &'a HubCallError,
    /// The wait before the next attempt.
    pub(crate) retry_in: Duration,
}

impl Waiting<'_> {
    /// The line for systemd's `STATUS=`.
    pub(crate) fn status_line(&self) -> String {
        format!(
            "waiting for the hub (attempt {}, next in {:.1} s): {}",
            self.attempt,
            self.retry_in.as_secs_f64(),
            self.error
        )
    }
}

/// Connects and registers until it works, or until the Hub refuses in a way waiting cannot
/// fix. `connect` makes a fresh client for each attempt; `waiting` hears of each failure.
/// Cancel by dropping the future (the daemon does on SIGTERM).
pub(crate) async fn register<F, Fut>(
    url: &str,
    mut connect: F,
    mut backoff: Backoff,
    waiting: &(dyn Fn(&Waiting<'_>) + Sync),
) -> Result<(HubClient, Registration), HubCallError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<HubClient, HubCallError>>,
{
    let mut attempt = 0u32;
    loop {
        attempt = attempt.saturating_add(1);
        let result = match connect().await {
            Ok(mut hub) => hub.register().await.map(|r| (hub, r)),
            Err(e) => Err(e),
        };
        match result {
            Ok(done) => {
                if attempt > 1 {
                    tracing::info!(hub = %url, attempts = attempt, "registered with the hub after waiting for it");
                }
                return Ok(done);
            }
            Err(e) if e.is_transient() => {
                let retry_in = backoff.next_wait();
                tracing::warn!(
                    hub = %url,
                    attempt,
                    retry_in_ms = u64::try_from(retry_in.as_millis()).unwrap_or(u64::MAX),
                    reason = %e.code(),
                    "waiting for the hub: {e}"
                );
                waiting(&Waiting {
                    attempt,
                    error: &e,
                    retry_in,
                });
                tokio::time::sleep(retry_in).await;
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceilings_double_up_to_the_cap_and_waits_stay_below_them() {
        let mut b = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
        let mut ceilings = Vec::new();
        for _ in 0..10 {
            let ceiling = b.ceiling();
            ceilings.push(ceiling.as_millis());
            let wait = b.next_wait();
            assert!(wait <= ceiling, "{wait:?} > {ceiling:?}");
        }
        assert_eq!(
            ceilings,
            [
                500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000, 30000
            ]
        );
        // Far along, no overflow: still the cap.
        b.attempt = 1_000;
        assert_eq!(b.ceiling(), Duration::from_secs(30));
        // Jitter: the waits are not all the same.
        let mut b = Backoff::new(Duration::from_secs(30), Duration::from_secs(30));
        let waits: std::collections::HashSet<_> = (0..20).map(|_| b.next_wait()).collect();
        assert!(waits.len() > 1, "{waits:?}");
    }

    #[test]
    fn backoff_settings_default_to_half_a_second_up_to_30_s_and_are_checked() {
        use crate::config::Config;
        let base = "[worker]\nid = \"w\"\nlisten = \"127.0.0.1:0\"\naudience = \"a\"\n\n\
                    [hub]\nurl = \"http://127.0.0.1:1\"\nissuer = \"h\"\n";
        let c = Config::parse(base, &std::collections::HashMap::new()).unwrap();
        assert_eq!(
            (
                c.hub.register_backoff_initial_ms,
                c.hub.register_backoff_max_ms
            ),
            (500, 30_000)
        );
        for (initial, max) in [(0, 10), (100, 50), (1, 3_600_001)] {
            let e = Config::parse(&format!(
                "{base}register_backoff_initial_ms = {initial}\nregister_backoff_max_ms = {max}\n"
            ), &std::collections::HashMap::new())
            .unwrap_err();
            assert!(
                e.0.iter().any(|p| p.starts_with("hub.register_backoff")),
                "{initial}/{max}: {e}"
            );
        }
    }

    #[test]
    fn refusals_that_only_configuration_fixes_end_the_wait() {
        use crate::hub_client::HubReason;
        let refused = |reason: &str, code| HubCallError::Refused {
            url: "http://hub".into(),
            reason: HubReason::parse(reason),
            code,
            message: String::new(),
        };
        let unreachable = HubCallError::Unreachable {
            url: "http://hub".into(),
            cause: "tcp connect error: Connection refused (os error 111)".into(),
        };
        assert!(unreachable.is_transient() && !unreachable.is_config());
        assert!(unreachable.to_string().contains("http://hub"));
        for (reason, code, transient, config) in [
            (
                "bad_registration_secret",
                tonic::Code::Unauthenticated,
                false,
                true,
            ),
            (
                "worker_key_mismatch",
                tonic::Code::Unauthenticated,
                false,
                true,
            ),
            (
                "bad_registration",
                tonic::Code::InvalidArgument,
                false,
                true,
            ),
            (
                "registration_backoff",
                tonic::Code::ResourceExhausted,
                true,
                false,
            ),
            ("hub_store", tonic::Code::Internal, true, false),
            ("hub_error", tonic::Code::Unavailable, true, false),
            ("hub_error", tonic::Code::Unimplemented, false, false),
        ] {
            let e = refused(reason, code);
            assert_eq!(
                (e.is_transient(), e.is_config()),
                (transient, config),
                "{reason}"
            );
        }
    }
}
