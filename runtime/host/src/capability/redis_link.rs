//! One lazily opened Redis connection with timeouts and a pause after failures, shared by
//! the Redis backends: while Redis is down, calls skip it instead of each waiting out a
//! connection attempt.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::error::BackendError;
use crate::lock::Recover;

/// How long one Redis operation, or one connection attempt, may take.
pub const OPERATION_TIMEOUT: Duration = Duration::from_millis(250);
/// How long Redis is skipped after a failure before it is tried again.
pub const RETRY_AFTER: Duration = Duration::from_millis(500);

/// Why there is no connection right now.
pub enum LinkDown {
    /// Redis failed recently; it is not tried again until the pause is over.
    Paused,
    /// Connecting failed just now.
    Failed(String),
}

pub struct RedisLink {
    client: redis::Client,
    connection: tokio::sync::Mutex<Option<ConnectionManager>>,
    retry_at: Mutex<Option<Instant>>,
}

impl RedisLink {
    /// A link to the Redis at `url`; nothing is connected until first used.
    pub fn open(url: &str) -> Result<Self, BackendError> {
        let client = redis::Client::open(url)
            .map_err(|e| BackendError::InvalidInput(format!("redis URL {url:?}: {e}")))?;
        Ok(RedisLink {
            client,
            connection: tokio::sync::Mutex::new(None),
            retry_at: Mutex::new(None),
        })
    }

    pub fn client(&self) -> &redis::Client {
        &self.client
    }

    /// The shared connection, opened on first use.
    pub async fn connection(&self) -> Result<ConnectionManager, LinkDown> {
        if let Some(at) = *self.retry_at.lock().recover()
            && Instant::now() < at
        {
            return Err(LinkDown::Paused);
        }
        let mut slot = self.connection.lock().await;
        if let Some(connection) = slot.as_ref() {
            return Ok(connection.clone());
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(OPERATION_TIMEOUT))
            .set_response_timeout(Some(OPERATION_TIMEOUT))
            .set_number_of_retries(0);
        let connecting = self.client.get_connection_manager_with_config(config);
        match tokio::time::timeout(OPERATION_TIMEOUT, connecting).await {
            Ok(Ok(connection)) => Ok(slot.insert(connection).clone()),
            Ok(Err(error)) => {
                self.went_down();
                Err(LinkDown::Failed(error.to_string()))
            }
            Err(_) => {
                self.went_down();
                Err(LinkDown::Failed("connecting timed out".into()))
            }
        }
    }

    /// Pauses use of Redis after a failure.
    pub fn went_down(&self) {
        *self.retry_at.lock().recover() = Some(Instant::now() + RETRY_AFTER);
    }
}
