//! The work the benchmark widget does, shared with the native side of each benchmark so
//! both run the same code.

/// Counts primes below `n` with a sieve: CPU-bound, memory-light.
pub fn primes_below(n: u32) -> u32 {
    let n = n as usize;
    if n < 3 {
        return 0;
    }
    let mut composite = vec![false; n];
    let mut count = 0;
    for i in 2..n {
        if !composite[i] {
            count += 1;
            let mut j = i * i;
            while j < n {
                composite[j] = true;
                j += i;
            }
        }
    }
    count
}

/// Rows of the 4 KiB table view: (region, orders, revenue).
pub fn report_rows() -> Vec<(String, i64, f64)> {
    (0..150)
        .map(|i| {
            (
                format!("region-{i:02}"),
                100 + i as i64 * 7,
                1234.5 + i as f64 * 10.25,
            )
        })
        .collect()
}

/// What a sales widget computes: revenue by region and the median and p95 order value
/// over `n` synthetic orders (a fixed pseudo-random sequence, the same on every run).
pub fn order_summary(n: u32) -> (Vec<(String, f64)>, f64, f64) {
    const REGIONS: [&str; 6] = ["emea", "na-east", "na-west", "apac", "latam", "anz"];
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut by_region = std::collections::BTreeMap::<String, f64>::new();
    let mut totals = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let region = REGIONS[(next() % REGIONS.len() as u64) as usize];
        let quantity = 1 + next() % 5;
        let price = (next() % 20_000) as f64 / 100.0;
        let total = quantity as f64 * price * if next() % 10 == 0 { 0.9 } else { 1.0 };
        *by_region.entry(format!("region:{region}")).or_default() += total;
        totals.push(total);
    }
    totals.sort_by(f64::total_cmp);
    let at = |q: f64| {
        totals
            .get(((totals.len().max(1) - 1) as f64 * q) as usize)
            .copied()
            .unwrap_or(0.0)
    };
    (by_region.into_iter().collect(), at(0.5), at(0.95))
}
