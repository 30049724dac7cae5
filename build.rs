//! Code generation: compiles `proto/` with tonic/prost and writes the descriptor set for gRPC
//! reflection (the vendored `protoc`: no system install needed; fails loudly). Linking: the
//! sandbox children's code first in the binary (see `order_child_code`).

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
    order_child_code();
    Ok(())
}

/// The sandbox children's code first in `.text` (issue 19): a forked child faults in every
/// 64 KiB window of code it runs and unmaps them all at exit, so the functions it runs, listed
/// in `src/sandbox/child_code.order` (`benches/code_order.py` makes and checks the list),
/// are laid out together. Only where rustc links with its own lld: x86_64 Linux, unless the
/// build chooses a linker (`target.<triple>.linker`, `-C linker=...`, `-fuse-ld=...`), since
/// not every linker takes these options. A symbol the list names and the build lacks (a stale
/// list) is skipped quietly: the layout changes, never the program.
fn order_child_code() {
    let order = "src/sandbox/child_code.order";
    println!("cargo:rerun-if-changed={order}");
    println!("cargo:rerun-if-env-changed=CARGO_ENCODED_RUSTFLAGS");
    println!("cargo:rerun-if-env-changed=RUSTC_LINKER");
    let target = std::env::var("TARGET").unwrap_or_default();
    let rustflags = std::env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    let own_linker = std::env::var_os("RUSTC_LINKER").is_some()
        || rustflags.contains("linker")
        || rustflags.contains("fuse-ld");
    if target != "x86_64-unknown-linux-gnu" || own_linker {
        return;
    }
    let Ok(dir) = std::env::var("CARGO_MANIFEST_DIR") else {
        return;
    };
    let path = PathBuf::from(dir).join(order);
    let shown = path.display().to_string();
    // `-Wl,` splits its argument at commas: under a path with one, the layout stays as it was.
    if path.is_file() && !shown.contains(',') {
        println!("cargo:rustc-link-arg-bin=hubworker=-Wl,--symbol-ordering-file={shown}");
        println!("cargo:rustc-link-arg-bin=hubworker=-Wl,--no-warn-symbol-ordering");
    }
}
