//! Just enough of the Chrome DevTools protocol for the dashboard's browser test: headless
//! chromium started with `--remote-debugging-port=0`, its page target found through
//! `/json/list`, and a blocking WebSocket client (RFC 6455: masked client frames, text,
//! continuation, ping and close) that sends commands and keeps every event it reads.
//!
//! Every read has a timeout, so a browser that hangs fails the test instead of stalling it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// Longest wait for one answer from the browser.
const READ_TIMEOUT: Duration = Duration::from_secs(15);

/// The chromium binary: `$LEVEE_CHROMIUM`, else the first of Debian's names on `PATH`.
pub fn find_chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("LEVEE_CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| {
            ["chromium", "chromium-browser", "google-chrome"].map(|name| dir.join(name))
        })
        .find(|p| p.is_file())
}

/// A headless chromium of this test, killed (by its own handle) when dropped.
pub struct Browser {
    child: Child,
    /// Port of its DevTools endpoint.
    pub port: u16,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts `binary` headless on `about:blank` with a fresh profile, a `width`x`height`
    /// window, and DevTools on an ephemeral loopback port.
    pub fn start(binary: &Path, width: u32, height: u32) -> Browser {
        let profile = tempfile::tempdir().unwrap();
        let child = Command::new(binary)
            .args([
                "--headless",
                // As root (CI containers) chromium refuses to start with its sandbox.
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-extensions",
                "--disable-background-networking",
                "--disable-component-update",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
                &format!("--window-size={width},{height}"),
                &format!("--user-data-dir={}", profile.path().display()),
                "about:blank",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        let port_file = profile.path().join("DevToolsActivePort");
        let started = Instant::now();
        let port = loop {
            let port = std::fs::read_to_string(&port_file)
                .ok()
                .and_then(|t| t.lines().next().and_then(|l| l.trim().parse().ok()));
            if let Some(port) = port {
                break port;
            }
            assert!(
                started.elapsed() < READ_TIMEOUT,
                "chromium wrote no DevToolsActivePort within {READ_TIMEOUT:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        Browser {
            child,
            port,
            _profile: profile,
        }
    }

    /// The DevTools WebSocket URL of the first page target.
    pub fn page_ws_url(&self) -> String {
        let started = Instant::now();
        loop {
            let list = http_get(self.port, "/json/list");
            let url = serde_json::from_str::<Value>(&list).ok().and_then(|v| {
                v.as_array()?
                    .iter()
                    .find(|t| t["type"] == "page")?
                    .get("webSocketDebuggerUrl")?
                    .as_str()
                    .map(str::to_string)
            });
            if let Some(url) = url {
                return url;
            }
            assert!(started.elapsed() < READ_TIMEOUT, "no page target: {list}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `GET path` on the DevTools HTTP endpoint, the body.
fn http_get(port: u16, path: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    // Chromium keeps the connection open: read the head, then Content-Length bytes.
    let mut reader = BufReader::new(s);
    let mut length = 0;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        if line == "\r\n" || line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().unwrap();
        }
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body).unwrap();
    String::from_utf8(body).unwrap()
}

/// A DevTools session on one target: commands answered in order, events kept.
pub struct Cdp {
    stream: TcpStream,
    next_id: u64,
    /// Every event read so far (`{"method", "params"}`).
    pub events: Vec<Value>,
}

impl Cdp {
    /// Opens the WebSocket at `url` (`ws://127.0.0.1:PORT/devtools/page/ID`).
    pub fn connect(url: &str) -> Cdp {
        let rest = url.strip_prefix("ws://").expect("a ws:// URL");
        let (host, path) = rest.split_at(rest.find('/').expect("a path"));
        let mut stream = TcpStream::connect(host).unwrap();
        stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        stream.set_nodelay(true).unwrap();
        // No Origin header: chromium accepts such clients without --remote-allow-origins.
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: bGV2ZWUtZGFzaGJvYXJkIQ==\r\n\
             Sec-WebSocket-Version: 13\r\n\r\n"
        )
        .unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut status = String::new();
        reader.read_line(&mut status).unwrap();
        assert!(
            status.contains(" 101 "),
            "WebSocket upgrade refused: {status}"
        );
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if line == "\r\n" || line.is_empty() {
                break;
            }
        }
        assert!(
            reader.buffer().is_empty(),
            "nothing is sent before a command"
        );
        Cdp {
            stream,
            next_id: 1,
            events: Vec::new(),
        }
    }

    /// Sends `method` with `params` and returns its `result` (panics on an error answer).
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let msg = json!({ "id": id, "method": method, "params": params }).to_string();
        self.send_frame(0x1, msg.as_bytes());
        loop {
            let text = self.recv_message();
            let v: Value = serde_json::from_str(&text).expect("DevTools sends JSON");
            if v["id"] == id {
                assert!(v.get("error").is_none(), "{method}: {v}");
                return v["result"].clone();
            }
            if v.get("method").is_some() {
                self.events.push(v);
            }
        }
    }

    /// Evaluates `expression` in the page; its value (by value, promises awaited).
    pub fn eval(&mut self, expression: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({ "expression": expression, "returnByValue": true, "awaitPromise": true }),
        );
        assert!(r.get("exceptionDetails").is_none(), "{expression}: {r}");
        r["result"]["value"].clone()
    }

    fn send_frame(&mut self, opcode: u8, payload: &[u8]) {
        let mask = [0x6c, 0x65, 0x76, 0x65];
        let mut frame = vec![0x80 | opcode];
        match payload.len() {
            n if n < 126 => frame.push(0x80 | n as u8),
            n if n <= 0xffff => {
                frame.push(0x80 | 126);
                frame.extend((n as u16).to_be_bytes());
            }
            n => {
                frame.push(0x80 | 127);
                frame.extend((n as u64).to_be_bytes());
            }
        }
        frame.extend(mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.stream.write_all(&frame).unwrap();
    }

    /// The next whole text message (continuations joined, pings answered).
    fn recv_message(&mut self) -> String {
        let mut message = Vec::new();
        loop {
            let mut head = [0u8; 2];
            self.stream
                .read_exact(&mut head)
                .expect("a frame from chromium");
            let (fin, opcode) = (head[0] & 0x80 != 0, head[0] & 0x0f);
            let len = match head[1] & 0x7f {
                126 => {
                    let mut b = [0u8; 2];
                    self.stream.read_exact(&mut b).unwrap();
                    u64::from(u16::from_be_bytes(b))
                }
                127 => {
                    let mut b = [0u8; 8];
                    self.stream.read_exact(&mut b).unwrap();
                    u64::from_be_bytes(b)
                }
                n => u64::from(n),
            };
            assert!(head[1] & 0x80 == 0, "a server does not mask its frames");
            let mut payload = vec![0u8; usize::try_from(len).unwrap()];
            self.stream.read_exact(&mut payload).unwrap();
            match opcode {
                0x0 | 0x1 => message.extend(payload),
                0x8 => panic!("chromium closed the DevTools connection"),
                0x9 => self.send_frame(0xa, &payload),
                _ => {}
            }
            if fin && (opcode == 0x0 || opcode == 0x1) {
                return String::from_utf8(message).expect("text frames are UTF-8");
            }
        }
    }
}

/// Standard base64 (with padding), as DevTools sends screenshots.
pub fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {c}"),
    };
    let digits: Vec<u8> = text.bytes().filter(|&c| c != b'=').map(value).collect();
    let mut out = Vec::with_capacity(digits.len() * 3 / 4);
    for chunk in digits.chunks(4) {
        let mut n = 0u32;
        for (i, d) in chunk.iter().enumerate() {
            n |= u32::from(*d) << (18 - 6 * i);
        }
        let bytes = n.to_be_bytes();
        out.extend(&bytes[1..chunk.len()]);
    }
    out
}

#[test]
fn base64_round_trip() {
    assert_eq!(base64_decode("aGVsbG8="), b"hello");
    assert_eq!(base64_decode("aGk="), b"hi");
    assert_eq!(base64_decode("YWJj"), b"abc");
}
