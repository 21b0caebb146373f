//! Per-tenant quotas: a tenant's concurrent calls and its fuel per minute, enforced
//! without touching other tenants; and a tenant whose calls count no fuel.

use std::time::{Duration, Instant};

use plinth_host::{Call, ErrorCode, Grants, Limits, Metering, SandboxConfig, TenantQuota};
use plinth_tests::{guest, invocation, sandbox, sandbox_with};
use serde_json::json;

fn hold(ms: u64) -> Call {
    Call::Render {
        config: json!({"mode": "hold", "ms": ms}),
        params: vec![],
    }
}

#[tokio::test]
async fn a_tenant_cannot_run_more_calls_at_once_than_its_quota() {
    let quota = TenantQuota {
        concurrent_calls: 2,
        fuel_per_minute: None,
        ..TenantQuota::default()
    };
    let test = sandbox_with(SandboxConfig {
        tenant_quota: quota,
        ..SandboxConfig::default()
    });
    let widget = test
        .sandbox
        .load(&guest("tests/guests/bench-widget"))
        .unwrap();
    let busy = invocation("busy", Grants::all(), Limits::default());
    let calm = invocation("calm", Grants::all(), Limits::default());
    let (one, two, three, other) = tokio::join!(
        test.sandbox.call(&widget, &busy, hold(400)),
        test.sandbox.call(&widget, &busy, hold(400)),
        test.sandbox.call(&widget, &busy, hold(400)),
        test.sandbox.call(&widget, &calm, hold(400)),
    );
    let codes: Vec<_> = [&one, &two, &three]
        .iter()
        .map(|r| r.outcome_json().as_ref().err().map(|e| e.code))
        .collect();
    assert_eq!(codes.iter().filter(|c| c.is_none()).count(), 2, "{codes:?}");
    assert_eq!(
        codes
            .iter()
            .filter(|c| **c == Some(ErrorCode::QuotaExceeded))
            .count(),
        1,
        "{codes:?}"
    );
    assert!(
        other.outcome_json().is_ok(),
        "another tenant is not held back: {:?}",
        other.outcome_json()
    );
    // Slots come back when calls end.
    assert!(
        test.sandbox
            .call(&widget, &busy, hold(1))
            .await
            .outcome_json()
            .is_ok()
    );
}

#[tokio::test]
async fn a_tenant_cannot_burn_more_fuel_per_minute_than_its_budget() {
    // What one render of hello-metric costs.
    let probe = sandbox();
    let hello = probe
        .sandbox
        .load(&guest("extensions/hello-metric"))
        .unwrap();
    let render = Call::Render {
        config: json!({}),
        params: vec![],
    };
    let anyone = invocation("probe", Grants::none(), Limits::default());
    let per_call = probe
        .sandbox
        .call(&hello, &anyone, render.clone())
        .await
        .receipt
        .fuel_used
        .unwrap();

    let quota = TenantQuota {
        concurrent_calls: 16,
        fuel_per_minute: Some(per_call * 5 / 2),
        ..TenantQuota::default()
    };
    let test = sandbox_with(SandboxConfig {
        tenant_quota: quota,
        ..SandboxConfig::default()
    });
    let hello = test
        .sandbox
        .load(&guest("extensions/hello-metric"))
        .unwrap();
    let spender = invocation("spender", Grants::none(), Limits::default());
    for _ in 0..2 {
        assert!(
            test.sandbox
                .call(&hello, &spender, render.clone())
                .await
                .outcome_json()
                .is_ok()
        );
    }
    // The third call gets only what is left of the budget, half a render's worth.
    let third = test.sandbox.call(&hello, &spender, render.clone()).await;
    assert_eq!(
        third.outcome_json().unwrap_err().code,
        ErrorCode::FuelExhausted
    );
    assert!(third.receipt.fuel_used.unwrap() <= per_call / 2 + 1);
    let fourth = test
        .sandbox
        .call(&hello, &spender, render.clone())
        .await
        .outcome_json()
        .unwrap_err();
    assert_eq!(fourth.code, ErrorCode::QuotaExceeded);
    assert!(fourth.message.contains("fuel budget"), "{}", fourth.message);
    // Another tenant has its own budget.
    let saver = invocation("saver", Grants::none(), Limits::default());
    assert!(
        test.sandbox
            .call(&hello, &saver, render)
            .await
            .outcome_json()
            .is_ok()
    );
}

/// A tenant whose quota turns fuel metering off runs code compiled without fuel checks:
/// its loops are still stopped at their deadline, its receipts carry no fuel, and a
/// metered tenant of the same sandbox is untouched (the same bytes, loaded once for each).
#[tokio::test]
async fn a_tenant_without_fuel_metering_is_still_stopped_at_its_deadline() {
    let test = sandbox();
    let quotas = test.sandbox.tenant_quotas();
    quotas.set(
        "free",
        Some(TenantQuota {
            fuel_per_minute: None,
            fuel_metering: false,
            ..TenantQuota::default()
        }),
    );
    assert_eq!(test.sandbox.metering_of("free"), Metering::Off);
    assert_eq!(test.sandbox.metering_of("metered"), Metering::Fuel);
    let bytes = guest("tests/guests/hostile");
    let unmetered = test
        .sandbox
        .load_for(&bytes, test.sandbox.metering_of("free"))
        .expect("loads without fuel");
    let metered = test
        .sandbox
        .load_for(&bytes, test.sandbox.metering_of("metered"))
        .expect("loads with fuel");
    assert_eq!(
        (unmetered.metering, metered.metering),
        (Metering::Off, Metering::Fuel)
    );
    assert!(
        !std::sync::Arc::ptr_eq(&unmetered, &metered),
        "one load per metering"
    );
    let limits = Limits {
        fuel: Some(5_000_000),
        timeout: Duration::from_millis(200),
        ..Limits::default()
    };
    let spin = Call::Render {
        config: json!({"attack": "loop"}),
        params: vec![],
    };

    let started = Instant::now();
    // Bounded here too: a deadline that never fired would otherwise hang the test.
    let free = tokio::time::timeout(
        Duration::from_secs(10),
        test.sandbox.call(
            &unmetered,
            &invocation("free", Grants::all(), limits.clone()),
            spin.clone(),
        ),
    )
    .await
    .expect("the deadline stops the loop");
    let took = started.elapsed();
    let error = free
        .outcome_json()
        .expect_err("a loop never ends by itself");
    assert_eq!(error.code, ErrorCode::ExecutionTimeout, "{}", error.message);
    assert!(took < Duration::from_millis(950), "stopped after {took:?}");
    assert_eq!(
        free.receipt.fuel_used, None,
        "nothing counted, nothing told"
    );

    let counted = test
        .sandbox
        .call(
            &metered,
            &invocation("metered", Grants::all(), limits),
            spin,
        )
        .await;
    assert_eq!(
        counted.outcome_json().unwrap_err().code,
        ErrorCode::FuelExhausted
    );
    assert!(
        counted
            .receipt
            .fuel_used
            .is_some_and(|used| used >= 5_000_000)
    );

    let ok = Call::Render {
        config: json!({"attack": "ok"}),
        params: vec![],
    };
    let after = test
        .sandbox
        .call(
            &unmetered,
            &invocation("free", Grants::all(), Limits::default()),
            ok,
        )
        .await;
    assert!(after.outcome_json().is_ok(), "{:?}", after.outcome_json());
    assert_eq!(after.receipt.fuel_used, None);
}

#[test]
fn a_quota_without_fuel_metering_has_no_fuel_budget() {
    let quota = TenantQuota {
        fuel_per_minute: Some(1_000),
        fuel_metering: false,
        ..TenantQuota::default()
    };
    let error = quota.validate().unwrap_err();
    assert_eq!(error.code, ErrorCode::InvalidValue);
    assert!(error.message.contains("fuel_metering"), "{}", error.message);
    let stored: TenantQuota =
        serde_json::from_value(json!({"concurrent_calls": 4, "fuel_per_minute": null})).unwrap();
    assert!(
        stored.fuel_metering,
        "a quota stored before the fields counts fuel"
    );
    assert_eq!(stored.installations, TenantQuota::default().installations);
}

/// Without an epoch deadline only a fuel limit can stop a loop, so such a sandbox counts fuel
/// for every tenant, whatever its quota says.
#[tokio::test]
async fn without_epochs_every_tenant_counts_fuel() {
    let test = sandbox_with(SandboxConfig {
        epoch: false,
        ..SandboxConfig::default()
    });
    test.sandbox.tenant_quotas().set(
        "free",
        Some(TenantQuota {
            fuel_per_minute: None,
            fuel_metering: false,
            ..TenantQuota::default()
        }),
    );
    assert_eq!(test.sandbox.metering_of("free"), Metering::Fuel);
    let hello = test
        .sandbox
        .load_for(&guest("extensions/hello-metric"), Metering::Off)
        .unwrap();
    assert_eq!(hello.metering, Metering::Fuel);
}
