//! The admin API's client: `POST /reload` for `levee reload`, and the `GET` calls of
//! `levee top` ([`admin_call`]).
//!
//! One HTTP/1.1 exchange over a new TCP connection, with hyper's client connection (as the
//! health probes in `lb/health.rs` do), bounded by `CONNECT_TIMEOUT` and `ANSWER_TIMEOUT`.
//! The admin API answers 200 with the report when the new config is serving and 422 with
//! the errors when it was refused, 401 when it wants a token (`[admin] token`) that was not
//! sent or is wrong; anything else means that what answered is not a working levee admin
//! API. The token comes from `LEVEE_ADMIN_TOKEN`, else from `[admin] token` of the config
//! file ([`admin_token`]).

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Empty, Limited};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use tokio::net::TcpStream;

use crate::config::validate::DEFAULT_ADMIN_LISTEN;

/// How long connecting to the admin API may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the reload may take to answer once connected (it validates every file the config
/// names, so it is generous).
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);
/// Largest answer read; a reload report is a few hundred bytes per error.
const MAX_ANSWER_BYTES: usize = 1 << 20;

/// Environment variable holding the admin API's bearer token (it wins over the config file).
pub const TOKEN_ENV: &str = "LEVEE_ADMIN_TOKEN";

/// One error of a refused reload: the key it concerns and why.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RemoteError {
    /// Key path, e.g. `pools.web.backends[0].address` (empty when the file itself is at fault).
    pub key: String,
    /// Why.
    pub reason: String,
}

/// The report of `POST /reload` as the admin API sent it (see `ReloadReport::to_json`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RemoteReport {
    /// Whether the new config is serving.
    pub ok: bool,
    /// Generation serving after the reload (unchanged when it was refused).
    pub generation: u64,
    /// Source hash of the config serving after the reload, 16 hex digits.
    pub source_hash: String,
    /// Time the reload took, in milliseconds.
    pub took_ms: f64,
    /// Why it was refused; empty when `ok`.
    #[serde(default)]
    pub errors: Vec<RemoteError>,
}

/// An answer of `POST /reload`: the parsed report and the JSON text as received.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The parsed report.
    pub report: RemoteReport,
    /// The response body as received (the report as JSON).
    pub json: String,
}

/// Why no reload report could be had.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The admin address could not be found in the config file.
    #[error("{path}: {reason}; pass --admin ADDR")]
    Config {
        /// The config file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Connecting failed (nothing listens, refused, unreachable, bad address).
    #[error("cannot connect to the admin API at {addr}: {reason}")]
    Connect {
        /// The admin address.
        addr: String,
        /// The connect error (in the message, not a `source`, so it prints once).
        reason: io::Error,
    },
    /// Connecting or the answer took too long.
    #[error("no answer from the admin API at {addr} within {}", humantime::format_duration(*.after))]
    Timeout {
        /// The admin address.
        addr: String,
        /// The limit that passed.
        after: Duration,
    },
    /// The HTTP exchange failed.
    #[error("HTTP exchange with the admin API at {addr} failed: {reason}")]
    Http {
        /// The admin address.
        addr: String,
        /// What failed.
        reason: String,
    },
    /// The admin API wants a bearer token, and none (or a wrong one) was sent.
    #[error(
        "the admin API at {addr} refused the request (401): set LEVEE_ADMIN_TOKEN, or pass \
         --config with the file holding [admin] token"
    )]
    Unauthorized {
        /// The admin address.
        addr: String,
    },
    /// Something answered, but not with a reload report.
    #[error("unexpected answer from {addr}: {status}: {body}")]
    Unexpected {
        /// The admin address.
        addr: String,
        /// Its status code.
        status: StatusCode,
        /// The start of its body.
        body: String,
    },
}

/// Asks the levee whose admin API listens on `addr` (`host:port`) to reload its config file.
/// `Ok` holds the report whether the reload was done or refused (`report.ok`); `Err` means no
/// report was had.
pub async fn post_reload(addr: &str) -> Result<Answer, ClientError> {
    post_reload_with(addr, None).await
}

/// Like [`post_reload`], sending `token` (if any) as `Authorization: Bearer TOKEN`.
pub async fn post_reload_with(addr: &str, token: Option<&str>) -> Result<Answer, ClientError> {
    let call = AdminCall {
        addr,
        method: Method::POST,
        path: "/reload",
        token,
        user_agent: concat!("levee/", env!("CARGO_PKG_VERSION")),
        connect_timeout: CONNECT_TIMEOUT,
        answer_timeout: ANSWER_TIMEOUT,
        max_answer_bytes: MAX_ANSWER_BYTES,
    };
    let (status, json) = admin_call(&call).await?;
    let unexpected = |json: &str| ClientError::Unexpected {
        addr: addr.to_string(),
        status,
        body: json.chars().take(200).collect(),
    };
    if status == StatusCode::UNAUTHORIZED {
        return Err(ClientError::Unauthorized {
            addr: addr.to_string(),
        });
    }
    if status != StatusCode::OK && status != StatusCode::UNPROCESSABLE_ENTITY {
        return Err(unexpected(&json));
    }
    match serde_json::from_str::<RemoteReport>(&json) {
        // 200 goes with ok, 422 with refused; a mismatch is not levee's answer.
        Ok(report) if report.ok == (status == StatusCode::OK) => Ok(Answer { report, json }),
        _ => Err(unexpected(&json)),
    }
}

/// One call to the admin API: where, what, and its bounds (`levee reload`, `levee top`).
#[derive(Debug, Clone)]
pub struct AdminCall<'a> {
    /// The admin address, `host:port`.
    pub addr: &'a str,
    /// Request method.
    pub method: Method,
    /// Request path.
    pub path: &'a str,
    /// Sent as `Authorization: Bearer TOKEN` when present.
    pub token: Option<&'a str>,
    /// `User-Agent` of the request.
    pub user_agent: &'static str,
    /// How long connecting may take.
    pub connect_timeout: Duration,
    /// How long the answer may take once connected.
    pub answer_timeout: Duration,
    /// Largest answer body read.
    pub max_answer_bytes: usize,
}

/// Makes `call` on a new HTTP/1.1 connection: the status and the body as text, whatever the
/// status (the caller decides what it means).
pub async fn admin_call(call: &AdminCall<'_>) -> Result<(StatusCode, String), ClientError> {
    let addr = call.addr;
    let tcp = tokio::time::timeout(call.connect_timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| ClientError::Timeout {
            addr: addr.to_string(),
            after: call.connect_timeout,
        })?
        .map_err(|reason| ClientError::Connect {
            addr: addr.to_string(),
            reason,
        })?;
    tokio::time::timeout(call.answer_timeout, exchange(tcp, call))
        .await
        .map_err(|_| ClientError::Timeout {
            addr: addr.to_string(),
            after: call.answer_timeout,
        })?
}

/// `call` on a connected stream; reads the whole answer (up to its size limit).
async fn exchange(
    tcp: TcpStream,
    call: &AdminCall<'_>,
) -> Result<(StatusCode, String), ClientError> {
    let addr = call.addr;
    let http_err = |reason: String| ClientError::Http {
        addr: addr.to_string(),
        reason,
    };
    let _ = tcp.set_nodelay(true);
    let (mut sender, conn) = http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| http_err(format!("handshake: {e}")))?;
    let mut req = Request::builder()
        .method(call.method.clone())
        .uri(call.path);
    if let Some(token) = call.token {
        req = req.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let req = req
        .header(header::HOST, addr)
        .header(header::USER_AGENT, call.user_agent)
        .header(header::CONNECTION, "close")
        .body(Empty::<Bytes>::new())
        .map_err(|e| http_err(format!("request: {e}")))?;
    let max = call.max_answer_bytes;
    let exchange = async {
        let resp = sender.send_request(req).await?;
        let (parts, body) = resp.into_parts();
        let body = Limited::new(body, max).collect().await;
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>((parts.status, body))
    };
    tokio::pin!(conn, exchange);
    // The connection must be driven while the response is read; once it ends, whatever the
    // exchange got (or why it got nothing) is waiting in `exchange`.
    let (status, body) = tokio::select! {
        biased;
        r = &mut exchange => r,
        _ = &mut conn => exchange.await,
    }
    .map_err(|e| http_err(e.to_string()))?;
    let body = body
        .map_err(|e| http_err(format!("reading the answer: {e}")))?
        .to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// The admin API address a running levee uses, read from `[admin] listen` of its config file
/// (`127.0.0.1:9901` when absent). Only that key is read, so the rest of the file may be
/// invalid, as it is when the reload about to be asked for will be refused. An unspecified
/// address (`0.0.0.0`, `[::]`) is reached on loopback.
pub fn admin_addr_from_config(path: &Path) -> Result<String, ClientError> {
    let fail = |reason: String| ClientError::Config {
        path: path.to_path_buf(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| fail(format!("cannot read: {e}")))?;
    let doc: toml::Table = toml::from_str(&text).map_err(|e| {
        let message = e.message().trim().replace('\n', "; ");
        fail(format!("cannot find [admin] listen: {message}"))
    })?;
    let listen = match doc.get("admin").and_then(|a| a.get("listen")) {
        None => DEFAULT_ADMIN_LISTEN,
        Some(value) => value
            .as_str()
            .ok_or_else(|| fail("admin.listen is not a string".into()))?,
    };
    let listen = listen.trim();
    if listen.is_empty() || listen.eq_ignore_ascii_case("off") {
        return Err(fail("the admin API is off (admin.listen)".into()));
    }
    let addr: SocketAddr = listen
        .parse()
        .map_err(|e| fail(format!("admin.listen {listen:?}: {e}")))?;
    if addr.port() == 0 {
        return Err(fail(
            "admin.listen has port 0: its real port is not in the file".into(),
        ));
    }
    Ok(reachable(addr).to_string())
}

/// The admin API token to send: `LEVEE_ADMIN_TOKEN` when set and not empty, else
/// `[admin] token` of the config file at `config` (only that key is read; a file that cannot
/// be read or parsed gives no token, and the admin API will say if one was needed).
pub fn admin_token(config: Option<&Path>) -> Option<String> {
    let from_env = std::env::var(TOKEN_ENV)
        .ok()
        .filter(|t| !t.trim().is_empty());
    from_env
        .map(|t| t.trim().to_string())
        .or_else(|| token_from_config(config?))
}

fn token_from_config(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let doc: toml::Table = toml::from_str(&text).ok()?;
    let token = doc.get("admin")?.get("token")?.as_str()?;
    Some(token.to_string())
}

/// `addr`, with an unspecified IP replaced by the loopback address of its family.
fn reachable(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv4Addr::LOCALHOST.into(), addr.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv6Addr::LOCALHOST.into(), addr.port())
        }
        _ => addr,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr_of(toml: &str) -> Result<String, ClientError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("levee.toml");
        std::fs::write(&path, toml).unwrap();
        admin_addr_from_config(&path)
    }

    #[test]
    fn admin_address_comes_from_the_config_file() {
        assert_eq!(addr_of("").unwrap(), DEFAULT_ADMIN_LISTEN);
        assert_eq!(
            addr_of("[admin]\nlisten = \"127.0.0.1:9555\"\n").unwrap(),
            "127.0.0.1:9555"
        );
        assert_eq!(
            addr_of("[admin]\nlisten = \"0.0.0.0:9555\"\n").unwrap(),
            "127.0.0.1:9555"
        );
        assert_eq!(
            addr_of("[admin]\nlisten = \"[::]:9555\"\n").unwrap(),
            "[::1]:9555"
        );
        // The rest of the file need not be a valid levee config.
        assert_eq!(
            addr_of("[server]\nbogus = 1\n[admin]\nlisten = \"127.0.0.1:9556\"\n").unwrap(),
            "127.0.0.1:9556"
        );
    }

    #[test]
    fn admin_address_errors_say_what_to_do() {
        for toml in [
            "[admin]\nlisten = \"off\"\n",
            "[admin]\nlisten = \"\"\n",
            "[admin]\nlisten = \"127.0.0.1:0\"\n",
            "[admin]\nlisten = \"nowhere\"\n",
            "[admin]\nlisten = 9901\n",
            "[admin\n",
        ] {
            let e = addr_of(toml).unwrap_err().to_string();
            assert!(e.ends_with("pass --admin ADDR"), "{toml:?}: {e}");
        }
        assert!(
            admin_addr_from_config(Path::new("/nonexistent/levee.toml"))
                .unwrap_err()
                .to_string()
                .contains("cannot read")
        );
    }

    #[test]
    fn token_comes_from_the_config_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("levee.toml");
        std::fs::write(&path, "[admin]\ntoken = \"0123456789abcdef\"\n").unwrap();
        // The environment variable wins when set; tests do not set it.
        if std::env::var_os(TOKEN_ENV).is_none() {
            assert_eq!(
                token_from_config(&path).as_deref(),
                Some("0123456789abcdef")
            );
            assert_eq!(
                admin_token(Some(&path)).as_deref(),
                Some("0123456789abcdef")
            );
            assert_eq!(admin_token(None), None);
        }
        std::fs::write(&path, "[admin]\nlisten = \"127.0.0.1:1\"\n").unwrap();
        assert_eq!(token_from_config(&path), None);
        assert_eq!(
            token_from_config(Path::new("/nonexistent/levee.toml")),
            None
        );
    }

    #[test]
    fn report_json_round_trips() {
        let ok: RemoteReport = serde_json::from_str(
            r#"{"ok":true,"generation":3,"source_hash":"00ff","took_ms":4.25}"#,
        )
        .unwrap();
        assert!(ok.ok && ok.errors.is_empty());
        let refused: RemoteReport = serde_json::from_str(
            r#"{"ok":false,"generation":2,"source_hash":"00ff","took_ms":1.0,
                "errors":[{"key":"pools.web","reason":"bad"}]}"#,
        )
        .unwrap();
        assert_eq!(
            refused.errors,
            vec![RemoteError {
                key: "pools.web".into(),
                reason: "bad".into()
            }]
        );
    }

    #[tokio::test]
    async fn nothing_listening_is_a_connect_error() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        drop(l);
        let e = post_reload(&addr).await.unwrap_err();
        assert!(matches!(e, ClientError::Connect { .. }), "{e}");
    }
}
