//! The `levee` binary: parse the command line and hand over to the library.

use clap::Parser;

/// jemalloc: per-thread caches with no locks between workers, and less fragmentation
/// than glibc's arenas under many connections (docs/DESIGN.md, section 16). Built with a
/// background thread that gives pages freed for a second back to the kernel, off the
/// workers (`background_threads` feature; `dirty_decay_ms`/`muzzy_decay_ms` in
/// `.cargo/config.toml`): the memory of connections that closed or parked (`proxy::conn`)
/// leaves the resident set instead of waiting for an allocation to trigger a purge, which
/// on an idle server never comes. `_RJEM_MALLOC_CONF` in the environment overrides it.
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
