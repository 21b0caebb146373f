//! The contract's one error, with constructors that say what the host does with it.

use crate::Error;

impl Error {
    /// A transient failure: an event handler's event is retried with backoff.
    ///
    /// ```
    /// # use plinth_sdk::Error;
    /// assert!(matches!(Error::retry("db busy"), Error::Unavailable(_)));
    /// ```
    pub fn retry(message: impl Into<String>) -> Self {
        Error::Unavailable(message.into())
    }

    /// A permanent refusal: the event goes to the dead letters without retries.
    ///
    /// ```
    /// # use plinth_sdk::Error;
    /// assert!(matches!(Error::reject("no such order"), Error::Rejected(_)));
    /// ```
    pub fn reject(message: impl Into<String>) -> Self {
        Error::Rejected(message.into())
    }

    /// The caller's input is wrong.
    pub fn invalid(message: impl Into<String>) -> Self {
        Error::InvalidInput(message.into())
    }
}

impl From<serde_json::Error> for Error {
    /// Unparseable JSON coming in is the caller's fault.
    fn from(error: serde_json::Error) -> Self {
        Error::InvalidInput(format!("invalid JSON: {error}"))
    }
}
