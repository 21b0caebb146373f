//! # plinth-sdk
//!
//! Write Plinth **widgets** and **event handlers** in Rust. An extension is a type that
//! implements [`Extension`] (what it is) and [`Widget`] and/or [`EventHandler`] (what it
//! does), exported with [`export_widget!`], [`export_handler!`] or [`export_extension!`].
//! Build it with `cargo build --release --target wasm32-wasip2`.
//!
//! ```no_run
//! use plinth_sdk::prelude::*;
//!
//! struct Hello;
//!
//! impl Extension for Hello {
//!     fn describe() -> Descriptor {
//!         Descriptor::new("hello", "Hello").category("demo").icon("sparkles")
//!     }
//! }
//!
//! impl Widget for Hello {
//!     fn render(_request: RenderRequest) -> Result<Vec<View>, Error> {
//!         log::info("rendering");
//!         Ok(vec![MetricCard::new("Answer", 42.0).unit("things").into()])
//!     }
//! }
//!
//! plinth_sdk::export_widget!(Hello);
//! ```
//!
//! Every capability (`cache`, `db`, `broadcast`, `log`) is a module of typed functions.
//! The host only links what the installation was granted: a component that imports an
//! ungranted capability is refused at install (`CAPABILITY_DENIED`), so import only what
//! you use. Rust strips unused imports for you.

// The export macros expand in the author's crate and name this crate by path.
extern crate self as plinth_sdk;

#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "extension",
        path: "../wit/v0.1.0",
        pub_export_macro: true,
        export_macro_name: "__export_extension",
        default_bindings_module: "plinth_sdk::__private::bindings",
        runtime_path: "plinth_sdk::__private::wit_bindgen::rt",
    });
}

pub mod broadcast;
pub mod cache;
pub mod db;
mod descriptor;
mod error;
pub mod log;
mod request;
mod view;

pub use bindings::exports::plinth::extension::handler::Event;
pub use bindings::exports::plinth::extension::manifest::{Action, Descriptor};
pub use bindings::exports::plinth::extension::widget_exports::{
    ActionRequest, ActionResponse, RenderRequest, Tick,
};
pub use bindings::plinth::extension::types::{Error, Size, Value};
pub use bindings::plinth::extension::view::{
    Chart, Column, Gauge, Heatmap, KpiCard, MetricCard, PieChart, PieSlice, ProgressBar, Series,
    Sparkline, Status, Table, Threshold, Trend, View,
};

/// Everything an extension usually needs, in one import.
pub mod prelude {
    pub use crate::{
        Action, ActionRequest, ActionResponse, Chart, Column, Descriptor, Error, Event,
        EventHandler, Extension, Gauge, Heatmap, KpiCard, MetricCard, PieChart, PieSlice,
        ProgressBar, RenderRequest, Series, Size, Sparkline, Status, Table, Threshold, Tick, Trend,
        Value, View, Widget, broadcast, cache, db, log,
    };
}

/// What an extension is: every extension describes itself.
pub trait Extension {
    /// The extension's identity, catalogue entry, config schema and wishes (refresh
    /// interval, capabilities, event patterns, actions). The host calls it at upload.
    fn describe() -> Descriptor;
}

/// A dashboard widget.
///
/// ```no_run
/// # use plinth_sdk::prelude::*;
/// struct Orders;
/// impl Extension for Orders {
///     fn describe() -> Descriptor { Descriptor::new("orders", "Orders").refresh_every_ms(5_000) }
/// }
/// impl Widget for Orders {
///     fn render(_req: RenderRequest) -> Result<Vec<View>, Error> {
///         let count = cache::get_i64("orders:count")?.unwrap_or(0);
///         Ok(vec![MetricCard::new("Orders today", count as f64).into()])
///     }
///     fn on_tick(_tick: Tick) -> Result<(), Error> {
///         broadcast::publish_json("orders", &serde_json::json!({"refresh": true}))
///     }
/// }
/// ```
pub trait Widget: Extension {
    /// Draws the widget: one or more panels.
    fn render(request: RenderRequest) -> Result<Vec<View>, Error>;

    /// Runs at the refresh interval the widget asked for. Does nothing by default.
    fn on_tick(_tick: Tick) -> Result<(), Error> {
        Ok(())
    }

    /// Runs a named action. By default every action is unknown.
    fn invoke(request: ActionRequest) -> Result<ActionResponse, Error> {
        Err(Error::NotFound(format!(
            "no action named {:?}",
            request.name
        )))
    }
}

/// An event handler.
///
/// ```no_run
/// # use plinth_sdk::prelude::*;
/// struct OnOrder;
/// impl Extension for OnOrder {
///     fn describe() -> Descriptor { Descriptor::new("on-order", "On order").handles("order.completed") }
/// }
/// impl EventHandler for OnOrder {
///     fn handle(event: Event) -> Result<(), Error> {
///         let order: serde_json::Value = event.payload_json()?;
///         cache::incr("orders:count", 1)?;
///         cache::invalidate_prefix("orders:view:")?;
///         broadcast::publish_json("orders", &order)
///     }
/// }
/// ```
pub trait EventHandler: Extension {
    /// Handles one event. [`Error::retry`] asks for a retry; [`Error::reject`] drops the
    /// event to the dead letters at once.
    fn handle(event: Event) -> Result<(), Error>;
}

/// Exports a type that implements [`Widget`]. Events sent to it are rejected.
#[macro_export]
macro_rules! export_widget {
    ($ty:ty) => {
        $crate::__export_parts!($ty, widget: $ty, handler: $crate::__private::NoHandler);
    };
}

/// Exports a type that implements [`EventHandler`]. Render, tick and action calls fail.
#[macro_export]
macro_rules! export_handler {
    ($ty:ty) => {
        $crate::__export_parts!($ty, widget: $crate::__private::NoWidget, handler: $ty);
    };
}

/// Exports a type that implements both [`Widget`] and [`EventHandler`].
#[macro_export]
macro_rules! export_extension {
    ($ty:ty) => {
        $crate::__export_parts!($ty, widget: $ty, handler: $ty);
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __export_parts {
    ($ext:ty, widget: $widget:ty, handler: $handler:ty) => {
        #[doc(hidden)]
        pub struct __PlinthExports;

        impl $crate::__private::ManifestGuest for __PlinthExports {
            fn describe() -> $crate::Descriptor {
                <$ext as $crate::Extension>::describe()
            }
        }

        impl $crate::__private::WidgetGuest for __PlinthExports {
            fn render(
                request: $crate::RenderRequest,
            ) -> ::core::result::Result<::std::vec::Vec<$crate::View>, $crate::Error> {
                <$widget as $crate::Widget>::render(request)
            }
            fn on_tick(tick: $crate::Tick) -> ::core::result::Result<(), $crate::Error> {
                <$widget as $crate::Widget>::on_tick(tick)
            }
            fn invoke(
                request: $crate::ActionRequest,
            ) -> ::core::result::Result<$crate::ActionResponse, $crate::Error> {
                <$widget as $crate::Widget>::invoke(request)
            }
        }

        impl $crate::__private::HandlerGuest for __PlinthExports {
            fn handle(event: $crate::Event) -> ::core::result::Result<(), $crate::Error> {
                <$handler as $crate::EventHandler>::handle(event)
            }
        }

        $crate::__private::__export_extension!(
            __PlinthExports with_types_in $crate::__private::bindings
        );
    };
}

#[doc(hidden)]
pub mod __private {
    pub use crate::bindings;
    pub use crate::bindings::__export_extension;
    pub use crate::bindings::exports::plinth::extension::handler::Guest as HandlerGuest;
    pub use crate::bindings::exports::plinth::extension::manifest::Guest as ManifestGuest;
    pub use crate::bindings::exports::plinth::extension::widget_exports::Guest as WidgetGuest;
    pub use wit_bindgen;

    use crate::{EventHandler, Extension, Widget};

    /// Stands in for the handler half of a widget-only extension.
    pub struct NoHandler;
    impl Extension for NoHandler {
        fn describe() -> crate::Descriptor {
            unreachable!("the exported type describes the extension")
        }
    }
    impl EventHandler for NoHandler {
        fn handle(event: crate::Event) -> Result<(), crate::Error> {
            Err(crate::Error::reject(format!(
                "this extension handles no events (got {:?})",
                event.name
            )))
        }
    }

    /// Stands in for the widget half of a handler-only extension.
    pub struct NoWidget;
    impl Extension for NoWidget {
        fn describe() -> crate::Descriptor {
            unreachable!("the exported type describes the extension")
        }
    }
    impl Widget for NoWidget {
        fn render(_request: crate::RenderRequest) -> Result<Vec<crate::View>, crate::Error> {
            Err(crate::Error::NotFound(
                "this extension is not a widget".into(),
            ))
        }
    }
}
