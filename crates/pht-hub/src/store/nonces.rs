//! Request nonces recorded in batches: every signed request's nonce must be in the database
//! before the request is served, and one `INSERT` (one commit, one flush to disk) for all the
//! nonces that arrived while the previous one ran costs the database far less than one each.
//!
//! There is no waiting to fill a batch: a lone request is written at once, and under load each
//! batch is whatever queued behind the last. A nonce is answered only once its batch is
//! committed, with the durability of every other commit (FULL synchronous on SQLite,
//! PostgreSQL's synchronous commit). A nonce that repeats within one batch is a replay like any
//! other: its first occurrence is fresh, the rest are not.

use std::collections::HashSet;
use std::sync::Arc;

use sqlx::{AnyPool, Row as _};
use tokio::sync::{mpsc, oneshot};

use super::StoreError;

/// The most nonces in one statement: few enough that every batch size's statement stays in
/// each connection's prepared-statement cache (sqlx keeps 100) beside the hub's others.
const MAX_BATCH: usize = 32;

/// Requests waiting for their nonce to be written, at most; more wait to queue.
const QUEUE: usize = 4096;

const OPERATION: &str = "record a request nonce";

struct Pending {
    keyid: String,
    nonce: String,
    forget_after: i64,
    fresh: oneshot::Sender<Result<bool, Arc<sqlx::Error>>>,
}

/// The queue of nonces to record; its writer task ends when the last handle is dropped.
#[derive(Debug, Clone)]
pub(super) struct NonceWriter {
    queue: mpsc::Sender<Pending>,
}

impl NonceWriter {
    pub(super) fn start(pool: AnyPool) -> NonceWriter {
        let (queue, receiver) = mpsc::channel(QUEUE);
        tokio::spawn(write_batches(pool, receiver));
        NonceWriter { queue }
    }

    /// Records `nonce` of `keyid` until `forget_after` (Unix milliseconds); `false` when it
    /// was recorded before (a replay).
    pub(super) async fn remember(
        &self,
        keyid: &str,
        nonce: &str,
        forget_after: i64,
    ) -> Result<bool, StoreError> {
        let (fresh, answer) = oneshot::channel();
        let pending = Pending {
            keyid: keyid.to_string(),
            nonce: nonce.to_string(),
            forget_after,
            fresh,
        };
        let stopped = || StoreError::Stopped {
            what: "the writer of request nonces",
        };
        self.queue.send(pending).await.map_err(|_| stopped())?;
        answer
            .await
            .map_err(|_| stopped())?
            .map_err(|source| StoreError::Shared {
                operation: OPERATION,
                source,
            })
    }
}

async fn write_batches(pool: AnyPool, mut receiver: mpsc::Receiver<Pending>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while receiver.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let answers = insert_batch(&pool, &batch).await;
        for (pending, fresh) in batch.drain(..).zip(answers) {
            // A request that gave up waiting (its connection closed) needs no answer.
            let _ = pending.fresh.send(fresh);
        }
    }
}

/// One `INSERT … ON CONFLICT DO NOTHING RETURNING` for the batch: a nonce is fresh when its row
/// came back and it is the first of its kind in the batch.
async fn insert_batch(pool: &AnyPool, batch: &[Pending]) -> Vec<Result<bool, Arc<sqlx::Error>>> {
    let values = (0..batch.len())
        .map(|i| format!("(${}, ${}, ${})", 3 * i + 1, 3 * i + 2, 3 * i + 3))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "INSERT INTO seen_nonces (keyid, nonce, forget_after) VALUES {values} \
         ON CONFLICT (keyid, nonce) DO NOTHING RETURNING keyid, nonce"
    );
    let mut query = sqlx::query(&sql);
    for pending in batch {
        query = query
            .bind(&pending.keyid)
            .bind(&pending.nonce)
            .bind(pending.forget_after);
    }
    let inserted: Result<HashSet<(String, String)>, sqlx::Error> = async {
        query
            .fetch_all(pool)
            .await?
            .iter()
            .map(|row| Ok((row.try_get("keyid")?, row.try_get("nonce")?)))
            .collect()
    }
    .await;
    match inserted {
        Ok(mut inserted) => batch
            .iter()
            // `remove`: only the first of a repeated pair finds it.
            .map(|pending| Ok(inserted.remove(&(pending.keyid.clone(), pending.nonce.clone()))))
            .collect(),
        Err(error) => {
            let error = Arc::new(error);
            batch.iter().map(|_| Err(error.clone())).collect()
        }
    }
}
