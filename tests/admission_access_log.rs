//! A request refused by admission control is in the access log, with its status and the
//! reason it was refused (issue 6: "in the access log for refused HTTP requests").

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use common::Backend;
use common::admission::start_logged_admission_levee;
use common::stats::{DE_IP, get_request, request_from};

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_is_logged_with_its_reason() {
    let logs = Captured::default();
    let writer = logs.clone();
    tracing_subscriber::fmt()
        .with_env_filter("levee::access=info")
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .try_init()
        .expect("the only subscriber of this test binary");
    let backend = Backend::start("b1");
    let admission = "[admission.countries.DE]\nrequests_per_sec = 1\nrequest_burst = 1\n";
    let levee = start_logged_admission_levee(1, admission, &backend);
    let plain = levee.addr("plain");
    let first = request_from(DE_IP, plain, &get_request("/first")).await;
    let second = request_from(DE_IP, plain, &get_request("/second")).await;
    assert_eq!((first.status, second.status), (200, 429));
    levee.stop();

    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    let line = |path: &str| {
        text.lines()
            .find(|l| l.contains(&format!("path={path}")))
            .unwrap_or_else(|| panic!("no access log line for {path}:\n{text}"))
            .to_string()
    };
    let refused = line("/second");
    assert!(refused.contains("status=429"), "{refused}");
    assert!(
        refused.contains("refused=\"request_rate_limit\""),
        "{refused}"
    );
    assert!(refused.contains("country=\"DE\""), "{refused}");
    let served = line("/first");
    assert!(
        served.contains("status=200") && !served.contains("refused="),
        "{served}"
    );
}
