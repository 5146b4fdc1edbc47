//! One lock between forking and asking "does this FIFO have a reader?".
//!
//! A forked child holds copies of all of the parent's descriptors, close-on-exec ones
//! included, until it execs (or exits). While it does, a FIFO read end that the shim is
//! about to close still counts as a reader, so [`crate::stdio::Stdio::release`] would
//! close the write end of output nobody has read yet, and lose it when the child execs.
//! Every fork of this library takes [`spawning`] (shared: forks may run together); the
//! reader check takes [`quiet`] (exclusive), so it never sees a half-started child.
//! `Command::spawn` and [`crate::spawn::spawn`] return only after the child has exec'd,
//! so the shared guard covers the whole window.

use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

static FORKS: RwLock<()> = RwLock::new(());

/// Held while a child is forked and until it has exec'd or exited.
pub(crate) fn spawning() -> RwLockReadGuard<'static, ()> {
    // A panic while the lock was held poisons it but leaves nothing inconsistent: the
    // lock guards no data.
    FORKS.read().unwrap_or_else(|e| e.into_inner())
}

/// Held while checking for readers: no child of ours holds a copy of our descriptors.
pub(crate) fn quiet() -> RwLockWriteGuard<'static, ()> {
    FORKS.write().unwrap_or_else(|e| e.into_inner())
}
