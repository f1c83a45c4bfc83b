//! `BFD_CHECK`: a real server is up while its `bfd_instance` session is.
//!
//! The BFD thread publishes each session's state here ([`publish`]); a
//! `BFD_CHECK` task waits for changes ([`watch`]) instead of polling, so
//! a server leaves rotation as soon as its session goes Down.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

/// Each session's name and whether it is Up (`None`: not decided yet).
pub type States = Arc<HashMap<String, Option<bool>>>;

fn channel() -> &'static tokio::sync::watch::Sender<States> {
    static CH: OnceLock<tokio::sync::watch::Sender<States>> = OnceLock::new();
    CH.get_or_init(|| tokio::sync::watch::channel(States::default()).0)
}

/// Records `name`'s state (`None` removes or resets it).
pub fn publish(name: &str, up: Option<bool>) {
    channel().send_modify(|s| {
        let m = Arc::make_mut(s);
        match up {
            Some(_) => {
                m.insert(name.to_owned(), up);
            }
            None => {
                m.remove(name);
            }
        }
    });
}

/// A receiver that sees every later change.
pub fn watch() -> tokio::sync::watch::Receiver<States> {
    channel().subscribe()
}

/// `name`'s state now.
pub fn state(name: &str) -> Option<bool> {
    channel().borrow().get(name).copied().flatten()
}
