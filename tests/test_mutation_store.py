"""Artifact keys are stable across versions of xlexp: a key is the digest of a fixed, canonical
record (stage, config slice, sorted input keys, format version), so a store built yesterday is
reused today. A changed record format (a renamed field, other JSON separators, escaped
non-ASCII) would silently rebuild every artifact of every store; these pin it."""

from __future__ import annotations

from omegaconf import OmegaConf

from xlexp.store import Store, canonical, digest


def test_a_key_is_the_digest_of_its_canonical_record(tmp_path):
    store = Store(tmp_path)
    key = store.key("select", {"keep": 0.8, "name": "Übersetzung"}, ["b", "a"], version=2)
    assert key == "db4ebdc8e3c1699e"
    # what `python -m xlexp.store explain` compares: the record, inputs sorted
    assert store._made_of[key] == {
        "stage": "select",
        "config": {"keep": 0.8, "name": "Übersetzung"},
        "inputs": ["a", "b"],
        "version": 2,
    }
    assert key == digest(store._made_of[key])
    assert store.key("select", {"keep": 0.8, "name": "Übersetzung"}, ["a", "b"], 2) == key
    assert store.key("select", {"keep": 0.8, "name": "Übersetzung"}, ["a", "b"]) != key


def test_canonical_json_is_compact_sorted_and_unescaped():
    assert canonical({"z": "é", "a": [1, 2]}) == '{"a":[1,2],"z":"é"}'
    assert digest({"a": [1, 2], "z": "é"}) == "69ed5fc8c2388fea"
    assert len(digest("x")) == 16 and len(digest("x", n=24)) == 24


def test_config_nodes_and_other_objects_hash_as_their_plain_values():
    class Named:
        def __str__(self) -> str:
            return "obj!"

    nested = {"o": Named(), "n": OmegaConf.create({"x": [1]})}
    assert canonical(nested) == '{"n":{"x":[1]},"o":"obj!"}'
    assert canonical(OmegaConf.create({"b": 1, "a": {"c": 2}})) == '{"a":{"c":2},"b":1}'
    assert canonical(OmegaConf.create([3, {"k": "v"}])) == '[3,{"k":"v"}]'
