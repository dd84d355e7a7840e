//! Duplex's gRPC API, generated from `proto/duplex/v1/*.proto` at build time.
//!
//! The `.proto` files are the contract and the only source: nothing here is written by
//! hand except this module list and [`codec`] (prost's codec with decoding errors as
//! INVALID_ARGUMENT). [`FILE_DESCRIPTOR_SET`] is what server reflection serves.

#![allow(missing_docs, missing_debug_implementations, clippy::all)]

pub mod codec;

/// Package `duplex.v1`.
pub mod v1 {
    tonic::include_proto!("duplex.v1");
}

/// The encoded `FileDescriptorSet` of every Duplex `.proto` file (with the well-known
/// types they import), for `tonic-reflection`.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/duplex_descriptor.bin"));
