//! `vmm`: a minimal KVM virtual machine monitor for a 32-bit PAE guest, and a
//! Xen-style host for the guest's pagetables. See README.md and docs/.
//!
//! The command line over the `vmm` library (runs, contract, doctor) and the
//! `vmm-bench` crate (bench, matrix).

#![deny(clippy::undocumented_unsafe_blocks)]

mod cli;

use std::time::Instant;

use clap::CommandFactory;

use cli::{Cli, Cmd};
use vmm::report::exit_code;
use vmm::{contract, doctor, platform, run};
use vmm_bench::highpte_matrix;

fn main() {
    let start = Instant::now();
    let cli: Cli = vmm::args::start();
    let code = match cli.cmd {
        Cmd::Run(args) => run::run_command(*args, start),
        Cmd::Batch(args) => run::batch_command(args),
        Cmd::Probe => Ok(probe()),
        Cmd::Doctor => {
            let d = doctor::diagnose();
            print!("{}", doctor::render(&d));
            match doctor::problem(&d) {
                None => Ok(exit_code::SUCCESS),
                Some(why) => {
                    eprintln!("vmm: error: {why}");
                    Ok(exit_code::HOST_ERROR)
                }
            }
        }
        Cmd::PinCost(args) => run::pin_cost_command(args),
        Cmd::Matrix(args) => highpte_matrix::matrix_command(args),
        Cmd::Bench(args) => match vmm_bench::bench_command(args) {
            Ok(code) => Ok(code),
            Err(e) => {
                eprintln!("vmm: error: {e}");
                Ok(e.exit_code())
            }
        },
        // xtf-runner's status for a run that could not start: ERROR.
        Cmd::Contract(args) => match contract::contract_command(args) {
            Ok(code) => Ok(code),
            Err(e) => {
                eprintln!("vmm: error: {e}");
                Ok(contract::ERROR_EXIT)
            }
        },
        Cmd::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "vmm", &mut std::io::stdout());
            Ok(exit_code::SUCCESS)
        }
        Cmd::Man { out } => match cli::write_man_pages(&out) {
            Ok(n) => {
                eprintln!("vmm: {n} manual pages in {}", out.display());
                Ok(exit_code::SUCCESS)
            }
            Err(e) => {
                eprintln!("vmm: error: cannot write the manual pages in {}: {e}", out.display());
                Ok(exit_code::USAGE)
            }
        },
        Cmd::ApplianceInit { jobs } => Ok(platform::appliance::init(&jobs)),
    };
    let code = code.unwrap_or_else(|e| {
        eprintln!("vmm: error: {e}");
        exit_code::HOST_ERROR
    });
    std::process::exit(code);
}

fn probe() -> i32 {
    match platform::probe::probe() {
        Ok(()) => {
            println!("local KVM ({}) runs 32-bit PAE guests", platform::probe::kvm_module());
            0
        }
        Err(why) => {
            eprintln!("vmm: error: {why}");
            exit_code::HOST_ERROR
        }
    }
}
