//! The command line's tests, in one binary: each runs the `regionsync`
//! binary as processes, the way a user or a script does.

mod cli;
mod cli_errors;
mod common;
mod policy_compiler;
mod policy_kit;
mod tls;
