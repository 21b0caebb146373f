//! Helpers on what the host passes in: config, parameters, bodies, events.

use serde::de::DeserializeOwned;

use crate::{ActionRequest, ActionResponse, Error, Event, RenderRequest, Tick};

fn parse<T: DeserializeOwned>(json: &str) -> Result<T, Error> {
    // The host sends "" for "no config"; read it as an empty object so defaults apply.
    let json = if json.trim().is_empty() { "{}" } else { json };
    Ok(serde_json::from_str(json)?)
}

impl RenderRequest {
    /// The installation's config, parsed.
    ///
    /// ```
    /// # use plinth_sdk::RenderRequest;
    /// #[derive(serde::Deserialize)]
    /// struct Config { #[serde(default)] top: u32 }
    /// let req = RenderRequest { config: r#"{"top": 5}"#.into(), params: vec![] };
    /// assert_eq!(req.config::<Config>().unwrap().top, 5);
    /// ```
    pub fn config<T: DeserializeOwned>(&self) -> Result<T, Error> {
        parse(&self.config)
    }

    /// A query parameter of the request.
    ///
    /// ```
    /// # use plinth_sdk::RenderRequest;
    /// let req = RenderRequest { config: "{}".into(), params: vec![("range".into(), "24h".into())] };
    /// assert_eq!(req.param("range"), Some("24h"));
    /// ```
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

impl Tick {
    /// The installation's config, parsed.
    pub fn config<T: DeserializeOwned>(&self) -> Result<T, Error> {
        parse(&self.config)
    }
}

impl ActionRequest {
    /// The installation's config, parsed.
    pub fn config<T: DeserializeOwned>(&self) -> Result<T, Error> {
        parse(&self.config)
    }

    /// The request body, parsed.
    pub fn body<T: DeserializeOwned>(&self) -> Result<T, Error> {
        parse(&self.body)
    }
}

impl Event {
    /// The event's payload, parsed.
    ///
    /// ```
    /// # use plinth_sdk::Event;
    /// let event = Event { id: "e1".into(), name: "order.completed".into(),
    ///     payload: r#"{"total": 12.5}"#.into(), occurred_at_ms: 0, attempt: 1 };
    /// let payload: serde_json::Value = event.payload_json().unwrap();
    /// assert_eq!(payload["total"], 12.5);
    /// ```
    pub fn payload_json<T: DeserializeOwned>(&self) -> Result<T, Error> {
        parse(&self.payload)
    }
}

impl ActionResponse {
    /// A JSON document.
    pub fn json(value: &serde_json::Value) -> Self {
        ActionResponse {
            content_type: "application/json".into(),
            body: value.to_string().into_bytes(),
            filename: None,
        }
    }

    /// Text of any content type, e.g. `text/csv`.
    ///
    /// ```
    /// # use plinth_sdk::ActionResponse;
    /// let csv = ActionResponse::text("text/csv", "a,b\n1,2\n").download("export.csv");
    /// assert_eq!(csv.filename.as_deref(), Some("export.csv"));
    /// ```
    pub fn text(content_type: impl Into<String>, body: impl Into<String>) -> Self {
        ActionResponse {
            content_type: content_type.into(),
            body: body.into().into_bytes(),
            filename: None,
        }
    }

    /// Suggests a file name for the download.
    pub fn download(mut self, filename: impl Into<String>) -> Self {
        self.filename = Some(filename.into());
        self
    }
}
