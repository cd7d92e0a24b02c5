//! rust-pipe's own dispatcher -- the published crate, used as its README shows -- driven
//! from the command line, so that trio_pipe's benchmarks and interop tests can run it
//! beside trio_pipe's dispatcher, against the same worker processes.
//!
//! ```text
//! rust-pipe-peer bench [--tasks N] [--latency-tasks N] [--in-flight N] [--task-type T] [--port P]
//! rust-pipe-peer interop [--port P] [--idle-seconds S] STEP...   STEP: idle, echo, fail or kill
//! ```
//!
//! Both listen on 127.0.0.1 (a free port unless `--port` is given) and write JSON lines
//! on stdout, the first one `{"event":"listening","port":P}`; they then wait for one
//! worker to register (`{"event":"worker",...}`), do their work, stop the dispatcher
//! (`Dispatcher::stop`, which sends the worker `Shutdown`), write
//! `{"event":"stopped"}` and stay up until their stdin closes, so that the `Shutdown`
//! reaches the worker. A failure is written as `{"event":"error","error":...}` and the
//! exit status is 1; a usage error exits with 2.
//!
//! `bench` runs the workload of trio_pipe's harness (`benchmarks/_measure.py`): a
//! warm-up of min(N, 500) tasks, three runs of N no-op tasks with at most `--in-flight`
//! at once (one spawned task per dispatched task, and a semaphore), three runs of N
//! by `--in-flight` tasks that each dispatch a task, await it and dispatch the next,
//! then `--latency-tasks` tasks one at a time. It writes the raw figures --
//! `{"event":"rates","tasks_per_s":[...],"refused":R}`,
//! `{"event":"submitters","tasks_per_s":[...],"refused":R}` and
//! `{"event":"latencies","samples_us":[...]}` -- for the caller to summarise as it does
//! its own. rust-pipe refuses a task (`NoWorkerAvailable`) rather than queue it when
//! the worker is full; such a task is offered again after a yield, and counted in `R`.
//!
//! `interop` runs each STEP against the worker under test, which serves the conformance
//! kit's task types, and writes one line per step: `{"step":S,...}` with the task's
//! result, or with `"error"` when the step failed.
//!
//! - `idle`: nothing for `--idle-seconds` (default 21: longer than rust-pipe's 15 s
//!   heartbeat timeout and its 5 s check, and than a worker's wait for an answer to its
//!   registration); then the worker must still be `Active` under its first
//!   registration (`registeredAt` unchanged: it neither reconnected nor was declared
//!   dead). Writes `registeredAt`, `sameRegistration` and `status`.
//! - `echo`: a payload with text, numbers, nesting and null; `sent` and `result`.
//! - `fail`: a `fail` task; `result` (the worker's `Failed` result).
//! - `kill`: a `sleep` task of 60 s; once a heartbeat shows it running, `kill_task`
//!   (rust-pipe's `Kill`, with a snake_case `task_id`); then a heartbeat from after the
//!   kill must show no task running. Writes `killed` and `stoppedAfterMs`.

use std::io::Write;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rust_pipe::prelude::*;
use serde_json::{json, Value};
use tokio::io::AsyncReadExt;
use tokio::sync::Semaphore;

/// How long a step or a benchmark task may take before it counts as lost.
const RESULT_TIMEOUT: Duration = Duration::from_secs(60);
/// How often the pool is looked at while waiting for a worker or a heartbeat:
/// rust-pipe has no event for either.
const POLL: Duration = Duration::from_millis(5);

const USAGE: &str = "usage: rust-pipe-peer bench [--tasks N] [--latency-tasks N] \
[--in-flight N] [--task-type T] [--port P] [--worker-timeout S]\n       \
rust-pipe-peer interop [--port P] [--worker-timeout S] [--idle-seconds S] STEP... \
(idle, echo, fail, kill)";

struct Options {
    command: String,
    port: u16,
    tasks: usize,
    latency_tasks: usize,
    in_flight: usize,
    task_type: String,
    worker_timeout: Duration,
    idle: Duration,
    steps: Vec<String>,
}

fn parse(args: &[String]) -> Result<Options, String> {
    let (command, rest) = args.split_first().ok_or("no command")?;
    if command != "bench" && command != "interop" {
        return Err(format!("unknown command {command:?}"));
    }
    let mut options = Options {
        command: command.clone(),
        port: 0,
        tasks: 10_000,
        latency_tasks: 2_000,
        in_flight: 256,
        task_type: "noop".into(),
        worker_timeout: Duration::from_secs(60),
        idle: Duration::from_secs(21),
        steps: Vec::new(),
    };
    let mut rest = rest.iter();
    while let Some(arg) = rest.next() {
        if !arg.starts_with("--") {
            match arg.as_str() {
                "idle" | "echo" | "fail" | "kill" if command == "interop" => {
                    options.steps.push(arg.clone())
                }
                _ => return Err(format!("unexpected argument {arg:?}")),
            }
            continue;
        }
        let value = rest.next().ok_or(format!("{arg} needs a value"))?;
        let number = || {
            value
                .parse::<u64>()
                .map_err(|_| format!("{arg}: not a number: {value:?}"))
        };
        match arg.as_str() {
            "--port" => options.port = u16::try_from(number()?).map_err(|_| "--port: too large")?,
            "--tasks" => options.tasks = number()? as usize,
            "--latency-tasks" => options.latency_tasks = number()? as usize,
            "--in-flight" => options.in_flight = number()?.max(1) as usize,
            "--task-type" => options.task_type = value.clone(),
            "--worker-timeout" => options.worker_timeout = Duration::from_secs(number()?),
            "--idle-seconds" => options.idle = Duration::from_secs(number()?),
            _ => return Err(format!("unknown option {arg}")),
        }
    }
    if command == "interop" && options.steps.is_empty() {
        return Err("interop needs at least one step".into());
    }
    Ok(options)
}

/// One JSON line on stdout, flushed at once: the caller reads them as they come.
fn emit(line: Value) {
    let mut out = std::io::stdout().lock();
    // A reader that has gone away leaves nothing to report to.
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let options = match parse(&args) {
        Ok(options) => options,
        Err(error) => {
            eprintln!("rust-pipe-peer: {error}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let dispatcher = match listen(options.port).await {
        Ok((dispatcher, port)) => {
            emit(json!({"event": "listening", "port": port}));
            Arc::new(dispatcher)
        }
        Err(error) => {
            emit(json!({"event": "error", "error": error}));
            return ExitCode::FAILURE;
        }
    };
    let outcome = run(&dispatcher, &options).await;
    dispatcher.stop().await;
    if let Err(error) = outcome {
        emit(json!({"event": "error", "error": error}));
        return ExitCode::FAILURE;
    }
    emit(json!({"event": "stopped"}));
    // Stay up until the caller closes stdin: the Shutdown that stop() queued is
    // written by the connection's own task, which ends with this process.
    let mut rest = Vec::new();
    let _ = tokio::io::stdin().read_to_end(&mut rest).await;
    ExitCode::SUCCESS
}

async fn run(dispatcher: &Arc<Dispatcher>, options: &Options) -> Result<(), String> {
    let task_type = if options.command == "bench" {
        options.task_type.as_str()
    } else {
        "echo"
    };
    let worker = wait_for_worker(dispatcher, task_type, options.worker_timeout).await?;
    emit(json!({
        "event": "worker",
        "workerId": worker.id,
        "language": worker.language,
        "supportedTasks": worker.supported_tasks,
        "maxConcurrency": worker.max_concurrency,
    }));
    if options.command == "bench" {
        bench(dispatcher, options).await
    } else {
        for step in &options.steps {
            let line = match step.as_str() {
                "idle" => idle(dispatcher, &worker, options.idle).await,
                "echo" => echo(dispatcher).await,
                "fail" => fail(dispatcher).await,
                _ => kill(dispatcher, &worker.id).await,
            };
            emit(line.unwrap_or_else(|error| json!({"step": step, "error": error})));
        }
        Ok(())
    }
}

/// A started dispatcher on 127.0.0.1, and its port. rust-pipe binds the port it is
/// given and does not report one the system chose, so a free port is found first
/// (and, should another process take it meanwhile, another one).
async fn listen(port: u16) -> Result<(Dispatcher, u16), String> {
    let attempts = if port == 0 { 5 } else { 1 };
    let mut last_error = String::new();
    for _ in 0..attempts {
        let port = if port == 0 { free_port()? } else { port };
        let dispatcher = Dispatcher::builder().host("127.0.0.1").port(port).build();
        match dispatcher.start().await {
            Ok(()) => return Ok((dispatcher, port)),
            Err(error) => last_error = format!("port {port}: {error}"),
        }
    }
    Err(last_error)
}

fn free_port() -> Result<u16, String> {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    probe
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| e.to_string())
}

async fn wait_for_worker(
    dispatcher: &Dispatcher,
    task_type: &str,
    timeout: Duration,
) -> Result<WorkerInfo, String> {
    let give_up = Instant::now() + timeout;
    loop {
        let found = dispatcher.workers().into_iter().find(|w| {
            w.status == WorkerStatus::Active && w.supported_tasks.iter().any(|t| t == task_type)
        });
        if let Some(worker) = found {
            return Ok(worker);
        }
        if Instant::now() > give_up {
            return Err(format!(
                "no worker for {task_type:?} registered within {timeout:?}"
            ));
        }
        tokio::time::sleep(POLL).await;
    }
}

// -- bench ----------------------------------------------------------------------

async fn bench(dispatcher: &Arc<Dispatcher>, options: &Options) -> Result<(), String> {
    let task_type = options.task_type.as_str();
    let mut refused = 0;
    throughput(
        dispatcher,
        task_type,
        options.tasks.min(500),
        options.in_flight,
        &mut refused,
    )
    .await?;
    refused = 0; // counted over the measured runs only
    let mut rates = Vec::new();
    for _ in 0..3 {
        rates.push(
            throughput(
                dispatcher,
                task_type,
                options.tasks,
                options.in_flight,
                &mut refused,
            )
            .await?,
        );
    }
    emit(json!({"event": "rates", "tasks_per_s": rates, "refused": refused}));
    refused = 0;
    let mut rates = Vec::new();
    for _ in 0..3 {
        let (rate, refusals) =
            throughput_submitters(dispatcher, task_type, options.tasks, options.in_flight).await?;
        rates.push(rate);
        refused += refusals;
    }
    emit(json!({"event": "submitters", "tasks_per_s": rates, "refused": refused}));
    let mut samples = Vec::with_capacity(options.latency_tasks);
    for i in 0..options.latency_tasks {
        let started = Instant::now();
        let handle = dispatch(dispatcher, task_type, json!(i), &mut refused).await?;
        completed(handle.await_with_timeout(RESULT_TIMEOUT).await)?;
        samples.push(started.elapsed().as_secs_f64() * 1e6);
    }
    emit(json!({"event": "latencies", "samples_us": samples}));
    Ok(())
}

/// Tasks per second for `tasks` no-op tasks with at most `in_flight` unfinished: as in
/// trio_pipe's harness, one waiting task per submitted task and a semaphore.
async fn throughput(
    dispatcher: &Dispatcher,
    task_type: &str,
    tasks: usize,
    in_flight: usize,
    refused: &mut u64,
) -> Result<f64, String> {
    let slots = Arc::new(Semaphore::new(in_flight));
    let failure: Arc<Mutex<Option<String>>> = Arc::default();
    let started = Instant::now();
    for i in 0..tasks {
        let slot = slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| e.to_string())?;
        let handle = dispatch(dispatcher, task_type, json!(i), refused).await?;
        let failure = failure.clone();
        tokio::spawn(async move {
            if let Err(error) = completed(handle.await_with_timeout(RESULT_TIMEOUT).await) {
                failure.lock().unwrap().get_or_insert(error);
            }
            drop(slot);
        });
    }
    let all = u32::try_from(in_flight).map_err(|_| "--in-flight: too large")?;
    let _ = slots.acquire_many(all).await.map_err(|e| e.to_string())?;
    let elapsed = started.elapsed().as_secs_f64();
    let failed = failure.lock().unwrap().take();
    match failed {
        Some(error) => Err(error),
        None => Ok(tasks as f64 / elapsed),
    }
}

/// Tasks per second for `tasks` no-op tasks run by `in_flight` tokio tasks that each
/// dispatch one, await its result, and dispatch the next: as trio_pipe's
/// `throughput_submitters`. Also how many times rust-pipe refused a task.
async fn throughput_submitters(
    dispatcher: &Arc<Dispatcher>,
    task_type: &str,
    tasks: usize,
    in_flight: usize,
) -> Result<(f64, u64), String> {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut submitters = tokio::task::JoinSet::new();
    for _ in 0..in_flight {
        let dispatcher = dispatcher.clone();
        let next = next.clone();
        let task_type = task_type.to_owned();
        submitters.spawn(async move {
            let mut refused = 0;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= tasks {
                    return Ok::<u64, String>(refused);
                }
                let handle = dispatch(&dispatcher, &task_type, json!(i), &mut refused).await?;
                completed(handle.await_with_timeout(RESULT_TIMEOUT).await)?;
            }
        });
    }
    let mut refused = 0;
    while let Some(joined) = submitters.join_next().await {
        refused += joined.map_err(|e| e.to_string())??;
    }
    Ok((tasks as f64 / started.elapsed().as_secs_f64(), refused))
}

/// `dispatch`, offering the task again (after a yield) for as long as rust-pipe
/// refuses it because its workers are full.
async fn dispatch(
    dispatcher: &Dispatcher,
    task_type: &str,
    payload: Value,
    refused: &mut u64,
) -> Result<DispatchResult, String> {
    loop {
        match dispatcher
            .dispatch(Task::new(task_type, payload.clone()))
            .await
        {
            Ok(handle) => return Ok(handle),
            Err(DispatchError::NoWorkerAvailable { .. }) => {
                *refused += 1;
                tokio::task::yield_now().await;
            }
            Err(error) => return Err(error.to_string()),
        }
    }
}

fn completed(outcome: Result<TaskResult, DispatchError>) -> Result<TaskResult, String> {
    let result = outcome.map_err(|e| e.to_string())?;
    if result.status != TaskStatus::Completed {
        return Err(format!(
            "task {} ended {:?}: {:?}",
            result.task_id, result.status, result.error
        ));
    }
    Ok(result)
}

// -- interop --------------------------------------------------------------------

async fn result_of(dispatcher: &Dispatcher, task: Task) -> Result<TaskResult, String> {
    let handle = dispatcher.dispatch(task).await.map_err(|e| e.to_string())?;
    handle
        .await_with_timeout(RESULT_TIMEOUT)
        .await
        .map_err(|e| e.to_string())
}

async fn idle(
    dispatcher: &Dispatcher,
    first: &WorkerInfo,
    idle: Duration,
) -> Result<Value, String> {
    tokio::time::sleep(idle).await;
    let now = dispatcher.workers().into_iter().find(|w| w.id == first.id);
    let now = now.ok_or("the worker is no longer in the pool")?;
    Ok(json!({
        "step": "idle",
        "seconds": idle.as_secs(),
        "registeredAt": now.registered_at,
        "sameRegistration": now.registered_at == first.registered_at,
        "status": now.status,
    }))
}

async fn echo(dispatcher: &Dispatcher) -> Result<Value, String> {
    let sent = json!({
        "text": "rust-pipe \u{2192} worker \u{2713}",
        "numbers": [1, 2.5, -3, 9_007_199_254_740_991_u64],
        "nested": {"ok": true, "nothing": null, "list": []},
    });
    let result = result_of(dispatcher, Task::new("echo", sent.clone())).await?;
    Ok(json!({"step": "echo", "sent": sent, "result": result}))
}

async fn fail(dispatcher: &Dispatcher) -> Result<Value, String> {
    let task = Task::new(
        "fail",
        json!({"message": "failed on purpose for rust-pipe"}),
    );
    let result = result_of(dispatcher, task).await?;
    Ok(json!({"step": "fail", "result": result}))
}

async fn kill(dispatcher: &Dispatcher, worker_id: &str) -> Result<Value, String> {
    let dispatched_at = Utc::now();
    let task = Task::new("sleep", json!({"ms": 60_000})).with_timeout(120_000);
    let handle = dispatcher.dispatch(task).await.map_err(|e| e.to_string())?;
    heartbeat_since(dispatcher, worker_id, dispatched_at, |active| active == 1)
        .await
        .map_err(|e| format!("the sleep task never showed as running: {e}"))?;
    let killed_at = Utc::now();
    let started = Instant::now();
    let killed = dispatcher
        .kill_task(handle.task_id, "killed by the interop test")
        .await
        .map_err(|e| e.to_string())?;
    heartbeat_since(dispatcher, worker_id, killed_at, |active| active == 0)
        .await
        .map_err(|e| format!("the killed task kept running: {e}"))?;
    let stopped_after_ms = started.elapsed().as_millis() as u64;
    Ok(json!({"step": "kill", "killed": killed, "stoppedAfterMs": stopped_after_ms}))
}

/// Waits for a heartbeat received after `since` whose active task count satisfies
/// `wanted` (rust-pipe's pool takes the worker's count from each heartbeat).
async fn heartbeat_since(
    dispatcher: &Dispatcher,
    worker_id: &str,
    since: DateTime<Utc>,
    wanted: impl Fn(u32) -> bool,
) -> Result<(), String> {
    let give_up = Instant::now() + Duration::from_secs(30);
    let mut last = None;
    loop {
        let worker = dispatcher.workers().into_iter().find(|w| w.id == worker_id);
        if let Some(worker) = worker {
            if worker.last_heartbeat > since {
                if wanted(worker.active_tasks) {
                    return Ok(());
                }
                last = Some(worker.active_tasks);
            }
        }
        if Instant::now() > give_up {
            return Err(match last {
                Some(active) => format!("the last heartbeat in 30 s reported {active} active"),
                None => "no heartbeat in 30 s".into(),
            });
        }
        tokio::time::sleep(POLL).await;
    }
}
