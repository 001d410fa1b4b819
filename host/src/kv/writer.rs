//! The writer thread: the only connection that writes `kv.db`, with group
//! commit. Writes that arrive together share one transaction and one fsync;
//! each runs in a savepoint of its own, so one refused write costs only
//! itself. Replies go out only after COMMIT returned: an acknowledged write
//! is on disk. A failed COMMIT (a full disk) answers every job of the batch
//! with [`KvError::Io`] and keeps nothing of it.

use std::time::Instant;

use rusqlite::Connection;
use shoal_runtime::state::{KvError, WriteOp, WriteRequest, Written};
use tokio::sync::{mpsc, oneshot};

use super::apply::{self, Purged, io_error};
use super::schema;
use crate::metrics::KvMetrics;

/// Most jobs in one batch.
const MAX_JOBS: usize = 512;
/// Most bytes (keys and values) in one batch.
const MAX_BYTES: usize = 16 << 20;

/// What a job asks.
#[derive(Debug)]
pub(crate) enum Work {
    Write(WriteRequest),
    Purge(String),
}

/// What a job did.
#[derive(Debug)]
pub(crate) enum Done {
    Written(Written),
    Purged(Purged),
}

/// One job for the writer and where its answer goes.
#[derive(Debug)]
pub(crate) struct Job {
    pub work: Work,
    pub reply: oneshot::Sender<Result<Done, KvError>>,
}

impl Job {
    fn bytes(&self) -> usize {
        let Work::Write(request) = &self.work else {
            return 0;
        };
        match &request.op {
            WriteOp::Set { key, value } | WriteOp::Swap { key, value, .. } => {
                key.len() + value.len()
            }
            WriteOp::SetMany(pairs) => pairs.iter().map(|(k, v)| k.len() + v.len()).sum(),
            WriteOp::DeleteMany(keys) => keys.iter().map(String::len).sum(),
            WriteOp::Delete { key } | WriteOp::Increment { key, .. } => key.len(),
        }
    }
}

/// The writer's state: its connection and the next version to hand out.
pub(crate) struct Writer {
    pub conn: Connection,
    pub next_version: u64,
    pub metrics: KvMetrics,
}

impl Writer {
    /// Serves jobs until every sender is gone.
    pub(crate) fn run(mut self, mut jobs: mpsc::Receiver<Job>) {
        while let Some(first) = jobs.blocking_recv() {
            let mut bytes = first.bytes();
            let mut batch = vec![first];
            while batch.len() < MAX_JOBS && bytes < MAX_BYTES {
                match jobs.try_recv() {
                    Ok(job) => {
                        bytes += job.bytes();
                        batch.push(job);
                    }
                    Err(_) => break,
                }
            }
            self.batch(batch);
        }
        tracing::debug!("key-value writer stopped");
    }

    /// Runs `batch` in as few transactions as the database allows (one,
    /// unless it loses a transaction midway) and answers every job.
    fn batch(&mut self, batch: Vec<Job>) {
        let mut outcomes: Vec<Option<Result<Done, KvError>>> = Vec::with_capacity(batch.len());
        outcomes.resize_with(batch.len(), || None);
        let mut start = 0;
        while start < batch.len() {
            start = self.transaction(&batch[start..], &mut outcomes[start..]) + start;
        }
        for (job, outcome) in batch.into_iter().zip(outcomes) {
            let outcome = outcome.unwrap_or_else(|| {
                Err(KvError::Io(
                    "the key-value writer lost this write; nothing of it was kept".into(),
                ))
            });
            let _ = job.reply.send(outcome);
        }
    }

    /// Runs `jobs` in one transaction, filling `outcomes`; answers how many
    /// jobs it settled (fewer than all if the database dropped the
    /// transaction midway, in which case the settled ones all failed).
    fn transaction(
        &mut self,
        jobs: &[Job],
        outcomes: &mut [Option<Result<Done, KvError>>],
    ) -> usize {
        let started = Instant::now();
        let before = self.next_version;
        if let Err(error) = self.conn.execute_batch("BEGIN IMMEDIATE") {
            fail_all(outcomes, &io_error(&error));
            return jobs.len();
        }
        for (i, job) in jobs.iter().enumerate() {
            self.metrics.writes.inc();
            let outcome = self.job(&job.work);
            if self.conn.is_autocommit() {
                // The database rolled the whole transaction back: every job
                // before this one is lost with it.
                let error = outcome
                    .err()
                    .unwrap_or_else(|| KvError::Io("the transaction was lost".into()));
                tracing::warn!(%error, jobs = i + 1, "the key-value store lost a transaction");
                self.next_version = before;
                fail_all(&mut outcomes[..=i], &error);
                return i + 1;
            }
            outcomes[i] = Some(outcome);
        }
        let committed = schema::save_next_version(&self.conn, self.next_version)
            .and_then(|()| self.conn.execute_batch("COMMIT"));
        if let Err(error) = committed {
            let error = io_error(&error);
            tracing::warn!(%error, jobs = jobs.len(), "the key-value store could not commit");
            if !self.conn.is_autocommit() {
                let _ = self.conn.execute_batch("ROLLBACK");
            }
            self.next_version = before;
            fail_all(outcomes, &error);
            return jobs.len();
        }
        self.metrics.commits.inc();
        self.metrics
            .commit_seconds
            .observe(started.elapsed().as_secs_f64());
        jobs.len()
    }

    fn job(&mut self, work: &Work) -> Result<Done, KvError> {
        match work {
            Work::Write(request) => apply::apply(&self.conn, request, &mut self.next_version)
                .map(Done::Written)
                .map_err(apply::Failure::into_kv),
            Work::Purge(app) => {
                apply::in_savepoint(&self.conn, |conn| Ok(apply::purge(conn, app)?))
                    .map(Done::Purged)
                    .map_err(apply::Failure::into_kv)
            }
        }
    }
}

fn fail_all(outcomes: &mut [Option<Result<Done, KvError>>], error: &KvError) {
    for outcome in outcomes {
        *outcome = Some(Err(error.clone()));
    }
}
