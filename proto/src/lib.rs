//! The wire format: the `pdpb` / `metapb` subset of PD's protocol that
//! regionsync serves (docs/protocol.md §1), generated at build time. Field names and
//! numbers are PD's, so existing PD clients talk to regionsync unchanged.

#![allow(clippy::all, missing_docs)]

pub mod metapb {
    tonic::include_proto!("metapb");
}

pub mod pdpb {
    tonic::include_proto!("pdpb");
}
