//! The applied keyspace as layers: recent changes in memory, over the tables in `sm.redb`.
//!
//! # What it owns
//! - [`Layer`]: rows changed since they were last written to redb, per table, in ordered
//!   persistent maps (a deleted row is a tombstone). Cloning one is O(1), so a reader takes a
//!   point-in-time copy; apply changes nodes nobody else holds in place and copies the rest.
//! - [`Base`]: the redb tables as of one committed read transaction.
//! - [`Layers`]: one consistent view: the active layer apply writes into, at most one frozen
//!   layer on its way to redb, and a base; lookups and ordered ranges merged across the three
//!   (upper layers win; a cleared layer hides the keyspace's rows below it).
//! - [`write_layer`]: writes a frozen layer into a redb write transaction, in key order.
//!
//! # Why
//! A redb write transaction per apply batch pays a page copy for every distinct key it touches,
//! in each table the key lives in, and checksums and freed-page bookkeeping at commit: about
//! 50 µs per random key, most of the apply cost. Applied in memory and written to redb in large
//! sorted transactions, a page is copied once per flush however many of its keys changed.
//!
//! # Must not
//! Know about records, commands or raft: rows here are bytes.

use std::iter::Peekable;
use std::ops::Bound;
use std::sync::Arc;

use crate::store::keyspace::{StoreError, StoreResult};
pub use crate::store::schema::Table;
use crate::store::schema::{ReadTable, SCHEMA, TABLE_COUNT, WriteTable};
use bytes::Bytes;
use imbl::OrdMap;

fn storage(err: impl std::fmt::Display) -> StoreError {
    StoreError::Storage(err.to_string())
}

/// Rows of one table in a layer: `Some(value)` written, `None` deleted.
type Rows = OrdMap<Bytes, Option<Bytes>>;

/// Bookkeeping bytes counted per row on top of its key and value.
const ROW_OVERHEAD_BYTES: usize = 64;

/// Changes to every table not yet written to redb.
#[derive(Clone, Debug, Default)]
pub struct Layer {
    tables: [Rows; TABLE_COUNT],
    /// Every row of the keyspace's tables below this layer is gone (FLUSHALL); other tables
    /// (the script cache) are untouched.
    cleared: bool,
    /// Approximate memory the rows hold.
    bytes: usize,
}

impl Layer {
    /// Approximate bytes the layer holds (rows written since it was created; overwrites count
    /// again).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Whether this layer hides the rows of `table` below it.
    fn hides(&self, table: Table) -> bool {
        self.cleared && SCHEMA[table.slot()].keyspace
    }

    fn set(&mut self, table: Table, key: &[u8], value: Option<&[u8]>) {
        self.bytes += key.len() + value.map_or(0, <[u8]>::len) + ROW_OVERHEAD_BYTES;
        self.tables[table.slot()].insert(
            Bytes::copy_from_slice(key),
            value.map(Bytes::copy_from_slice),
        );
    }
}

/// A source of rows in key order, upper sources first when merging.
type RowIter<'a> = Box<dyn Iterator<Item = StoreResult<(Bytes, Option<Bytes>)>> + 'a>;

/// The redb tables as of one committed read transaction.
pub struct Base {
    /// Every table of the schema, in [`Table`] order.
    tables: Vec<ReadTable>,
}

impl Base {
    /// The tables `txn` sees (they must exist).
    pub fn open(txn: &redb::ReadTransaction) -> StoreResult<Base> {
        let tables = SCHEMA
            .iter()
            .map(|schema| ReadTable::open(schema.table, txn))
            .collect::<Result<_, _>>()
            .map_err(storage)?;
        Ok(Base { tables })
    }

    fn key_count(&self) -> StoreResult<u64> {
        self.tables[Table::Keys.slot()].row_count().map_err(storage)
    }

    fn get(&self, table: Table, key: &[u8]) -> StoreResult<Option<Bytes>> {
        self.tables[table.slot()].get(key).map_err(storage)
    }

    fn range<'a>(
        &'a self,
        table: Table,
        start: Bound<&'a [u8]>,
        end: Bound<&'a [u8]>,
        reverse: bool,
    ) -> StoreResult<RowIter<'a>> {
        let rows = self.tables[table.slot()]
            .range_in(start, end, reverse)
            .map_err(storage)?;
        Ok(Box::new(rows.map(|row| row.map_err(storage))))
    }
}

/// False when a range would be empty (and `OrdMap::range` would panic on it).
fn is_nonempty_range(start: Bound<&[u8]>, end: Bound<&[u8]>) -> bool {
    match (start, end) {
        (Bound::Included(s), Bound::Included(e)) => s <= e,
        (Bound::Included(s) | Bound::Excluded(s), Bound::Excluded(e))
        | (Bound::Excluded(s), Bound::Included(e)) => s < e,
        _ => true,
    }
}

/// One consistent view of the keyspace's rows: active layer, frozen layer, base.
#[derive(Clone)]
pub struct Layers {
    active: Layer,
    frozen: Option<Arc<Layer>>,
    base: Arc<Base>,
    /// Rows in `keys` across all layers.
    key_count: u64,
}

impl Layers {
    /// A view of `base` alone.
    pub fn new(base: Base) -> StoreResult<Layers> {
        Ok(Layers {
            key_count: base.key_count()?,
            active: Layer::default(),
            frozen: None,
            base: Arc::new(base),
        })
    }

    /// The layer apply writes into.
    pub fn active(&self) -> &Layer {
        &self.active
    }

    /// The layer on its way to redb, if any.
    pub fn frozen(&self) -> Option<&Arc<Layer>> {
        self.frozen.as_ref()
    }

    /// Moves the active layer below (there must be no frozen layer) and returns it.
    pub fn freeze(&mut self) -> Arc<Layer> {
        debug_assert!(self.frozen.is_none(), "one frozen layer at a time");
        let frozen = Arc::new(std::mem::take(&mut self.active));
        self.frozen = Some(frozen.clone());
        frozen
    }

    /// Moves this view out, leaving an empty one over the same base in its place: apply
    /// writes into the view it took (nodes nobody else holds change in place, with no
    /// copying) and puts it back before anyone can look at the placeholder.
    pub fn take(&mut self) -> Layers {
        let empty = Layers {
            active: Layer::default(),
            frozen: None,
            base: self.base.clone(),
            key_count: 0,
        };
        std::mem::replace(self, empty)
    }

    /// Replaces the base with one that holds the frozen layer, and drops that layer.
    pub fn replace_base(&mut self, base: Base) {
        self.base = Arc::new(base);
        self.frozen = None;
    }

    fn upper(&self) -> impl Iterator<Item = &Layer> {
        std::iter::once(&self.active).chain(self.frozen.as_deref())
    }

    /// Rows in `keys`.
    pub fn key_count(&self) -> u64 {
        self.key_count
    }

    /// A row's value.
    pub fn get(&self, table: Table, key: &[u8]) -> StoreResult<Option<Bytes>> {
        for layer in self.upper() {
            if let Some(row) = layer.tables[table.slot()].get(key) {
                return Ok(row.clone());
            }
            if layer.hides(table) {
                return Ok(None);
            }
        }
        self.base.get(table, key)
    }

    /// Writes a row; true when one was there.
    pub fn insert(&mut self, table: Table, key: &[u8], value: &[u8]) -> StoreResult<bool> {
        let existed = self.get(table, key)?.is_some();
        self.overwrite(table, key, value, existed);
        Ok(existed)
    }

    /// Writes a row whose presence the caller knows (it just read it): no lookup.
    pub fn overwrite(&mut self, table: Table, key: &[u8], value: &[u8], existed: bool) {
        debug_assert_eq!(
            self.get(table, key).ok().map(|row| row.is_some()),
            Some(existed),
            "overwrite told the wrong presence"
        );
        self.active.set(table, key, Some(value));
        if table == Table::Keys && !existed {
            self.key_count += 1;
        }
    }

    /// Deletes a row; true when one was there.
    pub fn remove(&mut self, table: Table, key: &[u8]) -> StoreResult<bool> {
        let existed = self.get(table, key)?.is_some();
        if existed {
            self.active.set(table, key, None);
            if table == Table::Keys {
                self.key_count -= 1;
            }
        }
        Ok(existed)
    }

    /// Writes an index row without looking for an old one (not for `keys`, which is counted).
    pub fn insert_index_row(&mut self, table: Table, key: &[u8]) {
        debug_assert_ne!(table, Table::Keys);
        self.active.set(table, key, Some(&[]));
    }

    /// Deletes an index row without looking for it first (not for `keys`).
    pub fn remove_index_row(&mut self, table: Table, key: &[u8]) {
        debug_assert_ne!(table, Table::Keys);
        self.active.set(table, key, None);
    }

    /// Deletes every row of `table` in a range (not for `keys`).
    pub fn remove_range(
        &mut self,
        table: Table,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
    ) -> StoreResult<()> {
        debug_assert_ne!(table, Table::Keys);
        let mut doomed = Vec::new();
        self.range(table, start, end, |key, _| {
            doomed.push(key.clone());
            Ok(true)
        })?;
        for key in doomed {
            self.active.set(table, &key, None);
        }
        Ok(())
    }

    /// Deletes every row of the keyspace's tables (FLUSHALL), keeping the others'.
    pub fn clear(&mut self) {
        let mut cleared = Layer {
            cleared: true,
            bytes: self.active.bytes,
            ..Layer::default()
        };
        for schema in SCHEMA.iter().filter(|schema| !schema.keyspace) {
            let slot = schema.table.slot();
            cleared.tables[slot] = std::mem::take(&mut self.active.tables[slot]);
        }
        self.active = cleared;
        self.key_count = 0;
    }

    /// Calls `visit` with the rows of `table` in the range, in key order, while it returns true.
    pub fn range(
        &self,
        table: Table,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        visit: impl FnMut(&Bytes, &Bytes) -> StoreResult<bool>,
    ) -> StoreResult<()> {
        self.range_in(table, start, end, false, visit)
    }

    /// Calls `visit` with the rows of `table` in the range, in key order or (`reverse`) from
    /// the last, while it returns true.
    pub fn range_in(
        &self,
        table: Table,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        reverse: bool,
        mut visit: impl FnMut(&Bytes, &Bytes) -> StoreResult<bool>,
    ) -> StoreResult<()> {
        if !is_nonempty_range(start, end) {
            return Ok(());
        }
        let mut sources: Vec<Peekable<RowIter<'_>>> = Vec::with_capacity(3);
        let mut reaches_base = true;
        for layer in self.upper() {
            let rows = layer.tables[table.slot()]
                .range::<_, [u8]>((start, end))
                .map(|(k, v)| Ok((k.clone(), v.clone())));
            let rows: RowIter<'_> = if reverse {
                Box::new(rows.rev())
            } else {
                Box::new(rows)
            };
            sources.push(rows.peekable());
            if layer.hides(table) {
                reaches_base = false;
                break;
            }
        }
        if reaches_base {
            sources.push(self.base.range(table, start, end, reverse)?.peekable());
        }
        // Whether `key` comes before `best` in the walk's direction.
        let precedes = |key: &Bytes, best: &Bytes| if reverse { key > best } else { key < best };
        loop {
            // The first key in the walk's direction any source holds next; the first
            // (uppermost) source holding it decides its value.
            let mut next: Option<(Bytes, Option<Bytes>)> = None;
            for source in &mut sources {
                match source.peek() {
                    Some(Err(_)) => return Err(source.next().expect("peeked").unwrap_err()),
                    Some(Ok((key, value)))
                        if next.as_ref().is_none_or(|(best, _)| precedes(key, best)) =>
                    {
                        next = Some((key.clone(), value.clone()));
                    }
                    _ => {}
                }
            }
            let Some((key, value)) = next else {
                return Ok(());
            };
            for source in &mut sources {
                if matches!(source.peek(), Some(Ok((k, _))) if *k == key) {
                    source.next();
                }
            }
            if let Some(value) = value
                && !visit(&key, &value)?
            {
                return Ok(());
            }
        }
    }
}

/// Writes a frozen layer's rows into `txn`, in key order per table.
pub fn write_layer(layer: &Layer, txn: &redb::WriteTransaction) -> StoreResult<()> {
    let mut tables = WriteTable::open_all(txn).map_err(storage)?;
    for ((table, rows), schema) in tables.iter_mut().zip(&layer.tables).zip(&SCHEMA) {
        if layer.hides(schema.table) {
            table.clear().map_err(storage)?;
        }
        for (key, value) in rows.iter() {
            match value {
                Some(value) => table.insert(key, value),
                None => table.remove(key),
            }
            .map_err(storage)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;
    use redb::ReadableDatabase;

    use super::*;
    use crate::store::keyspace::testing::database;

    fn base(db: &redb::Database) -> Base {
        Base::open(&db.begin_read().expect("read")).expect("base")
    }

    #[derive(Clone, Debug)]
    enum Op {
        Insert(u8, u8),
        Remove(u8),
        RemoveRange(u8, u8),
        Clear,
        Freeze,
        Flush,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            8 => (0u8..24, any::<u8>()).prop_map(|(k, v)| Op::Insert(k, v)),
            4 => (0u8..24).prop_map(Op::Remove),
            1 => (0u8..24, 0u8..24).prop_map(|(a, b)| Op::RemoveRange(a, b)),
            1 => Just(Op::Clear),
            2 => Just(Op::Freeze),
            2 => Just(Op::Flush),
        ]
    }

    fn key(k: u8) -> Vec<u8> {
        vec![b'k', k]
    }

    proptest! {
        /// Every sequence of changes, freezes and flushes reads back like one ordered map, by
        /// lookup and by every range, in `keys` (counted) and in an index table; a table outside
        /// the keyspace (the script cache) reads back like a map that clearing leaves alone.
        #[test]
        fn layers_read_like_one_map(ops in proptest::collection::vec(op(), 1..80)) {
            let db = database();
            let mut layers = Layers::new(base(&db)).expect("layers");
            let mut model: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
            let mut kept: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
            for op in ops {
                match op {
                    Op::Insert(k, v) => {
                        let existed = layers.insert(Table::Keys, &key(k), &[v]).expect("insert");
                        prop_assert_eq!(existed, model.insert(key(k), vec![v]).is_some());
                        layers.insert_index_row(Table::Fields, &key(k));
                        if v % 2 == 0 {
                            let existed = layers.insert(Table::Scripts, &key(k), &[v]).expect("insert");
                            prop_assert_eq!(existed, kept.insert(key(k), vec![v]).is_some());
                        }
                    }
                    Op::Remove(k) => {
                        let existed = layers.remove(Table::Keys, &key(k)).expect("remove");
                        prop_assert_eq!(existed, model.remove(&key(k)).is_some());
                        layers.remove_index_row(Table::Fields, &key(k));
                        if k % 3 == 0 {
                            let existed = layers.remove(Table::Scripts, &key(k)).expect("remove");
                            prop_assert_eq!(existed, kept.remove(&key(k)).is_some());
                        }
                    }
                    Op::RemoveRange(a, b) => {
                        let (a, b) = (key(a.min(b)), key(a.max(b)));
                        let doomed: Vec<_> = model.range(a.clone()..b.clone()).map(|(k, _)| k.clone()).collect();
                        for k in &doomed {
                            model.remove(k);
                            prop_assert!(layers.remove(Table::Keys, k).expect("remove"));
                        }
                        layers.remove_range(Table::Fields, Bound::Included(&a), Bound::Excluded(&b)).expect("range");
                    }
                    Op::Clear => {
                        model.clear();
                        layers.clear();
                    }
                    Op::Freeze => {
                        if layers.frozen().is_none() {
                            layers.freeze();
                        }
                    }
                    Op::Flush => {
                        if let Some(frozen) = layers.frozen().cloned() {
                            let txn = db.begin_write().expect("write");
                            write_layer(&frozen, &txn).expect("write layer");
                            txn.commit().expect("commit");
                            layers.replace_base(base(&db));
                        }
                    }
                }
                prop_assert_eq!(layers.key_count(), model.len() as u64);
            }
            for k in 0..24u8 {
                prop_assert_eq!(
                    layers.get(Table::Keys, &key(k)).expect("get").map(|v| v.to_vec()),
                    model.get(&key(k)).cloned()
                );
                prop_assert_eq!(
                    layers.get(Table::Fields, &key(k)).expect("get").is_some(),
                    model.contains_key(&key(k))
                );
                prop_assert_eq!(
                    layers.get(Table::Scripts, &key(k)).expect("get").map(|v| v.to_vec()),
                    kept.get(&key(k)).cloned()
                );
            }
            for a in 0..25u8 {
                for b in a..25u8 {
                    let (start, end) = (key(a), key(b));
                    let mut seen = Vec::new();
                    layers.range(Table::Keys, Bound::Excluded(&start), Bound::Included(&end), |k, v| {
                        seen.push((k.to_vec(), v.to_vec()));
                        Ok(true)
                    }).expect("range");
                    let expected: Vec<_> = model
                        .range((Bound::Excluded(start.clone()), Bound::Included(end.clone())))
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect();
                    prop_assert_eq!(seen, expected);
                    let mut index = Vec::new();
                    layers.range(Table::Fields, Bound::Included(&start), Bound::Unbounded, |k, _| {
                        index.push(k.to_vec());
                        Ok(index.len() < 3)
                    }).expect("range");
                    let expected: Vec<_> = model.range(start.clone()..).map(|(k, _)| k.clone()).take(3).collect();
                    prop_assert_eq!(index, expected);
                    let mut backwards = Vec::new();
                    layers.range_in(Table::Keys, Bound::Included(&start), Bound::Excluded(&end), true, |k, v| {
                        backwards.push((k.to_vec(), v.to_vec()));
                        Ok(backwards.len() < 4)
                    }).expect("reverse range");
                    let expected: Vec<_> = model
                        .range(start.clone()..end.clone())
                        .rev()
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .take(4)
                        .collect();
                    prop_assert_eq!(backwards, expected);
                }
            }
        }
    }
}
