//! A setup that died without a word: the helper or the container process it forked was
//! killed (or crashed) before the process was ready. The sandbox reports which pid died;
//! the pod, which reaps it, says how.

use std::time::Duration;

use mypod_sandbox::container::ContainerError;

use super::Pod;

/// How long to wait for the reaper to see the death after the channel broke.
const REAP_WAIT: Duration = Duration::from_secs(2);

impl Pod {
    /// Fills in how a dead setup helper or process ended ([`ContainerError::SetupDied`]),
    /// from the exits the reaper could not give to any process, numbered after `since`
    /// (`mypod_sandbox::process::reaps`); other errors pass.
    pub(super) async fn explain_setup_death(
        &self,
        e: ContainerError,
        since: u64,
    ) -> ContainerError {
        let ContainerError::SetupDied { role, pid, how } = e else {
            return e;
        };
        let deadline = tokio::time::Instant::now() + REAP_WAIT;
        let how = loop {
            if let Some(exit) = self.lock().take_unclaimed(pid, since) {
                break describe_exit(exit.code);
            }
            if !how.is_empty() || tokio::time::Instant::now() >= deadline {
                break how;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        ContainerError::SetupDied { role, pid, how }
    }
}

/// `: killed by SIGKILL`, `: exited with status 1` (from containerd's exit code convention:
/// 128 + the signal for a process a signal ended).
fn describe_exit(code: u32) -> String {
    let signal = code
        .checked_sub(128)
        .and_then(|s| i32::try_from(s).ok())
        .and_then(|s| nix::sys::signal::Signal::try_from(s).ok());
    match signal {
        Some(sig) => format!(": killed by {sig}"),
        None => format!(": exited with status {code}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exits_are_described() {
        assert_eq!(describe_exit(137), ": killed by SIGKILL");
        assert_eq!(describe_exit(139), ": killed by SIGSEGV");
        assert_eq!(describe_exit(1), ": exited with status 1");
        assert_eq!(describe_exit(128), ": exited with status 128");
    }
}
