//! The hidden subcommand a node compiles a policy component in
//! (`regionsync::policy_runtime::compiler`): the component on stdin, the
//! compiled artefact on stdout. It runs before any async runtime or logging.

use std::process::ExitCode;

use clap::Args;
use regionsync::policy_runtime::compiler;

#[derive(Args)]
pub struct CompilePolicyCommand {
    /// Fuel metering compiled in (the node's engine setting).
    #[arg(long, action = clap::ArgAction::Set)]
    pub fuel_metering: bool,
    /// Epoch checks compiled in (the node's engine setting).
    #[arg(long, action = clap::ArgAction::Set)]
    pub epoch_deadline: bool,
}

impl CompilePolicyCommand {
    /// Compile, and exit with the compiler's code.
    pub fn run(self) -> ExitCode {
        let codegen = compiler::Codegen {
            fuel_metering: self.fuel_metering,
            epoch_deadline: self.epoch_deadline,
        };
        ExitCode::from(compiler::run_child(codegen) as u8)
    }
}
