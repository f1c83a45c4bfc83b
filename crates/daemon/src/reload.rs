//! Reload (SIGHUP, or `keepalived-rs reload` over the control socket):
//! the new configuration is read and checked whole first — one with
//! errors is refused, each error logged with its file:line, and the
//! running configuration stays — then handed to the VRRP and checker
//! threads, which apply it in place (see `vrrp::Driver::reload` and
//! `checks::run`).

use std::path::PathBuf;
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};

/// Reads, checks and hands on new configurations.
#[derive(Debug)]
pub struct Reloader {
    path: PathBuf,
    config_id: Option<String>,
    /// The threads that take a new configuration.
    to: Mutex<Vec<Sender<Arc<kaconf::Config>>>>,
}

impl Reloader {
    pub fn new(path: PathBuf, config_id: Option<String>) -> Self {
        Self {
            path,
            config_id,
            to: Mutex::new(Vec::new()),
        }
    }

    /// A thread that takes new configurations: its receiving end.
    pub fn subscribe(&self) -> std::sync::mpsc::Receiver<Arc<kaconf::Config>> {
        let (tx, rx) = std::sync::mpsc::channel();
        if let Ok(mut to) = self.to.lock() {
            to.push(tx);
        }
        rx
    }

    /// One reload: `Ok` with a line to show, or `Err` with the errors (the
    /// running configuration then stays).
    pub fn reload(&self) -> Result<String, String> {
        crate::sdnotify::notify("RELOADING=1");
        let outcome = self.load_and_send();
        crate::sdnotify::notify("READY=1");
        outcome
    }

    fn load_and_send(&self) -> Result<String, String> {
        tracing::info!("Reloading the configuration from {}", self.path.display());
        let loaded = crate::preflight::load(&self.path, self.config_id.clone());
        crate::log_diagnostics(&loaded);
        let errors: Vec<String> = loaded
            .diagnostics
            .iter()
            .filter(|d| d.severity == kaconf::Severity::Error)
            .map(|d| d.render(&loaded.sources))
            .collect();
        if !errors.is_empty() {
            tracing::error!("reload refused: the configuration has errors; the running one stays");
            return Err(errors.join("\n"));
        }
        let config = Arc::new(loaded.config);
        let to = self.to.lock().map_err(|_| "reload: poisoned".to_owned())?;
        for tx in to.iter() {
            let _ = tx.send(config.clone());
        }
        Ok("reloaded".into())
    }
}
