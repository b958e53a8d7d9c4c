//! The envelopes of the state host functions: a page of KV keys
//! ([`KeyPage`]), SQL parameters and values ([`SqlValue`]) and a SQL result
//! ([`SqlResult`]).

use super::{DecodeError, Reader, put_field};

/// A page of keys, staged by `kv_list`.
///
/// ```text
/// u32     count
///         count x field key
/// field   next            the cursor of the next page; empty on the last page
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KeyPage<'a> {
    /// The keys, in the store's order.
    pub keys: Vec<&'a [u8]>,
    /// The cursor to pass for the next page; empty when this is the last.
    pub next: &'a [u8],
}

impl<'a> KeyPage<'a> {
    /// Encodes the page.
    pub fn encode(&self) -> Vec<u8> {
        let len = 8 + self.next.len() + self.keys.iter().map(|k| 4 + k.len()).sum::<usize>();
        let mut out = Vec::with_capacity(len);
        put_count(&mut out, self.keys.len());
        for key in &self.keys {
            put_field(&mut out, key);
        }
        put_field(&mut out, self.next);
        out
    }

    /// Decodes a page.
    pub fn decode(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        let mut r = Reader(bytes);
        let count = r.count(4, "key count")?;
        let mut keys = Vec::with_capacity(count);
        for _ in 0..count {
            keys.push(r.field("key")?);
        }
        let next = r.field("next cursor")?;
        r.end("key page")?;
        Ok(Self { keys, next })
    }
}

/// A SQL value: a parameter or a cell of a result row.
///
/// ```text
/// u8      tag             0 null, 1 integer, 2 real, 3 text, 4 blob
///         integer: i64; real: f64 (IEEE 754 bits); text (UTF-8), blob: field
/// ```
#[derive(Debug, Clone, PartialEq)]
pub enum SqlValue<'a> {
    /// NULL.
    Null,
    /// A 64-bit integer.
    Integer(i64),
    /// A 64-bit float.
    Real(f64),
    /// UTF-8 text.
    Text(&'a str),
    /// Bytes.
    Blob(&'a [u8]),
}

impl<'a> SqlValue<'a> {
    /// Appends the value's encoding to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        match self {
            Self::Null => out.push(0),
            Self::Integer(v) => {
                out.push(1);
                out.extend_from_slice(&v.to_le_bytes());
            }
            Self::Real(v) => {
                out.push(2);
                out.extend_from_slice(&v.to_bits().to_le_bytes());
            }
            Self::Text(v) => {
                out.push(3);
                put_field(out, v.as_bytes());
            }
            Self::Blob(v) => {
                out.push(4);
                put_field(out, v);
            }
        }
    }

    fn decode_from(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        Ok(match r.take(1, "value tag")?[0] {
            0 => Self::Null,
            1 => Self::Integer(r.u64("integer")? as i64),
            2 => Self::Real(f64::from_bits(r.u64("real")?)),
            3 => Self::Text(r.text("text")?),
            4 => Self::Blob(r.field("blob")?),
            tag => return Err(DecodeError::BadValueTag(tag)),
        })
    }
}

/// The parameters of a statement, passed to `sql_exec`.
///
/// ```text
/// u32     count
///         count x value
/// ```
pub fn encode_sql_params(params: &[SqlValue<'_>]) -> Vec<u8> {
    let mut out = Vec::new();
    put_count(&mut out, params.len());
    for p in params {
        p.encode_into(&mut out);
    }
    out
}

/// Decodes the parameters of a statement; empty bytes are no parameters.
pub fn decode_sql_params(bytes: &[u8]) -> Result<Vec<SqlValue<'_>>, DecodeError> {
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    let mut r = Reader(bytes);
    let count = r.count(1, "parameter count")?;
    let mut params = Vec::with_capacity(count);
    for _ in 0..count {
        params.push(SqlValue::decode_from(&mut r)?);
    }
    r.end("SQL parameters")?;
    Ok(params)
}

/// The result of a statement, staged by `sql_exec`.
///
/// ```text
/// u64     rows_affected
/// i64     last_insert_rowid
/// u32     column_count
///         column_count x field name
/// u32     row_count
///         row_count x column_count x value
/// ```
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SqlResult<'a> {
    /// Rows changed by an INSERT, UPDATE or DELETE.
    pub rows_affected: u64,
    /// The rowid of the last row inserted through this database connection.
    pub last_insert_rowid: i64,
    /// Column names of a query; empty for other statements.
    pub columns: Vec<&'a str>,
    /// The rows, each with one value per column.
    pub rows: Vec<Vec<SqlValue<'a>>>,
}

impl<'a> SqlResult<'a> {
    /// Encodes the result.
    ///
    /// # Panics
    /// If a row's length differs from the column count.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&self.rows_affected.to_le_bytes());
        out.extend_from_slice(&self.last_insert_rowid.to_le_bytes());
        put_count(&mut out, self.columns.len());
        for c in &self.columns {
            put_field(&mut out, c.as_bytes());
        }
        put_count(&mut out, self.rows.len());
        for row in &self.rows {
            assert_eq!(row.len(), self.columns.len(), "row width differs");
            for v in row {
                v.encode_into(&mut out);
            }
        }
        out
    }

    /// Decodes a result.
    pub fn decode(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        let mut r = Reader(bytes);
        let rows_affected = r.u64("rows affected")?;
        let last_insert_rowid = r.u64("last insert rowid")? as i64;
        let column_count = r.count(4, "column count")?;
        let mut columns = Vec::with_capacity(column_count);
        for _ in 0..column_count {
            columns.push(r.text("column name")?);
        }
        // A row of zero columns takes no bytes: bound the count by the
        // bytes each row needs, at least one tag per column.
        let row_count = r.u32("row count")? as usize;
        if row_count > 0 && (column_count == 0 || row_count > r.0.len() / column_count) {
            return Err(DecodeError::TooManyHeaders(row_count as u32));
        }
        let mut rows = Vec::with_capacity(row_count);
        for _ in 0..row_count {
            let mut row = Vec::with_capacity(column_count);
            for _ in 0..column_count {
                row.push(SqlValue::decode_from(&mut r)?);
            }
            rows.push(row);
        }
        r.end("SQL result")?;
        Ok(Self {
            rows_affected,
            last_insert_rowid,
            columns,
            rows,
        })
    }
}

fn put_count(out: &mut Vec<u8>, n: usize) {
    let n = u32::try_from(n).expect("more than 4 billion elements");
    out.extend_from_slice(&n.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = KeyPage::decode(&bytes);
            let _ = decode_sql_params(&bytes);
            let _ = SqlResult::decode(&bytes);
        }

        #[test]
        fn pages_round_trip(
            keys in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..20), 0..10),
            next in proptest::collection::vec(any::<u8>(), 0..20),
        ) {
            let page = KeyPage { keys: keys.iter().map(Vec::as_slice).collect(), next: &next };
            let bytes = page.encode();
            prop_assert_eq!(KeyPage::decode(&bytes).unwrap(), page);
        }

        #[test]
        fn results_round_trip(
            ints in proptest::collection::vec(any::<i64>(), 0..10),
            text in "[ -~]{0,20}",
            affected in any::<u64>(),
        ) {
            let rows: Vec<Vec<SqlValue<'_>>> = ints
                .iter()
                .map(|&i| vec![SqlValue::Integer(i), SqlValue::Text(&text), SqlValue::Null, SqlValue::Real(0.5), SqlValue::Blob(b"\x00\xff")])
                .collect();
            let result = SqlResult {
                rows_affected: affected,
                last_insert_rowid: -1,
                columns: vec!["a", "b", "c", "d", "e"],
                rows,
            };
            let bytes = result.encode();
            prop_assert_eq!(SqlResult::decode(&bytes).unwrap(), result);
        }
    }

    #[test]
    fn params_round_trip() {
        let params = [
            SqlValue::Null,
            SqlValue::Integer(-7),
            SqlValue::Real(2.5),
            SqlValue::Text("x"),
            SqlValue::Blob(b"yz"),
        ];
        assert_eq!(
            decode_sql_params(&encode_sql_params(&params)).unwrap(),
            params
        );
        assert_eq!(decode_sql_params(&[]).unwrap(), vec![]);
        assert!(decode_sql_params(&[1, 0, 0, 0, 9]).is_err());
    }
}
