//! Bulk inserts with `COPY … FROM STDIN (FORMAT binary)`, for the batch writer's rows that are
//! pure inserts (versions, premium and claim transactions, change events, new policies).
//!
//! `COPY` is the cheapest way into a table: the server reads the rows straight from the stream,
//! with none of the planning, array unpacking and per-row projection of
//! `INSERT … SELECT FROM UNNEST(…)`. It runs inside the batch's transaction like any statement,
//! so a batch stays all or nothing; a failed `COPY` (a unique key taken by another writer, a
//! refused value) fails the statement, and the batch is rolled back as before.
//!
//! **Why binary.** Every value is encoded by sqlx's own `Encode` implementation, the bytes a
//! bound parameter of the same type would carry, so a value written by `COPY` is the value the
//! `UNNEST` statements wrote (numerics, timestamps to the microsecond, dates), and text needs no
//! escaping: a tab, a newline, a backslash or `\N` in a carrier's data is just bytes, where the
//! text format would have to escape each of them. The one character PostgreSQL cannot store in
//! text, NUL, is refused here in text columns with the table and column it was meant for (the
//! mapping already refuses it in a carrier's data, so this is a backstop); PostgreSQL would
//! refuse it too. JSON columns are not searched: serde_json, which writes them, escapes it.
//!
//! The format (PostgreSQL's documentation, "COPY", "Binary Format"): a signature and two
//! 32-bit words, then per row the number of fields (16 bits) and each field as its length
//! (32 bits, -1 for NULL) and bytes, then -1 as a 16-bit trailer.

use crate::StoreError;
use sqlx::encode::{Encode, IsNull};
use sqlx::postgres::{PgArgumentBuffer, PgConnection};
use sqlx::Postgres;

/// The binary `COPY` signature, the flags word (no OIDs) and the header extension length.
const HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";

/// The rows of one `COPY` into one table, encoded in memory and sent at once.
pub(super) struct CopyRows {
    table: &'static str,
    columns: &'static [&'static str],
    buf: PgArgumentBuffer,
    rows: u64,
    /// Fields written in the current row.
    fields: usize,
}

impl CopyRows {
    /// An empty `COPY` into `table`'s `columns` (the others take their defaults).
    pub(super) fn new(table: &'static str, columns: &'static [&'static str]) -> Self {
        let mut buf = PgArgumentBuffer::default();
        *buf = pool::take();
        buf.extend_from_slice(HEADER);
        Self {
            table,
            columns,
            buf,
            rows: 0,
            fields: 0,
        }
    }

    /// Starts a row; the previous one must have had every column.
    pub(super) fn row(&mut self) -> Result<(), StoreError> {
        self.check_row_complete()?;
        let count = i16::try_from(self.columns.len())
            .map_err(|_| self.invalid("has more columns than COPY allows".into()))?;
        self.buf.extend_from_slice(&count.to_be_bytes());
        self.rows += 1;
        self.fields = 0;
        Ok(())
    }

    /// A value of any type sqlx binds, encoded as a bound parameter of that type would be.
    pub(super) fn value<'q, T: Encode<'q, Postgres>>(
        &mut self,
        value: &T,
    ) -> Result<(), StoreError> {
        let column = self.next_column()?;
        let start = self.buf.len();
        self.buf.extend_from_slice(&[0; 4]);
        match value.encode_by_ref(&mut self.buf) {
            Ok(IsNull::No) => {
                let len = self.buf.len() - start - 4;
                let len = i32::try_from(len).map_err(|_| {
                    self.invalid(format!(
                        "column {column}: a value of {len} bytes is too long"
                    ))
                })?;
                self.buf[start..start + 4].copy_from_slice(&len.to_be_bytes());
            }
            Ok(IsNull::Yes) => {
                self.buf.truncate(start);
                self.buf.extend_from_slice(&(-1i32).to_be_bytes());
            }
            Err(e) => {
                return Err(self.invalid(format!("column {column}: {e}")));
            }
        }
        Ok(())
    }

    /// A text value: its UTF-8 bytes as they are; a NUL is refused.
    pub(super) fn text(&mut self, value: &str) -> Result<(), StoreError> {
        self.checked_bytes(&[], value)
    }

    /// A nullable text value.
    pub(super) fn opt_text(&mut self, value: Option<&str>) -> Result<(), StoreError> {
        match value {
            Some(v) => self.text(v),
            None => self.null(),
        }
    }

    /// A `jsonb` value from its JSON text (the binary form is a version byte, 1, and the
    /// text; the server parses and checks it as it does a `::jsonb` cast).
    ///
    /// Not searched for NUL: JSON has none outside strings, and serde_json, which writes every
    /// JSON text stored, escapes one inside a string (`\u0000`). A NUL in text that was not
    /// is refused by the server's JSON parser, failing the `COPY`.
    pub(super) fn jsonb(&mut self, json: &str) -> Result<(), StoreError> {
        let column = self.next_column()?;
        self.put_bytes(column, &[1], json.as_bytes())
    }

    /// SQL NULL.
    pub(super) fn null(&mut self) -> Result<(), StoreError> {
        self.next_column()?;
        self.buf.extend_from_slice(&(-1i32).to_be_bytes());
        Ok(())
    }

    /// Ends the data with the trailer.
    fn finish(&mut self) -> Result<(), StoreError> {
        self.check_row_complete()?;
        self.buf.extend_from_slice(&(-1i16).to_be_bytes());
        Ok(())
    }

    /// The complete `COPY` data: header, rows and trailer.
    #[cfg(test)]
    fn into_bytes(mut self) -> Result<Vec<u8>, StoreError> {
        self.finish()?;
        Ok(std::mem::take(&mut *self.buf))
    }

    /// The statement that receives these rows.
    fn statement(&self) -> String {
        format!(
            "COPY {} ({}) FROM STDIN (FORMAT binary)",
            self.table,
            self.columns.join(", ")
        )
    }

    /// Runs the `COPY` on `conn` (inside the caller's transaction) and checks that the server
    /// stored every row. Nothing is sent for no rows.
    pub(super) async fn send(mut self, conn: &mut PgConnection) -> Result<(), CopyError> {
        if self.rows == 0 {
            return Ok(());
        }
        let table = self.table;
        let expected = self.rows;
        let statement = self.statement();
        self.finish()?;
        let mut copy = conn.copy_in_raw(&statement).await?;
        // On an error the dropped `copy` tells the server to abandon the COPY.
        copy.send(self.buf.as_slice()).await?;
        let stored = copy.finish().await?;
        if stored != expected {
            return Err(StoreError::Invalid(format!(
                "COPY into {table} stored {stored} rows of {expected}"
            ))
            .into());
        }
        Ok(())
    }

    fn checked_bytes(&mut self, prefix: &[u8], value: &str) -> Result<(), StoreError> {
        let column = self.next_column()?;
        if let Some(at) = memchr::memchr(0, value.as_bytes()) {
            return Err(self.invalid(format!(
                "column {column}: the value contains a NUL character (at byte {at}), \
                 which PostgreSQL cannot store in text"
            )));
        }
        self.put_bytes(column, prefix, value.as_bytes())
    }

    /// A field of `prefix` and `value`, after its length.
    fn put_bytes(&mut self, column: &str, prefix: &[u8], value: &[u8]) -> Result<(), StoreError> {
        let len = prefix.len() + value.len();
        let len = i32::try_from(len).map_err(|_| {
            self.invalid(format!(
                "column {column}: a value of {len} bytes is too long"
            ))
        })?;
        self.buf.extend_from_slice(&len.to_be_bytes());
        self.buf.extend_from_slice(prefix);
        self.buf.extend_from_slice(value);
        Ok(())
    }

    fn next_column(&mut self) -> Result<&'static str, StoreError> {
        if self.rows == 0 {
            return Err(self.invalid("a value was written before the first row".into()));
        }
        let Some(&column) = self.columns.get(self.fields) else {
            return Err(self.invalid(format!(
                "row {} has more values than the {} columns",
                self.rows,
                self.columns.len()
            )));
        };
        self.fields += 1;
        Ok(column)
    }

    fn check_row_complete(&self) -> Result<(), StoreError> {
        if self.rows > 0 && self.fields != self.columns.len() {
            return Err(self.invalid(format!(
                "row {} has {} values for {} columns",
                self.rows,
                self.fields,
                self.columns.len()
            )));
        }
        Ok(())
    }

    fn invalid(&self, what: String) -> StoreError {
        StoreError::Invalid(format!(
            "COPY into {}, row {}: {what}",
            self.table, self.rows
        ))
    }
}

impl Drop for CopyRows {
    fn drop(&mut self) {
        pool::give(std::mem::take(&mut *self.buf));
    }
}

/// Buffers of finished `COPY`s, kept for the next ones on the same thread: a batch's `COPY`
/// data is megabytes, and a new buffer grows by copying itself and faults its pages in again.
mod pool {
    use std::cell::RefCell;

    /// Buffers kept per thread: a batch's `COPY`s are sent one at a time.
    const KEPT: usize = 4;
    /// A buffer larger than this (an unusual batch) is freed rather than kept.
    const LARGEST: usize = 64 << 20;

    thread_local! {
        static FREE: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
    }

    pub(super) fn take() -> Vec<u8> {
        FREE.with(|free| free.borrow_mut().pop())
            .unwrap_or_default()
    }

    pub(super) fn give(mut buf: Vec<u8>) {
        if buf.capacity() == 0 || buf.capacity() > LARGEST {
            return;
        }
        buf.clear();
        FREE.with(|free| {
            let mut free = free.borrow_mut();
            if free.len() < KEPT {
                free.push(buf);
            }
        });
    }
}

/// Why a `COPY` failed: a refused value (found before sending), or the server's error.
#[derive(Debug)]
pub(super) enum CopyError {
    Store(StoreError),
    Database(sqlx::Error),
}

impl From<StoreError> for CopyError {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

impl From<sqlx::Error> for CopyError {
    fn from(e: sqlx::Error) -> Self {
        Self::Database(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{NaiveDate, TimeZone, Utc};
    use rust_decimal::Decimal;
    use std::str::FromStr;

    const COLUMNS: &[&str] = &["a", "b", "c"];

    /// Splits binary COPY data back into rows of fields (`None` for NULL), checking the
    /// header, the field counts and the trailer on the way.
    fn parse(data: &[u8]) -> Vec<Vec<Option<Vec<u8>>>> {
        assert_eq!(&data[..HEADER.len()], HEADER, "header");
        let mut at = HEADER.len();
        let mut rows = Vec::new();
        loop {
            let count = i16::from_be_bytes([data[at], data[at + 1]]);
            at += 2;
            if count == -1 {
                assert_eq!(at, data.len(), "bytes after the trailer");
                return rows;
            }
            let mut row = Vec::new();
            for _ in 0..count {
                let len = i32::from_be_bytes(data[at..at + 4].try_into().unwrap());
                at += 4;
                if len == -1 {
                    row.push(None);
                } else {
                    let len = len as usize;
                    row.push(Some(data[at..at + len].to_vec()));
                    at += len;
                }
            }
            rows.push(row);
        }
    }

    #[test]
    fn hostile_text_travels_as_its_own_bytes() {
        let hostile = [
            "tab\there",
            "new\nline",
            "carriage\r\nreturn",
            "back\\slash",
            "\\N",
            "\\.",
            "quote \" and ' apostrophe",
            "comma, semicolon; pipe|",
            "",
            " leading and trailing ",
            "ünïcödé ✓ 😀",
            "\u{7f}\u{1b}[31m",
        ];
        let mut copy = CopyRows::new("t", COLUMNS);
        for h in hostile {
            copy.row().unwrap();
            copy.text(h).unwrap();
            copy.opt_text(Some(h)).unwrap();
            copy.jsonb(&serde_json::to_string(h).unwrap()).unwrap();
        }
        let rows = parse(&copy.into_bytes().unwrap());
        assert_eq!(rows.len(), hostile.len());
        for (row, h) in rows.iter().zip(hostile) {
            assert_eq!(row[0].as_deref(), Some(h.as_bytes()));
            assert_eq!(row[1].as_deref(), Some(h.as_bytes()));
            let json = row[2].as_deref().unwrap();
            assert_eq!(json[0], 1, "jsonb version byte");
            let back: String = serde_json::from_slice(&json[1..]).unwrap();
            assert_eq!(back, h);
        }
    }

    #[test]
    fn nul_is_refused_with_its_table_and_column() {
        let mut copy = CopyRows::new("policies", COLUMNS);
        copy.row().unwrap();
        copy.text("fine").unwrap();
        let e = copy.text("a\0b").unwrap_err().to_string();
        assert!(e.contains("policies"), "{e}");
        assert!(e.contains("column b"), "{e}");
        assert!(e.contains("NUL"), "{e}");
        assert!(e.contains("byte 1"), "{e}");
    }

    #[test]
    fn nulls_and_typed_values_are_encoded_as_bound_parameters() {
        let mut copy = CopyRows::new("t", COLUMNS);
        copy.row().unwrap();
        copy.value(&42i64).unwrap();
        copy.value(&NaiveDate::from_ymd_opt(2000, 1, 2).unwrap())
            .unwrap();
        copy.value(&Option::<i64>::None).unwrap();
        copy.row().unwrap();
        copy.null().unwrap();
        copy.value(&Utc.timestamp_opt(946_684_800, 1_500).unwrap())
            .unwrap();
        copy.value(&Decimal::from_str("-12.50").unwrap()).unwrap();
        let rows = parse(&copy.into_bytes().unwrap());
        assert_eq!(rows[0][0].as_deref(), Some(&42i64.to_be_bytes()[..]));
        // Days since 2000-01-01.
        assert_eq!(rows[0][1].as_deref(), Some(&1i32.to_be_bytes()[..]));
        assert_eq!(rows[0][2], None);
        assert_eq!(rows[1][0], None);
        // Microseconds since 2000-01-01T00:00:00Z (the nanoseconds below one are dropped, as a
        // bound parameter drops them).
        assert_eq!(rows[1][1].as_deref(), Some(&1i64.to_be_bytes()[..]));
        // NUMERIC: 2 digits (base 10000), weight 0, negative, scale 2: 12, 5000.
        let numeric: Vec<u8> = [2i16, 0, 0x4000, 2, 12, 5000]
            .iter()
            .flat_map(|w| w.to_be_bytes())
            .collect();
        assert_eq!(rows[1][2].as_deref(), Some(&numeric[..]));
    }

    #[test]
    fn a_row_with_the_wrong_number_of_values_is_refused() {
        let mut copy = CopyRows::new("t", COLUMNS);
        copy.row().unwrap();
        copy.text("only one").unwrap();
        assert!(copy.row().is_err(), "a short row");
        let mut copy = CopyRows::new("t", COLUMNS);
        copy.row().unwrap();
        for _ in 0..3 {
            copy.null().unwrap();
        }
        assert!(copy.null().is_err(), "a long row");
        let mut copy = CopyRows::new("t", COLUMNS);
        assert!(copy.text("before any row").is_err());
        let mut copy = CopyRows::new("t", COLUMNS);
        copy.row().unwrap();
        copy.null().unwrap();
        assert!(copy.into_bytes().is_err(), "a short last row");
    }

    #[test]
    fn the_statement_names_the_table_and_its_columns() {
        let copy = CopyRows::new("outbox", COLUMNS);
        assert_eq!(
            copy.statement(),
            "COPY outbox (a, b, c) FROM STDIN (FORMAT binary)"
        );
    }
}
