//! The tenant's database: parameterized statements, typed values.
//!
//! ```no_run
//! use plinth_sdk::{db, Value};
//! let rows = db::query("SELECT status, count(*) FROM orders WHERE total > $1 GROUP BY status",
//!                      &[Value::Real(10.0)])?;
//! for row in &rows.rows {
//!     let _status = &row[0];
//! }
//! db::execute("UPDATE orders SET status = $1 WHERE id = $2", &["shipped".into(), 7i64.into()])?;
//! # Ok::<(), plinth_sdk::Error>(())
//! ```

use crate::bindings::plinth::extension::db as wit;
use crate::{Error, Value};

pub use wit::Rows;

/// Runs a read statement.
pub fn query(sql: &str, params: &[Value]) -> Result<Rows, Error> {
    wit::query(sql, params)
}

/// Runs a write statement; returns the number of rows changed. Needs a read-write grant.
pub fn execute(sql: &str, params: &[Value]) -> Result<u64, Error> {
    wit::execute(sql, params)
}

impl Rows {
    /// The index of a column by name.
    pub fn column(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|column| column == name)
    }
}

impl Value {
    /// The value as a float, for integers and reals.
    ///
    /// ```
    /// # use plinth_sdk::Value;
    /// assert_eq!(Value::Integer(3).as_f64(), Some(3.0));
    /// assert_eq!(Value::Null.as_f64(), None);
    /// ```
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Integer(number) => Some(*number as f64),
            Value::Real(number) => Some(*number),
            _ => None,
        }
    }

    /// The value as an integer.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Integer(number) => Some(*number),
            _ => None,
        }
    }

    /// The value as text.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Text(text) => Some(text),
            _ => None,
        }
    }
}
