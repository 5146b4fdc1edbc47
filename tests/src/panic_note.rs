//! Remembers each test thread's panic message, so the failure report printed after the
//! containerd log (which can be long enough to push the message out of a CI excerpt)
//! ends by repeating it.

use std::cell::RefCell;
use std::sync::Once;

thread_local! {
    static LAST: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Installs (once per process) a panic hook that records the message, then runs the
/// default hook.
pub fn install() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let msg = info
                .payload()
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| info.payload().downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "(non-string panic payload)".into());
            let at = info
                .location()
                .map(|l| format!("{}:{}", l.file(), l.line()))
                .unwrap_or_default();
            LAST.with(|l| *l.borrow_mut() = Some(format!("{at}: {msg}")));
            default(info);
        }));
    });
}

/// The message of this thread's last panic, if any.
pub fn last() -> Option<String> {
    LAST.with(|l| l.borrow().clone())
}
