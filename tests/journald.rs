//! Native journald logging: with `JOURNAL_STREAM` naming its stdout (as systemd sets it), the
//! server sends its records to journald with structured fields, so that
//! `journalctl CONNECTION_ID=...` finds one connection's history. Runs against a private
//! journald in its own mount and pid namespaces (tests/journald.sh). Needs root, `unshare`,
//! `systemd-cat` and systemd-journald; without them it says why and passes, unless
//! `REQUIRE_ALL_TESTS=1` (CI) makes that a failure.

mod common;
mod launch;

use std::io::{BufRead, BufReader, Lines, Write};
use std::path::Path;
use std::process::{ChildStdout, Command, Stdio};

use launch::{BIN, PATIENCE, chat, configure, wait_for_200};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/journald.sh");
const JOURNALD: &str = "/lib/systemd/systemd-journald";
const SERVER_ID: &str = "journal-test";
/// Sent as a message's data: it must never reach the logs at info level.
const PAYLOAD: &str = "payload-that-must-not-be-logged";

/// Why this machine cannot run the test, if it cannot.
fn missing_prerequisite() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("needs root (mount and pid namespaces for a private journald)".into());
    }
    let on_path = |tool: &str| {
        std::env::var_os("PATH")
            .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(tool).is_file()))
    };
    ["unshare", "systemd-cat", "journalctl"]
        .into_iter()
        .find(|tool| !on_path(tool))
        .map(|tool| format!("`{tool}` is not installed"))
        .or_else(|| (!Path::new(JOURNALD).exists()).then(|| format!("{JOURNALD} is not installed")))
}

/// Reads the script's lines until `wanted`.
fn expect_line(lines: &mut Lines<BufReader<ChildStdout>>, wanted: &str) {
    for line in lines.by_ref() {
        if line.expect("read journald.sh's output") == wanted {
            return;
        }
    }
    panic!("tests/journald.sh ended before printing {wanted:?}");
}

/// The journal entries whose `field` is `value`.
fn entries_with<'a>(journal: &'a [Value], field: &str, value: &str) -> Vec<&'a Value> {
    journal
        .iter()
        .filter(|entry| entry[field] == value)
        .collect()
}

/// Each entry's transport, identifier and message, kernel messages aside, for failure reports.
fn summary(journal: &[Value]) -> Vec<String> {
    journal
        .iter()
        .filter(|e| e["_TRANSPORT"] != "kernel")
        .map(|e| {
            format!(
                "{} {} {}",
                e["_TRANSPORT"], e["SYSLOG_IDENTIFIER"], e["MESSAGE"]
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_records_reach_journald_with_their_fields() {
    if let Some(why) = missing_prerequisite() {
        common::skip::skip("the journald test", &why);
        return;
    }
    let mut command = Command::new("unshare");
    command
        .args([
            "--mount",
            "--pid",
            "--fork",
            "--mount-proc",
            "--propagation",
            "private",
            "bash",
            SCRIPT,
            BIN,
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let addrs = configure(&mut command, SERVER_ID);
    // Each connection's records are debug; the summary at shutdown is info.
    command.env("LOG_LEVEL", "info,concurrent_socket=debug");
    let mut script = command.spawn().expect("run tests/journald.sh");
    // Dropping the script's stdin (also when this test fails) stops the server and the journal.
    let mut stop = script.stdin.take().unwrap();
    let mut lines = BufReader::new(script.stdout.take().unwrap()).lines();
    expect_line(&mut lines, "started");

    wait_for_200(addrs.public, "/health").await;
    let connection_id = format!("journal-{}", std::process::id());
    let (mut client, _) = chat(addrs.public, &connection_id).await;
    client
        .send_json(&json!({"type": "message", "id": "1", "data": PAYLOAD}))
        .await;
    assert_eq!(client.recv_reply().await["type"], "message_response");
    let bye = CloseFrame {
        code: CloseCode::Normal,
        reason: "done".into(),
    };
    client.send(Message::Close(Some(bye))).await.unwrap();
    let (echoed, _) = client.recv_until_close(PATIENCE).await;
    assert_eq!(
        echoed.map(|frame| frame.code),
        Some(CloseCode::Normal),
        "the server answers the close"
    );

    writeln!(stop, "stop").unwrap();
    expect_line(&mut lines, "journal");
    let journal: Vec<Value> = lines
        .map(|line| serde_json::from_str(&line.unwrap()).expect("JSON entries"))
        .collect();
    assert!(script.wait().unwrap().success(), "tests/journald.sh failed");

    let history = entries_with(&journal, "CONNECTION_ID", &connection_id);
    let messages: Vec<&Value> = history.iter().map(|entry| &entry["MESSAGE"]).collect();
    assert!(
        messages.contains(&&Value::from("connection opened")),
        "no \"connection opened\" record with CONNECTION_ID={connection_id}; the journal holds {:?}",
        summary(&journal)
    );
    let closed = history
        .iter()
        .find(|entry| entry["MESSAGE"] == "connection closed")
        .unwrap_or_else(|| {
            panic!("no \"connection closed\" record for {connection_id}: {messages:?}")
        });
    for (field, value) in [
        ("_TRANSPORT", "journal"), // native records, not lines of the stdout stream
        ("CLOSE_CODE", "1000"),
        ("REASON", "client_close"),
        ("SERVER_ID", SERVER_ID),
        ("PEER", "127.0.0.1"),
        ("PRIORITY", "6"),
    ] {
        assert_eq!(closed[field], value, "{field} of {closed}");
    }
    let tally = &entries_with(&journal, "MESSAGE", "connections since the last summary")[0];
    assert_eq!(
        (&tally["OPENED"], &tally["CLOSED"], &tally["PRIORITY"]),
        (&json!("1"), &json!("1"), &json!("5")),
        "{tally}"
    );
    assert_eq!(
        entries_with(&journal, "MESSAGE", "listening")[0]["SERVER_ID"],
        SERVER_ID
    );
    let leaks: Vec<&Value> = journal
        .iter()
        .filter(|entry| entry.to_string().contains(PAYLOAD))
        .collect();
    assert!(
        leaks.is_empty(),
        "a message payload reached the journal: {leaks:?}"
    );
}
