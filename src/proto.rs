//! The gRPC contract generated from `proto/hubworker/v1/hubworker.proto` by `build.rs`, and
//! its descriptor set for server reflection. Nothing here is written by hand.

#![allow(missing_docs, unreachable_pub, clippy::all, clippy::pedantic)]

tonic::include_proto!("hubworker.v1");

/// The encoded `FileDescriptorSet`, for `tonic-reflection`.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("hubworker_descriptor");

/// The private daemon <-> run child protocol (`proto/hubworker/sandbox/v1/sandbox.proto`).
pub mod sandbox {
    #![allow(missing_docs, unreachable_pub, clippy::all, clippy::pedantic)]
    tonic::include_proto!("hubworker.sandbox.v1");
}
