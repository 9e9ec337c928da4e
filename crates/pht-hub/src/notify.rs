//! Wake-ups for long-polling stations: one `tokio::sync::Notify` per station, so that a thousand
//! waiting stations cost a thousand parked futures, not a thread or a database poll loop each.
//!
//! Only wakes; whether there is work is always decided by the store. Across PostgreSQL replicas,
//! [`listen_for_work`] turns other replicas' announcements (`NOTIFY pht_work, '<replica>
//! <station>'`; a replica's own are skipped) into local wake-ups; when its connection drops it
//! wakes every waiting poll (announcements may have been missed meanwhile) and reconnects. The
//! sweep's re-check covers an announcement lost before it was sent.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use sqlx::postgres::PgListener;
use tokio::sync::Notify;

use crate::store::{announced_station, WORK_CHANNEL};
use crate::HubState;

#[derive(Debug, Default)]
pub struct WorkNotifier {
    by_station: Mutex<HashMap<String, Arc<Notify>>>,
}

impl WorkNotifier {
    /// The station's wake-up, created on first use.
    pub fn for_station(&self, station: &str) -> Arc<Notify> {
        let mut by_station = self
            .by_station
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        by_station
            .entry(station.to_string())
            .or_insert_with(|| Arc::new(Notify::new()))
            .clone()
    }

    /// Wakes every waiting long-poll, of every station.
    pub fn wake_all(&self) {
        let all: Vec<Arc<Notify>> = self
            .by_station
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .values()
            .cloned()
            .collect();
        for notify in all {
            notify.notify_waiters();
        }
    }

    /// Wakes every long-poll of `station` that is waiting now.
    pub fn wake(&self, station: &str) {
        let notify = self
            .by_station
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(station)
            .cloned();
        if let Some(notify) = notify {
            notify.notify_waiters();
        }
    }
}

/// Listens on [`WORK_CHANNEL`] and wakes this replica's polls of each announced station. The
/// first connection is made before this returns, so a hub that cannot listen does not start.
pub async fn listen_for_work(
    database_url: &str,
    state: Arc<HubState>,
) -> Result<tokio::task::JoinHandle<()>, sqlx::Error> {
    let mut listener = PgListener::connect(database_url).await?;
    listener.listen(WORK_CHANNEL).await?;
    Ok(tokio::spawn(async move {
        let mut connected = true;
        loop {
            match listener.try_recv().await {
                Ok(Some(notification)) => {
                    if !connected {
                        tracing::info!("listening for other replicas' work again");
                        connected = true;
                    }
                    if let Some(station) =
                        announced_station(notification.payload(), state.store.replica())
                    {
                        state.notifier.wake(station);
                    }
                }
                // The connection dropped; the next call reconnects and listens again.
                Ok(None) => {
                    tracing::warn!("lost the database connection that hears other replicas' work; reconnecting");
                    connected = false;
                    state.notifier.wake_all();
                }
                Err(error) => {
                    if connected {
                        tracing::warn!(%error, "cannot listen for other replicas' work; retrying");
                    }
                    connected = false;
                    state.notifier.wake_all();
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                }
            }
        }
    }))
}
