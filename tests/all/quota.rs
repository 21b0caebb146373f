//! Per-tenant quotas: a tenant's concurrent calls and its fuel per minute, enforced
//! without touching other tenants.

use plinth_host::{Call, ErrorCode, Grants, Limits, SandboxConfig, TenantQuota};
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
