//! The `levee` binary: parse the command line and hand over to the library.

use clap::Parser;

/// jemalloc: per-thread caches with no locks between workers, and less fragmentation
/// than glibc's arenas under many connections (docs/DESIGN.md, section 16).
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

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
