//! Code generation only: compiles `proto/` with tonic/prost and writes the descriptor set for
//! gRPC reflection. Uses the vendored `protoc` (no system install needed) and fails loudly.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    println!("cargo:rerun-if-changed=proto/hubworker/v1/hubworker.proto");
    println!("cargo:rerun-if-changed=proto/hubworker/sandbox/v1/sandbox.proto");
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // The vendored protoc is handed to prost-build directly (no PROTOC in the environment).
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc);
    tonic_prost_build::configure()
        .file_descriptor_set_path(out.join("hubworker_descriptor.bin"))
        .compile_with_config(config, &["proto/hubworker/v1/hubworker.proto"], &["proto"])?;
    // The daemon <-> sandbox child protocol: messages only, not in the reflection set.
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    // Rows cross the pipe and sit in the result cache as shared bytes: a cache hit is handed
    // to the child without a copy.
    config.bytes([
        ".hubworker.sandbox.v1.Answer.cached_ipc",
        ".hubworker.sandbox.v1.Loaded.arrow_ipc",
    ]);
    tonic_prost_build::configure()
        .build_client(false)
        .build_server(false)
        .compile_with_config(
            config,
            &["proto/hubworker/sandbox/v1/sandbox.proto"],
            &["proto"],
        )?;
    Ok(())
}
