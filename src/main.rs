//! The `haserf` binary: parse the command line, then hand over to the library.
#![forbid(unsafe_code)]

use clap::Parser as _;

fn main() {
    let cli = haserf::cli::Cli::parse();
    std::process::exit(haserf::cli::run(cli));
}
