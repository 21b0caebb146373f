//! One call made in a fresh instance: instantiate, call the export, convert what it
//! returns into the host's types, and check the result's size.

use wasmtime::Store;

use crate::call::{Call, Outcome, Rendered};
use crate::contract::{handler_exports, widget_exports};
use crate::json;
use crate::limits::LimitBreach;
use crate::sandbox::extension::Extension;
use crate::sandbox::failure::Failure;
use crate::state::CallState;

/// Instantiates and makes the call; returns what it gave, typed by call kind.
pub(crate) async fn run_call(
    store: &mut Store<CallState>,
    extension: &Extension,
    call: &Call,
    output_cap: usize,
) -> Result<(Outcome, usize), Failure> {
    let wasm = |instantiating| {
        move |error| Failure::Wasm {
            instantiating,
            error,
        }
    };
    let instance = extension
        .pre
        .instantiate_async(&mut *store)
        .await
        .map_err(wasm(true))?;
    let widget = || {
        extension
            .widget
            .as_ref()
            .ok_or(Failure::NotExported("widget-exports"))
    };
    let value = match call {
        Call::Describe => {
            let guest = extension
                .manifest
                .load(&mut *store, &instance)
                .map_err(wasm(false))?;
            let descriptor = guest
                .call_describe(&mut *store)
                .await
                .map_err(wasm(false))?;
            let descriptor =
                json::descriptor(&descriptor).ok_or(Failure::BadJson("a config schema"))?;
            Outcome::Described(Box::new(descriptor))
        }
        Call::Render { config, params } => {
            let guest = widget()?
                .load(&mut *store, &instance)
                .map_err(wasm(false))?;
            let request = widget_exports::RenderRequest {
                config: config.to_string(),
                params: params.clone(),
            };
            let views = guest
                .call_render(&mut *store, &request)
                .await
                .map_err(wasm(false))?
                .map_err(Failure::Guest)?;
            let views = json::views(&views).ok_or(Failure::BadJson("a custom view"))?;
            Outcome::Rendered(Rendered::new(views))
        }
        Call::Tick {
            config,
            sequence,
            scheduled_at_ms,
        } => {
            let guest = widget()?
                .load(&mut *store, &instance)
                .map_err(wasm(false))?;
            let tick = widget_exports::Tick {
                config: config.to_string(),
                sequence: *sequence,
                scheduled_at_ms: *scheduled_at_ms,
            };
            guest
                .call_on_tick(&mut *store, &tick)
                .await
                .map_err(wasm(false))?
                .map_err(Failure::Guest)?;
            Outcome::Done
        }
        Call::Action { name, config, body } => {
            let guest = widget()?
                .load(&mut *store, &instance)
                .map_err(wasm(false))?;
            let request = widget_exports::ActionRequest {
                name: name.clone(),
                config: config.to_string(),
                body: body.to_string(),
            };
            let response = guest
                .call_invoke(&mut *store, &request)
                .await
                .map_err(wasm(false))?
                .map_err(Failure::Guest)?;
            Outcome::Answered(json::action_response(&response))
        }
        Call::Event {
            id,
            name,
            payload,
            occurred_at_ms,
            attempt,
        } => {
            let handler = extension
                .handler
                .as_ref()
                .ok_or(Failure::NotExported("handler"))?;
            let guest = handler.load(&mut *store, &instance).map_err(wasm(false))?;
            let event = handler_exports::Event {
                id: id.clone(),
                name: name.clone(),
                payload: payload.to_string(),
                occurred_at_ms: *occurred_at_ms,
                attempt: *attempt,
            };
            guest
                .call_handle(&mut *store, &event)
                .await
                .map_err(wasm(false))?
                .map_err(Failure::Guest)?;
            Outcome::Done
        }
    };
    let bytes = value.json_len();
    if bytes > output_cap {
        return Err(Failure::Output(LimitBreach::Output {
            bytes,
            cap: output_cap,
        }));
    }
    Ok((value, bytes))
}
