//! End-to-end tests of mypod against real containerd 1.6, 1.7 and 2.1, driven through `ctr` and
//! CRI as users drive them. One binary (one link of the whole dependency graph) with a module
//! per area; `cargo test -p mypod-tests -- first_light::` runs one area. See docs/testing.md.

// Test code: a panic (unwrap, expect) is how a test or the harness fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod bad_input;
mod bad_input_rows;
mod cri_attach;
mod cri_bad_input;
mod cri_exec_logs;
mod cri_lifecycle;
mod cri_logs_complete;
mod cri_namespaces;
mod cri_placement;
mod cri_pods;
mod cri_probes;
mod cri_resources;
mod cri_security;
mod cri_shim_sandbox;
mod dead_shim;
mod escape;
mod events;
mod exec;
mod first_light;
mod hooks;
mod io;
mod oci_diff;
mod pod_shim;
mod pod_userns;
mod process_config;
mod reliability_churn;
mod reliability_faults;
mod reliability_fifo;
mod reliability_output;
mod reliability_races;
mod reliability_setup_faults;
mod reliability_support;
mod resources;
mod runc_parity;
mod runtime_config;
mod seccomp;
mod security;
mod shim_rpc;
mod spec_fields;
