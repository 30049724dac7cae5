//! `hubworker serve`: the daemon's life, under systemd or not.
//!
//! * Start: load the config (for slot `--instance N`), start the server, register with the
//!   Hub; only then `READY=1` (systemd `Type=notify`). While the Hub cannot be reached the
//!   daemon waits for it (`register.rs`: backoff with jitter), says so in `STATUS=` (with the
//!   Hub's URL and the cause), keeps feeding the watchdog, and exits 0 on SIGTERM.
//! * Watchdog: when systemd asks for one (`WatchdogSec=`), a tick at half the interval checks
//!   that the gRPC server task is alive and that the runtime's blocking pool answers within a
//!   second, and only then sends `WATCHDOG=1`. A hung worker stops pinging and is restarted.
//! * `STATUS=` says how many runs are in flight, or that the worker drains.
//! * SIGHUP: `RELOADING=1`, reload the config (an invalid one is logged and the old one kept)
//!   and the token key set (the secrets directory's `token-keys.jwks`, else the Hub's current
//!   set by registering again); runs in flight are untouched; then `READY=1`.
//! * SIGTERM / SIGINT: `STOPPING=1`, drain (no new runs, health NOT_SERVING for `""` and the
//!   Worker service, runs in flight get `drain_grace_secs`, then the rest are cancelled),
//!   deregister from the Hub, end the health `Watch` streams, close what is still open within
//!   `server::STOP_DEADLINE`, exit 0.

use std::path::Path;
use std::time::Duration;

use sd_notify::NotifyState;
use tokio::signal::unix::{SignalKind, signal};

use super::server::Running;
use crate::config::Config;
use crate::error::Error;

/// Tells systemd (when `NOTIFY_SOCKET` is set; a no-op otherwise).
fn notify(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "sd_notify failed");
    }
}

fn status_line(running: &Running) -> String {
    let w = &running.worker;
    let capacity = w.config().worker.capacity;
    if w.draining() {
        format!("draining: {} run(s) in flight", w.in_flight())
    } else {
        format!("serving: {}/{capacity} runs in flight", w.in_flight())
    }
}

/// Runs the daemon until SIGTERM or SIGINT; exit code 0 after a clean drain.
pub(crate) fn serve(config_path: &Path, instance: Option<u32>) -> Result<u8, Error> {
    let config =
        Config::load_instance(config_path, instance).map_err(|e| Error::Config(e.to_string()))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let served = rt.block_on(async {
        // Handlers first: a signal during start-up is then handled, not fatal.
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let mut hup = signal(SignalKind::hangup())?;
        let watchdog = sd_notify::watchdog_enabled();
        let mut watchdog_tick =
            tokio::time::interval(watchdog.map_or(Duration::from_secs(3600), |d| d / 2));
        // Until the Hub answers, start-up waits (STATUS= says for what) while the watchdog is
        // fed and SIGTERM / SIGINT end the wait cleanly (exit 0). READY=1 only after.
        notify(&[NotifyState::Status(&format!(
            "registering with the hub at {}",
            config.hub.url
        ))]);
        let waiting = |w: &super::register::Waiting<'_>| {
            // Room for the wait, the next attempt (connect 5 s, call 30 s) and the rest of
            // the start, past the unit's TimeoutStartSec.
            let extend = (w.retry_in + Duration::from_secs(60)).as_micros();
            notify(&[
                NotifyState::Status(&w.status_line()),
                NotifyState::ExtendTimeoutUsec(u32::try_from(extend).unwrap_or(u32::MAX)),
            ]);
        };
        let running = {
            let start = super::server::start(config, &crate::keys::ProcessEnv, &waiting);
            tokio::pin!(start);
            loop {
                tokio::select! {
                    started = &mut start => break started?,
                    _ = term.recv() => return Ok(stopped_while_waiting("SIGTERM")),
                    _ = int.recv() => return Ok(stopped_while_waiting("SIGINT")),
                    _ = watchdog_tick.tick(), if watchdog.is_some() => notify(&[NotifyState::Watchdog]),
                }
            }
        };
        tracing::info!(addr = %running.addr, "worker listening");
        notify(&[
            NotifyState::Ready,
            NotifyState::Status(&status_line(&running)),
        ]);
        let mut status_tick = tokio::time::interval(Duration::from_secs(2));
        let mut last_status = String::new();
        let why = loop {
            tokio::select! {
                _ = term.recv() => break "SIGTERM",
                _ = int.recv() => break "SIGINT",
                _ = hup.recv() => reload(&running, config_path, instance).await,
                _ = watchdog_tick.tick(), if watchdog.is_some() => {
                    if healthy(&running).await {
                        notify(&[NotifyState::Watchdog]);
                    } else {
                        tracing::error!("the worker is unhealthy: withholding the watchdog ping");
                    }
                }
                _ = status_tick.tick() => {
                    if !running.server_alive() {
                        return Err(Error::Failed("the gRPC server stopped".into()));
                    }
                    let line = status_line(&running);
                    if line != last_status {
                        notify(&[NotifyState::Status(&line)]);
                        last_status = line;
                    }
                }
            }
        };
        tracing::info!(signal = why, in_flight = running.worker.in_flight(), "draining");
        running.worker.drain();
        notify(&[
            NotifyState::Stopping,
            NotifyState::Status(&status_line(&running)),
        ]);
        let grace = Duration::from_secs(running.worker.config().worker.drain_grace_secs);
        let drained = {
            let drain = running.drain(grace);
            tokio::pin!(drain);
            loop {
                tokio::select! {
                    d = &mut drain => break d,
                    _ = status_tick.tick() => notify(&[NotifyState::Status(&status_line(&running))]),
                    _ = watchdog_tick.tick(), if watchdog.is_some() => notify(&[NotifyState::Watchdog]),
                }
            }
        };
        match running.worker.deregister().await {
            Ok(_) => tracing::info!(cancelled = drained.cancelled, "drained and deregistered"),
            Err(e) => tracing::warn!(reason = %e.code(), "drained; deregistering failed: {e}"),
        }
        tracing::info!("stopping");
        running.shutdown().await;
        Ok(0)
    });
    // Nothing left on the runtime (a blocking task included) holds the process past this.
    rt.shutdown_timeout(super::server::STOP_DEADLINE);
    served
}

/// A signal before registration succeeded: nothing runs yet, nothing to drain or deregister.
fn stopped_while_waiting(signal: &str) -> u8 {
    notify(&[NotifyState::Stopping]);
    tracing::info!(
        signal,
        "stopping before registration with the hub succeeded"
    );
    0
}

/// The watchdog's checks: the server task runs, and the blocking pool answers in a second.
async fn healthy(running: &Running) -> bool {
    running.server_alive()
        && tokio::time::timeout(Duration::from_secs(1), tokio::task::spawn_blocking(|| ()))
            .await
            .is_ok_and(|r| r.is_ok())
}

/// SIGHUP: new config and key set, or the old ones with the reason logged.
async fn reload(running: &Running, path: &Path, instance: Option<u32>) {
    let mut states = vec![NotifyState::Reloading];
    if let Ok(now) = NotifyState::monotonic_usec_now() {
        states.push(now);
    }
    notify(&states);
    match Config::load_instance(path, instance) {
        Ok(config) => {
            for note in running.worker.reload(config.clone()) {
                tracing::warn!("reload: {note}");
            }
            match running.worker.reload_keys(&config).await {
                Ok(kids) => {
                    tracing::info!(kids = %kids.join(","), "reloaded the config and the token key set")
                }
                Err(why) => tracing::warn!("reload: kept the old token key set: {why}"),
            }
        }
        Err(problems) => {
            tracing::warn!("reload: the new config is invalid, keeping the old one:\n{problems}");
        }
    }
    notify(&[
        NotifyState::Ready,
        NotifyState::Status(&status_line(running)),
    ]);
}
