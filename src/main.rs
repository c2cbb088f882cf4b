//! The `levee` binary: parse the command line and hand over to the library.

use clap::Parser;

fn main() {
    let cli = levee::cli::Cli::parse();
    let code = match levee::cli::main(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("levee: {e:#}");
            2
        }
    };
    std::process::exit(code);
}
