//! The command line as an operator meets it: `--version` names the commit, `levee top`
//! without a terminal says so instead of drawing into a pipe, completions and a man page.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;

#[test]
fn version_names_the_package_version_and_the_commit() {
    let out = run_levee(&["--version"]);
    assert_eq!(out.status.code(), Some(0), "{}", out.stderr);
    let line = out.stdout.trim();
    let want = format!("levee {} (", env!("CARGO_PKG_VERSION"));
    assert!(line.starts_with(&want) && line.ends_with(')'), "{line}");
    let commit = &line[want.len()..line.len() - 1];
    let hash = commit.trim_end_matches("-dirty");
    let is_hash = hash.len() >= 7 && hash.chars().all(|c| c.is_ascii_hexdigit());
    assert!(is_hash || commit == "unknown", "{line}");
}

#[test]
fn top_without_a_terminal_says_it_needs_one() {
    // run_levee captures stdout into a file: not a terminal.
    let out = run_levee(&["top", "--admin", "127.0.0.1:9"]);
    assert_eq!(out.status.code(), Some(2), "{}", out.stderr);
    assert!(out.stderr.contains("needs a terminal"), "{}", out.stderr);
    assert!(out.stdout.is_empty(), "drew into a file: {:?}", out.stdout);
}

#[test]
fn completions_and_the_man_page_are_printed() {
    let bash = run_levee(&["completions", "bash"]);
    assert_eq!(bash.status.code(), Some(0), "{}", bash.stderr);
    assert!(bash.stdout.contains("_levee()"), "{}", bash.stdout);
    assert!(bash.stdout.contains("reload"), "subcommands missing");
    let zsh = run_levee(&["completions", "zsh"]);
    assert!(zsh.stdout.starts_with("#compdef levee"), "{}", zsh.stdout);
    let bad = run_levee(&["completions", "cmd.exe"]);
    assert_eq!(bad.status.code(), Some(2), "{}", bad.stderr);
    let man = run_levee(&["man"]);
    assert_eq!(man.status.code(), Some(0), "{}", man.stderr);
    assert!(man.stdout.contains(".TH levee 1"), "{}", man.stdout);
    assert!(man.stdout.contains(".SH SUBCOMMANDS"), "{}", man.stdout);
}
