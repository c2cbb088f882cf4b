//! Proxy errors, each tagged with the side that failed and mapped once to a status code.

use http::StatusCode;

use crate::lb::{Outcome, PickError};

/// Why a request could not be proxied.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The route's pool picked no backend: none usable, or its queue full or timed out.
    #[error(transparent)]
    Pick(#[from] PickError),
    /// TCP connect to the backend was refused or failed.
    #[error("upstream connect failed: {0}")]
    Connect(std::io::Error),
    /// TCP connect to the backend did not finish in time.
    #[error("upstream connect timed out")]
    ConnectTimeout,
    /// The backend did not send a response head in time.
    #[error("upstream response timed out")]
    ResponseTimeout,
    /// The backend connection failed (reset, closed, protocol error).
    #[error("upstream failed: {0}")]
    Upstream(hyper::Error),
    /// The client's request body exceeded the configured limit.
    #[error("request body too large")]
    BodyTooLarge,
    /// The client's request body arrived slower than `[admission] min_upload_rate`.
    #[error("request body too slow")]
    BodyTooSlow,
    /// The client's request body failed (client went away or sent a malformed body).
    #[error("client request body failed: {0}")]
    ClientBody(hyper::Error),
    /// The request is not one a proxy can forward as it is; the text is the whole body of
    /// the 400 answered.
    #[error("bad request")]
    BadRequest(&'static str),
    /// `CONNECT`: levee does not open tunnels.
    #[error("CONNECT is not supported")]
    MethodNotAllowed,
    /// The backend's response head is malformed (its body is framed twice); its connection
    /// is not reused.
    #[error("malformed backend response")]
    BadResponse,
}

impl ProxyError {
    /// The status code answered to the client.
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::Pick(_) => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::Connect(_) | ProxyError::Upstream(_) => StatusCode::BAD_GATEWAY,
            ProxyError::ConnectTimeout | ProxyError::ResponseTimeout => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ProxyError::BodyTooSlow => StatusCode::REQUEST_TIMEOUT,
            ProxyError::ClientBody(_) | ProxyError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ProxyError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ProxyError::BadResponse => StatusCode::BAD_GATEWAY,
        }
    }

    /// Whether the backend refused the TCP connect (nothing listens there).
    pub fn is_connect_refused(&self) -> bool {
        matches!(self, ProxyError::Connect(e) if e.kind() == std::io::ErrorKind::ConnectionRefused)
    }

    /// Whether the backend is to blame (counts as a backend failure).
    pub fn is_upstream(&self) -> bool {
        matches!(
            self,
            ProxyError::Connect(_)
                | ProxyError::ConnectTimeout
                | ProxyError::ResponseTimeout
                | ProxyError::Upstream(_)
                | ProxyError::BadResponse
        )
    }

    /// What this error, met on an attempt, means for the backend: a failed connect, or
    /// another failure.
    pub fn attempt_outcome(&self) -> Outcome {
        match self {
            ProxyError::Connect(_) | ProxyError::ConnectTimeout => Outcome::ConnectFailed,
            _ => Outcome::Failed,
        }
    }

    /// The small text body answered to the client.
    pub fn body_text(&self) -> &'static str {
        match self {
            ProxyError::Pick(PickError::NoBackend) => {
                "503 Service Unavailable: no backend available\n"
            }
            ProxyError::Pick(PickError::QueueFull) => {
                "503 Service Unavailable: every backend is busy\n"
            }
            ProxyError::Pick(PickError::QueueTimeout) => {
                "503 Service Unavailable: no backend freed up in time\n"
            }
            ProxyError::Connect(_) => "502 Bad Gateway: could not connect to the backend\n",
            ProxyError::Upstream(_) => "502 Bad Gateway: the backend connection failed\n",
            ProxyError::ConnectTimeout => "504 Gateway Timeout: backend connect timed out\n",
            ProxyError::ResponseTimeout => "504 Gateway Timeout: the backend did not answer\n",
            ProxyError::BodyTooLarge => "413 Content Too Large: request body over the limit\n",
            ProxyError::BodyTooSlow => "408 Request Timeout: request body too slow\n",
            ProxyError::ClientBody(_) => "400 Bad Request: request body failed\n",
            ProxyError::BadRequest(text) => text,
            ProxyError::MethodNotAllowed => {
                "405 Method Not Allowed: levee does not tunnel CONNECT\n"
            }
            ProxyError::BadResponse => "502 Bad Gateway: the backend's response was malformed\n",
        }
    }
}
