//! `diff`: the patch applied to the old value gives the new one, by position and by key.

use json_patch::{Patch, PatchOperation};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

use super::diff;

/// `diff(old, new)` applied to `old`.
fn applied(old: &Value, new: &Value, key: Option<&str>) -> (Patch, Value) {
    let patch = diff(old, new, key);
    let mut doc = old.clone();
    json_patch::patch(&mut doc, &patch)
        .unwrap_or_else(|err| panic!("{patch} does not apply to {old}: {err}"));
    (patch, doc)
}

fn ops(patch: &Patch) -> Value {
    serde_json::to_value(patch).unwrap()
}

#[test]
fn an_insert_at_the_head_of_a_keyed_list_is_one_add() {
    let old = json!({"rows": [{"id": "a", "v": 1}, {"id": "b", "v": 2}, {"id": "c", "v": 3}]});
    let new = json!({"rows": [{"id": "z", "v": 0}, {"id": "a", "v": 1}, {"id": "b", "v": 2}, {"id": "c", "v": 3}]});
    let (patch, doc) = applied(&old, &new, Some("id"));
    assert_eq!(doc, new);
    assert_eq!(
        ops(&patch),
        json!([{"op": "add", "path": "/rows/0", "value": {"id": "z", "v": 0}}])
    );
    // By position, the same insert rewrites every row.
    let (by_position, doc) = applied(&old, &new, None);
    assert_eq!(doc, new);
    assert!(by_position.len() > 3, "{by_position}");
}

#[test]
fn a_removal_from_the_middle_is_one_remove() {
    let old = json!([{"id": 1}, {"id": 2}, {"id": 3}, {"id": 4}]);
    let new = json!([{"id": 1}, {"id": 3}, {"id": 4}]);
    let (patch, doc) = applied(&old, &new, Some("id"));
    assert_eq!(doc, new);
    assert_eq!(ops(&patch), json!([{"op": "remove", "path": "/1"}]));
}

#[test]
fn a_row_moved_up_is_one_move_and_its_change() {
    let old = json!([{"id": 1, "gate": "A"}, {"id": 2, "gate": "B"}, {"id": 3, "gate": "C"}]);
    let new = json!([{"id": 3, "gate": "D"}, {"id": 1, "gate": "A"}, {"id": 2, "gate": "B"}]);
    let (patch, doc) = applied(&old, &new, Some("id"));
    assert_eq!(doc, new);
    assert_eq!(
        ops(&patch),
        json!([
            {"op": "move", "from": "/2", "path": "/0"},
            {"op": "replace", "path": "/0/gate", "value": "D"},
        ])
    );
}

#[test]
fn arrays_that_cannot_be_keyed_are_diffed_by_position() {
    // Duplicate keys, a missing key, a key that is not a string or a number, not objects.
    for (old, new) in [
        (
            json!([{"id": 1}, {"id": 1}]),
            json!([{"id": 2}, {"id": 1}, {"id": 1}]),
        ),
        (json!([{"id": 1}, {"x": 2}]), json!([{"x": 2}, {"id": 1}])),
        (json!([{"id": [1]}]), json!([{"id": [2]}, {"id": [1]}])),
        (json!([1, 2, 3]), json!([0, 1, 2, 3])),
    ] {
        let (patch, doc) = applied(&old, &new, Some("id"));
        assert_eq!(doc, new);
        assert_eq!(patch, json_patch::diff(&old, &new), "{old} -> {new}");
    }
}

#[test]
fn keys_of_different_types_are_different_keys() {
    let old = json!([{"id": 1, "v": "number"}, {"id": "1", "v": "string"}]);
    let new = json!([{"id": "1", "v": "string"}, {"id": 1, "v": "number"}]);
    let (patch, doc) = applied(&old, &new, Some("id"));
    assert_eq!(doc, new);
    assert_eq!(patch.len(), 1, "{patch}");
}

#[test]
fn names_with_slashes_and_tildes_are_escaped_in_paths() {
    let old = json!({"a/b": {"~": 1}, "gone/~": true});
    let new = json!({"a/b": {"~": 2}, "new~1": [{"id": "x/y"}]});
    for key in [None, Some("id")] {
        let (_, doc) = applied(&old, &new, key);
        assert_eq!(doc, new);
    }
}

#[test]
fn a_change_of_type_at_the_root_is_a_replace() {
    let (patch, doc) = applied(&json!([1]), &json!({"a": 1}), Some("id"));
    assert_eq!(doc, json!({"a": 1}));
    assert_eq!(
        ops(&patch),
        json!([{"op": "replace", "path": "", "value": {"a": 1}}])
    );
}

#[test]
fn equal_values_give_an_empty_patch() {
    let value = json!({"rows": [{"id": 1, "v": [1, 2]}], "n": null});
    assert!(diff(&value, &value, Some("id")).is_empty());
    assert!(diff(&value, &value, None).is_empty());
}

/// A name that needs escaping now and then, and `id` often.
fn name() -> impl Strategy<Value = String> {
    prop_oneof![Just("id".to_owned()), "[ab~/]{0,2}"]
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        (-3i64..3).prop_map(Value::from),
        "[xy]{0,2}".prop_map(Value::from),
    ]
}

/// Objects with unique ids, numbers or strings.
fn keyed_list(item: impl Strategy<Value = Value>) -> impl Strategy<Value = Value> {
    prop::collection::vec((0u8..8, any::<bool>(), item), 0..7).prop_map(|rows| {
        let mut seen = std::collections::HashSet::new();
        let rows = rows
            .into_iter()
            .filter(|(id, textual, _)| seen.insert((*id, *textual)))
            .map(|(id, textual, v)| {
                let id = if textual {
                    Value::from(format!("k{id}"))
                } else {
                    Value::from(id)
                };
                json!({"id": id, "v": v})
            })
            .collect();
        Value::Array(rows)
    })
}

fn value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(4, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(name(), inner.clone(), 0..6)
                .prop_map(|map| Value::Object(map.into_iter().collect::<Map<_, _>>())),
            keyed_list(inner),
        ]
    })
}

/// One change to a list of rows with ids.
#[derive(Debug, Clone)]
pub(super) enum Edit {
    Insert(usize, Value),
    Remove(usize),
    Move(usize, usize),
    Change(usize, Value),
    Meta(Value),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), leaf()).prop_map(|(at, v)| Edit::Insert(at, v)),
        any::<usize>().prop_map(Edit::Remove),
        (any::<usize>(), any::<usize>()).prop_map(|(from, to)| Edit::Move(from, to)),
        (any::<usize>(), value()).prop_map(|(at, v)| Edit::Change(at, v)),
        leaf().prop_map(Edit::Meta),
    ]
}

/// The documents `{"rows": [...], "meta": ...}` that `edits` make one after the other, from
/// `rows` (the first is the document before any edit).
pub(super) fn edited(rows: Value, edits: &[Edit]) -> Vec<Value> {
    let mut doc = json!({"rows": rows, "meta": null});
    let mut next_id = 100u64;
    let mut states = vec![doc.clone()];
    for edit in edits {
        let rows = doc["rows"].as_array_mut().unwrap();
        match edit.clone() {
            Edit::Insert(at, v) => {
                next_id += 1;
                rows.insert(at % (rows.len() + 1), json!({"id": next_id, "v": v}));
            }
            Edit::Remove(at) if !rows.is_empty() => {
                let at = at % rows.len();
                rows.remove(at);
            }
            Edit::Move(from, to) if !rows.is_empty() => {
                let row = rows.remove(from % rows.len());
                rows.insert(to % (rows.len() + 1), row);
            }
            Edit::Change(at, v) if !rows.is_empty() => {
                let at = at % rows.len();
                rows[at]["v"] = v;
            }
            Edit::Meta(v) => doc["meta"] = v,
            _ => {}
        }
        states.push(doc.clone());
    }
    states
}

/// Whether `op` adds, removes or moves a whole row (`/rows/N`).
fn is_on_a_row(op: &PatchOperation) -> bool {
    let row = |path: &json_patch::jsonptr::Pointer| {
        path.count() == 2 && path.first().is_some_and(|token| token.decoded() == "rows")
    };
    match op {
        PatchOperation::Add(op) => row(&op.path),
        PatchOperation::Remove(op) => row(&op.path),
        PatchOperation::Move(op) => row(&op.path),
        _ => false,
    }
}

pub(super) fn edits() -> impl Strategy<Value = (Value, Vec<Edit>)> {
    (keyed_list(leaf()), prop::collection::vec(edit(), 0..12))
}

proptest! {
    #[test]
    fn any_patch_applies_to_give_the_new_value(old in value(), new in value(), keyed in any::<bool>()) {
        let key = keyed.then_some("id");
        let (_, doc) = applied(&old, &new, key);
        prop_assert_eq!(doc, new);
    }

    #[test]
    fn edits_of_keyed_rows_patch_exactly((rows, edits) in edits()) {
        let states = edited(rows, &edits);
        for pair in states.windows(2) {
            let (patch, doc) = applied(&pair[0], &pair[1], Some("id"));
            prop_assert_eq!(&doc, &pair[1]);
            // One edit of a row is at most two operations on rows, whatever the rows after it.
            let on_rows = patch.iter().filter(|op| is_on_a_row(op)).count();
            prop_assert!(on_rows <= 2, "{}", patch);
        }
    }
}

/// Rows `{"id": i, "v": i}` for each `i` of `ids`.
fn rows(ids: impl IntoIterator<Item = usize>) -> Value {
    ids.into_iter().map(|i| json!({"id": i, "v": i})).collect()
}

#[test]
fn a_large_reversed_keyed_list_patches_exactly() {
    // Each row but one moves: as many moves as rows, found without a scan per row.
    let n = 20_000;
    let old = rows(0..n);
    let new = rows((0..n).rev());
    let (patch, doc) = applied(&old, &new, Some("id"));
    assert_eq!(doc, new);
    assert_eq!(
        patch.len(),
        n - 1,
        "one move for each row but the one that stays"
    );

    // And with rows gone, rows new and rows changed among the moves.
    let new: Value = (0..n)
        .rev()
        .filter(|i| i % 7 != 0)
        .map(|i| json!({"id": i, "v": if i % 5 == 0 { i + 1 } else { i }}))
        .chain((n..n + 100).map(|i| json!({"id": i, "v": i})))
        .collect();
    let (_, doc) = applied(&old, &new, Some("id"));
    assert_eq!(doc, new);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Longer lists than `edits` makes, shuffled, cut and added to at random: the patch by key
    /// applies to give the new list.
    #[test]
    fn shuffled_keyed_lists_patch_exactly(
        order in Just((0..340).collect::<Vec<usize>>()).prop_shuffle(),
        gone in prop::collection::vec(any::<bool>(), 300),
        changed in prop::collection::vec(0u8..4, 300),
        added in 0usize..40,
    ) {
        let old = rows(0..300);
        // Ids from 300 are new: `added` of them, anywhere in the list.
        let new: Value = order
            .iter()
            .filter(|&&i| if i < 300 { !gone[i] || i % 3 != 0 } else { i < 300 + added })
            .map(|&i| json!({"id": i, "v": if i < 300 && changed[i] == 0 { i + 1 } else { i }}))
            .collect();
        let (_, doc) = applied(&old, &new, Some("id"));
        prop_assert_eq!(doc, new);
    }
}
