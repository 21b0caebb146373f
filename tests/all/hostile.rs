//! The hostile-guest suite: real components (built from Rust, or assembled from WAT)
//! attack the host. Each case must end with its code within its deadline, and the next
//! call on the same engine must succeed.

use std::time::{Duration, Instant};

use plinth_host::{Call, ErrorCode, Grants, Limits};
use plinth_tests::{append_to_module, guest, invocation, sandbox, widget_from_wat};
use serde_json::json;

fn attack(name: &str) -> Call {
    Call::Render {
        config: json!({ "attack": name }),
        params: vec![],
    }
}

/// Runs one hostile call, checks its code and deadline, then proves the engine still
/// serves: the same component (and a well-behaved one) answer the next call.
async fn expect_code(
    attack_name: &str,
    limits: Limits,
    grants: Grants,
    expected: ErrorCode,
) -> String {
    let test = sandbox();
    let hostile = test
        .sandbox
        .load(&guest("tests/guests/hostile"))
        .expect("hostile loads");
    let deadline = limits.timeout + Duration::from_millis(750);
    let started = Instant::now();
    let report = test
        .sandbox
        .call(
            &hostile,
            &invocation("evil", grants, limits),
            attack(attack_name),
        )
        .await;
    let took = started.elapsed();
    let error = report.outcome_json().expect_err("a hostile call must fail");
    assert_eq!(error.code, expected, "{attack_name}: {}", error.message);
    assert_eq!(report.receipt.outcome.to_string(), expected.as_str());
    assert!(
        took < deadline,
        "{attack_name} took {took:?}, past {deadline:?}"
    );
    assert!(
        report.published.is_empty(),
        "a failed call publishes nothing"
    );

    let after = test
        .sandbox
        .call(
            &hostile,
            &invocation("evil", Grants::all(), Limits::default()),
            attack("ok"),
        )
        .await;
    assert!(
        after.outcome_json().is_ok(),
        "the next call after {attack_name} failed: {:?}",
        after.outcome_json()
    );
    let hello = test
        .sandbox
        .load(&guest("extensions/hello-metric"))
        .expect("hello loads");
    let other = test
        .sandbox
        .call(
            &hello,
            &invocation("good", Grants::all(), Limits::default()),
            Call::Render {
                config: json!({}),
                params: vec![],
            },
        )
        .await;
    assert!(
        other.outcome_json().is_ok(),
        "another tenant after {attack_name}: {:?}",
        other.outcome_json()
    );
    error.message
}

fn limits(edit: impl FnOnce(&mut Limits)) -> Limits {
    let mut limits = Limits::default();
    edit(&mut limits);
    limits
}

#[tokio::test]
async fn infinite_loop_hits_the_deadline() {
    let message = expect_code(
        "loop",
        limits(|l| {
            l.fuel = None;
            l.timeout = Duration::from_millis(200);
        }),
        Grants::all(),
        ErrorCode::ExecutionTimeout,
    )
    .await;
    assert!(
        message.contains("tenant evil"),
        "the message names the tenant: {message}"
    );
}

#[tokio::test]
async fn infinite_loop_runs_out_of_fuel() {
    expect_code(
        "loop",
        limits(|l| {
            l.fuel = Some(5_000_000);
            l.timeout = Duration::from_secs(5);
        }),
        Grants::all(),
        ErrorCode::FuelExhausted,
    )
    .await;
}

#[tokio::test]
async fn memory_bomb_hits_the_memory_cap() {
    let message = expect_code(
        "memory-bomb",
        Limits::default(),
        Grants::all(),
        ErrorCode::MemoryLimit,
    )
    .await;
    assert!(message.contains("67108864"), "names the cap: {message}");
}

#[tokio::test]
async fn unbounded_recursion_overflows_the_stack() {
    expect_code(
        "recursion",
        Limits::default(),
        Grants::all(),
        ErrorCode::StackOverflow,
    )
    .await;
}

#[tokio::test]
async fn panic_is_a_trap_with_its_message() {
    let message = expect_code(
        "panic",
        Limits::default(),
        Grants::all(),
        ErrorCode::GuestTrap,
    )
    .await;
    assert!(
        message.contains("panics on purpose"),
        "the panic message is reported: {message}"
    );
}

#[tokio::test]
async fn a_million_host_calls_hit_the_quota() {
    let total = limits(|l| l.capability_calls = u64::MAX);
    let message = expect_code("host-calls", total, Grants::all(), ErrorCode::QuotaExceeded).await;
    assert!(
        message.contains("more than 10000 host calls"),
        "names the cap: {message}"
    );
    // With the default per-capability cap, the one capability hits its own cap first.
    let message = expect_code(
        "host-calls",
        Limits::default(),
        Grants::all(),
        ErrorCode::QuotaExceeded,
    )
    .await;
    assert!(
        message.contains("more than 5000 calls to the `log` capability"),
        "{message}"
    );
}

#[tokio::test]
async fn hundred_megabyte_output_is_refused() {
    expect_code(
        "huge-output",
        limits(|l| l.memory_bytes = 512 << 20),
        Grants::all(),
        ErrorCode::OutputTooLarge,
    )
    .await;
}

#[tokio::test]
async fn amplified_output_of_shared_strings_is_refused() {
    expect_code(
        "amplified-output",
        Limits::default(),
        Grants::all(),
        ErrorCode::OutputTooLarge,
    )
    .await;
}

#[tokio::test]
async fn invalid_utf8_result_is_an_abi_error() {
    let message = expect_code(
        "invalid-utf8",
        Limits::default(),
        Grants::all(),
        ErrorCode::GuestAbiError,
    )
    .await;
    assert!(message.to_lowercase().contains("utf-8"), "{message}");
}

#[tokio::test]
async fn invalid_utf8_into_a_host_call_is_an_abi_error() {
    expect_code(
        "invalid-utf8-log",
        Limits::default(),
        Grants::all(),
        ErrorCode::GuestAbiError,
    )
    .await;
}

#[tokio::test]
async fn a_hanging_host_call_hits_the_outer_timeout() {
    expect_code(
        "sleep",
        limits(|l| l.timeout = Duration::from_millis(300)),
        Grants::all(),
        ErrorCode::ExecutionTimeout,
    )
    .await;
}

#[tokio::test]
async fn an_ungranted_capability_is_denied_before_running() {
    let grants: Grants = "cache,log".parse().unwrap();
    let message = expect_code("db", Limits::default(), grants, ErrorCode::CapabilityDenied).await;
    assert!(message.contains("`db`"), "names the capability: {message}");
    assert!(
        message.contains("tenant evil"),
        "names the tenant: {message}"
    );
}

#[tokio::test]
async fn a_key_that_tries_to_leave_the_namespace_is_refused() {
    let message = expect_code(
        "cache-escape",
        Limits::default(),
        Grants::all(),
        ErrorCode::GuestError,
    )
    .await;
    assert!(message.contains("invalid-input"), "{message}");
}

/// Runs a WAT-assembled widget and expects `code` from its first call.
async fn wat_case(edit: impl FnOnce(String) -> String, limits: Limits, expected: ErrorCode) {
    let test = sandbox();
    let component = widget_from_wat(edit);
    let extension = test.sandbox.load(&component).expect("the WAT widget loads");
    let deadline = limits.timeout + Duration::from_millis(750);
    let started = Instant::now();
    let report = test
        .sandbox
        .call(
            &extension,
            &invocation("evil", Grants::all(), limits),
            Call::Describe,
        )
        .await;
    let error = report.outcome_json().expect_err("must fail");
    assert_eq!(error.code, expected, "{}", error.message);
    assert!(started.elapsed() < deadline);
    let hello = test
        .sandbox
        .load(&guest("extensions/hello-metric"))
        .unwrap();
    let next = test
        .sandbox
        .call(
            &hello,
            &invocation("good", Grants::all(), Limits::default()),
            Call::Describe,
        )
        .await;
    assert!(next.outcome_json().is_ok(), "{:?}", next.outcome_json());
}

#[tokio::test]
async fn loop_in_instance_initialisation_hits_the_deadline() {
    wat_case(
        |text| {
            append_to_module(
                text,
                "(func $plinth_spin (loop $l (br $l))) (start $plinth_spin)",
            )
        },
        limits(|l| {
            l.fuel = None;
            l.timeout = Duration::from_millis(200);
        }),
        ErrorCode::ExecutionTimeout,
    )
    .await;
}

#[tokio::test]
async fn initial_memory_above_the_cap_is_refused() {
    wat_case(
        |text| {
            let edited = text.replacen("(memory (;0;) 0)", "(memory (;0;) 2000)", 1);
            assert_ne!(
                edited, text,
                "the dummy module declares its memory as expected"
            );
            edited
        },
        Limits::default(),
        ErrorCode::MemoryLimit,
    )
    .await;
}

#[tokio::test]
async fn table_grow_bomb_hits_the_table_cap() {
    wat_case(
        |text| {
            append_to_module(
                text,
                "(table $plinth_t 0 funcref)
                 (func $plinth_grow (loop $l (drop (table.grow $plinth_t (ref.null func) (i32.const 10000))) (br $l)))
                 (start $plinth_grow)",
            )
        },
        Limits::default(),
        ErrorCode::MemoryLimit,
    )
    .await;
}

fn load_error(bytes: &[u8]) -> plinth_host::PlinthError {
    let test = sandbox();
    let error = match test.sandbox.load(bytes) {
        Ok(_) => panic!("loading must fail"),
        Err(error) => error,
    };
    // The sandbox still loads and runs a good component afterwards.
    assert!(test.sandbox.load(&guest("extensions/hello-metric")).is_ok());
    error
}

#[test]
fn a_core_module_is_not_a_component() {
    let module = wat::parse_str("(module (func (export \"render\")))").unwrap();
    assert_eq!(load_error(&module).code, ErrorCode::NotAComponent);
}

#[test]
fn random_bytes_are_not_a_component() {
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let noise: Vec<u8> = (0..4096)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    assert_eq!(load_error(&noise).code, ErrorCode::InvalidComponent);
    // Valid magic and component header, garbage after it.
    let mut header = b"\0asm\x0d\0\x01\0".to_vec();
    header.extend_from_slice(&noise[..64]);
    assert_eq!(load_error(&header).code, ErrorCode::InvalidComponent);
}

#[test]
fn a_component_of_another_world_is_a_mismatch() {
    let empty = wat::parse_str("(component)").unwrap();
    let error = load_error(&empty);
    assert_eq!(error.code, ErrorCode::WorldMismatch);
    assert!(
        error.message.contains("plinth:extension/manifest@0.1.0"),
        "{}",
        error.message
    );
}

#[test]
fn an_import_plinth_never_provides_is_denied() {
    let component =
        wat::parse_str(r#"(component (import "wasi:sockets/tcp@0.2.6" (instance)))"#).unwrap();
    let error = load_error(&component);
    assert_eq!(error.code, ErrorCode::CapabilityDenied);
    assert!(
        error.message.contains("wasi:sockets/tcp"),
        "{}",
        error.message
    );
}
