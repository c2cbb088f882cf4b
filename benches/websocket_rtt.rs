//! WebSocket echo round trips through levee against the same echo server direct, in the
//! same run (issue 16: "WebSocket echo round-trip p99 vs direct").
//!
//! An in-process tungstenite echo server; levee in-process (release build, 2 workers, its
//! shipped defaults but for the listener and the pool: access log on, protection on) with a
//! plain and a TLS listener in front of it. Each round opens `SOCKETS` WebSockets per arm and
//! sends `MESSAGES` small text messages on each, one at a time, timing each echo. Arms
//! alternate direct, plain, TLS, direct... (ABAB), so drift of this shared machine hits each
//! alike; latencies are pooled per arm over the rounds.
//!
//! Run: `cargo bench --bench websocket_rtt` (about 30 s). Knobs: `ROUNDS` (default 6),
//! `ROUND_SECS` is unused; `MESSAGES` (default 2000). Under `cargo test` it runs 2 rounds of
//! 50 messages as a smoke test.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "bench set-up: a failure to build fixtures should stop the run loudly"
)]

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{env_or, percentile_ms, rounds_and_secs};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;

/// WebSockets per arm per round, used one after another.
const SOCKETS: usize = 4;

fn config(backend: SocketAddr, access_log: &Path) -> String {
    format!(
        "[server]\nworkers = 2\naccess_log_path = \"{}\"\n[admin]\nlisten = \"off\"\n\n\
         [[listeners]]\nname = \"plain\"\nlisten = \"127.0.0.1:0\"\ndefault_pool = \"ws\"\n\n\
         [[listeners]]\nname = \"tls\"\nlisten = \"127.0.0.1:0\"\ndefault_pool = \"ws\"\n\
         [listeners.tls]\n\n\
         [pools.ws]\n[[pools.ws.backends]]\naddress = \"{backend}\"\n",
        access_log.display()
    )
}

async fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let _ = tcp.set_nodelay(true);
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
                    return;
                };
                while let Some(Ok(m)) = ws.next().await {
                    if (m.is_text() || m.is_binary()) && ws.send(m).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// Which way a round's WebSockets go.
#[derive(Clone, Copy)]
enum Arm {
    Direct,
    Plain,
    Tls,
}

impl Arm {
    const ALL: [Arm; 3] = [Arm::Direct, Arm::Plain, Arm::Tls];

    fn name(self) -> &'static str {
        match self {
            Arm::Direct => "direct",
            Arm::Plain => "levee plain",
            Arm::Tls => "levee TLS",
        }
    }
}

/// Sends `messages` messages one at a time on a WebSocket over `stream`; each echo's time
/// in microseconds goes into `out`.
async fn round_trips<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    messages: u64,
    out: &mut Vec<u32>,
) {
    let (mut ws, _) = tokio_tungstenite::client_async("ws://bench/echo", stream)
        .await
        .unwrap();
    for i in 0..messages {
        let sent = Instant::now();
        ws.send(Message::text(format!("ping {i}"))).await.unwrap();
        let got = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("echo within 5 s")
            .unwrap()
            .unwrap();
        assert!(got.is_text());
        out.push(u32::try_from(sent.elapsed().as_micros()).unwrap_or(u32::MAX));
    }
    let _ = ws.close(None).await;
}

fn tls_config() -> Arc<rustls::ClientConfig> {
    #[derive(Debug)]
    struct AnyCert;
    impl rustls::client::danger::ServerCertVerifier for AnyCert {
        fn verify_server_cert(
            &self,
            _: &rustls::pki_types::CertificateDer<'_>,
            _: &[rustls::pki_types::CertificateDer<'_>],
            _: &rustls::pki_types::ServerName<'_>,
            _: &[u8],
            _: rustls::pki_types::UnixTime,
        ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            _: &[u8],
            _: &rustls::pki_types::CertificateDer<'_>,
            _: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
        }
        fn verify_tls13_signature(
            &self,
            _: &[u8],
            _: &rustls::pki_types::CertificateDer<'_>,
            _: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
        }
        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            rustls::crypto::aws_lc_rs::default_provider()
                .signature_verification_algorithms
                .supported_schemes()
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCert))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

fn main() {
    let (rounds, _) = rounds_and_secs();
    let smoke = !std::env::args().any(|a| a == "--bench");
    let messages = if smoke { 50 } else { env_or("MESSAGES", 2000) };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let backend = rt.block_on(echo_server());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("levee.toml");
    std::fs::write(&path, config(backend, &dir.path().join("access.log"))).unwrap();
    let (snapshot, source) = levee::app::load(&path).unwrap();
    let running = levee::app::start_with(snapshot, Some(source)).unwrap();
    let plain = running.listener_addr("plain").unwrap();
    let tls = running.listener_addr("tls").unwrap();
    let connector = tokio_rustls::TlsConnector::from(tls_config());
    let mut samples: Vec<Vec<u32>> = vec![Vec::new(); Arm::ALL.len()];
    rt.block_on(async {
        for _ in 0..rounds {
            for (i, arm) in Arm::ALL.into_iter().enumerate() {
                for _ in 0..SOCKETS {
                    let out = &mut samples[i];
                    match arm {
                        Arm::Direct => {
                            let tcp = TcpStream::connect(backend).await.unwrap();
                            tcp.set_nodelay(true).unwrap();
                            round_trips(tcp, messages, out).await;
                        }
                        Arm::Plain => {
                            let tcp = TcpStream::connect(plain).await.unwrap();
                            tcp.set_nodelay(true).unwrap();
                            round_trips(tcp, messages, out).await;
                        }
                        Arm::Tls => {
                            let tcp = TcpStream::connect(tls).await.unwrap();
                            tcp.set_nodelay(true).unwrap();
                            let name = rustls::pki_types::ServerName::try_from("localhost")
                                .unwrap()
                                .to_owned();
                            let stream = connector.connect(name, tcp).await.unwrap();
                            round_trips(stream, messages, out).await;
                        }
                    }
                }
            }
        }
    });
    running.stop();
    let p = |v: &mut Vec<u32>, q: f64| {
        v.sort_unstable();
        percentile_ms(v, q) * 1000.0
    };
    let mut direct = samples[0].clone();
    let (d50, d99) = (p(&mut direct, 0.50), p(&mut direct, 0.99));
    println!(
        "websocket echo round trip, {rounds} rounds x {SOCKETS} sockets x {messages} messages per arm (us)"
    );
    println!(
        "{:<12} {:>8} {:>8} {:>10} {:>10}",
        "arm", "p50", "p99", "p50/direct", "p99/direct"
    );
    for (i, arm) in Arm::ALL.into_iter().enumerate() {
        let v = &mut samples[i];
        let (p50, p99) = (p(v, 0.50), p(v, 0.99));
        println!(
            "{:<12} {p50:>8.1} {p99:>8.1} {:>10.2} {:>10.2}",
            arm.name(),
            p50 / d50.max(1.0),
            p99 / d99.max(1.0)
        );
    }
}
