//! A request refused by admission control is in the access log, with its status and the
//! reason it was refused (issue 6: "in the access log for refused HTTP requests").

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::Backend;
use common::admission::start_logged_admission_levee;
use common::stats::{DE_IP, get_request, request_from};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_is_logged_with_its_reason() {
    let backend = Backend::start("b1");
    let admission = "[admission.countries.DE]\nrequests_per_sec = 1\nrequest_burst = 1\n";
    let levee = start_logged_admission_levee(1, admission, &backend);
    let plain = levee.addr("plain");
    let first = request_from(DE_IP, plain, &get_request("/first")).await;
    let second = request_from(DE_IP, plain, &get_request("/second")).await;
    assert_eq!((first.status, second.status), (200, 429));
    // Stopping flushes: every line is in the file once levee has stopped.
    let text = levee.stop_then_access_log();
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
