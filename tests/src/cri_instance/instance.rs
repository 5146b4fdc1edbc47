//! A CRI instance's client: connecting it at start-up, and removing every pod at teardown.

use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use super::parts::{handler_for, CriParts};
use crate::containerd::Containerd;
use crate::cri::CriClient;
use crate::image::{self, IMAGE};
use crate::netns::NetNs;

impl Containerd {
    pub(super) fn cri_parts(&self) -> &CriParts {
        self.cri
            .as_ref()
            .expect("not a CRI instance: use Containerd::builder(v).cri(true)")
    }

    /// The CRI client of this instance.
    pub fn cri(&self) -> &CriClient {
        self.cri_parts()
            .client
            .as_ref()
            .expect("the CRI client is connected at start-up")
    }

    /// The RuntimeClass handler of the runtime under test: `mypod`, or `runc` with
    /// MYPOD_TEST_RUNTIME=runc.
    pub fn cri_handler(&self) -> &'static str {
        handler_for(self.runtime())
    }

    /// The handler of the runtime under test without mypod's sandbox defaults
    /// (`mypod-compat`: runtime-compat.toml, as README's second runtime entry), or `runc`
    /// with MYPOD_TEST_RUNTIME=runc: for what the defaults refuse or change on purpose.
    pub fn cri_compat_handler(&self) -> &'static str {
        if self.is_mypod() {
            "mypod-compat"
        } else {
            "runc"
        }
    }

    /// The instance's network namespace.
    pub fn netns(&self) -> &NetNs {
        &self.cri_parts().netns
    }

    /// Connects the CRI client, waits for CRI to be ready (runtime and network), imports the
    /// images into `k8s.io` and waits until CRI sees them.
    pub(crate) fn cri_ready(&mut self) {
        let socket = self.address();
        let start = Instant::now();
        let client = loop {
            let attempt = CriClient::connect(&socket)
                .map_err(|e| e.to_string())
                .and_then(|c| c.version().map(|_| c).map_err(|e| e.to_string()));
            match attempt {
                Ok(c) => break c,
                Err(e) => {
                    assert!(
                        start.elapsed() < Duration::from_secs(30),
                        "CRI of containerd {} did not answer within 30 s: {e}\n{}",
                        self.version(),
                        self.log_tail(40)
                    );
                    thread::sleep(Duration::from_millis(100));
                }
            }
        };
        loop {
            let st = client.status(false);
            let conditions: Vec<(String, bool, String)> = st
                .as_ref()
                .ok()
                .and_then(|s| s.status.as_ref())
                .map(|s| {
                    s.conditions
                        .iter()
                        .map(|c| (c.r#type.clone(), c.status, c.message.clone()))
                        .collect()
                })
                .unwrap_or_default();
            let ready = |t: &str| conditions.iter().any(|c| c.0 == t && c.1);
            if ready("RuntimeReady") && ready("NetworkReady") {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "CRI of containerd {} is not ready after 30 s: {st:?}\n{}",
                self.version(),
                self.log_tail(40)
            );
            thread::sleep(Duration::from_millis(100));
        }
        let image_tar = image::image_tar();
        let sandbox_image = self.cri_parts().sandbox_image;
        for (tar, name) in [
            (image_tar, IMAGE),
            (sandbox_image.tar(), sandbox_image.name()),
        ] {
            let tar = tar.to_string_lossy().into_owned();
            self.ctr_timeout(&["images", "import", &tar], Duration::from_secs(120))
                .assert_success();
            loop {
                match client.image_status(name) {
                    Ok(Some(_)) => break,
                    other => assert!(
                        start.elapsed() < Duration::from_secs(60),
                        "CRI does not see image {name} after importing {tar}: {other:?}"
                    ),
                }
                thread::sleep(Duration::from_millis(50));
            }
        }
        self.cri.as_mut().expect("CRI instance").client = Some(client);
    }

    /// Imports the OCI layout tar `tar` into `k8s.io` (`ctr images import`) and waits until
    /// CRI's ImageStatus knows `name` (the name the tar's index gives it).
    pub fn cri_import_image(&self, tar: &Path, name: &str) {
        let t = tar.to_string_lossy();
        self.ctr_timeout(&["images", "import", &t], Duration::from_secs(120))
            .assert_success();
        let start = Instant::now();
        loop {
            match self.cri().image_status(name) {
                Ok(Some(_)) => return,
                other => assert!(
                    start.elapsed() < Duration::from_secs(60),
                    "CRI does not see image {name} after importing {t}: {other:?}"
                ),
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops and removes every pod and container through CRI (teardown); never panics.
    pub(crate) fn cri_remove_all(&self) -> Vec<String> {
        let mut report = Vec::new();
        let client = match CriClient::connect_with_timeout(&self.address(), Duration::from_secs(20))
        {
            Ok(c) => c,
            Err(e) => return vec![format!("CRI teardown: {e}")],
        };
        match client.list_pod_sandbox(None) {
            Ok(pods) => {
                for p in pods {
                    if let Err(e) = client.stop_pod_sandbox(&p.id) {
                        report.push(format!("teardown: {e}"));
                    }
                    if let Err(e) = client.remove_pod_sandbox(&p.id) {
                        report.push(format!("teardown: {e}"));
                    }
                }
            }
            Err(e) => report.push(format!("teardown: {e}")),
        }
        if let Ok(containers) = client.list_containers(None) {
            for c in containers {
                let _ = client.stop_container(&c.id, 0);
                if let Err(e) = client.remove_container(&c.id) {
                    report.push(format!("teardown: {e}"));
                }
            }
        }
        report
    }
}
