//! containerd-shim-mypod-v2: containerd shim v2 runtime serving a whole pod sandbox
//! from one process, setting containers up itself (no runc).
//!
//! The binary (`main.rs`) calls [`main`]; the library exists so that the fuzz targets
//! (`fuzz/`) can reach the Task service in-process ([`fuzz`]).

mod args;
mod config;
mod convert;
mod copy;
mod delete;
mod detached;
mod error;
mod events;
#[doc(hidden)]
pub mod fuzz;
mod group;
mod info;
mod logger;
mod metrics;
mod peer;
mod pod;
mod sandbox_config;
mod sandbox_service;
mod serve;
mod service;
mod socket_file;
mod start;

use std::io::Write;

/// The shim's entry point: the `init` helper, `start`, `delete`, `-info`, `-v`.
pub fn main() {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if argv.first().map(String::as_str) == Some("init") {
        if mypod_sandbox::zygote::is_zygote() {
            mypod_sandbox::zygote::main();
        }
        mypod_sandbox::init::main();
    }
    let args = match args::Args::parse(argv) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("containerd-shim-mypod-v2: {e}");
            std::process::exit(2);
        }
    };
    if args.info {
        // containerd passes the runtime options on stdin; the answer does not depend on them.
        let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
        let _ = std::io::stdout().write_all(&info::runtime_info());
        return;
    }
    if args.version {
        println!(
            "containerd-shim-mypod-v2 version {}",
            env!("CARGO_PKG_VERSION")
        );
        return;
    }
    let code = match args.action.as_str() {
        "start" => match start::run(&args) {
            Ok(address) => {
                // containerd 1.6 reads stdout and stderr together: print only this.
                print!("{address}");
                0
            }
            Err(e) => {
                eprint!("mypod start: {e}");
                1
            }
        },
        "delete" => match delete::run(&args) {
            Ok(bytes) => {
                let _ = std::io::stdout().write_all(&bytes);
                0
            }
            Err(e) => {
                eprintln!("mypod delete: {e}");
                1
            }
        },
        "" => {
            eprintln!("usage: containerd-shim-mypod-v2 [-v] -namespace NS -address ADDR -id ID start|delete");
            2
        }
        other => {
            eprintln!("containerd-shim-mypod-v2: unknown action {other:?}");
            2
        }
    };
    let _ = std::io::stdout().flush();
    std::process::exit(code);
}
