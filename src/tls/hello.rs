//! What a ClientHello says before the handshake starts: whether the client tries to resume
//! a session (a TLS 1.3 `pre_shared_key`, or a TLS 1.2 session ticket it presents).
//!
//! The fair handshake scheduler serves resumption attempts first: they are cheap (no
//! certificate signature, often no key exchange) and come from clients levee already
//! served. The bytes are peeked from the socket, not consumed, so rustls reads the same
//! hello afterwards. A hello split over several TCP segments, or anything that does not
//! parse, counts as "not a resumption": the client is then scheduled like a new one, never
//! refused for it. A TLS 1.2 session-ID resumption is not recognised (a TLS 1.3 client sends
//! a random legacy session ID too, so the field proves nothing).

use tls_parser::{
    TlsExtension, TlsMessage, TlsMessageHandshake, parse_tls_client_hello_extensions,
    parse_tls_plaintext,
};

/// Bytes peeked for the classification (a ClientHello is usually 250..1800 bytes).
pub const PEEK_BYTES: usize = 2048;

/// Whether `bytes` (the start of a connection) hold a ClientHello that offers to resume.
pub fn is_resumption_attempt(bytes: &[u8]) -> bool {
    whole_hello_resumes(bytes).unwrap_or(false)
}

/// Whether `bytes` (the start of a connection) hold a whole ClientHello record that parses,
/// and if so whether it offers to resume; `None` otherwise (the record is not all in yet,
/// or it is no ClientHello this parser reads): the caller then waits for the whole hello and
/// lets rustls judge it.
pub fn whole_hello_resumes(bytes: &[u8]) -> Option<bool> {
    let (_, record) = parse_tls_plaintext(bytes).ok()?;
    record.msg.iter().find_map(|m| match m {
        TlsMessage::Handshake(TlsMessageHandshake::ClientHello(hello)) => {
            Some(hello.ext.is_some_and(offers_resumption))
        }
        _ => None,
    })
}

fn offers_resumption(ext: &[u8]) -> bool {
    let Ok((_, extensions)) = parse_tls_client_hello_extensions(ext) else {
        return false;
    };
    extensions.iter().any(|e| match e {
        TlsExtension::PreSharedKey(_) => true,
        TlsExtension::SessionTicket(ticket) => !ticket.is_empty(),
        _ => false,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::Arc;

    use rustls::pki_types::ServerName;
    use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConnection};

    use super::{is_resumption_attempt, whole_hello_resumes};
    use crate::tls::{Resumption, generate_self_signed, provider, server_config};

    /// A server config with a generated certificate, and a client config trusting it.
    fn configs() -> (Arc<rustls::ServerConfig>, Arc<ClientConfig>) {
        let resumption = Resumption::new(64).unwrap();
        let named = generate_self_signed(&provider()).unwrap();
        let mut roots = RootCertStore::empty();
        roots.add(named.0.cert[0].clone()).unwrap();
        let server = server_config(vec![named], &resumption).unwrap();
        let client = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        (server, Arc::new(client))
    }

    /// Runs a handshake in memory; returns the client's first flight (its ClientHello).
    fn handshake(server: &Arc<rustls::ServerConfig>, client: &Arc<ClientConfig>) -> Vec<u8> {
        let name = ServerName::try_from("localhost").unwrap();
        let mut c = ClientConnection::new(Arc::clone(client), name).unwrap();
        let mut s = ServerConnection::new(Arc::clone(server)).unwrap();
        let mut hello = Vec::new();
        c.write_tls(&mut hello).unwrap();
        let mut to_server = hello.clone();
        for _ in 0..10 {
            let mut rd = &to_server[..];
            while !rd.is_empty() {
                s.read_tls(&mut rd).unwrap();
            }
            s.process_new_packets().unwrap();
            let mut to_client = Vec::new();
            while s.wants_write() {
                s.write_tls(&mut to_client).unwrap();
            }
            let mut rd = &to_client[..];
            while !rd.is_empty() {
                c.read_tls(&mut rd).unwrap();
            }
            c.process_new_packets().unwrap();
            to_server.clear();
            while c.wants_write() {
                c.write_tls(&mut to_server).unwrap();
            }
        }
        assert!(!c.is_handshaking() && !s.is_handshaking());
        hello
    }

    #[test]
    fn a_hello_with_a_ticket_is_a_resumption_attempt() {
        let (server, client) = configs();
        let first = handshake(&server, &client);
        assert!(first.len() > 100);
        assert!(!is_resumption_attempt(&first), "fresh client");
        let second = handshake(&server, &client);
        assert!(is_resumption_attempt(&second), "client holding a ticket");
        assert!(!is_resumption_attempt(&second[..40]), "truncated");
        assert!(!is_resumption_attempt(b"GET / HTTP/1.1\r\n\r\n"));
        assert!(!is_resumption_attempt(&[]));
        // The whole-hello form tells "not all in yet" from "no".
        assert_eq!(whole_hello_resumes(&first), Some(false));
        assert_eq!(whole_hello_resumes(&second), Some(true));
        assert_eq!(whole_hello_resumes(&first[..first.len() - 1]), None);
        assert_eq!(whole_hello_resumes(&second[..40]), None);
        assert_eq!(whole_hello_resumes(b"GET / HTTP/1.1\r\n\r\n"), None);
    }
}
