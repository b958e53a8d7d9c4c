use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Instant;

use super::{
    scheduler::{PauseReason, Tracker},
    ConnectionEvents,
};

pub struct Graveyard {
    connections: HashMap<String, SavedState>,
}

impl Graveyard {
    pub fn new() -> Graveyard {
        Graveyard {
            connections: HashMap::new(),
        }
    }

    /// Add a new connection.
    /// Return tracker of previous connection if connection id already exists
    ///
    /// Shanhai patch: a session past its expiry (MQTT 5 session expiry
    /// interval) is gone; only the metrics come back.
    pub fn retrieve(&mut self, id: &str) -> Option<SavedState> {
        let mut saved = self.connections.remove(id)?;
        let expired = saved
            .session_state
            .as_ref()
            .and_then(|state| state.expires_at)
            .is_some_and(|at| Instant::now() >= at);
        if expired {
            saved.session_state = None;
        }
        Some(saved)
    }

    /// Save connection tracker
    pub fn save_state(
        &mut self,
        mut tracker: Tracker,
        subscriptions: HashSet<String>,
        metrics: ConnectionEvents,
        unacked_pubrels: VecDeque<u16>,
        expires_at: Option<Instant>,
    ) {
        tracker.pause(PauseReason::Busy);
        let id = tracker.id.clone();

        let session_state = SessionState {
            tracker,
            subscriptions,
            unacked_pubrels,
            expires_at,
        };

        self.connections.insert(
            id,
            SavedState {
                session_state: Some(session_state),
                metrics,
            },
        );
    }

    /// Shanhai patch 8: the trackers of the sessions kept while their
    /// clients are away; their cursors hold what the clients are owed.
    pub fn saved_trackers(&self) -> impl Iterator<Item = &Tracker> {
        self.connections
            .values()
            .filter_map(|saved| saved.session_state.as_ref())
            .map(|state| &state.tracker)
    }

    /// Save only metrics for connection
    pub fn save_metrics(&mut self, id: String, metrics: ConnectionEvents) {
        self.connections.insert(
            id,
            SavedState {
                session_state: None,
                metrics,
            },
        );
    }
}

#[derive(Debug)]
pub struct SavedState {
    pub session_state: Option<SessionState>,
    pub metrics: ConnectionEvents,
}

#[derive(Debug)]
pub struct SessionState {
    pub tracker: Tracker,
    pub subscriptions: HashSet<String>,
    // used for pubrel in qos2
    pub unacked_pubrels: VecDeque<u16>,
    /// Shanhai patch: when the session expires (`None`: never).
    pub expires_at: Option<std::time::Instant>,
}
