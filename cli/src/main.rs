//! The `regionsync` binary: its commands are `regionsync_cli::commands`.

use std::process::ExitCode;

/// mimalloc (`regionsync_cli::allocator` says why).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    regionsync_cli::commands::main()
}
