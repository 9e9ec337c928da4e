//! Wake-ups for long-polling stations: one `tokio::sync::Notify` per station, so that a thousand
//! waiting stations cost a thousand parked futures, not a thread or a database poll loop each.
//!
//! Only wakes; whether there is work is always decided by the store. A hub replica does not see
//! another replica's wake-ups; the bounded long-poll wait covers that until the store can signal.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

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
