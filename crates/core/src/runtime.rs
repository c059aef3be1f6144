//! The supervised runtime: every background loop of the server is a named task that is
//! restarted with back-off when it fails, cancelled on shutdown in the reverse of its start
//! order, and placed either on every replica or on the leader only.
//!
//! A task is a factory `Fn(CancellationToken) -> Future<Output = anyhow::Result<()>>`, so it can
//! be started again after a failure. It runs until its token is cancelled and then returns
//! promptly (finishing what must be finished, such as the last heartbeat flush). Returning
//! before that, with `Ok` or `Err`, or panicking, is a failure: the supervisor logs it with the
//! task's name and starts the task again after a back-off (1 s doubling to 60 s, back to 1 s
//! once a run has lasted a minute).
//!
//! Leader-only tasks run while [`Leadership`] says this replica leads and are cancelled as soon
//! as it stops leading; the leader-election issue plugs its lease into [`Leadership`]. Without
//! leader election ([`Leadership::always`]) every replica leads.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Where a task runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// On every replica, from start-up to shutdown.
    EveryReplica,
    /// Only while this replica is the leader.
    LeaderOnly,
}

impl Placement {
    pub fn as_str(self) -> &'static str {
        match self {
            Placement::EveryReplica => "every_replica",
            Placement::LeaderOnly => "leader_only",
        }
    }
}

/// Whether this replica is the leader, as the leader elector sees it.
#[derive(Debug, Clone)]
pub struct Leadership {
    leading: watch::Receiver<bool>,
    /// For [`Leadership::always`]: the sender that keeps the channel open.
    _constant: Option<Arc<watch::Sender<bool>>>,
}

impl Leadership {
    /// Without leader election: this replica always leads.
    pub fn always() -> Self {
        let (sender, leading) = watch::channel(true);
        Leadership {
            leading,
            _constant: Some(Arc::new(sender)),
        }
    }

    /// Follows `leading`, which the elector sets to `true` while it holds the lease.
    pub fn follow(leading: watch::Receiver<bool>) -> Self {
        Leadership {
            leading,
            _constant: None,
        }
    }

    pub fn is_leader(&self) -> bool {
        *self.leading.borrow()
    }

    /// Resolves once this replica leads (at once if it does), or never if the elector is gone.
    async fn until_leading(&mut self) {
        if self.leading.wait_for(|leading| *leading).await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// Resolves once this replica no longer leads; if the elector is gone, leadership is
    /// considered lost.
    async fn until_not_leading(&mut self) {
        let _ = self.leading.wait_for(|leading| !*leading).await;
    }
}

/// The back-off between restarts of a failing task.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub first: Duration,
    pub max: Duration,
    /// A run that lasted this long resets the back-off to `first`.
    pub healthy_after: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            first: Duration::from_secs(1),
            max: Duration::from_secs(60),
            healthy_after: Duration::from_secs(60),
        }
    }
}

type TaskFactory = Arc<
    dyn Fn(CancellationToken) -> std::pin::Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>>
        + Send
        + Sync,
>;

#[derive(Debug)]
struct Supervised {
    name: &'static str,
    placement: Placement,
    stop: CancellationToken,
    handle: JoinHandle<()>,
}

/// Starts named tasks and stops them in the reverse of their start order. Shared (it is
/// `Sync`): a start-up step may add tasks once it is done.
#[derive(Debug)]
pub struct Supervisor {
    leadership: Leadership,
    backoff: Backoff,
    /// `None` once shut down: tasks spawned after that are not started.
    tasks: std::sync::Mutex<Option<Vec<Supervised>>>,
}

impl Supervisor {
    pub fn new(leadership: Leadership) -> Self {
        Supervisor {
            leadership,
            backoff: Backoff::default(),
            tasks: std::sync::Mutex::new(Some(Vec::new())),
        }
    }

    /// Use `backoff` between restarts of the tasks spawned from now on.
    pub fn with_backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Start `task` under `name`. It is restarted when it fails and cancelled at
    /// [`shutdown`](Self::shutdown), after every task spawned later. Returns `false` (and
    /// starts nothing) once the supervisor is shutting down.
    pub fn spawn<F, Fut>(&self, name: &'static str, placement: Placement, task: F) -> bool
    where
        F: Fn(CancellationToken) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let mut tasks = self.lock();
        let Some(tasks) = tasks.as_mut() else {
            tracing::debug!(task = name, "shutting down: task not started");
            return false;
        };
        let factory: TaskFactory = Arc::new(move |token| Box::pin(task(token)));
        let stop = CancellationToken::new();
        let handle = tokio::spawn(supervise(
            name,
            placement,
            factory,
            stop.clone(),
            self.leadership.clone(),
            self.backoff,
        ));
        tracing::debug!(task = name, placement = placement.as_str(), "task started");
        tasks.push(Supervised {
            name,
            placement,
            stop,
            handle,
        });
        true
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Vec<Supervised>>> {
        self.tasks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The tasks, in start order, with where they run.
    pub fn tasks(&self) -> Vec<(&'static str, Placement)> {
        self.lock()
            .iter()
            .flatten()
            .map(|t| (t.name, t.placement))
            .collect()
    }

    /// Cancel every task, the last started first, each given up to `limit` to return before
    /// it is aborted. Tasks spawned from now on are not started.
    pub async fn shutdown(&self, limit: Duration) {
        let tasks = self.lock().take().unwrap_or_default();
        for task in tasks.into_iter().rev() {
            task.stop.cancel();
            let mut handle = task.handle;
            match tokio::time::timeout(limit, &mut handle).await {
                Ok(_) => tracing::debug!(task = task.name, "task stopped"),
                Err(_) => {
                    tracing::warn!(
                        task = task.name,
                        limit_seconds = limit.as_secs(),
                        "task did not stop in time; aborting it"
                    );
                    handle.abort();
                }
            }
        }
    }
}

/// Aborts the task it holds when dropped, so aborting the supervising loop stops the run too.
struct AbortOnDrop(JoinHandle<anyhow::Result<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn supervise(
    name: &'static str,
    placement: Placement,
    task: TaskFactory,
    stop: CancellationToken,
    mut leadership: Leadership,
    backoff: Backoff,
) {
    let mut delay = backoff.first;
    loop {
        if placement == Placement::LeaderOnly {
            tokio::select! {
                () = stop.cancelled() => return,
                () = leadership.until_leading() => {}
            }
            tracing::info!(task = name, "leading: task starting");
        }
        let run = stop.child_token();
        let started = Instant::now();
        let mut running = AbortOnDrop(tokio::spawn(task(run.clone())));
        let mut lost_leadership = false;
        let outcome = if placement == Placement::LeaderOnly {
            tokio::select! {
                outcome = &mut running.0 => outcome,
                () = leadership.until_not_leading() => {
                    lost_leadership = true;
                    run.cancel();
                    (&mut running.0).await
                }
            }
        } else {
            (&mut running.0).await
        };
        if stop.is_cancelled() {
            if let Ok(Err(err)) = &outcome {
                tracing::warn!(
                    task = name,
                    error = format!("{err:#}"),
                    "task failed while stopping"
                );
            }
            return;
        }
        if lost_leadership {
            tracing::info!(task = name, "no longer leading: task stopped");
            delay = backoff.first;
            continue;
        }
        if started.elapsed() >= backoff.healthy_after {
            delay = backoff.first;
        }
        let retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        match outcome {
            Ok(Ok(())) => tracing::error!(
                task = name,
                retry_in_ms,
                "task stopped unexpectedly; restarting"
            ),
            Ok(Err(err)) => tracing::error!(
                task = name,
                error = format!("{err:#}"),
                retry_in_ms,
                "task failed; restarting"
            ),
            Err(join) if join.is_panic() => {
                tracing::error!(task = name, retry_in_ms, "task panicked; restarting")
            }
            Err(_) => tracing::error!(task = name, retry_in_ms, "task was aborted; restarting"),
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(backoff.max);
    }
}

/// Run `work` until `token` is cancelled, for loops that need no clean-up of their own:
/// cancellation drops the loop where it waits.
pub async fn until_cancelled<F>(token: CancellationToken, work: F) -> anyhow::Result<()>
where
    F: Future<Output = anyhow::Result<()>>,
{
    tokio::select! {
        () = token.cancelled() => Ok(()),
        outcome = work => outcome,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Mutex;

    use super::*;

    fn quick() -> Backoff {
        Backoff {
            first: Duration::from_millis(100),
            max: Duration::from_millis(400),
            healthy_after: Duration::from_secs(60),
        }
    }

    /// Yield until `condition` holds; with the clock paused, timers fire as the runtime idles.
    async fn until(what: &str, condition: impl Fn() -> bool) {
        for _ in 0..10_000 {
            if condition() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("never happened: {what}");
    }

    /// Note the time of a run; returns its number, from 1.
    fn record_run(runs: &Mutex<Vec<Instant>>) -> usize {
        let mut runs = runs.lock().unwrap();
        runs.push(Instant::now());
        runs.len()
    }

    #[tokio::test(start_paused = true)]
    async fn a_failing_or_panicking_task_is_restarted_with_growing_back_off() {
        let runs = Arc::new(Mutex::new(Vec::<Instant>::new()));
        let supervisor = Supervisor::new(Leadership::always()).with_backoff(quick());
        let seen = runs.clone();
        supervisor.spawn("flaky", Placement::EveryReplica, move |token| {
            let seen = seen.clone();
            async move {
                let run = record_run(&seen);
                match run {
                    1 => anyhow::bail!("first run fails"),
                    2 => panic!("second run panics"),
                    3 => Ok(()),
                    _ => {
                        token.cancelled().await;
                        Ok(())
                    }
                }
            }
        });
        until("four runs", || runs.lock().unwrap().len() == 4).await;
        let runs = runs.lock().unwrap().clone();
        let gaps: Vec<u128> = runs.windows(2).map(|w| (w[1] - w[0]).as_millis()).collect();
        // 100 ms, then 200 ms, then 400 ms: each failure (error, panic, early return) doubles it.
        assert_eq!(gaps.len(), 3);
        for (gap, expected) in gaps.iter().zip([100, 200, 400]) {
            assert!((expected..expected + 20).contains(gap), "{gaps:?}");
        }
        supervisor.shutdown(Duration::from_secs(1)).await;
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_stops_tasks_in_reverse_start_order_and_aborts_a_stuck_one() {
        let stopped = Arc::new(Mutex::new(Vec::<&'static str>::new()));
        let supervisor = Supervisor::new(Leadership::always()).with_backoff(quick());
        for name in ["first", "second", "third"] {
            let stopped = stopped.clone();
            supervisor.spawn(name, Placement::EveryReplica, move |token| {
                let stopped = stopped.clone();
                async move {
                    token.cancelled().await;
                    stopped.lock().unwrap().push(name);
                    Ok(())
                }
            });
        }
        let stuck_dropped = Arc::new(AtomicU32::new(0));
        let dropped = stuck_dropped.clone();
        supervisor.spawn("stuck", Placement::EveryReplica, move |_token| {
            let guard = DropCounter(dropped.clone());
            async move {
                let _guard = guard;
                std::future::pending::<()>().await;
                Ok(())
            }
        });
        assert_eq!(
            supervisor.tasks(),
            vec![
                ("first", Placement::EveryReplica),
                ("second", Placement::EveryReplica),
                ("third", Placement::EveryReplica),
                ("stuck", Placement::EveryReplica),
            ]
        );
        // Let every task reach its await point.
        tokio::time::sleep(Duration::from_millis(1)).await;
        supervisor.shutdown(Duration::from_secs(2)).await;
        assert_eq!(*stopped.lock().unwrap(), vec!["third", "second", "first"]);
        until("the stuck task dropped", || {
            stuck_dropped.load(Ordering::SeqCst) == 1
        })
        .await;
        // A start-up step that finishes after shutdown began starts nothing.
        assert!(!supervisor.spawn("late", Placement::EveryReplica, |_| async { Ok(()) }));
        assert!(supervisor.tasks().is_empty());
    }

    struct DropCounter(Arc<AtomicU32>);
    impl Drop for DropCounter {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn leader_only_tasks_run_only_while_leading() {
        let (elector, leading) = watch::channel(false);
        let running = Arc::new(AtomicU32::new(0));
        let starts = Arc::new(AtomicU32::new(0));
        let supervisor = Supervisor::new(Leadership::follow(leading)).with_backoff(quick());
        let (now_running, started) = (running.clone(), starts.clone());
        supervisor.spawn("sweeper", Placement::LeaderOnly, move |token| {
            let (running, started) = (now_running.clone(), started.clone());
            async move {
                started.fetch_add(1, Ordering::SeqCst);
                running.fetch_add(1, Ordering::SeqCst);
                token.cancelled().await;
                running.fetch_sub(1, Ordering::SeqCst);
                Ok(())
            }
        });
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(starts.load(Ordering::SeqCst), 0, "started as a follower");

        elector.send(true).unwrap();
        until("started when leading", || {
            running.load(Ordering::SeqCst) == 1
        })
        .await;
        elector.send(false).unwrap();
        until("stopped when no longer leading", || {
            running.load(Ordering::SeqCst) == 0
        })
        .await;
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(starts.load(Ordering::SeqCst), 1, "restarted as a follower");

        elector.send(true).unwrap();
        until("started again", || starts.load(Ordering::SeqCst) == 2).await;
        supervisor.shutdown(Duration::from_secs(1)).await;
        assert_eq!(running.load(Ordering::SeqCst), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_long_healthy_run_resets_the_back_off() {
        let runs = Arc::new(Mutex::new(Vec::<Instant>::new()));
        let backoff = Backoff {
            healthy_after: Duration::from_secs(1),
            ..quick()
        };
        let supervisor = Supervisor::new(Leadership::always()).with_backoff(backoff);
        let seen = runs.clone();
        supervisor.spawn("long", Placement::EveryReplica, move |token| {
            let seen = seen.clone();
            async move {
                let run = record_run(&seen);
                match run {
                    1 | 2 => anyhow::bail!("quick failure"),
                    3 => {
                        tokio::time::sleep(Duration::from_secs(2)).await;
                        anyhow::bail!("failure after a healthy run")
                    }
                    _ => {
                        token.cancelled().await;
                        Ok(())
                    }
                }
            }
        });
        until("four runs", || runs.lock().unwrap().len() == 4).await;
        let runs = runs.lock().unwrap().clone();
        let last_gap = (runs[3] - runs[2]).as_millis();
        // 2 s of running, then the first back-off again (100 ms), not 400 ms.
        assert!((2100..2120).contains(&last_gap), "{last_gap}");
        supervisor.shutdown(Duration::from_secs(1)).await;
    }
}
