//! `vmm-appliance`: what the QEMU-hosted appliance runs. The appliance's
//! initramfs carries this binary, not `vmm`: inside, it only boots guests
//! (`run`) and runs the jobs it was given (`appliance-init`), so the
//! benchmark's plotting and the command line's manual pages stay outside.
//! `vmm` finds it beside itself (see `vmm::platform::paths::appliance_binary`).

#![deny(clippy::undocumented_unsafe_blocks)]

use std::path::PathBuf;
use std::time::Instant;

use clap::{Parser, Subcommand};

use vmm::args::RunArgs;
use vmm::report::exit_code;

#[derive(Parser, Debug)]
#[command(name = "vmm-appliance", version = vmm::VERSION, about = "Runs guests inside vmm's QEMU-hosted appliance")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Boot the guest once and report how it went (as `vmm run`).
    Run(Box<RunArgs>),
    /// Run the jobs of this file, each a `run` command (the appliance's init).
    ApplianceInit { jobs: PathBuf },
}

fn main() {
    let start = Instant::now();
    let cli: Cli = vmm::args::start();
    let code = match cli.cmd {
        Cmd::Run(args) => vmm::run::run_command(*args, start),
        Cmd::ApplianceInit { jobs } => Ok(vmm::platform::appliance::init(&jobs)),
    };
    std::process::exit(code.unwrap_or_else(|e| {
        eprintln!("vmm: error: {e}");
        exit_code::HOST_ERROR
    }));
}
