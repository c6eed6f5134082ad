//! Compiles the pdpb/metapb subset with protox (pure Rust), so that a fresh
//! machine needs no system `protoc`.
fn main() {
    let files = ["proto/pdpb.proto", "proto/metapb.proto"];
    for f in files {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(files, ["proto"]).expect("the .proto files parse");
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)
        .expect("code generation for the .proto files");
}
