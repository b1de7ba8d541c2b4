//! JSON Patch (RFC 6902) between two JSON values, with arrays of objects diffed by key.

use std::collections::{HashMap, HashSet};

use json_patch::jsonptr::PointerBuf;
use json_patch::{
    AddOperation, MoveOperation, Patch, PatchOperation, RemoveOperation, ReplaceOperation,
};
use serde_json::{Map, Value};

/// The JSON Patch (RFC 6902) that turns `old` into `new`: applied to `old` in order (with
/// [`json_patch::patch`], or any RFC 6902 implementation), it gives `new` exactly.
///
/// Without `array_key`, this is [`json_patch::diff`], which compares arrays position by
/// position: one element inserted at the head of a list replaces every element after it.
/// With `array_key` (e.g. `Some("id")`), an array whose elements are all objects with that
/// field, a string or a number, unique within the array (in both values), is diffed by key
/// instead: elements that left are removed, new ones added where they belong, moved ones
/// moved, and the rest diffed in place. One insert at the head is then one `add`. Other
/// arrays are still compared by position.
///
/// ```
/// use serde_json::json;
/// use tower_sse::poll::diff;
///
/// let old = json!([{"id": 1, "gate": "A1"}, {"id": 2, "gate": "B2"}]);
/// let new = json!([{"id": 0, "gate": "C3"}, {"id": 1, "gate": "A1"}, {"id": 2, "gate": "B4"}]);
/// let patch = diff(&old, &new, Some("id"));
/// assert_eq!(serde_json::to_value(&patch).unwrap(), json!([
///     {"op": "add", "path": "/0", "value": {"id": 0, "gate": "C3"}},
///     {"op": "replace", "path": "/2/gate", "value": "B4"},
/// ]));
///
/// let mut doc = old.clone();
/// json_patch::patch(&mut doc, &patch).unwrap();
/// assert_eq!(doc, new);
/// ```
pub fn diff(old: &Value, new: &Value, array_key: Option<&str>) -> Patch {
    match array_key {
        None => json_patch::diff(old, new),
        Some(key) => {
            let mut ops = Vec::new();
            walk(old, new, key, &mut PointerBuf::new(), &mut ops);
            Patch(ops)
        }
    }
}

fn walk(old: &Value, new: &Value, key: &str, path: &mut PointerBuf, ops: &mut Vec<PatchOperation>) {
    match (old, new) {
        (Value::Object(old), Value::Object(new)) => objects(old, new, key, path, ops),
        (Value::Array(old), Value::Array(new)) => match (keys_of(old, key), keys_of(new, key)) {
            (Some(old_keys), Some(new_keys)) => {
                keyed(old, &old_keys, new, &new_keys, key, path, ops);
            }
            _ => positional(old, new, key, path, ops),
        },
        _ if old == new => {}
        _ => ops.push(PatchOperation::Replace(ReplaceOperation {
            path: path.clone(),
            value: new.clone(),
        })),
    }
}

fn objects(
    old: &Map<String, Value>,
    new: &Map<String, Value>,
    key: &str,
    path: &mut PointerBuf,
    ops: &mut Vec<PatchOperation>,
) {
    // In the order `json_patch::diff` uses: what the new value has, then what it has not.
    for (name, value) in new {
        path.push_back(name);
        match old.get(name) {
            Some(before) => walk(before, value, key, path, ops),
            None => ops.push(add(path, value)),
        }
        path.pop_back();
    }
    for name in old.keys().filter(|name| !new.contains_key(*name)) {
        path.push_back(name);
        ops.push(remove(path));
        path.pop_back();
    }
}

/// Element by element, then what one has past the other's end: as `json_patch::diff` does.
fn positional(
    old: &[Value],
    new: &[Value],
    key: &str,
    path: &mut PointerBuf,
    ops: &mut Vec<PatchOperation>,
) {
    for (index, (before, after)) in old.iter().zip(new).enumerate() {
        path.push_back(index);
        walk(before, after, key, path, ops);
        path.pop_back();
    }
    // Each removal moves the next element to the same index.
    for _ in new.len()..old.len() {
        path.push_back(new.len());
        ops.push(remove(path));
        path.pop_back();
    }
    for (index, value) in new.iter().enumerate().skip(old.len()) {
        path.push_back(index);
        ops.push(add(path, value));
        path.pop_back();
    }
}

/// By key: remove the elements that left (from the end), then walk the new order, adding new
/// elements and moving the others into place, and diff each in place. The elements that keep
/// their relative order (a longest increasing run of their old positions) never move; each
/// other one moves once, or twice when it stands in the way of one that stays (it goes to the
/// end first).
///
/// O(n log n): the elements not yet in place are kept as [`Pending`], which finds where one
/// stands, takes one out and puts one at the end in O(log n) each.
fn keyed(
    old: &[Value],
    old_keys: &[String],
    new: &[Value],
    new_keys: &[String],
    key: &str,
    path: &mut PointerBuf,
    ops: &mut Vec<PatchOperation>,
) {
    let wanted: HashSet<&str> = new_keys.iter().map(String::as_str).collect();
    for (index, gone) in old_keys.iter().enumerate().rev() {
        if !wanted.contains(gone.as_str()) {
            path.push_back(index);
            ops.push(remove(path));
            path.pop_back();
        }
    }
    // The elements that remain, in their old order: the array as the removals leave it.
    let kept: Vec<(&str, &Value)> = old_keys
        .iter()
        .map(String::as_str)
        .zip(old)
        .filter(|(k, _)| wanted.contains(k))
        .collect();
    let position: HashMap<&str, usize> = kept
        .iter()
        .enumerate()
        .map(|(index, (k, _))| (*k, index))
        .collect();
    let order: Vec<usize> = new_keys
        .iter()
        .filter_map(|k| position.get(k.as_str()).copied())
        .collect();
    let mut stays = vec![false; kept.len()];
    for element in longest_increasing(&order) {
        stays[element] = true;
    }
    // The array is `new[..index]` (in place), then the pending elements in their order.
    let mut pending = Pending::new(kept.len());
    // Where each pending element is, by key; and which element each slot holds.
    let mut slot_of = position;
    let mut element_at: Vec<usize> = (0..kept.len()).collect();
    let mut index = 0;
    while index < new.len() {
        let (k, value) = (new_keys[index].as_str(), &new[index]);
        let Some(&slot) = slot_of.get(k) else {
            path.push_back(index);
            ops.push(add(path, value));
            path.pop_back();
            index += 1;
            continue;
        };
        let element = element_at[slot];
        let offset = pending.before(slot);
        if offset > 0 {
            if stays[element] {
                // One that stays, behind one that moves: that one goes to the end for now.
                let front = pending.first();
                let last = index + pending.len() - 1;
                push_move(path, index, last, ops);
                let moved = element_at[front];
                pending.take(front);
                let end = pending.push();
                element_at.push(moved);
                slot_of.insert(kept[moved].0, end);
                continue;
            }
            push_move(path, index + offset, index, ops);
        }
        pending.take(slot);
        slot_of.remove(k);
        path.push_back(index);
        walk(kept[element].1, value, key, path, ops);
        path.pop_back();
        index += 1;
    }
}

/// The elements of an array not yet in place, in order, as slots of a Fenwick tree: the first
/// `n` slots are the elements in their old order, and each element put at the end takes the
/// next slot. Each element goes to the end at most once, so `2n` slots are enough.
struct Pending {
    /// Fenwick tree (1-based) of the slots' occupancy.
    tree: Vec<usize>,
    occupied: Vec<bool>,
    /// No slot before this one is occupied.
    head: usize,
    /// The slot the next element put at the end takes.
    next: usize,
    len: usize,
}

impl Pending {
    fn new(n: usize) -> Pending {
        let capacity = 2 * n;
        let mut pending = Pending {
            tree: vec![0; capacity + 1],
            occupied: vec![false; capacity],
            head: 0,
            next: n,
            len: 0,
        };
        for slot in 0..n {
            pending.occupy(slot);
        }
        pending
    }

    fn len(&self) -> usize {
        self.len
    }

    fn occupy(&mut self, slot: usize) {
        self.occupied[slot] = true;
        self.len += 1;
        self.add(slot, true);
    }

    fn add(&mut self, slot: usize, up: bool) {
        let mut at = slot + 1;
        while at < self.tree.len() {
            if up {
                self.tree[at] += 1;
            } else {
                self.tree[at] -= 1;
            }
            at += at & at.wrapping_neg();
        }
    }

    /// How many pending elements stand before the one in `slot`.
    fn before(&self, slot: usize) -> usize {
        let mut count = 0;
        let mut at = slot;
        while at > 0 {
            count += self.tree[at];
            at -= at & at.wrapping_neg();
        }
        count
    }

    /// The slot of the first pending element (there is one).
    fn first(&mut self) -> usize {
        while !self.occupied[self.head] {
            self.head += 1;
        }
        self.head
    }

    /// Takes the element in `slot` out.
    fn take(&mut self, slot: usize) {
        self.occupied[slot] = false;
        self.len -= 1;
        self.add(slot, false);
    }

    /// Puts an element at the end; returns its slot.
    fn push(&mut self) -> usize {
        let slot = self.next;
        self.next += 1;
        self.occupy(slot);
        slot
    }
}

fn push_move(path: &PointerBuf, from: usize, to: usize, ops: &mut Vec<PatchOperation>) {
    let mut from_path = path.clone();
    from_path.push_back(from);
    let mut to_path = path.clone();
    to_path.push_back(to);
    ops.push(PatchOperation::Move(MoveOperation {
        from: from_path,
        path: to_path,
    }));
}

/// The values of a longest strictly increasing subsequence of `items` (patience sorting).
fn longest_increasing(items: &[usize]) -> Vec<usize> {
    // tails[l]: the index in `items` of the smallest end of a run of length l + 1.
    let mut tails: Vec<usize> = Vec::new();
    let mut previous = vec![usize::MAX; items.len()];
    for (i, &item) in items.iter().enumerate() {
        let length = tails.partition_point(|&t| items[t] < item);
        if length > 0 {
            previous[i] = tails[length - 1];
        }
        if length == tails.len() {
            tails.push(i);
        } else {
            tails[length] = i;
        }
    }
    let mut run = Vec::with_capacity(tails.len());
    let mut at = tails.last().copied().unwrap_or(usize::MAX);
    while at != usize::MAX {
        run.push(items[at]);
        at = previous[at];
    }
    run.reverse();
    run
}

/// Each element's key (its `key` field, a string or a number, as JSON text), if every element
/// is an object with one and no two are the same.
fn keys_of(items: &[Value], key: &str) -> Option<Vec<String>> {
    let mut keys = Vec::with_capacity(items.len());
    let mut seen = HashSet::with_capacity(items.len());
    for item in items {
        let id = match item.as_object()?.get(key)? {
            id @ (Value::String(_) | Value::Number(_)) => id.to_string(),
            _ => return None,
        };
        if !seen.insert(id.clone()) {
            return None;
        }
        keys.push(id);
    }
    Some(keys)
}

fn add(path: &PointerBuf, value: &Value) -> PatchOperation {
    PatchOperation::Add(AddOperation {
        path: path.clone(),
        value: value.clone(),
    })
}

fn remove(path: &PointerBuf) -> PatchOperation {
    PatchOperation::Remove(RemoveOperation { path: path.clone() })
}
