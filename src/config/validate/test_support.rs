//! What the validation tests share: a build context and the smallest valid config.

use std::path::Path;

use crate::config::{BuildContext, load_str};
use crate::tls::Resumption;

/// A listener `web` on 127.0.0.1:0 whose default pool `api` has one backend: the smallest
/// valid config, to which a test appends the table it checks.
pub const MINIMAL: &str = "[[listeners]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\n\
                           default_pool = \"api\"\n\
                           [pools.api]\n[[pools.api.backends]]\naddress = \"127.0.0.1:9001\"\n";

/// A first-load build context resolving files against `base_dir`, with a small session
/// cache (generation 1, no previous snapshot).
#[allow(clippy::unwrap_used)] // tests may panic
pub fn context(base_dir: &Path) -> BuildContext {
    BuildContext {
        resumption: Resumption::new(64).unwrap(),
        base_dir: base_dir.to_path_buf(),
        generation: 1,
        previous: None,
        generated_cert: Default::default(),
    }
}

/// Asserts that `source` is refused with an error on `key` whose reason contains `needle`.
pub fn assert_rejected(source: &str, key: &str, needle: &str) {
    match load_str(source, &context(Path::new("."))) {
        Ok(_) => panic!("accepted:\n{source}"),
        Err(errs) => assert!(
            errs.0
                .iter()
                .any(|e| e.key == key && e.reason.contains(needle)),
            "{source}: {errs}"
        ),
    }
}
