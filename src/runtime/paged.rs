//! A slab whose storage grows in fixed pages instead of one doubling vector.
//!
//! The shard's connection table is its largest structure (one entry per socket). In a
//! doubling `Vec` (the `slab` crate) it is copied whole at every growth and its
//! capacity, up to twice what is used, ends up resident: measured at 9,000 idle
//! connections, the table's capacity was most of the server's memory per connection.
//! Pages of `PAGE` entries are allocated as the table fills and never move, so growth
//! copies nothing and the memory held is what is used plus less than one page.

/// Entries per page: 512 × a ~400-byte shard entry ≈ 200 KB, so a shard with few
/// connections holds little, and one with 50,000 has ~100 pages.
const PAGE: usize = 512;

enum Slot<T> {
    Occupied(T),
    /// Free; holds the next free key (`usize::MAX`: none).
    Vacant(usize),
}

/// Keys are dense `usize`s, reused after removal (most recently freed first).
pub(crate) struct PagedSlab<T> {
    pages: Vec<Box<[Slot<T>]>>,
    /// Slots handed out so far (occupied or vacant); the next new key.
    filled: usize,
    /// Head of the free list of vacant slots below `filled`.
    next_free: usize,
    len: usize,
}

impl<T> Default for PagedSlab<T> {
    fn default() -> Self {
        PagedSlab {
            pages: Vec::new(),
            filled: 0,
            next_free: usize::MAX,
            len: 0,
        }
    }
}

impl<T> PagedSlab<T> {
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn slot(&self, key: usize) -> Option<&Slot<T>> {
        self.pages.get(key / PAGE).map(|page| &page[key % PAGE])
    }

    fn slot_mut(&mut self, key: usize) -> Option<&mut Slot<T>> {
        self.pages
            .get_mut(key / PAGE)
            .map(|page| &mut page[key % PAGE])
    }

    pub(crate) fn get(&self, key: usize) -> Option<&T> {
        match self.slot(key) {
            Some(Slot::Occupied(value)) => Some(value),
            _ => None,
        }
    }

    pub(crate) fn get_mut(&mut self, key: usize) -> Option<&mut T> {
        match self.slot_mut(key) {
            Some(Slot::Occupied(value)) => Some(value),
            _ => None,
        }
    }

    /// The key the next [`PagedSlab::insert`] will use.
    pub(crate) fn vacant_key(&self) -> usize {
        if self.next_free != usize::MAX {
            self.next_free
        } else {
            self.filled
        }
    }

    /// Stores `value` at [`PagedSlab::vacant_key`] and returns that key.
    pub(crate) fn insert(&mut self, value: T) -> usize {
        let key = self.vacant_key();
        if key == self.filled {
            if key.is_multiple_of(PAGE) {
                let page: Box<[Slot<T>]> = (0..PAGE).map(|_| Slot::Vacant(usize::MAX)).collect();
                self.pages.push(page);
            }
            self.filled += 1;
        }
        let Some(slot) = self.slot_mut(key) else {
            // Unreachable: `key` is below `filled`, whose page exists.
            return key;
        };
        // A reused slot passes its link on; a new one holds `usize::MAX`, which is
        // what `next_free` already was.
        if let Slot::Vacant(next) = std::mem::replace(slot, Slot::Occupied(value)) {
            self.next_free = next;
        }
        self.len += 1;
        key
    }

    /// Takes the value at `key` out, if there is one.
    pub(crate) fn remove(&mut self, key: usize) -> Option<T> {
        let next_free = self.next_free;
        let slot = self.slot_mut(key)?;
        match std::mem::replace(slot, Slot::Vacant(next_free)) {
            Slot::Occupied(value) => {
                self.next_free = key;
                self.len -= 1;
                Some(value)
            }
            vacant => {
                // Already free: leave its link as it was.
                *slot = vacant;
                None
            }
        }
    }

    /// The occupied slots with their keys, in key order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (usize, &T)> + '_ {
        (0..self.filled).filter_map(|key| self.get(key).map(|value| (key, value)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_dense_reused_and_stable_across_pages() {
        let mut slab = PagedSlab::default();
        let keys: Vec<usize> = (0..PAGE * 2 + 10).map(|i| slab.insert(i)).collect();
        assert_eq!(keys, (0..PAGE * 2 + 10).collect::<Vec<_>>());
        assert_eq!(slab.pages.len(), 3);
        assert_eq!(slab.len(), PAGE * 2 + 10);
        assert_eq!(slab.get(PAGE + 5), Some(&(PAGE + 5)));
        assert_eq!(slab.remove(PAGE + 5), Some(PAGE + 5));
        assert_eq!(slab.remove(PAGE + 5), None, "removing twice");
        assert_eq!(slab.remove(7), Some(7));
        assert_eq!(slab.get(7), None);
        assert_eq!(slab.vacant_key(), 7, "most recently freed first");
        assert_eq!(slab.insert(1000), 7);
        assert_eq!(slab.insert(1001), PAGE + 5);
        assert_eq!(slab.insert(1002), PAGE * 2 + 10, "then a new slot");
        assert_eq!(slab.pages.len(), 3);
        *slab.get_mut(7).unwrap() += 1;
        assert_eq!(slab.get(7), Some(&1001));
        assert_eq!(slab.iter().count(), slab.len());
    }

    #[test]
    fn out_of_range_keys_are_none_and_emptying_keeps_pages_for_reuse() {
        let mut slab: PagedSlab<String> = PagedSlab::default();
        assert!(slab.is_empty());
        assert_eq!(slab.get(3), None);
        assert_eq!(slab.get_mut(usize::MAX), None);
        assert_eq!(slab.remove(PAGE * 9), None);
        let a = slab.insert("a".into());
        let b = slab.insert("b".into());
        assert_eq!(slab.remove(a).as_deref(), Some("a"));
        assert_eq!(slab.remove(b).as_deref(), Some("b"));
        assert!(slab.is_empty());
        assert_eq!(slab.iter().count(), 0);
        assert_eq!(slab.insert("c".into()), b);
        assert_eq!(slab.insert("d".into()), a);
    }
}
