//! Compiles `duplex/v1/*.proto` with protox (pure Rust: no system protoc) and keeps the
//! file descriptor set, which the service serves for reflection. Every client and server
//! uses `crate::codec::Codec` (a request that does not decode is INVALID_ARGUMENT).

use std::path::PathBuf;

const PROTOS: &[&str] = &[
    "duplex/v1/topology.proto",
    "duplex/v1/events.proto",
    "duplex/v1/verification.proto",
    "duplex/v1/offsets.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for p in PROTOS {
        println!("cargo:rerun-if-changed={p}");
    }
    let fds = protox::compile(PROTOS, ["."])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out.join("duplex_descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;
    // Type names (`prost::Name`) let the codec name the message a client got wrong.
    let mut config = prost_build::Config::new();
    config.enable_type_names();
    // Ordered maps: a request's fingerprint (its encoding, for idempotency keys) must not
    // depend on a hash map's iteration order.
    config.btree_map(["."]);
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .codec_path("crate::codec::Codec")
        .compile_fds_with_config(fds, config)?;
    Ok(())
}
