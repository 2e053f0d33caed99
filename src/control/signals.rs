//! Signals: SIGHUP reloads the control file; SIGTERM and SIGINT start a graceful shutdown
//! (stop accepting, let open connections finish up to `shutdown_timeout`, exit 0). A second
//! SIGTERM or SIGINT during the drain exits at once.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};

use super::Control;

/// Runs until the process should exit.
pub async fn run(ctl: Rc<RefCell<Control>>) -> std::io::Result<()> {
    let mut hup = signal(SignalKind::hangup())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    loop {
        tokio::select! {
            _ = hup.recv() => {
                tracing::info!("SIGHUP: reloading the control file");
                // Errors are logged, counted and shown at /status by reload itself.
                let _ = ctl.borrow_mut().reload();
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    let (done, timeout) = {
        let mut c = ctl.borrow_mut();
        let timeout = c.tables.load().config.shutdown_timeout;
        (c.begin_shutdown(), timeout)
    };
    let all_done = async {
        for d in done {
            let _ = d.await;
        }
    };
    tokio::select! {
        () = all_done => tracing::info!("all connections closed; exiting"),
        _ = term.recv() => tracing::warn!("second signal: exiting now"),
        _ = int.recv() => tracing::warn!("second signal: exiting now"),
        // Workers enforce the deadline themselves; this only guards against a stuck one.
        () = tokio::time::sleep(timeout + Duration::from_secs(2)) => tracing::warn!("workers did not stop in time; exiting"),
    }
    Ok(())
}
