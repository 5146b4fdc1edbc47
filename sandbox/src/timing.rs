//! Where a slow operation spends its time: named phases, logged at debug level.

use std::time::Instant;

/// Marks the end of each phase of an operation; [`Phases::log`] writes them as one line.
#[derive(Debug)]
pub struct Phases {
    last: Instant,
    done: Vec<(&'static str, u128)>,
}

impl Default for Phases {
    fn default() -> Phases {
        Phases {
            last: Instant::now(),
            done: Vec::new(),
        }
    }
}

impl Phases {
    /// The phase `name` ends now.
    pub fn mark(&mut self, name: &'static str) {
        let now = Instant::now();
        self.done
            .push((name, now.duration_since(self.last).as_micros()));
        self.last = now;
    }

    /// The phases as `name Nus, ...`.
    pub fn summary(&self) -> String {
        self.done
            .iter()
            .map(|(n, us)| format!("{n} {us}us"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Logs the phases of `what` at debug level.
    pub fn log(&self, what: &str) {
        if log::log_enabled!(log::Level::Debug) {
            log::debug!("{what}: {}", self.summary());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_are_listed_in_order() {
        let mut p = Phases::default();
        p.mark("a");
        p.mark("b");
        let s = p.summary();
        assert!(
            s.starts_with("a ") && s.contains(", b ") && s.ends_with("us"),
            "{s}"
        );
    }
}
