//! The `haserf` binary: parse the command line ([`cli`]), then hand over to the library.
#![forbid(unsafe_code)]

mod cli;

use clap::Parser as _;

fn main() {
    let cli = cli::Cli::parse();
    std::process::exit(cli::run(cli));
}
