//! Pushes to the browsers subscribed to a topic of the tenant. Messages are delivered
//! only if the call that published them succeeds.
//!
//! ```no_run
//! use plinth_sdk::broadcast;
//! broadcast::publish_json("sales", &serde_json::json!({"orders": 12}))?;
//! # Ok::<(), plinth_sdk::Error>(())
//! ```

use serde::Serialize;

use crate::Error;
use crate::bindings::plinth::extension::broadcast as wit;

/// Queues a JSON document (as text) for `topic`.
pub fn publish(topic: &str, payload: &str) -> Result<(), Error> {
    wit::publish(topic, payload)
}

/// Serializes `payload` and queues it for `topic`.
pub fn publish_json<T: Serialize>(topic: &str, payload: &T) -> Result<(), Error> {
    let text = serde_json::to_string(payload).map_err(|e| Error::Internal(e.to_string()))?;
    publish(topic, &text)
}
