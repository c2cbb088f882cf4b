//! A backend that accepts TCP connections and resets them at once.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A backend that accepts TCP connections and resets them at once, counting each one.
pub struct Resetter {
    /// Where it listens.
    pub addr: SocketAddr,
    accepted: Arc<AtomicU64>,
}

impl Resetter {
    /// Starts one on 127.0.0.1 with an ephemeral port.
    pub fn start() -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicU64::new(0));
        let count = Arc::clone(&accepted);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { break };
                count.fetch_add(1, Ordering::Relaxed);
                // SO_LINGER 0: close with RST, as a crashing backend would.
                let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
                drop(stream);
            }
        });
        Self { addr, accepted }
    }

    /// Connections accepted (and reset) so far.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }
}
