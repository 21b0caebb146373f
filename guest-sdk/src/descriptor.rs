//! Builders for the extension's [`Descriptor`].

use crate::{Action, Descriptor, Size};

impl Descriptor {
    /// A descriptor with an id and a display name; everything else has defaults
    /// (version `0.1.0`, size 4×3, schema `{}`, no ticks, no capabilities declared).
    ///
    /// ```
    /// # use plinth_sdk::Descriptor;
    /// let d = Descriptor::new("orders", "Orders").category("sales").refresh_every_ms(5_000);
    /// assert_eq!(d.refresh_interval_ms, Some(5_000));
    /// ```
    pub fn new(id: impl Into<String>, name: impl Into<String>) -> Self {
        Descriptor {
            id: id.into(),
            name: name.into(),
            version: "0.1.0".into(),
            description: String::new(),
            category: String::new(),
            icon: String::new(),
            default_size: Size {
                width: 4,
                height: 3,
            },
            config_schema: "{}".into(),
            refresh_interval_ms: None,
            capabilities: Vec::new(),
            event_patterns: Vec::new(),
            actions: Vec::new(),
        }
    }

    /// The extension's semantic version.
    pub fn version(mut self, version: impl Into<String>) -> Self {
        self.version = version.into();
        self
    }

    /// One sentence for the catalogue.
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.description = description.into();
        self
    }

    /// Catalogue grouping, e.g. `monitoring`.
    pub fn category(mut self, category: impl Into<String>) -> Self {
        self.category = category.into();
        self
    }

    /// Icon name from the console's icon set.
    pub fn icon(mut self, icon: impl Into<String>) -> Self {
        self.icon = icon.into();
        self
    }

    /// Default size on the dashboard grid.
    pub fn size(mut self, width: u32, height: u32) -> Self {
        self.default_size = Size { width, height };
        self
    }

    /// JSON Schema of the installation's config.
    ///
    /// ```
    /// # use plinth_sdk::Descriptor;
    /// let d = Descriptor::new("w", "W")
    ///     .config_schema(&serde_json::json!({"type": "object", "properties": {}}));
    /// assert!(d.config_schema.contains("object"));
    /// ```
    pub fn config_schema(mut self, schema: &serde_json::Value) -> Self {
        self.config_schema = schema.to_string();
        self
    }

    /// Asks the host to call `on_tick` at this interval.
    pub fn refresh_every_ms(mut self, interval_ms: u32) -> Self {
        self.refresh_interval_ms = Some(interval_ms);
        self
    }

    /// Declares a capability the extension uses (`cache`, `db`, `db:write`, `broadcast`,
    /// `log`); shown to the tenant admin at install.
    pub fn uses(mut self, capability: impl Into<String>) -> Self {
        self.capabilities.push(capability.into());
        self
    }

    /// Declares an event pattern the handler wants (`order.completed`, `order.*`).
    pub fn handles(mut self, pattern: impl Into<String>) -> Self {
        self.event_patterns.push(pattern.into());
        self
    }

    /// Declares a named action.
    pub fn action(mut self, name: impl Into<String>, description: impl Into<String>) -> Self {
        self.actions.push(Action {
            name: name.into(),
            description: description.into(),
        });
        self
    }
}
