//! The state machine's keyspace tables in `sm.redb`: one [`SCHEMA`] row per table.
//!
//! # What it owns
//! - [`Table`]: the name code uses for a table, and its tag in snapshot files.
//! - [`SCHEMA`]: each table's redb definition and whether its bytes count as stored data.
//!   Opening the state machine creates every table in it, the layers read and flush every
//!   table in it, snapshots write and install every table in it, and the stored-bytes
//!   accounting sums its data tables: a new table is one `Table` variant and one row.
//! - [`ReadTable`], [`WriteTable`]: a table opened in a read or a write transaction, with its
//!   rows as bytes whatever redb's value type (an index row reads as an empty value).
//!
//! # Must not
//! Know what a row means: records and their encodings are `store::keyspace`'s.

use std::ops::Bound;

use bytes::Bytes;
use redb::{ReadOnlyTable, ReadableTableMetadata, TableDefinition};

/// A table whose rows carry values.
type ValueDefinition = TableDefinition<'static, &'static [u8], &'static [u8]>;
/// An index: its rows are keys without values.
type IndexDefinition = TableDefinition<'static, &'static [u8], ()>;

/// Keys → records.
pub const KEYS: ValueDefinition = TableDefinition::new("keys");
/// Hash fields.
pub const FIELDS: ValueDefinition = TableDefinition::new("fields");
/// Deadline-ordered index of keys with an expiry.
pub const EXPIRY: IndexDefinition = TableDefinition::new("expiry");
/// Every key in the order of its `scan_hash`, for SCAN cursors that survive concurrent
/// inserts and deletes.
pub const SCAN_INDEX: IndexDefinition = TableDefinition::new("scan_index");
/// The script cache: a script's SHA-1 (40 hex digits) → its body.
pub const SCRIPTS: ValueDefinition = TableDefinition::new("scripts");
/// Function libraries: a library's name → its code.
pub const LIBRARIES: ValueDefinition = TableDefinition::new("libraries");
/// Functions: a function's name → the name of the library that registers it.
pub const FUNCTIONS: ValueDefinition = TableDefinition::new("functions");
/// List elements, by position.
pub const LIST_ITEMS: ValueDefinition = TableDefinition::new("list_items");
/// Set members.
pub const SET_MEMBERS: IndexDefinition = TableDefinition::new("set_members");
/// Sorted-set members → their scores.
pub const ZSET_SCORES: ValueDefinition = TableDefinition::new("zset_scores");
/// Sorted-set members in score order → their exact scores.
pub const ZSET_ORDER: ValueDefinition = TableDefinition::new("zset_order");
/// Replicated settings (CONFIG SET of the data-type parameters): a name → its value.
pub const SETTINGS: ValueDefinition = TableDefinition::new("settings");

/// The keyspace's tables. The discriminant is the table's place in [`SCHEMA`] and its tag in
/// snapshot files, so a new table goes at the end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Table {
    /// Keys → records.
    Keys = 0,
    /// Hash fields.
    Fields = 1,
    /// Deadline-ordered expiry index (rows without values).
    Expiry = 2,
    /// Hash-ordered SCAN index (rows without values).
    ScanIndex = 3,
    /// The script cache (EVALSHA, SCRIPT LOAD).
    Scripts = 4,
    /// Function libraries (FUNCTION LOAD).
    Libraries = 5,
    /// Which library registers each function (FCALL).
    Functions = 6,
    /// List elements.
    ListItems = 7,
    /// Set members (rows without values).
    SetMembers = 8,
    /// Sorted-set members → scores.
    ZsetScores = 9,
    /// Sorted-set members in score order.
    ZsetOrder = 10,
    /// Replicated settings.
    Settings = 11,
}

/// How many tables there are.
pub const TABLE_COUNT: usize = SCHEMA.len();

impl Table {
    /// The table's place in [`SCHEMA`] (and its tag in snapshot files).
    pub fn slot(self) -> usize {
        self as usize
    }
}

/// How a table is stored in redb.
#[derive(Clone, Copy)]
pub enum Definition {
    /// Rows with values.
    Values(ValueDefinition),
    /// Rows without values.
    Index(IndexDefinition),
}

/// One table of the schema.
pub struct TableSchema {
    /// Which table.
    pub table: Table,
    /// Its redb definition.
    pub definition: Definition,
    /// Whether its bytes count as stored data (the disk-space estimate for snapshots); indexes
    /// do not.
    pub stored_data: bool,
    /// Whether it holds keys' data, which FLUSHALL removes; the script cache and the function
    /// libraries survive it, as in Redis.
    pub keyspace: bool,
}

/// Every table, in [`Table`] order.
pub const SCHEMA: [TableSchema; 12] = [
    TableSchema {
        table: Table::Keys,
        definition: Definition::Values(KEYS),
        stored_data: true,
        keyspace: true,
    },
    TableSchema {
        table: Table::Fields,
        definition: Definition::Values(FIELDS),
        stored_data: true,
        keyspace: true,
    },
    TableSchema {
        table: Table::Expiry,
        definition: Definition::Index(EXPIRY),
        stored_data: false,
        keyspace: true,
    },
    TableSchema {
        table: Table::ScanIndex,
        definition: Definition::Index(SCAN_INDEX),
        stored_data: false,
        keyspace: true,
    },
    TableSchema {
        table: Table::Scripts,
        definition: Definition::Values(SCRIPTS),
        stored_data: true,
        keyspace: false,
    },
    TableSchema {
        table: Table::Libraries,
        definition: Definition::Values(LIBRARIES),
        stored_data: true,
        keyspace: false,
    },
    TableSchema {
        table: Table::Functions,
        definition: Definition::Values(FUNCTIONS),
        stored_data: false,
        keyspace: false,
    },
    TableSchema {
        table: Table::ListItems,
        definition: Definition::Values(LIST_ITEMS),
        stored_data: true,
        keyspace: true,
    },
    TableSchema {
        table: Table::SetMembers,
        definition: Definition::Index(SET_MEMBERS),
        stored_data: true,
        keyspace: true,
    },
    TableSchema {
        table: Table::ZsetScores,
        definition: Definition::Values(ZSET_SCORES),
        stored_data: true,
        keyspace: true,
    },
    TableSchema {
        table: Table::ZsetOrder,
        definition: Definition::Values(ZSET_ORDER),
        stored_data: false,
        keyspace: true,
    },
    TableSchema {
        table: Table::Settings,
        definition: Definition::Values(SETTINGS),
        stored_data: false,
        keyspace: false,
    },
];

/// A source of rows in key order; `None` never comes from redb (it marks a layer's deletes).
pub type RowIter<'a> = Box<dyn Iterator<Item = Result<(Bytes, Option<Bytes>), redb::Error>> + 'a>;

/// Creates every table of the schema that `txn`'s database does not have yet.
pub fn create_all(txn: &redb::WriteTransaction) -> Result<(), redb::Error> {
    for schema in &SCHEMA {
        WriteTable::open(schema.table, txn)?;
    }
    Ok(())
}

/// Whether `txn`'s database has every table of the schema.
pub fn all_exist(txn: &redb::ReadTransaction) -> bool {
    SCHEMA
        .iter()
        .all(|schema| ReadTable::open(schema.table, txn).is_ok())
}

/// A table opened in a read transaction.
pub enum ReadTable {
    /// Rows with values.
    Values(ReadOnlyTable<&'static [u8], &'static [u8]>),
    /// Rows without values.
    Index(ReadOnlyTable<&'static [u8], ()>),
}

impl ReadTable {
    /// Opens `table` as `txn` sees it (it must exist).
    pub fn open(table: Table, txn: &redb::ReadTransaction) -> Result<ReadTable, redb::Error> {
        Ok(match SCHEMA[table.slot()].definition {
            Definition::Values(definition) => ReadTable::Values(txn.open_table(definition)?),
            Definition::Index(definition) => ReadTable::Index(txn.open_table(definition)?),
        })
    }

    /// Rows in the table.
    pub fn row_count(&self) -> Result<u64, redb::Error> {
        Ok(match self {
            ReadTable::Values(t) => t.len()?,
            ReadTable::Index(t) => t.len()?,
        })
    }

    /// Bytes of keys and values stored.
    pub fn stored_bytes(&self) -> Result<u64, redb::Error> {
        Ok(match self {
            ReadTable::Values(t) => t.stats()?.stored_bytes(),
            ReadTable::Index(t) => t.stats()?.stored_bytes(),
        })
    }

    /// The row at `key`: its value, empty for an index row.
    pub fn get(&self, key: &[u8]) -> Result<Option<Bytes>, redb::Error> {
        Ok(match self {
            ReadTable::Values(t) => t.get(key)?.map(|v| Bytes::copy_from_slice(v.value())),
            ReadTable::Index(t) => t.get(key)?.map(|_| Bytes::new()),
        })
    }

    /// The rows between `start` and `end`, in key order.
    pub fn range<'a>(
        &'a self,
        start: Bound<&'a [u8]>,
        end: Bound<&'a [u8]>,
    ) -> Result<RowIter<'a>, redb::Error> {
        self.range_in(start, end, false)
    }

    /// The rows between `start` and `end`, in key order or (`reverse`) from the last.
    pub fn range_in<'a>(
        &'a self,
        start: Bound<&'a [u8]>,
        end: Bound<&'a [u8]>,
        reverse: bool,
    ) -> Result<RowIter<'a>, redb::Error> {
        /// Boxes `rows`, turned around when `reverse`.
        fn directed<'a, I>(rows: I, reverse: bool) -> RowIter<'a>
        where
            I: DoubleEndedIterator<Item = Result<(Bytes, Option<Bytes>), redb::Error>> + 'a,
        {
            if reverse {
                Box::new(rows.rev())
            } else {
                Box::new(rows)
            }
        }
        Ok(match self {
            ReadTable::Values(t) => directed(
                t.range::<&[u8]>((start, end))?.map(|item| {
                    let (k, v) = item?;
                    Ok((
                        Bytes::copy_from_slice(k.value()),
                        Some(Bytes::copy_from_slice(v.value())),
                    ))
                }),
                reverse,
            ),
            ReadTable::Index(t) => directed(
                t.range::<&[u8]>((start, end))?.map(|item| {
                    let (k, _) = item?;
                    Ok((Bytes::copy_from_slice(k.value()), Some(Bytes::new())))
                }),
                reverse,
            ),
        })
    }
}

/// A table opened in a write transaction.
pub enum WriteTable<'txn> {
    /// Rows with values.
    Values(redb::Table<'txn, &'static [u8], &'static [u8]>),
    /// Rows without values.
    Index(redb::Table<'txn, &'static [u8], ()>),
}

impl<'txn> WriteTable<'txn> {
    /// Opens `table` in `txn`, creating it if the database does not have it.
    pub fn open(table: Table, txn: &'txn redb::WriteTransaction) -> Result<Self, redb::Error> {
        Ok(match SCHEMA[table.slot()].definition {
            Definition::Values(definition) => WriteTable::Values(txn.open_table(definition)?),
            Definition::Index(definition) => WriteTable::Index(txn.open_table(definition)?),
        })
    }

    /// Every table of the schema, in [`Table`] order.
    pub fn open_all(txn: &'txn redb::WriteTransaction) -> Result<Vec<Self>, redb::Error> {
        SCHEMA
            .iter()
            .map(|schema| WriteTable::open(schema.table, txn))
            .collect()
    }

    /// Writes the row at `key` (an index ignores `value`).
    pub fn insert(&mut self, key: &[u8], value: &[u8]) -> Result<(), redb::Error> {
        match self {
            WriteTable::Values(t) => drop(t.insert(key, value)?),
            WriteTable::Index(t) => drop(t.insert(key, ())?),
        }
        Ok(())
    }

    /// Removes the row at `key`, if any.
    pub fn remove(&mut self, key: &[u8]) -> Result<(), redb::Error> {
        match self {
            WriteTable::Values(t) => drop(t.remove(key)?),
            WriteTable::Index(t) => drop(t.remove(key)?),
        }
        Ok(())
    }

    /// Removes every row.
    pub fn clear(&mut self) -> Result<(), redb::Error> {
        match self {
            WriteTable::Values(t) => t.retain(|_, _| false)?,
            WriteTable::Index(t) => t.retain(|_, _| false)?,
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_rows_are_in_table_order() {
        for (slot, schema) in SCHEMA.iter().enumerate() {
            assert_eq!(schema.table.slot(), slot, "{:?}", schema.table);
        }
    }
}
