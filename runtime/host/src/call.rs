//! One call into an extension and what it gives back, typed per kind of call: a
//! [`Descriptor`] from `describe`, [`Rendered`] views from `render`, an
//! [`ActionResponse`] from `invoke`, nothing from `on-tick` and `handle`.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::capability::view::{LogLine, Publication};
use crate::error::{ErrorCode, PlinthError};
use crate::grant::Grants;
use crate::limits::Limits;
use crate::receipt::Receipt;
use crate::scope::Scope;

/// Who a call runs for and under which grants and limits.
#[derive(Debug, Clone)]
pub struct Invocation {
    pub scope: Scope,
    pub grants: Grants,
    pub limits: Limits,
}

/// One call into an extension.
#[derive(Debug, Clone)]
pub enum Call {
    Describe,
    Render {
        config: serde_json::Value,
        params: Vec<(String, String)>,
    },
    Tick {
        config: serde_json::Value,
        sequence: u64,
        scheduled_at_ms: u64,
    },
    Action {
        name: String,
        config: serde_json::Value,
        body: serde_json::Value,
    },
    Event {
        id: String,
        name: String,
        payload: serde_json::Value,
        occurred_at_ms: u64,
        attempt: u32,
    },
}

impl Call {
    /// The export called, as receipts name it.
    pub fn name(&self) -> &'static str {
        match self {
            Call::Describe => "describe",
            Call::Render { .. } => "render",
            Call::Tick { .. } => "on-tick",
            Call::Action { .. } => "invoke",
            Call::Event { .. } => "handle",
        }
    }
}

/// What a successful call returned, by kind of call. As JSON it is the value itself:
/// the descriptor, `{"views": […]}`, the action's response, or `null`.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Outcome {
    Described(Box<Descriptor>),
    Rendered(Rendered),
    Answered(ActionResponse),
    /// `on-tick` or `handle` finished.
    Done,
}

impl Outcome {
    /// Its size as the JSON the API answers with, which the output cap bounds.
    pub(crate) fn json_len(&self) -> usize {
        match self {
            Outcome::Rendered(rendered) => rendered.json_len(),
            Outcome::Done => 4,
            other => serde_json::to_vec(other).map_or(0, |json| json.len()),
        }
    }
}

/// An extension's description of itself, from `describe` at upload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Descriptor {
    /// Unique within a tenant (`[a-z0-9-]`).
    pub id: String,
    pub name: String,
    /// Semantic version of the extension.
    pub version: String,
    pub description: String,
    pub category: String,
    pub icon: String,
    pub default_size: TileSize,
    /// JSON Schema of an installation's config.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub config_schema: serde_json::Value,
    /// How often the widget wants `on-tick`; none for no ticks.
    pub refresh_interval_ms: Option<u32>,
    /// Capabilities the extension intends to use.
    pub capabilities: Vec<String>,
    /// Event patterns of a handler (`order.*`).
    pub event_patterns: Vec<String>,
    pub actions: Vec<ActionInfo>,
}

impl Descriptor {
    /// Whether the extension declares the action `name`.
    pub fn declares_action(&self, name: &str) -> bool {
        self.actions.iter().any(|a| a.name == name)
    }
}

/// A tile's size in grid cells.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TileSize {
    pub width: u32,
    pub height: u32,
}

/// An action an extension declares.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ActionInfo {
    pub name: String,
    pub description: String,
}

/// A widget's views, already in the JSON the API and the browser see: serialized once,
/// where the output cap is checked, and written out as they are.
#[derive(Debug, Clone)]
pub struct Rendered {
    views: Box<RawValue>,
}

impl Rendered {
    pub(crate) fn new(views: Box<RawValue>) -> Self {
        Rendered { views }
    }

    /// The JSON array of views.
    pub fn views(&self) -> &RawValue {
        &self.views
    }

    /// The size of `{"views":…}`.
    pub fn json_len(&self) -> usize {
        self.views.get().len() + r#"{"views":}"#.len()
    }
}

impl Serialize for Rendered {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Shown<'a> {
            views: &'a RawValue,
        }
        Shown { views: &self.views }.serialize(serializer)
    }
}

/// What an action answered: a text body as text, any other as base64.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ActionResponse {
    pub content_type: String,
    pub filename: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body_base64: Option<String>,
}

/// What a call produced, what it used, and what it said.
#[derive(Debug, Clone, Serialize)]
#[serde(bound(serialize = "T: Serialize"))]
pub struct CallReport<T = Outcome> {
    #[serde(serialize_with = "serialize_outcome", rename = "result")]
    pub outcome: Result<T, PlinthError>,
    pub receipt: Receipt,
    pub logs: Vec<LogLine>,
    pub published: Vec<Publication>,
    /// Which case of the contract's `error` the guest returned, when the call failed
    /// with one: an event's retry or dead letter is decided by it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub guest_error: Option<GuestErrorCase>,
    /// Whether the guest ran at all: false when the host refused the call first (its
    /// grants, its limits, the tenant's quota).
    #[serde(skip)]
    pub ran: bool,
}

/// A case of the contract's `error`, as the guest returned it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GuestErrorCase {
    InvalidInput,
    NotFound,
    Denied,
    QuotaExceeded,
    Unavailable,
    Timeout,
    Rejected,
    Internal,
}

impl GuestErrorCase {
    /// Whether the contract says the same event may succeed later (`unavailable`,
    /// `timeout`, `internal`); every other case rejects it for good.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            GuestErrorCase::Unavailable | GuestErrorCase::Timeout | GuestErrorCase::Internal
        )
    }
}

impl CallReport {
    /// The report with its outcome narrowed to one kind of call; another kind is an
    /// internal error (the sandbox answers each call with its own kind).
    pub fn narrow<T>(self, pick: impl FnOnce(Outcome) -> Option<T>) -> CallReport<T> {
        let call = self.receipt.call;
        CallReport {
            outcome: self.outcome.and_then(|outcome| {
                pick(outcome).ok_or_else(|| {
                    PlinthError::new(
                        ErrorCode::Internal,
                        format!("{call} answered with another kind of outcome"),
                    )
                })
            }),
            receipt: self.receipt,
            logs: self.logs,
            published: self.published,
            guest_error: self.guest_error,
            ran: self.ran,
        }
    }
}

impl<T: Serialize> CallReport<T> {
    /// The outcome as the JSON the API and `plinth run` show.
    pub fn outcome_json(&self) -> Result<serde_json::Value, PlinthError> {
        match &self.outcome {
            Ok(value) => serde_json::to_value(value)
                .map_err(|e| PlinthError::new(ErrorCode::Internal, e.to_string())),
            Err(error) => Err(error.clone()),
        }
    }
}

fn serialize_outcome<T: Serialize, S: serde::Serializer>(
    outcome: &Result<T, PlinthError>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    #[derive(Serialize)]
    #[serde(rename_all = "lowercase")]
    enum Shown<'a, T> {
        Ok(&'a T),
        Error(&'a PlinthError),
    }
    match outcome {
        Ok(value) => Shown::Ok(value).serialize(serializer),
        Err(error) => Shown::<T>::Error(error).serialize(serializer),
    }
}
