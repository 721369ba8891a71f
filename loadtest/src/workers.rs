//! Splitting a run over worker processes (the same binary, hidden `__worker` subcommand):
//! the parent sends each worker its plan on stdin; the worker streams one JSON snapshot per
//! line on stdout; the parent merges them. Also the in-process path, as a single source.

use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc::{UnboundedSender, unbounded_channel};
use tokio_util::sync::CancellationToken;

use crate::engine::{self, EnginePlan};
use crate::net;
use crate::stats::Snapshot;

/// What a source (the process itself, or a worker) tells the aggregating parent.
#[derive(Debug)]
pub enum Event {
    Snapshot(usize, Box<Snapshot>),
    Done(usize),
    Failed(usize, String),
}

/// The name of the hidden subcommand a worker runs.
pub const WORKER_COMMAND: &str = "__worker";

/// Runs the plan in this process, as source 0.
pub fn spawn_local(plan: EnginePlan, events: UnboundedSender<Event>, interrupt: CancellationToken) {
    let (tx, mut rx) = unbounded_channel();
    let engine = tokio::spawn(engine::run(plan, tx, interrupt));
    tokio::spawn(async move {
        while let Some(snapshot) = rx.recv().await {
            let _ = events.send(Event::Snapshot(0, Box::new(snapshot)));
        }
        let _ = events.send(match engine.await {
            Ok(Ok(())) => Event::Done(0),
            Ok(Err(message)) => Event::Failed(0, message),
            Err(e) => Event::Failed(0, format!("the load engine failed: {e}")),
        });
    });
}

/// Starts one worker process per plan; returns their handles (killed when dropped).
pub fn spawn_workers(
    plans: Vec<EnginePlan>,
    events: UnboundedSender<Event>,
) -> Result<Vec<Child>, String> {
    let exe = std::env::current_exe()
        .map_err(|e| format!("cannot find this program to start workers: {e}"))?;
    let mut children = Vec::new();
    for (index, plan) in plans.into_iter().enumerate() {
        let mut child = Command::new(&exe)
            .arg(WORKER_COMMAND)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot start worker {index}: {e}"))?;
        let mut stdin = child.stdin.take().expect("stdin is piped");
        let stdout = child.stdout.take().expect("stdout is piped");
        let spec = serde_json::to_vec(&plan).expect("plans serialize");
        let events = events.clone();
        tokio::spawn(async move {
            if let Err(e) = stdin.write_all(&spec).await {
                let _ = events.send(Event::Failed(
                    index,
                    format!("worker {index}: sending its plan: {e}"),
                ));
                return;
            }
            drop(stdin);
            let mut lines = BufReader::new(stdout).lines();
            loop {
                match lines.next_line().await {
                    Ok(Some(line)) => match serde_json::from_str::<Snapshot>(&line) {
                        Ok(snapshot) => {
                            let _ = events.send(Event::Snapshot(index, Box::new(snapshot)));
                        }
                        Err(e) => {
                            let _ = events.send(Event::Failed(
                                index,
                                format!("worker {index}: bad report line: {e}"),
                            ));
                            return;
                        }
                    },
                    Ok(None) => break,
                    Err(e) => {
                        let _ = events.send(Event::Failed(
                            index,
                            format!("worker {index}: reading its output: {e}"),
                        ));
                        return;
                    }
                }
            }
            let _ = events.send(Event::Done(index));
        });
        children.push(child);
    }
    Ok(children)
}

/// Waits for every worker and names the ones that did not exit cleanly.
pub async fn reap(children: Vec<Child>) -> Result<(), String> {
    let mut failures = Vec::new();
    for (index, mut child) in children.into_iter().enumerate() {
        match child.wait().await {
            Ok(status) if status.success() => {}
            Ok(status) => failures.push(format!("worker {index} exited with {status}")),
            Err(e) => failures.push(format!("worker {index}: {e}")),
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures.join("; "))
    }
}

/// The worker side: read the plan from stdin, run it, print snapshots as JSON lines.
/// Returns the process exit code.
pub async fn worker_main() -> i32 {
    let mut spec = Vec::new();
    if let Err(e) = tokio::io::stdin().read_to_end(&mut spec).await {
        eprintln!("loadtest worker: reading the plan: {e}");
        return 2;
    }
    let plan: EnginePlan = match serde_json::from_slice(&spec) {
        Ok(plan) => plan,
        Err(e) => {
            eprintln!("loadtest worker: bad plan on stdin: {e}");
            return 2;
        }
    };
    if let Err(e) = net::raise_fd_limit() {
        eprintln!("loadtest worker: {e}");
        return 2;
    }
    // Ctrl-C reaches the whole process group: stop early and report what was measured.
    let interrupt = CancellationToken::new();
    let on_signal = interrupt.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            on_signal.cancel();
        }
    });
    let (tx, mut rx) = unbounded_channel();
    let engine = tokio::spawn(engine::run(plan, tx, interrupt));
    let mut stdout = tokio::io::stdout();
    while let Some(snapshot) = rx.recv().await {
        let mut line = serde_json::to_vec(&snapshot).expect("snapshots serialize");
        line.push(b'\n');
        if stdout.write_all(&line).await.is_err() || stdout.flush().await.is_err() {
            // The parent is gone: nobody will read the report.
            return 2;
        }
    }
    match engine.await {
        Ok(Ok(())) => 0,
        Ok(Err(message)) => {
            eprintln!("loadtest worker: {message}");
            2
        }
        Err(e) => {
            eprintln!("loadtest worker: the load engine failed: {e}");
            2
        }
    }
}
