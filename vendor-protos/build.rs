//! Generates Rust for the vendored protos with the pure-Rust parser (no protoc needed).

fn main() {
    protobuf_codegen::Codegen::new()
        .pure()
        .include("proto")
        .input("proto/runtimeoptions.proto")
        .input("proto/cri_pod.proto")
        .cargo_out_dir("protos")
        .run_from_script();
    println!("cargo:rerun-if-changed=proto");
}
