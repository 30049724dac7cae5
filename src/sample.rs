//! The sample shop database behind `examples/` (and the demo): customers, products and
//! orders in SQLite, generated deterministically (same size → same bytes of data), so
//! examples and tests can state exact results. This module writes a new file; it never
//! touches an existing one.

use std::path::Path;

use sqlx::Connection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};

/// Why the database could not be created.
#[derive(Debug, thiserror::Error)]
pub enum SampleError {
    /// The file is there already (this never overwrites).
    #[error("{0} already exists; remove it or choose another path")]
    Exists(String),
    /// SQLite failed.
    #[error("creating the sample database failed: {0}")]
    Sqlite(#[from] sqlx::Error),
}

/// Regions customers live in.
pub(crate) const REGIONS: [&str; 4] = ["north", "south", "east", "west"];
const SEGMENTS: [&str; 3] = ["consumer", "business", "public"];
const STATUSES: [&str; 4] = ["shipped", "shipped", "shipped", "returned"];
const PRODUCTS: [(&str, &str, f64); 8] = [
    ("espresso beans", "coffee", 14.5),
    ("filter beans", "coffee", 11.0),
    ("green tea", "tea", 6.25),
    ("black tea", "tea", 5.75),
    ("grinder", "equipment", 89.0),
    ("kettle", "equipment", 42.0),
    ("mug", "accessories", 9.5),
    ("scale", "equipment", 29.99),
];

/// Sizes of the generated tables.
#[derive(Debug, Clone, Copy)]
pub struct SampleSize {
    /// Customers.
    pub customers: u32,
    /// Orders.
    pub orders: u32,
}

impl Default for SampleSize {
    fn default() -> Self {
        SampleSize {
            customers: 40,
            orders: 1_000,
        }
    }
}

/// A small deterministic generator (SplitMix64): reproducible data without a `rand`
/// dependency and its version churn. Also feeds the benchmarks' generated frames.
#[derive(Debug, Clone)]
pub(crate) struct Mix(pub u64);

impl Mix {
    /// The next 64 random bits.
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// Creates the sample database at `path` (a new file).
pub async fn create(path: &Path, size: SampleSize) -> Result<(), SampleError> {
    if path.exists() {
        return Err(SampleError::Exists(path.display().to_string()));
    }
    let options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true);
    let mut conn = SqliteConnection::connect_with(&options).await?;
    let mut tx = conn.begin().await?;
    for ddl in [
        "CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT NOT NULL, region TEXT NOT NULL, segment TEXT NOT NULL, signup_date TEXT NOT NULL)",
        "CREATE TABLE products (id INTEGER PRIMARY KEY, name TEXT NOT NULL, category TEXT NOT NULL, unit_price REAL NOT NULL)",
        "CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER NOT NULL REFERENCES customers(id), product_id INTEGER NOT NULL REFERENCES products(id), order_date TEXT NOT NULL, qty INTEGER NOT NULL, discount REAL, status TEXT NOT NULL)",
    ] {
        sqlx::query(ddl).execute(&mut *tx).await?;
    }
    let mut rng = Mix(20_261_124);
    for id in 1..=size.customers {
        let region = REGIONS[rng.below(REGIONS.len() as u64) as usize];
        let segment = SEGMENTS[rng.below(SEGMENTS.len() as u64) as usize];
        let day = 1 + rng.below(28);
        let month = 1 + rng.below(12);
        sqlx::query("INSERT INTO customers VALUES (?, ?, ?, ?, ?)")
            .bind(i64::from(id))
            .bind(format!("customer {id:03}"))
            .bind(region)
            .bind(segment)
            .bind(format!("2024-{month:02}-{day:02}"))
            .execute(&mut *tx)
            .await?;
    }
    for (i, (name, category, price)) in PRODUCTS.iter().enumerate() {
        sqlx::query("INSERT INTO products VALUES (?, ?, ?, ?)")
            .bind(i as i64 + 1)
            .bind(*name)
            .bind(*category)
            .bind(*price)
            .execute(&mut *tx)
            .await?;
    }
    for id in 1..=size.orders {
        let customer = 1 + rng.below(u64::from(size.customers.max(1))) as i64;
        let product = 1 + rng.below(PRODUCTS.len() as u64) as i64;
        let month = 1 + rng.below(12);
        let day = 1 + rng.below(28);
        let qty = 1 + rng.below(6) as i64;
        // One order in five has a discount; the rest have none (NULL, not 0).
        let discount = (rng.below(5) == 0).then(|| [0.05, 0.1, 0.15][rng.below(3) as usize]);
        let status = STATUSES[rng.below(STATUSES.len() as u64) as usize];
        sqlx::query("INSERT INTO orders VALUES (?, ?, ?, ?, ?, ?, ?)")
            .bind(i64::from(id))
            .bind(customer)
            .bind(product)
            .bind(format!("2025-{month:02}-{day:02}"))
            .bind(qty)
            .bind(discount)
            .bind(status)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    conn.close().await?;
    Ok(())
}
