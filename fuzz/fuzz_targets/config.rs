//! Fuzz target `config`: arbitrary bytes through the whole config pipeline, TOML parse, key-path
//! error mapping and validation into a `Snapshot`, exactly as `levee check` runs it.
//!
//! Defends: `levee check` / `levee run` never panic, hang or blow up on any file, however
//! malformed; every rejection comes back as `ConfigErrors` naming a key.
#![no_main]

use std::borrow::Cow;
use std::path::Path;
use std::sync::OnceLock;

use levee::config::{BuildContext, load_str};
use libfuzzer_sys::fuzz_target;

/// The build context is costly (a fresh ticketer and session cache), so it is made once.
/// Relative certificate paths resolve under a directory that does not exist.
fn context() -> &'static BuildContext {
    static CTX: OnceLock<BuildContext> = OnceLock::new();
    CTX.get_or_init(
        || match levee::app::initial_context(Path::new("/nonexistent-levee-fuzz")) {
            Ok(ctx) => ctx,
            Err(e) => {
                // A broken harness is not a finding: stop without reporting a crash.
                eprintln!("cannot build the fuzz build context: {e:#}");
                std::process::exit(1)
            }
        },
    )
}

fuzz_target!(|data: &[u8]| {
    // Valid UTF-8 goes in as is; anything else goes in lossily converted, so invalid input
    // still exercises the parser and the error-position code with multi-byte characters.
    let source: Cow<'_, str> = String::from_utf8_lossy(data);
    if let Err(errors) = load_str(&source, context()) {
        // Rendering the errors is part of what `levee check` does.
        let _ = errors.to_string();
    }
});
