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
    (0..48)
        .map(|i| {
            (
                format!("region-{i:02}"),
                100 + i as i64 * 7,
                1234.5 + i as f64 * 10.25,
            )
        })
        .collect()
}
