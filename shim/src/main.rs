//! containerd-shim-mypod-v2: see the library (`lib.rs`) for what it holds.

fn main() {
    mypod_shim::main();
}
