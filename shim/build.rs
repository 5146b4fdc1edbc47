//! Links the shim binary as a position-dependent executable (`-no-pie`).
//!
//! A PIE is relocated at every exec: the dynamic loader writes the load address into each
//! pointer of `.data.rel.ro` (vtables, string tables, ~250 KiB here), which turns those pages
//! into private dirty memory in every process. Linked at a fixed address they stay clean,
//! file-backed and shared by all shims of the host, and each exec of the binary (`start`,
//! the serving shim, one `init` helper per container and exec) skips the relocation pass.
//! The object code stays position independent (the linker resolves the GOT at link time),
//! so only the final link of this package's binaries changes; tests and other crates are
//! built as before. ASLR still randomizes the stack, heap and shared libraries.

fn main() {
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if os == "linux" && env == "gnu" && std::env::var_os("MYPOD_PIE").is_none() {
        println!("cargo:rustc-link-arg-bins=-no-pie");
    }
    println!("cargo:rerun-if-env-changed=MYPOD_PIE");
    println!("cargo:rerun-if-changed=build.rs");
}
