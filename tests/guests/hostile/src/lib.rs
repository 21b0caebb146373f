//! Every attack a Rust guest can make on its host, chosen by config `{"attack": …}`.
//! The hostile-guest suite (tests/hostile.rs) runs each and expects a precise code.

use std::hint::black_box;

use plinth_sdk::prelude::*;
use serde::Deserialize;

#[derive(Deserialize)]
struct Config {
    attack: String,
    #[serde(default)]
    sql: String,
    /// The key, prefix or topic an attack aims at.
    #[serde(default)]
    target: String,
    /// Parameters bound to `sql`: numbers, strings, null, or `{"blob": [bytes]}`.
    #[serde(default)]
    params: Vec<serde_json::Value>,
    /// How many lines, and of how many bytes, `log-flood` writes.
    #[serde(default)]
    lines: usize,
    #[serde(default)]
    line_bytes: usize,
}

/// A JSON parameter as the contract's value.
fn param(value: &serde_json::Value) -> Value {
    match value {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Integer(i64::from(*b)),
        serde_json::Value::Number(n) => n
            .as_i64()
            .map_or_else(|| Value::Real(n.as_f64().unwrap_or(0.0)), Value::Integer),
        serde_json::Value::String(s) => Value::Text(s.clone()),
        other => Value::Blob(
            other["blob"]
                .as_array()
                .map(|bytes| {
                    bytes
                        .iter()
                        .map(|b| b.as_u64().unwrap_or(0) as u8)
                        .collect()
                })
                .unwrap_or_default(),
        ),
    }
}

/// A value as text, for a test to read back.
fn shown(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Integer(n) => n.to_string(),
        Value::Real(n) => n.to_string(),
        Value::Text(t) => t.clone(),
        Value::Blob(b) => format!("blob:{}", b.len()),
    }
}

struct Hostile;

impl Extension for Hostile {
    fn describe() -> Descriptor {
        Descriptor::new("hostile", "Hostile").category("test")
    }
}

// Recursing without end is the attack.
#[allow(unconditional_recursion)]
#[inline(never)]
fn recurse(depth: u64) -> u64 {
    // black_box keeps the call a real call: no tail call, no inlining into a loop.
    black_box(recurse(black_box(depth + 1))) + 1
}

/// `count` strings that all point at the same bytes: tiny in guest memory, huge once
/// the host copies each of them. The values are never dropped by the guest (the host
/// refuses the transfer first), so the aliasing is never freed twice.
fn aliased_rows(count: usize, text_len: usize) -> Vec<Vec<Value>> {
    let text = "x".repeat(text_len);
    let (ptr, len) = (text.as_ptr() as *mut u8, text.len());
    std::mem::forget(text);
    (0..count)
        .map(|_| {
            // SAFETY: deliberately unsound aliasing; see above. This is the attack.
            let alias = unsafe { String::from_raw_parts(ptr, len, len) };
            vec![Value::Text(alias)]
        })
        .collect()
}

impl Widget for Hostile {
    /// `slow-tick` holds its tick for 300 ms (blocked in a WASI sleep, no CPU), to show
    /// the scheduler never overlaps an installation's ticks and keeps tenants apart.
    fn on_tick(tick: Tick) -> Result<(), Error> {
        let config: Config = tick.config()?;
        if config.attack == "slow-tick" {
            std::thread::sleep(std::time::Duration::from_millis(300));
        }
        Ok(())
    }

    fn render(request: RenderRequest) -> Result<Vec<View>, Error> {
        let config: Config = request.config()?;
        match config.attack.as_str() {
            "loop" => loop {
                black_box(());
            },
            "memory-bomb" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    black_box(&hoard);
                }
            }
            "recursion" => Ok(vec![MetricCard::new("depth", recurse(0) as f64).into()]),
            "panic" => panic!("hostile guest panics on purpose"),
            "host-calls" => {
                for i in 0..1_000_000u32 {
                    log::debug(if i % 2 == 0 { "tick" } else { "tock" });
                }
                Ok(vec![])
            }
            "huge-output" => Ok(vec![View::Custom(format!("\"{}\"", "x".repeat(100 << 20)))]),
            "amplified-output" => {
                let rows = aliased_rows(100_000, 1_000);
                let table = Table {
                    title: "amplified".into(),
                    columns: vec![],
                    rows,
                    total_rows: None,
                };
                Ok(vec![table.into()])
            }
            "invalid-utf8" => {
                // SAFETY: deliberately invalid; the host must refuse to lift it.
                let title = unsafe { String::from_utf8_unchecked(vec![0xff, 0xfe, 0xfd]) };
                Ok(vec![MetricCard::new(title, 1.0).into()])
            }
            "invalid-utf8-log" => {
                // SAFETY: deliberately invalid, passed to a host function.
                let line = unsafe { String::from_utf8_unchecked(vec![0xc3, 0x28]) };
                log::info(&line);
                Ok(vec![])
            }
            "sleep" => {
                // Blocks in a host call (WASI poll), where no epoch check can run.
                std::thread::sleep(std::time::Duration::from_secs(60));
                Ok(vec![])
            }
            "db" => {
                let rows = db::query("SELECT 1", &[])?;
                Ok(vec![MetricCard::new("rows", rows.rows.len() as f64).into()])
            }
            "cache-escape" => {
                cache::get("../other-tenant:key")?;
                Ok(vec![])
            }
            "sql" => {
                let changed = db::execute(&config.sql, &[])?;
                Ok(vec![MetricCard::new("changed", changed as f64).into()])
            }
            "query" => {
                let rows = db::query(&config.sql, &[])?;
                Ok(vec![MetricCard::new("rows", rows.rows.len() as f64).into()])
            }
            // Runs `sql` with `params` and answers its first value as a table cell.
            "query-value" => {
                let params: Vec<Value> = config.params.iter().map(param).collect();
                let rows = db::query(&config.sql, &params)?;
                let first = rows
                    .rows
                    .first()
                    .and_then(|row| row.first())
                    .map_or_else(|| "none".to_owned(), shown);
                Ok(vec![
                    Table::new("value", [("value", "Value")])
                        .row(vec![first.into()])
                        .into(),
                ])
            }
            "execute-params" => {
                let params: Vec<Value> = config.params.iter().map(param).collect();
                let changed = db::execute(&config.sql, &params)?;
                Ok(vec![MetricCard::new("changed", changed as f64).into()])
            }
            // Lines far past the host's line cap, each a fresh allocation.
            "log-flood" => {
                for i in 0..config.lines {
                    let line = char::from(b'a' + (i % 26) as u8)
                        .to_string()
                        .repeat(config.line_bytes);
                    log::info(&line);
                }
                Ok(vec![])
            }
            "publish-then-fail" => {
                broadcast::publish("news", "{\"leaked\": true}")?;
                Err(Error::Internal("failing after publishing".into()))
            }
            "cache-get" => {
                let found = cache::get(&config.target)?;
                let shown = found.map_or("none".to_owned(), |v| {
                    String::from_utf8_lossy(&v).into_owned()
                });
                Ok(vec![
                    Table::new("found", [("value", "Value")])
                        .row(vec![shown.into()])
                        .into(),
                ])
            }
            "cache-set" => {
                cache::set(&config.target, b"overwritten by a", None)?;
                Ok(vec![])
            }
            "cache-invalidate" => {
                let removed = cache::invalidate_prefix(&config.target)?;
                Ok(vec![MetricCard::new("removed", removed as f64).into()])
            }
            "publish" => {
                broadcast::publish(&config.target, "{\"from\": \"a\"}")?;
                Ok(vec![])
            }
            "log" => {
                log::info("one");
                log::warn("two");
                log::error("three");
                Ok(vec![])
            }
            // An error whose message is as long as the output cap lets through.
            "long-error" => Err(Error::Internal("e".repeat(256 << 10))),
            "ok" => Ok(vec![MetricCard::new("fine", 1.0).into()]),
            other => Err(Error::invalid(format!("unknown attack {other:?}"))),
        }
    }
}

plinth_sdk::export_widget!(Hostile);
