//! Compiles `duplex/v1/*.proto` with protox (pure Rust: no system protoc) and keeps the
//! file descriptor set, which the service serves for reflection.

use std::path::PathBuf;

const PROTOS: &[&str] = &["duplex/v1/topology.proto", "duplex/v1/events.proto"];

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
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(fds)?;
    Ok(())
}
