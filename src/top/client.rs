//! The polling side of `levee top`: one `GET /stats` on the admin API through
//! `admin::client::admin_call` (a new HTTP/1.1 connection), bounded by short timeouts so a
//! stuck admin API shows up as an error within the poll interval.
//!
//! Errors reuse `admin::client::ClientError`, so both commands word them alike.

use std::time::Duration;

use http::{Method, StatusCode};

use super::model::Stats;
use crate::admin::client::{AdminCall, ClientError, admin_call};

/// How long connecting to the admin API may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long `/stats` may take to answer once connected.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(3);
/// Largest answer read: 250 countries and 100 ASNs with 60-second histories fit easily.
const MAX_ANSWER_BYTES: usize = 8 << 20;

/// Fetches and parses `GET /stats` from the admin API at `addr` (`host:port`), sending
/// `Authorization: Bearer TOKEN` when a token is given.
pub async fn fetch_stats(addr: &str, token: Option<&str>) -> Result<Stats, ClientError> {
    let call = AdminCall {
        addr,
        method: Method::GET,
        path: "/stats",
        token,
        user_agent: concat!("levee-top/", env!("CARGO_PKG_VERSION")),
        connect_timeout: CONNECT_TIMEOUT,
        answer_timeout: ANSWER_TIMEOUT,
        max_answer_bytes: MAX_ANSWER_BYTES,
    };
    let (status, body) = admin_call(&call).await?;
    let unexpected = |body: &str| ClientError::Unexpected {
        addr: addr.to_string(),
        status,
        body: body.chars().take(200).collect(),
    };
    if status == StatusCode::UNAUTHORIZED {
        let hint = if token.is_some() {
            "the admin token was refused"
        } else {
            "the admin API wants a token: pass --token TOKEN or set LEVEE_ADMIN_TOKEN"
        };
        return Err(unexpected(hint));
    }
    if status != StatusCode::OK {
        return Err(unexpected(&body));
    }
    Stats::from_json(&body).map_err(|e| unexpected(&format!("not /stats JSON: {e}")))
}

/// The admin token `levee top` sends: `--token`, else what `levee reload` would send
/// (`LEVEE_ADMIN_TOKEN`, else `[admin] token` of `--config FILE`; see
/// `admin::client::admin_token`), else none.
pub fn resolve_token(flag: Option<String>, config: Option<&std::path::Path>) -> Option<String> {
    flag.filter(|t| !t.is_empty())
        .or_else(|| crate::admin::client::admin_token(config))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A one-shot server that records the request head and answers `answer`.
    async fn one_shot(answer: &'static str) -> (String, tokio::task::JoinHandle<String>) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let task = tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut buf = vec![0u8; 4096];
            let mut head = Vec::new();
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = s.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                head.extend_from_slice(&buf[..n]);
            }
            s.write_all(answer.as_bytes()).await.unwrap();
            s.shutdown().await.unwrap();
            String::from_utf8_lossy(&head).into_owned()
        });
        (addr, task)
    }

    #[tokio::test]
    async fn sends_the_bearer_token_and_parses_stats() {
        let body = r#"{"config":{"generation":7},"countries":[{"country":"DE"}]}"#;
        let answer: &'static str = Box::leak(
            format!(
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            )
            .into_boxed_str(),
        );
        let (addr, server) = one_shot(answer).await;
        let stats = fetch_stats(&addr, Some("s3cret")).await.unwrap();
        assert_eq!(stats.config.generation, 7);
        assert_eq!(stats.countries[0].country, "DE");
        let head = server.await.unwrap().to_ascii_lowercase();
        assert!(head.starts_with("get /stats http/1.1\r\n"), "{head}");
        assert!(head.contains("authorization: bearer s3cret\r\n"), "{head}");
    }

    #[tokio::test]
    async fn unauthorized_says_to_pass_a_token() {
        let (addr, server) =
            one_shot("HTTP/1.1 401 Unauthorized\r\ncontent-length: 0\r\n\r\n").await;
        let e = fetch_stats(&addr, None).await.unwrap_err().to_string();
        assert!(e.contains("--token"), "{e}");
        let head = server.await.unwrap().to_ascii_lowercase();
        assert!(!head.contains("authorization"), "{head}");
    }

    #[test]
    fn token_comes_from_the_flag_or_the_config() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("levee.toml");
        std::fs::write(
            &path,
            "[admin]\nlisten = \"127.0.0.1:9901\"\ntoken = \"t0k\"\n",
        )
        .unwrap();
        assert_eq!(
            resolve_token(Some("flag".into()), Some(&path)),
            Some("flag".into())
        );
        if std::env::var_os("LEVEE_ADMIN_TOKEN").is_none() {
            assert_eq!(resolve_token(None, Some(&path)), Some("t0k".into()));
            assert_eq!(resolve_token(None, None), None);
            assert_eq!(resolve_token(None, Some(&dir.path().join("none"))), None);
        }
    }
}
